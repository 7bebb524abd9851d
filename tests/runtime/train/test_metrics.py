"""metrics.jsonl and TensorBoard event files: records appended by rank 0, trimmed to the checkpoint a run
resumes from."""

import pytest

from runtime.train.metrics import Metrics, read_metrics


def test_resumed_run_keeps_records_up_to_its_checkpoint(tmp_path):
    first = Metrics(tmp_path, enabled=True, start=0, stop=5, name="s")
    first.log({"step": 0, "val_loss": 2.0})
    for step in range(1, 5):
        first.log({"step": step, "loss": 1.0 / step, "lr": 1e-4, "samples_per_s": 10.0})
    first.close()
    Metrics(tmp_path, enabled=True, start=2, stop=5, name="s").close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1, 2]
    Metrics(tmp_path, enabled=True, start=0, stop=5, name="s").close()  # no checkpoint: starts over
    assert read_metrics(tmp_path) == []


def test_other_ranks_write_nothing(tmp_path):
    metrics = Metrics(tmp_path / "out", enabled=False, start=0, stop=1, name="s")
    metrics.log({"step": 1, "loss": 1.0, "lr": 0.1, "samples_per_s": 1.0})
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


def test_a_training_run_writes_the_scalars_to_tensorboard(tmp_path):
    import json

    import tiny_model
    from conftest import write_shards, write_stage
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from runtime.train import RunOptions, train
    from runtime.train.metrics import TENSORBOARD

    for name in ("a", "b"):
        write_shards(tmp_path / "data" / name, samples=16, per_shard=8, noise=0.05)
    stage, ds_config = write_stage(tmp_path, name="tb", steps=3, micro=2, accum=2, datasets=("a", "b"),
                                   checkpoint_every=3)
    plan = {"stages": [{"stage": "tb", "model": "main", "flops_per_step": 4e9, "step_seconds": 2.0, "mfu": 0.5,
                        "global_batch": 4, "dp_size": 1}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))  # bundle/plan.json beside bundle/train/<stage>/
    train(RunOptions(stage, ds_config, tmp_path, None, tiny_model.build))

    output = tmp_path / "runs" / "tb"
    events = EventAccumulator(str(output / TENSORBOARD))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"loss", "lr", "grad_norm", "samples_per_s", "tokens_per_s", "mfu", "peak_memory_gib", "val_loss",
                "val_loss/a", "val_loss/b"}
    assert expected <= tags, expected - tags
    assert {tag for tag in tags if tag.startswith("loss/")} <= {"loss/a", "loss/b"}
    assert any(tag.startswith("loss/") for tag in tags)
    assert sorted(tag for tag in tags if tag.startswith("val_loss_t/")) == [
        "val_loss_t/0.125", "val_loss_t/0.375", "val_loss_t/0.625", "val_loss_t/0.875"  # 4 stratified flow t
    ]
    records = read_metrics(output)
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("loss")] == [pytest.approx(r["loss"], rel=1e-6) for r in records[1:]]
    assert [e.step for e in events.Scalars("val_loss")] == [0, 1, 2, 3]
    for record in records[1:]:
        # the plan: 1e9 FLOPs per sample, a peak of 4e9 / (2 s x 0.5) FLOP/s for its one rank; 4 samples a step
        assert record["mfu"] == pytest.approx(record["samples_per_s"] * 1e9 / 4e9)
        assert record["peak_memory_gib"] > 0.05 and record["tokens_per_s"] > record["samples_per_s"] > 0
        assert record["grad_norm"] > 0
