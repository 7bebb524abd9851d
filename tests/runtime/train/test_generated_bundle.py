"""Bundles as the compiler emits them drive the trainer with the default model factory (runtime.models):

- FLUX.1 dev's whole schedule from the committed smoke bundle (generated/flux1-dev/local-cpu-smoke), stage
  after stage, init_from and teacher included, DeepSpeed-built AdamW and WarmupLR, on synthetic shards with
  precomputed latents at the first stage's resolution (later stages at other resolutions encode the image),
  T5 tokens and CLIP pooled; every stage's final/diffusers folder loads with diffusers' FluxTransformer2DModel;
- Imagen 1's cascade compiled at smoke scale: the base U-Net (Adafactor, built by the trainer) and a
  super-resolution U-Net with noise conditioning augmentation, encoding images and captions on the fly with
  runtime.encoders' smoke stand-ins (pixel space: the codec is the identity).
"""

import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from conftest import trained_losses
from PIL import Image

from runtime.train import RunOptions, load_stage_file, train
from runtime.train.metrics import read_metrics

BUNDLE = Path(__file__).resolve().parents[3] / "generated" / "flux1-dev" / "local-cpu-smoke" / "train"
STAGES = ["pretrain", "highres_finetune", "timestep_shifting", "guidance_distillation"]


def write_latent_shards(root: Path, stage_file) -> None:
    """Curation's output as the trainer reads it: latents at the first stage resolution and the image they came
    from, T5 tokens, CLIP pooled, and the metadata a subset filter may read."""
    architecture = stage_file.architecture
    encoders = {encoder.role: encoder for encoder in architecture.text_encoders}
    side = stage_file.stage.resolutions[0].height // architecture.space.spatial_compression
    rng = np.random.default_rng(0)
    for data in stage_file.data:
        directory = root / data.shards
        directory.mkdir(parents=True, exist_ok=True)
        with wds.TarWriter(str(directory / "shard-00000.tar")) as sink:
            for index in range(16):
                sink.write(
                    {
                        "__key__": f"{index:05d}",
                        "latents.npy": rng.standard_normal((architecture.space.channels, side, side)).astype(
                            np.float32
                        ),
                        "text.npy": rng.standard_normal((encoders["tokens"].max_tokens, encoders["tokens"].dim)).astype(
                            np.float32
                        ),
                        "pooled.npy": rng.standard_normal(encoders["pooled"].dim).astype(np.float32),
                        "png": png_bytes(rng),
                        "json": {"width": 2048, "height": 2048},
                    }
                )


def png_bytes(rng: np.random.Generator) -> bytes:
    """A random 96 x 128 PNG."""
    png = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(png, format="PNG")
    return png.getvalue()


@pytest.mark.slow
def test_flux1_dev_schedule_trains_from_the_bundle(tmp_path):
    assert BUNDLE.is_dir(), f"{BUNDLE} is missing: `make regen` writes generated/ (and it is committed)"
    write_latent_shards(tmp_path, load_stage_file(BUNDLE / STAGES[0] / "stage.yaml"))
    for stage in STAGES:
        stage_file = load_stage_file(BUNDLE / stage / "stage.yaml")
        train(RunOptions(BUNDLE / stage / "stage.yaml", BUNDLE / stage / "ds_config.json", tmp_path))
        output = tmp_path / stage_file.output_dir
        records = read_metrics(output)
        trained_losses(records, stage_file.stage.steps)
        assert all(math.isfinite(r["val_loss"]) for r in records if "val_loss" in r) and "val_loss" in records[0]
        assert (output / "final" / "model.safetensors").is_file()
        check_diffusers_folder(output / "final")


def check_diffusers_folder(final: Path) -> None:
    """final/diffusers loads with diffusers' FluxTransformer2DModel and holds model.safetensors' weights; the stage
    file it was trained from sits beside them."""
    import torch
    from diffusers import FluxTransformer2DModel
    from safetensors.torch import load_file

    loaded = FluxTransformer2DModel.from_pretrained(str(final / "diffusers")).state_dict()
    trained = {name.removeprefix("model."): tensor for name, tensor in load_file(str(final / "model.safetensors")).items()}
    assert loaded.keys() == trained.keys()
    assert [name for name in trained if not torch.equal(loaded[name], trained[name])] == []
    assert (final / "stage.yaml").is_file() and (final / "plan.json").is_file() and (final / "provenance.json").is_file()


def write_image_shards(root: Path, stage_file) -> None:
    """Curation's output with media: PNG images, captions and the metadata a subset filter may read."""
    rng = np.random.default_rng(0)
    for data in stage_file.data:
        directory = root / data.shards
        directory.mkdir(parents=True, exist_ok=True)
        with wds.TarWriter(str(directory / "shard-00000.tar")) as sink:
            for index in range(8):
                sink.write(
                    {
                        "__key__": f"{index:05d}",
                        "png": png_bytes(rng),
                        "txt": f"picture number {index}",
                        "json": {"width": 2048, "height": 2048},
                    }
                )


@pytest.mark.slow
def test_imagen_cascade_trains_on_the_fly(tmp_path):
    bundle = tmp_path / "bundle"
    command = [
        sys.executable,
        "-m",
        "compiler.cli",
        "compile",
        "imagen-1",
        "--cluster",
        "local-cpu",
        "--scale",
        "smoke",
        "-o",
        str(bundle),
    ]
    subprocess.run(command, check=True, capture_output=True)
    run_root = tmp_path / "run"
    write_image_shards(run_root, load_stage_file(bundle / "train" / "base64" / "stage.yaml"))
    for stage in ("base64", "sr256"):
        stage_file = load_stage_file(bundle / "train" / stage / "stage.yaml")
        train(
            RunOptions(bundle / "train" / stage / "stage.yaml", bundle / "train" / stage / "ds_config.json", run_root)
        )
        records = read_metrics(run_root / stage_file.output_dir)
        trained_losses(records, stage_file.stage.steps)
        assert all(math.isfinite(r["val_loss"]) for r in records if "val_loss" in r) and "val_loss" in records[0]


@pytest.mark.slow
def test_layout_compile_trains_the_compiled_blocks_to_the_same_losses(tmp_path):
    import json

    import torch._dynamo
    from ruamel.yaml import YAML

    stage_path = BUNDLE / STAGES[0] / "stage.yaml"
    assert stage_path.is_file(), f"{stage_path} is missing: `make regen` writes generated/ (and it is committed)"
    assert load_stage_file(stage_path).layout.compile is False  # local-cpu plans eager training
    write_latent_shards(tmp_path, load_stage_file(stage_path))
    document = YAML(typ="safe").load(stage_path.read_text())
    losses = {}
    for compiled in (False, True):
        document["layout"]["compile"] = compiled
        document["output_dir"] = f"checkpoints/compiled-{compiled}"
        stage = tmp_path / f"stage-{compiled}.yaml"
        stage.write_text(json.dumps(document))  # JSON is YAML
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        train(RunOptions(stage, BUNDLE / STAGES[0] / "ds_config.json", tmp_path, max_steps=2))
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        assert (graphs > 0) == compiled, graphs
        losses[compiled] = trained_losses(read_metrics(tmp_path / document["output_dir"]), 2)
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
