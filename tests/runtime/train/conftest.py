"""Trainer test fixtures: synthetic latent shards, stage.yaml and ds_config.json files, a tiny model.

DeepSpeed builds a shared-memory op on its first initialize (about 25 s); TORCH_EXTENSIONS_DIR (set before
anything imports DeepSpeed) keeps it across runs.
"""

import json
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads slow DeepSpeed's
# many small ops tenfold. Effective only if nothing imported torch earlier in this process.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(HERE))  # tiny_model, for in-process runs

import cv2
import numpy as np
import pytest
import torch
import webdataset as wds
from ruamel.yaml import YAML

from compiler.schema.architecture import DiT, LatentSpace, MMDiT, Rope, TextEncoder
from compiler.schema.bundle import DataInput, ParallelLayout, StageFile
from compiler.schema.common import Size
from compiler.schema.objective import FlowMatching
from compiler.schema.schedule import AdamW, DatasetUse, Stage
from compiler.schema.spec import InferenceSpec

CLASSES = 4
CHANNELS, SIDE, FRAMES = 4, 8, 3  # latent sizes
VIDEO_FRAMES = 1 + 4 * (FRAMES - 1)  # stage.frames: the causal VAE (4x in time) encodes 9 frames to 3
TEXT_LEN, TEXT_DIM, POOLED_DIM = 4, 16, 8
RENDEZVOUS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def patterns(video: bool) -> np.ndarray:
    """One fixed unit-variance latent per class."""
    shape = (CHANNELS, FRAMES, SIDE, SIDE) if video else (CHANNELS, SIDE, SIDE)
    return np.random.default_rng(1234).standard_normal((CLASSES, *shape)).astype(np.float32)


def class_embeddings() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(99)
    return (
        rng.standard_normal((CLASSES, TEXT_LEN, TEXT_DIM)).astype(np.float32),
        rng.standard_normal((CLASSES, POOLED_DIM)).astype(np.float32),
    )


def write_shards(
    directory: Path, samples: int, per_shard: int, video=False, rejected=False, mask=False, noise=0.0, masked_offset=0.0
):
    """Shards of class-pattern latents with text/pooled class embeddings; sample i has class i % CLASSES.

    mask: each image sample gets a mask.npy excluding its top-left 8 x 8 pixels, the latent cell (0, 0), whose
    latents are shifted by `masked_offset` (a loss that honours the mask does not see it)."""
    directory.mkdir(parents=True, exist_ok=True)
    latents, (texts, pooled) = patterns(video), class_embeddings()
    rng = np.random.default_rng(7)
    for shard in range(0, samples, per_shard):
        with wds.TarWriter(str(directory / f"shard-{shard // per_shard:05d}.tar")) as sink:
            for index in range(shard, min(shard + per_shard, samples)):
                c = index % CLASSES
                sample = {
                    "__key__": f"{index:06d}",
                    "latents.npy": latents[c] + noise * rng.standard_normal(latents[c].shape).astype(np.float32),
                    "text.npy": texts[c],
                }
                if not video:
                    sample["pooled.npy"] = pooled[c]
                if rejected:
                    sample["rejected.npy"] = latents[(c + 1) % CLASSES]
                if mask:
                    keep = np.ones((SIDE * 8, SIDE * 8), dtype=np.float32)
                    keep[:8, :8] = 0
                    sample["mask.npy"] = keep
                    sample["latents.npy"][..., 0, 0] += masked_offset
                sink.write(sample)


def write_mp4(path: Path, levels: list[int], fps: float, size=(16, 16)) -> bytes:
    """An mp4 (fourcc mp4v) whose frame i is uniform grey `levels[i]`; returns its bytes."""
    height, width = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for level in levels:
        writer.write(np.full((height, width, 3), level, dtype=np.uint8))
    writer.release()
    return path.read_bytes()


def architecture(video=False, guidance=False):
    """Keyword arguments of a miniature ArchitectureSpec: FLUX-like MMDiT on images, Wan-like DiT on video."""
    encoders = [
        TextEncoder(
            name="t5",
            model="google/t5-v1_1-xxl",
            role="cross_attention" if video else "tokens",
            dim=TEXT_DIM,
            max_tokens=TEXT_LEN,
        )
    ]
    if not video:
        encoders.append(
            TextEncoder(
                name="clip", model="openai/clip-vit-large-patch14", role="pooled", dim=POOLED_DIM, max_tokens=TEXT_LEN
            )
        )
    if video:
        backbone = DiT(
            hidden_size=32,
            num_heads=2,
            head_dim=16,
            in_channels=CHANNELS,
            out_channels=CHANNELS,
            positions=Rope(axes=["t", "h", "w"], axes_dims=[4, 6, 6]),
            depth=1,
            text_dim=TEXT_DIM,
        )
    else:
        positions = Rope(axes=["index", "h", "w"], axes_dims=[4, 6, 6])
        backbone = MMDiT(
            hidden_size=32,
            num_heads=2,
            head_dim=16,
            in_channels=16,
            out_channels=16,
            positions=positions,
            double_blocks=1,
            single_blocks=1,
            context_dim=TEXT_DIM,
            pooled_dim=POOLED_DIM,
            guidance_embed=guidance,
        )
    space = LatentSpace(
        vae="Wan-AI/Wan2.1-T2V-1.3B" if video else "black-forest-labs/FLUX.1-dev",
        channels=CHANNELS,
        spatial_compression=8,
        temporal_compression=4 if video else 1,
        causal=video,
    )
    return {"backbone": backbone, "text_encoders": encoders, "space": space}


