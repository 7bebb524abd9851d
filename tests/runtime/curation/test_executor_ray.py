"""The Ray Data executor against the local one. Runs only where ray[data] is installed (pip extra `ray`)."""

import pytest

from compiler.schema.data import Blur, PerceptualDedup, SceneSplit, Watermark
from runtime.curation import registry, run
from runtime.curation.api import KEEP, MapOp, Resources
from runtime.curation.curate import CurationRun
from runtime.curation.executor_ray import segments

# One barrier, so two stages: Ray Data costs seconds per stage even on a few samples.
OPS = [Blur(min_laplacian_var=20), SceneSplit(), PerceptualDedup(max_hamming=4)]


class Weighted(MapOp):
    """Stands in for a model op: stateful, so the Ray executor gives it its own actor segment."""

    stateful = True

    def resources(self):
        return Resources(cpus=0.5, gpus=0, gpu_memory_gb=1.0)

    def decide(self, record, score):
        return KEEP


def test_model_ops_get_their_own_actor_segment(shards, monkeypatch):
    registry._discover()
    monkeypatch.setattr(registry, "_IMPLEMENTATIONS", {**registry._IMPLEMENTATIONS, ("watermark", "weighted"): Weighted})
    ops = [Blur(min_laplacian_var=20), Watermark(scorer="weighted"), Blur(name="blur2", min_laplacian_var=1)]
    plan = CurationRun.plan(ops, shards, "unused")
    assert segments(plan.jobs(plan.stages[0])[0]) == [(0, 1, None), (1, 2, Resources(0.5, 0, 1.0)), (2, 3, None)]


@pytest.mark.slow
def test_ray_executor_writes_what_the_local_executor_writes(shards, tmp_path):
    ray = pytest.importorskip("ray", reason="ray[data] is not installed: pip install -e '.[ray]'")
    try:
        local = run(OPS, shards, tmp_path / "local", workers=1)
        remote = run(OPS, shards, tmp_path / "ray", executor="ray", workers=2)
    finally:
        ray.shutdown()
    assert (remote.samples_read, remote.kept, remote.dropped, remote.quarantined) == (
        local.samples_read, local.kept, local.dropped, local.quarantined,
    )
    for path in sorted((tmp_path / "local" / "shards").iterdir()):
        assert (tmp_path / "ray" / "shards" / path.name).read_bytes() == path.read_bytes()
