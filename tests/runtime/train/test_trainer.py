"""The trainer on one process: every ZeRO stage in fp32 and bf16, exact resume (also after SIGKILL),
EMA and final weights, init_from."""

import math
import signal
import subprocess
import sys
import time

import pytest
import tiny_model
import torch
from conftest import architecture, subprocess_env, trained_losses, write_shards, write_stage
from safetensors.torch import load_file

from compiler.schema.architecture import ArchitectureSpec
from compiler.schema.objective import CfgDropout, FlowMatching, MaskedLoss, NoiseAwareCompute
from runtime.train import RunOptions, train
from runtime.train.checkpoint import latest_step
from runtime.train.metrics import read_metrics

RICH = FlowMatching(noise_aware_compute=NoiseAwareCompute(bins=4), cfg_dropout=CfgDropout(joint_rate=0.2))


def run(root, name, max_steps=None, **stage):
    stage_path, ds_config = write_stage(root, name=name, **stage)
    train(RunOptions(stage_path, ds_config, root, max_steps, tiny_model.build))
    return read_metrics(root / "runs" / name)


def weights(root, name, file="model.safetensors"):
    return load_file(str(root / "runs" / name / "final" / file))


@pytest.fixture(scope="module")
def zero_runs(image_root):
    """Runs of the ZeRO x precision matrix, made on first use."""
    cache = {}

    def get(zero, precision):
        if (zero, precision) not in cache:
            name = f"zero{zero}_{precision}"
            cache[zero, precision] = run(
                image_root, name, steps=4, zero=zero, precision=precision, micro=2, accum=2, checkpoint_every=2
            )
        return cache[zero, precision]

    return get


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_zero_stage_trains_and_writes_everything(zero_runs, image_root, zero, precision):
    records = zero_runs(zero, precision)
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4]
    for record in records[1:]:
        assert math.isfinite(record["loss"]) and record["lr"] == pytest.approx(3e-3) and record["samples_per_s"] > 0
        assert math.isfinite(record["val_loss"])
    name = f"zero{zero}_{precision}"
    assert latest_step(image_root / "runs" / name) == 4
    expected = tiny_model.build(ArchitectureSpec(**architecture())).state_dict()
    model, ema = weights(image_root, name), weights(image_root, name, "ema.safetensors")
    assert set(model) == set(ema) == set(expected)
    assert all(tensor.dtype == torch.float32 for tensor in model.values())
    assert not torch.equal(model["out.weight"], ema["out.weight"])  # decay 0.9 lags the weights


def test_zero_stages_agree_in_fp32(zero_runs):
    reference = trained_losses(zero_runs(0, "fp32"), 4)
    for zero in (1, 2, 3):
        assert trained_losses(zero_runs(zero, "fp32"), 4) == pytest.approx(reference, rel=1e-5)


@pytest.mark.parametrize("zero, precision", [(0, "fp32"), (2, "bf16"), (3, "bf16")])
def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, zero, precision):
    write_shards(tmp_path / "data" / "patterns", samples=40, per_shard=16, noise=0.05)
    config = dict(steps=6, zero=zero, precision=precision, micro=2, accum=2, checkpoint_every=2, objective=RICH)
    whole = run(tmp_path, "whole", **config)
    run(tmp_path, "split", max_steps=3, **config)
    assert latest_step(tmp_path / "runs" / "split") == 3
    assert not (tmp_path / "runs" / "split" / "final").exists()  # a partial run writes no final weights
    split = run(tmp_path, "split", **config)
    trained_losses(whole, 6)
    assert [(r["step"], r.get("loss"), r.get("val_loss")) for r in split] == [
        (r["step"], r.get("loss"), r.get("val_loss")) for r in whole
    ]
    for file in ("model.safetensors", "ema.safetensors"):
        a, b = weights(tmp_path, "whole", file), weights(tmp_path, "split", file)
        assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    """Both runs in fresh processes: earlier in-process ZeRO-3 engines leave DeepSpeed's patched ops behind."""
    write_shards(tmp_path / "data" / "patterns", samples=40, per_shard=16, noise=0.05)
    config = dict(steps=60, micro=2, accum=2, checkpoint_every=5, validation_every=10, objective=RICH)

    def command(name):
        stage, ds_config = write_stage(tmp_path, name=name, **config)
        return [
            sys.executable,
            "-m",
            "runtime.train",
            "--stage",
            str(stage),
            "--ds-config",
            str(ds_config),
            "--run-root",
            str(tmp_path),
            "--model-factory",
            "tiny_model:build",
        ]

    subprocess.run(command("whole"), env=subprocess_env(), check=True, capture_output=True)
    metrics = tmp_path / "runs" / "killed" / "metrics.jsonl"
    process = subprocess.Popen(
        command("killed"), env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) > 12:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    killed_at = len(metrics.read_text().splitlines()) - 1
    assert 10 < killed_at < 60 and not (tmp_path / "runs" / "killed" / "final").exists()

    subprocess.run(command("killed"), env=subprocess_env(), check=True, capture_output=True)
    resumed, whole = read_metrics(tmp_path / "runs" / "killed"), read_metrics(tmp_path / "runs" / "whole")
    assert [(r["step"], r.get("loss"), r.get("val_loss")) for r in resumed] == [
        (r["step"], r.get("loss"), r.get("val_loss")) for r in whole
    ]


def test_init_from_loads_the_earlier_stage(image_root):
    first = run(image_root, "first", steps=3, micro=4)
    second = run(image_root, "second", steps=2, micro=4, init_from="first")
    assert second[0]["val_loss"] == first[-1]["val_loss"]  # same weights, data and validation noise


def test_masked_region_does_not_affect_the_loss(tmp_path):
    """Two runs whose data differ only inside the masked corner log the same training and validation losses."""
    objective = FlowMatching(masked_loss=MaskedLoss(mask_from="defect"))
    runs = []
    for name, offset in [("masked", 0.0), ("masked_shifted", 100.0)]:
        write_shards(tmp_path / name / "data" / "patterns", samples=16, per_shard=8, mask=True, masked_offset=offset)
        runs.append(run(tmp_path / name, name, steps=2, micro=4, objective=objective))
    trained_losses(runs[0], 2)
    assert [(r.get("loss"), r["val_loss"]) for r in runs[1]] == [(r.get("loss"), r["val_loss"]) for r in runs[0]]


def test_missing_steps_is_explained(image_root):
    stage_path, ds_config = write_stage(image_root, name="nosteps", steps=None)
    with pytest.raises(ValueError, match="--max-steps"):
        train(RunOptions(stage_path, ds_config, image_root, None, tiny_model.build))


def test_a_finished_stage_returns_at_once_and_a_changed_one_is_refused(tmp_path, capsys):
    write_shards(tmp_path / "data" / "patterns", samples=8, per_shard=8)
    run(tmp_path, "done", steps=2, micro=2)
    final = tmp_path / "runs" / "done" / "final"
    written = (final / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert run(tmp_path, "done", steps=2, micro=2)[-1]["step"] == 2
    assert "stage done: already trained (2 steps" in capsys.readouterr().err
    assert (final / "model.safetensors").stat().st_mtime_ns == written

    with pytest.raises(ValueError, match="trained from another stage.yaml.*delete"):
        run(tmp_path, "done", steps=3, micro=2)
