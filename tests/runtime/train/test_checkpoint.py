"""Checkpoint completeness: `latest` names only complete checkpoints, and resume passes over a damaged newest
checkpoint to the previous complete one and still reproduces the uninterrupted run."""

import tiny_model
from conftest import write_shards, write_stage

from runtime.train import RunOptions, train
from runtime.train.checkpoint import COMPLETE, incomplete, latest_step, resumable_step
from runtime.train.metrics import read_metrics


def run(root, name, max_steps=None, **stage):
    stage_path, ds_config = write_stage(root, name=name, **stage)
    train(RunOptions(stage_path, ds_config, root, max_steps, tiny_model.build))
    return read_metrics(root / "runs" / name)


def losses(records):
    return [(r["step"], r.get("loss"), r.get("val_loss")) for r in records]


def test_resume_falls_back_from_a_truncated_or_unfinished_checkpoint(tmp_path, capsys):
    write_shards(tmp_path / "data" / "patterns", samples=24, per_shard=8, noise=0.05)
    config = dict(steps=6, micro=2, accum=2, zero=1, precision="bf16", checkpoint_every=2)
    whole = run(tmp_path, "whole", **config)

    run(tmp_path, "cut", max_steps=4, **config)
    checkpoints = tmp_path / "runs" / "cut" / "checkpoints"
    assert latest_step(checkpoints.parent) == 4 and resumable_step(checkpoints.parent) == 4
    assert sorted(p.name for p in checkpoints.glob("step*")) == ["step00000002", "step00000004"]
    newest = checkpoints / "step00000004"
    biggest = max((p for p in newest.rglob("*.pt")), key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])  # cut in half
    assert "bytes" in incomplete(newest)
    capsys.readouterr()
    resumed = run(tmp_path, "cut", **config)
    assert f"checkpoint {newest} is incomplete: {biggest.relative_to(newest)}" in capsys.readouterr().err
    assert losses(resumed) == losses(whole)

    run(tmp_path, "lost", max_steps=4, **config)
    newest = tmp_path / "runs" / "lost" / "checkpoints" / "step00000004"
    next(newest.glob("*optim_states.pt")).unlink()  # a lost optimizer shard
    assert "missing" in incomplete(newest)
    assert losses(run(tmp_path, "lost", **config)) == losses(whole)

    run(tmp_path, "killed", max_steps=4, **config)
    newest = tmp_path / "runs" / "killed" / "checkpoints" / "step00000004"
    (newest / COMPLETE).unlink()  # as if the run died before every rank had written its files
    assert resumable_step(newest.parent.parent) == 2
    assert losses(run(tmp_path, "killed", **config)) == losses(whole)
