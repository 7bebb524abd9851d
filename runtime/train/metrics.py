"""Metrics as JSON lines (output_dir/metrics.jsonl) and the progress bar, both from rank 0 only.

One line per step: {"step", "loss", "lr", "samples_per_s"} plus "val_loss" on validation steps; step 0
holds the validation loss before training. A resumed run first drops the lines after its checkpoint (a run
without a checkpoint drops them all), so the file always reads as one uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm


class Metrics:
    """Appends step records to metrics.jsonl and drives a tqdm bar."""

    def __init__(self, output_dir: Path, enabled: bool, start: int, stop: int, name: str):
        self.path = output_dir / "metrics.jsonl"
        self.enabled = enabled
        if enabled:
            output_dir.mkdir(parents=True, exist_ok=True)
            self._truncate_after(start)
        self.bar = tqdm(total=stop, initial=start, desc=name, disable=not enabled, dynamic_ncols=True)

    def _truncate_after(self, step: int) -> None:
        """Keep the records up to the resumed checkpoint's step; a run starting over keeps none."""
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        kept = [line for line in lines if line and 0 < step and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def log(self, record: dict) -> None:
        """Write one record and, for training steps, advance the bar."""
        if not self.enabled:
            return
        with self.path.open("a") as stream:
            stream.write(json.dumps(record) + "\n")
        if "loss" in record:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", samples_s=f"{record['samples_per_s']:.1f}")

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


def read_metrics(output_dir: Path) -> list[dict]:
    """The records of a run's metrics.jsonl."""
    return [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines() if line]
