"""python -m runtime.samplers (runtime/samplers/from_checkpoint.py) end to end: FLUX.1 dev compiled at smoke
scale, its first stage trained for 2 steps on a tiny on-the-fly shard (PNG + caption), then sampled into a PNG
grid with a JSON sidecar, deterministically; Allegro (noise prediction, Euler ancestral) sampled from a seeded
random checkpoint written in place of training."""

import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import numpy as np
import pytest
import webdataset as wds
from PIL import Image
from ruamel.yaml import YAML

from runtime.samplers import from_checkpoint
from runtime.samplers.__main__ import main

STAGE = "pretrain"


def compile_bundle(directory: Path, spec: str = "flux1-dev", stage: str = STAGE) -> Path:
    command = [
        sys.executable,
        "-m",
        "compiler.cli",
        "compile",
        spec,
        "--cluster",
        "local-cpu",
    ]
    subprocess.run(
        [*command, "--scale", "smoke", "-o", str(directory)],
        check=True,
        capture_output=True,
    )
    return directory / "train" / stage


def shorten(stage_dir: Path, steps: int) -> dict:
    """Make the stage end at `steps` (so the trainer exports final/) and encode its media on the fly (the test
    writes images, not precomputed latents); returns the stage file as a dict."""
    yaml = YAML(typ="safe")
    path = stage_dir / "stage.yaml"
    stage = yaml.load(path.read_text())
    stage["stage"]["steps"] = steps
    stage["stage"]["conditioning"] = "on_the_fly"
    with open(path, "w") as stream:
        yaml.dump(stage, stream)
    return stage


def write_image_shard(run_root: Path, shards: str) -> None:
    """Images and captions, encoded on the fly by the trainer (batch.py: KEY.png, KEY.txt)."""
    directory = run_root / shards
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with wds.TarWriter(str(directory / "shard-00000.tar")) as sink:
        for index in range(4):
            png = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(png, format="PNG")
            sink.write(
                {
                    "__key__": f"{index:05d}",
                    "png": png.getvalue(),
                    "txt": f"shape number {index}",
                    "json": {"width": 2048, "height": 2048},
                }
            )


