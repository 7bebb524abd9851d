"""metrics.jsonl: records appended by rank 0, trimmed to the checkpoint a run resumes from."""

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
