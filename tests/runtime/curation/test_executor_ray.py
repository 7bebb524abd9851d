"""The Ray Data executor against the local one, on one session-wide Ray of 2 CPUs (`ray_cluster`)."""

import json
import signal
from pathlib import Path

import pytest

from compiler.schema.data import Aesthetic, Blur, OpResources, PerceptualDedup, Watermark
from runtime.curation import run
from runtime.curation.api import CurationError, Resources
from runtime.curation.curate import CurationRun
from runtime.curation.executors.ray_data import Segment, fit_resources, segments
from runtime.curation.report import load_manifests
from runtime.curation.shards import member_keys, shard_stem
from tests.runtime.curation.model_ops import register

HANG_SECONDS = 300  # a stage whose actors hold every CPU never reads: fail instead of waiting forever


def two_model_ops(**kill):
    """Blur (task), two model ops (each its own actor pool), a barrier: two stages."""
    return [
        Blur(min_laplacian_var=20),
        Aesthetic(scorer="test-mean-luma", min_score=124, use="filter"),
        Watermark(scorer="test-kill-once" if kill else "test-colour-spread", max_score=1.0, **kill),
        PerceptualDedup(max_hamming=4),
    ]


def test_model_ops_get_their_own_actor_pools_with_the_spec_resources(shards):
    register()
    ops = two_model_ops()
    ops[2] = Watermark(scorer="test-colour-spread", max_score=1.0,
                       resources=OpResources(cpus=0.25, batch_size=8, concurrency=3))
    plan = CurationRun.plan(ops, shards, "unused")
    assert segments(plan.jobs(plan.stages[0])[0]) == [
        Segment(0, 1, "blur", 16),
        Segment(1, 2, "aesthetic", 4, Resources(cpus=1.0), None),
        Segment(2, 3, "watermark", 8, Resources(cpus=0.25), 3),
    ]


def test_actor_pools_fit_the_cluster_and_leave_a_cpu_for_tasks():
    plan = [Segment(0, 1, "blur", 16), Segment(1, 2, "a", 4, Resources(cpus=1.0), None),
            Segment(2, 3, "b", 4, Resources(cpus=1.0), 4)]
    fitted = fit_resources(plan, cpus=2, gpus=0, workers=2)
    assert [(s.actors, s.resources.cpus) for s in fitted[1:]] == [(1, 0.5), (1, 0.5)]
    roomy = fit_resources(plan, cpus=64, gpus=0, workers=2)
    assert [(s.actors, s.resources.cpus) for s in roomy[1:]] == [(2, 1.0), (4, 1.0)]
    two_on_one_gpu = [Segment(1, 2, "a", 4, Resources(cpus=1, gpus=1), None), Segment(2, 3, "b", 4, Resources(cpus=1, gpus=1), 4)]
    shared = fit_resources(two_on_one_gpu, cpus=8, gpus=1, workers=1)
    assert [(s.actors, s.resources.cpus, s.resources.gpus) for s in shared] == [(1, 1, 0.5), (1, 1, 0.5)]
    with pytest.raises(CurationError, match=r"'a' asks for 1 GPUs.*has 0"):
        fit_resources([Segment(0, 1, "a", 4, Resources(cpus=1, gpus=1), None)], cpus=8, gpus=0, workers=1)


def _ledger(output: Path, plan: CurationRun) -> list:
    """Every manifest, with the seconds per op (wall-clock timings) and the output directory removed."""
    manifests = load_manifests(plan.layout, plan.stages, [shard_stem(p) for p in plan.shards])
    for stage in manifests:
        for manifest in stage:
            manifest["source"] = manifest["source"].replace(str(output), "OUTPUT")
            for entry in manifest["records"]:
                entry["trace"] = sorted(entry["trace"])
    return manifests


def _report(output: Path) -> dict:
    """report.json without what differs by executor: wall-clock seconds, executor, workers, paths."""
    report = json.loads((output / "report.json").read_text())
    for key in ("seconds", "executor", "workers", "output", "histograms", "rejects_index"):
        report.pop(key)
    for op in report["ops"]:
        op.pop("seconds"), op.pop("samples_per_second")
    return report


def _outputs(output: Path) -> dict[str, bytes]:
    return {str(p.relative_to(output)): p.read_bytes() for p in sorted(output.rglob("*.tar"))
            if "_work" not in p.parts or p.parent.name.startswith("stage")}


