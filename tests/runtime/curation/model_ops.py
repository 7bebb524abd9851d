"""Test-only model ops for the Ray executor: stateful (so each runs on its own actor pool), scoring the
decoded pixels, deterministic per record. Registered in the test process and, through Ray's
worker_process_setup_hook, in every Ray worker (see the `ray_cluster` fixture).

`KillOnce` SIGKILLs the process it runs in the first time it scores, if the marker file named in its
`note` does not exist yet (it creates it first): a Ray worker dying in the middle of a stage.
"""

import os
import signal
import time
from pathlib import Path

import numpy as np

from runtime.curation import registry
from runtime.curation.api import KEEP, MapOp, Resources, Verdict


class MeanLuma(MapOp):
    """Mean luma at 64 px; drops images darker than the op's min_score."""

    stateful = True
    needs_color = False
    batch_size = 4

    def decode_side(self):
        return 64

    def resources(self):
        return Resources(cpus=1.0)

    def scoring_params(self):
        return {}

    def score(self, records):
        return [{"value": float(r.pixels.grey(64).mean())} for r in records]

    def decide(self, record, score):
        if self.spec.min_score is not None and score["value"] < self.spec.min_score:
            return Verdict.drop("too dark for the test model", f"{score['value']:.2f}")
        return KEEP


class ColourSpread(MapOp):
    """Standard deviation of the colour image at 64 px; keeps everything."""

    stateful = True
    batch_size = 3

    def decode_side(self):
        return 64

    def resources(self):
        return Resources(cpus=1.0)

    def scoring_params(self):
        return {}

    def score(self, records):
        return [{"value": float(np.asarray(r.pixels.image(64), dtype=np.float64).std())} for r in records]

    def decide(self, record, score):
        return KEEP


class SlowColourSpread(ColourSpread):
    """ColourSpread at 0.2 s per batch: a stage long enough to kill in the middle (ray_run.py)."""

    def score(self, records):
        time.sleep(0.2)
        return super().score(records)


class KillOnce(ColourSpread):
    def score(self, records):
        marker = Path(self.spec.note)
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().score(records)


def register() -> None:
    registry._discover()
    registry._IMPLEMENTATIONS[("aesthetic", "test-mean-luma")] = MeanLuma
    registry._IMPLEMENTATIONS[("watermark", "test-colour-spread")] = ColourSpread
    registry._IMPLEMENTATIONS[("watermark", "test-kill-once")] = KillOnce
    registry._IMPLEMENTATIONS[("watermark", "test-slow-colour-spread")] = SlowColourSpread