@pytest.mark.slow
def test_sample_writes_a_deterministic_grid_and_sidecar(tmp_path, capsys):
    stage_dir = compile_bundle(tmp_path / "bundle")
    stage = shorten(stage_dir, steps=2)
    run_root = tmp_path / "run"
    write_image_shard(run_root, stage["data"][0]["shards"])
    out = run_root / "samples" / f"{STAGE}.png"
    args = [
        "--stage",
        str(stage_dir / "stage.yaml"),
        "--run-root",
        str(run_root),
        "--steps",
        "2",
        "--seed",
        "3",
    ]
    args += ["--prompts", "a red circle", "a blue square"]

    # No checkpoint yet: the error names the path and the command that makes it.
    assert main([*args, "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "final/model.safetensors" in error and "python -m runtime.train --stage" in error
    assert not out.exists()

    from runtime.train import RunOptions, train

    assert train(RunOptions(stage_dir / "stage.yaml", stage_dir / "ds_config.json", run_root)) == 2
    final = run_root / stage["output_dir"] / "final"

    assert main([*args, "--out", str(out)]) == 0
    side = stage["stage"]["resolutions"][0]
    with Image.open(out) as image:
        assert image.size == (2 * side["width"], side["height"]) and image.mode == "RGB"
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["prompts"] == ["a red circle", "a blue square"]
    assert sidecar["seed"] == 3 and sidecar["steps"] == 2 and sidecar["sampler"] == "euler"
    assert sidecar["guidance_embedded"] == stage["inference"]["guidance_embedded"]
    weights = "ema.safetensors" if (final / "ema.safetensors").is_file() else "model.safetensors"
    assert sidecar["checkpoint"] == str(final / weights)

    again = run_root / "samples" / "again.png"
    assert main([*args, "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()

    other = run_root / "samples" / "other.png"
    assert (
        main(
            [
                *args[:-3],
                "--seed",
                "4",
                "--prompts",
                "a red circle",
                "a blue square",
                "--out",
                str(other),
            ]
        )
        == 0
    )
    assert other.read_bytes() != out.read_bytes()

    # True CFG on a model with a guidance input (a stage before guidance distillation): both, in the sidecar.
    guided = run_root / "samples" / "true_cfg.png"
    assert main([*args, "--cfg", "1", "--true-cfg", "3.5", "--out", str(guided)]) == 0, capsys.readouterr().err
    guided_sidecar = json.loads(guided.with_suffix(".json").read_text())
    assert (guided_sidecar["cfg_scale"], guided_sidecar["guidance_embedded"]) == (3.5, 1.0)
    stage_file = from_checkpoint.load_stage_file(stage_dir / "stage.yaml")
    plain = stage_file.architecture.model_copy(
        update={"backbone": stage_file.architecture.backbone.model_copy(update={"guidance_embed": False})})
    options = from_checkpoint.SampleOptions(stage_dir / "stage.yaml", ["a red circle"], guided, true_cfg=2.0)
    settings = from_checkpoint.settings_for(stage_file, plain, options)
    assert (settings.cfg_scale, settings.guidance) == (2.0, None)  # without a guidance input, --true-cfg is --cfg
    with pytest.raises(ValueError, match="--cfg 3.0 and --true-cfg 2.0"):
        from_checkpoint.settings_for(stage_file, plain, replace(options, cfg=3.0))

    # The other flow samplers give a finite sample (sample() refuses non-finite latents). Their images may equal
    # Euler's: two training steps leave the zero-initialised output layer near zero, so v barely depends on x.
    for sampler in ("heun", "dpm_solver", "unipc"):
        path = run_root / "samples" / f"{sampler}.png"
        assert main([*args, "--sampler", sampler, "--out", str(path)]) == 0, capsys.readouterr().err
        assert json.loads(path.with_suffix(".json").read_text())["sampler"] == sampler

    # A sampler the objective has none for names the supported ones.
    assert main([*args, "--sampler", "ddim", "--out", str(tmp_path / "x.png")]) == 1
    assert "supported: euler, heun, dpm_solver and unipc (flow matching)" in capsys.readouterr().err

    # A score-matching (EDM) stage file samples with EDM Heun. Its network here is the flow-trained one (the
    # architecture is the same; no shipped EDM spec trains at smoke scale in this test's time), so this checks
    # the dispatch and a finite sample, not image quality.
    edm_stage = dict(stage, objective={"kind": "score_matching", "loss_weighting": "edm"})
    edm_stage["inference"] = dict(stage["inference"], sampler="heun")
    with open(stage_dir / "stage_edm.yaml", "w") as stream:
        YAML(typ="safe").dump(edm_stage, stream)
    edm_out = run_root / "samples" / "edm.png"
    edm_args = [*args[2:], "--stage", str(stage_dir / "stage_edm.yaml"), "--out", str(edm_out)]
    assert main(edm_args) == 0, capsys.readouterr().err
    edm_sidecar = json.loads(edm_out.with_suffix(".json").read_text())
    assert edm_sidecar["sampler"] == "heun" and "Karras sigmas" in edm_sidecar["notes"][0]
    assert main([*edm_args[:-1], str(run_root / "samples" / "edm_again.png")]) == 0
    assert (run_root / "samples" / "edm_again.png").read_bytes() == edm_out.read_bytes()
    assert main([*edm_args, "--sampler", "unipc"]) == 1
    assert "not supported for a score_matching objective" in capsys.readouterr().err


def test_video_grid_has_first_middle_last_frame_per_prompt():
    import torch

    from runtime.samplers.from_checkpoint import grid, tiles_of

    videos = [torch.linspace(-1, 1, 5).view(1, 5, 1, 1).expand(3, 5, 4, 6) for _ in range(2)]
    image = grid(tiles_of(videos))
    assert image.shape == (2 * 4, 3 * 6, 3)
    assert [image[0, 6 * column, 0] for column in range(3)] == [0, 128, 255]  # frames 0, 2, 4


def write_random_checkpoint(stage_dir: Path, run_root: Path) -> None:
    """final/model.safetensors of the stage's model with every weight seeded N(0, 0.05^2): a network whose output
    depends on its inputs (a fresh one has a zero-initialised output layer), without minutes of training."""
    import torch
    from safetensors.torch import save_file

    from runtime.models import build_model
    from runtime.samplers.from_checkpoint import FINAL, load_stage_file

    stage_file = load_stage_file(stage_dir / "stage.yaml")
    model = build_model(stage_file.architecture, stage_file.stage.model)
    generator = torch.Generator().manual_seed(0)
    weights = {name: torch.randn(p.shape, generator=generator) * 0.05 for name, p in model.state_dict().items()}
    final = run_root / stage_file.output_dir / FINAL
    final.mkdir(parents=True)
    save_file(weights, str(final / "model.safetensors"))


def test_allegro_samples_with_euler_ancestral(tmp_path, capsys):
    stage_dir = compile_bundle(tmp_path / "bundle", "allegro", "t2i_pretrain")
    run_root = tmp_path / "run"
    write_random_checkpoint(stage_dir, run_root)
    args = ["--stage", str(stage_dir / "stage.yaml"), "--run-root", str(run_root), "--prompts", "a red circle"]

    def run(name, *extra):
        out = run_root / "samples" / f"{name}.png"
        assert main([*args, "--out", str(out), *extra]) == 0, capsys.readouterr().err
        return out.read_bytes(), json.loads(out.with_suffix(".json").read_text())

    image, sidecar = run("euler")
    assert sidecar["sampler"] == "euler" and sidecar["cfg_scale"] == 7.5  # the spec's inference defaults
    assert run("again")[0] == image
    assert run("no_cfg", "--cfg", "1")[0] != image  # CFG reaches the network
    assert run("ddim", "--sampler", "ddim")[0] != image

    assert main([*args, "--out", str(tmp_path / "x.png"), "--sampler", "unipc"]) == 1
    assert "ddim, ddpm and euler (Euler ancestral; noise / v prediction)" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "x.png"), "--steps", "1"]) == 1
    assert "at least 2 steps" in capsys.readouterr().err