def write_stage(
    root: Path,
    name="tiny",
    steps=6,
    objective=None,
    video=False,
    guidance=False,
    micro=4,
    accum=1,
    zero=0,
    precision="fp32",
    lr=3e-3,
    ema=0.9,
    validation_every=1,
    checkpoint_every=1,
    loss=None,
    init_from=None,
    teacher=None,
    datasets=("patterns",),
    weights=None,
    stage_kind="pretrain",
    dp=1,
    aspect_ratio_buckets=False,
    buckets=(),
    conditioning=None,
):
    """Write train/<name>/stage.yaml and ds_config.json under root; returns (stage path, ds_config path)."""
    stage = Stage(
        name=name,
        kind=stage_kind,
        datasets=[DatasetUse(dataset=d) for d in datasets],
        resolutions=[Size(height=SIDE * 8, width=SIDE * 8)],
        aspect_ratio_buckets=aspect_ratio_buckets,
        frames=VIDEO_FRAMES if video else None,
        batch_size=micro * accum * dp,
        steps=steps,
        optimizer=AdamW(lr=lr),
        ema_decay=ema,
        precision=precision,
        loss=loss,
        init_from=init_from,
        teacher=teacher,
        conditioning=conditioning,
    )
    weights = weights or [1.0] * len(datasets)
    stage_file = StageFile(
        spec="tiny",
        scale="smoke",
        stage=stage,
        architecture=architecture(video, guidance),
        objective=objective or FlowMatching(),
        inference=InferenceSpec(sampler="euler", steps=4),
        layout=ParallelLayout(dp_size=dp, micro_batch=micro, grad_accumulation=accum, zero_stage=zero, precision=precision),
        buckets=list(buckets),
        data=[
            DataInput(dataset=d, weight=w, shards=f"data/{d}", modality="video" if video else "image")
            for d, w in zip(datasets, weights)
        ],
        output_dir=f"runs/{name}",
        init_from=f"runs/{init_from}" if isinstance(init_from, str) else None,  # released weights: stage.init_from
        teacher=teacher and f"runs/{teacher}",
        seed=0,
        validation_every=validation_every,
        validation_timesteps=4,
        checkpoint_every=checkpoint_every,
    )
    directory = root / "train" / name
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "stage.yaml", "w") as stream:
        YAML(typ="safe").dump(stage_file.model_dump(mode="json"), stream)
    ds_config = {
        "train_batch_size": micro * accum * dp,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accum,
        "zero_optimization": {"stage": zero},
        "bf16": {"enabled": precision == "bf16"},
        "gradient_clipping": 1.0,
        "steps_per_print": 1_000_000,
    }
    (directory / "ds_config.json").write_text(json.dumps(ds_config, indent=2))
    return directory / "stage.yaml", directory / "ds_config.json"


def trained_losses(records: list[dict], steps: int) -> list[float]:
    """The training losses of a run's metrics records, after checking that it logged steps 0 to `steps` in
    order, each step after 0 with a finite loss (an empty or short metrics file fails here)."""
    assert [r["step"] for r in records] == list(range(steps + 1)), records
    losses = [r["loss"] for r in records[1:]]
    assert len(losses) == steps and all(math.isfinite(loss) for loss in losses), losses
    return losses


@pytest.fixture(scope="session")
def image_root(tmp_path_factory):
    """A run root with 64 class-pattern samples in 4 shards at data/patterns."""
    root = tmp_path_factory.mktemp("image_run")
    write_shards(root / "data" / "patterns", samples=64, per_shard=16, noise=0.05)
    return root


def subprocess_env() -> dict:
    """The environment for trainer subprocesses: no inherited rendezvous, tiny_model importable."""
    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())  # the same arithmetic as in-process runs
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(scope="session")
def deepspeed_ops_built():
    """Build DeepSpeed's CPU shared-memory op once in this process. On a fresh machine the ranks of a
    multi-process run would otherwise build it at the same time into the same cache and one can crash."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.accelerator import get_accelerator

    get_accelerator().create_op_builder("ShareMemCommBuilder").load()