def _alarm(seconds: int):
    def hung(*_):
        raise TimeoutError(f"the Ray run did not finish in {seconds} s: a hang")

    signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)


@pytest.mark.slow
def test_ray_writes_what_local_writes_with_two_model_ops_on_two_cpus(ray_cluster, shards, tmp_path):
    register()
    ops = two_model_ops()
    local = run(ops, shards, tmp_path / "local", workers=1)
    _alarm(HANG_SECONDS)
    try:
        remote = run(ops, shards, tmp_path / "ray", executor="ray", workers=2)
    finally:
        signal.alarm(0)
    assert remote.kept == local.kept > 0 and local.dropped > 0
    assert next(op for op in local.ops if op.name == "aesthetic").dropped  # the model op did decide
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "local")
    plan = CurationRun.plan(ops, shards, "unused")
    plan.output = tmp_path / "ray"
    ray_ledger = _ledger(tmp_path / "ray", plan)
    plan.output = tmp_path / "local"
    assert ray_ledger == _ledger(tmp_path / "local", plan)
    assert _report(tmp_path / "ray") == _report(tmp_path / "local")
    assert not list((tmp_path / "ray").rglob("ray-parts"))


@pytest.mark.slow
def test_a_killed_ray_worker_leaves_every_sample_accounted_for_once(ray_cluster, shards, tmp_path):
    register()
    marker = tmp_path / "killed-once"
    ops = two_model_ops(note=str(marker))
    _alarm(HANG_SECONDS)
    try:
        try:
            run(ops, shards, tmp_path / "out", executor="ray", workers=2)
        except Exception as error:  # Ray gave up on the stage: the rerun below must finish it
            print(f"first run failed: {error!r}")
        report = run(ops, shards, tmp_path / "out", executor="ray", workers=2)
    finally:
        signal.alarm(0)
    assert marker.exists(), "the op must have killed a worker"
    inputs = sum(len(member_keys(p)) for p in sorted(Path(shards).glob("*.tar")))
    assert report.samples_read == inputs
    assert report.kept + report.dropped + report.review + report.quarantined + report.split == inputs + report.created
    kept = [k for p in sorted((tmp_path / "out" / "shards").glob("*.tar")) for k in member_keys(p)]
    assert len(kept) == len(set(kept)) == report.kept


def test_a_record_carries_its_decode_to_the_next_segment(media, monkeypatch):
    """Between a stage's segments a record is pickled with its pixels: the next op reads them, no decode."""
    import pickle

    from runtime.curation.decode import Decoded
    from runtime.curation.records import Record

    record = Record("sharp0", media["sharp0"], "jpg", shard="s", seq=(0,))
    record.attach_decoder(64, color=False)
    first = record.pixels.grey(64)
    moved = pickle.loads(pickle.dumps(record))

    def decode_again(*_args, **_kwargs):
        raise AssertionError("decoded twice in one stage")

    monkeypatch.setattr(Decoded, "_decode_image", decode_again)
    assert (moved.pixels.grey(64) == first).all()


@pytest.mark.slow
def test_a_ray_run_killed_mid_stage_reruns_to_every_sample_once(ray_cluster, shards, tmp_path):
    """kill -9 of the driver's whole process group (its Ray included) while stage 0's parts are being
    written; the rerun on another Ray finishes with the ledger complete and every kept key once."""
    import os
    import subprocess
    import sys
    import time

    from tests.runtime.curation.ray_run import OPS

    register()
    output = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "tests.runtime.curation.ray_run", str(shards), str(output)],
                               cwd=Path(__file__).resolve().parents[3], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = output / "_work" / "stage0" / "ray-parts"
    deadline = time.monotonic() + 180
    while not list(parts.rglob("*.pkl")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert list(parts.rglob("*.pkl")), "the run must be killed in the middle of stage 0"
    assert not (output / "shards").exists()
    _alarm(HANG_SECONDS)
    try:
        report = run(OPS, shards, output, executor="ray", workers=2)
    finally:
        signal.alarm(0)
    inputs = sum(len(member_keys(p)) for p in sorted(Path(shards).glob("*.tar")))
    assert report.samples_read == inputs
    kept = [k for p in sorted((output / "shards").glob("*.tar")) for k in member_keys(p)]
    assert len(kept) == len(set(kept)) == report.kept > 0
    assert not parts.exists()
