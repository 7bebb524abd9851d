"""A pipeline slow enough to kill mid-run: a test-only watermark scorer that sleeps per sample.

Shared by the kill test's subprocess and its in-process rerun, which must build the same pipeline.
"""

import sys
import time

from compiler.schema.data import Blur, PerceptualDedup, Watermark
from runtime.curation import registry, run
from runtime.curation.api import KEEP, MapOp

SECONDS_PER_SAMPLE = 0.03


class Sleepy(MapOp):
    """Scores every sample 0 after a pause; keeps everything."""

    def scoring_params(self):
        return {}

    def score(self, records):
        time.sleep(SECONDS_PER_SAMPLE * len(records))
        return [{"value": 0.0} for _ in records]

    def decide(self, record, score):
        return KEEP


def register_sleepy() -> None:
    registry._discover()
    registry._IMPLEMENTATIONS[("watermark", "sleepy")] = Sleepy


OPS = [Blur(min_laplacian_var=20), Watermark(scorer="sleepy", max_score=1.0), PerceptualDedup(max_hamming=4)]

if __name__ == "__main__":
    register_sleepy()
    run(OPS, sys.argv[1], sys.argv[2], workers=1)
