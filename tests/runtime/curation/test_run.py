"""End-to-end runs: the funnel and ledger, faults, failing loudly, resume, the score cache, a killed run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import specs
from compiler.schema.data import (
    Aesthetic,
    AspectRatioFilter,
    Blur,
    DurationFilter,
    ExactDedup,
    Exposure,
    MotionScore,
    PerceptualDedup,
    Pipeline,
    Probe,
    ResolutionFilter,
    SceneSplit,
)
from runtime.curation import CurationError, registry, run
from runtime.curation.executors import local as executor_local
from runtime.curation.ops import image as ops_image
from runtime.curation.curate import select_pipeline
from runtime.curation.shards import member_keys, read_shard
from tests.runtime.curation.conftest import encode, meta, shard, sharp_image
from tests.runtime.curation.sleepy import OPS as SLEEPY_OPS
from tests.runtime.curation.sleepy import register_sleepy

ROOT = Path(__file__).resolve().parents[3]
PIPELINE = [
    Probe(),
    ResolutionFilter(min_short_side_px=64),
    AspectRatioFilter(min_ratio=1 / 3, max_ratio=3),
    DurationFilter(min_seconds=1, min_fps=12),
    Blur(min_laplacian_var=20),
    Exposure(min_mean_luma=20, max_mean_luma=235),
    ExactDedup(),
    SceneSplit(),
    MotionScore(min_score=0.25),
    PerceptualDedup(max_hamming=4),
]


def test_every_sample_ends_in_exactly_one_place(shards, corrupt_shard, tmp_path):
    inputs = [*sorted(map(str, shards.glob("*.tar"))), str(corrupt_shard)]
    report = run(PIPELINE, inputs, tmp_path / "out", workers=1)
    assert report.samples_read == 10 + 7 + 8 + 4  # the corrupt shard: 2 samples, a broken one, a bad byte range
    assert report.kept + report.dropped + report.quarantined + report.split == report.samples_read + report.created
    static = {r["key"] for r in report.rejects["motion_score: too little motion"]}
    assert {"video_static", "video_scene_cut_scene000", "video_scene_cut_scene001"} <= static  # both scenes are stills
    quarantined = {r["key"] for label, rows in report.rejects.items() if "unreadable" in label for r in rows}
    assert {"truncated", "not_an_image", "video_no_frames", "sharp1"} <= quarantined
    assert report.quarantined == 5
    funnel = {op.name: op for op in report.ops}
    assert funnel["blur"].dropped["too blurry"] >= 2 and funnel["blur"].quarantined == 1  # the truncated JPEG
    assert funnel["duration"].dropped == {"shorter than min_seconds": 1, "frame rate below min_fps": 1}
    assert funnel["exact_dedup"].dropped == {"exact duplicate": 3}  # sharp0_copy, and the corrupt shard re-holds two
    assert all(op.seconds >= 0 for op in report.ops)
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["kept"] == report.kept and Path(written["histograms"]["blur"]).is_file()
    quarantine = tmp_path / "out" / "quarantine" / "images-001.stage0.tar"
    errors = [json.loads(r.columns["error.json"]) for r in read_shard(str(quarantine))]
    assert {e["op"] for e in errors} == {"probe", "blur"}


def test_dropped_samples_are_written_for_review_with_per_op_metrics(shards, tmp_path):
    report = run(PIPELINE, shards, tmp_path / "out", workers=1)
    rejects = tmp_path / "out" / "report" / "rejects"
    assert report.rejects_index == str(rejects / "index.json")
    index = json.loads((rejects / "index.json").read_text())
    blurry = {row["key"]: row for row in index if row["label"] == "blur: too blurry"}
    assert "blurred" in blurry and blurry["blurred"]["detail"]
    assert (rejects / blurry["blurred"]["files"][0]).parent.name == "blur__too_blurry"
    media = rejects / "blur__too_blurry" / "blurred.jpg"
    assert media.read_bytes()[:2] == b"\xff\xd8"  # the sample's own JPEG, as the op saw it
    duplicate = next(row for row in index if row["label"] == "exact_dedup: exact duplicate")
    assert any(f.endswith(".jpg") for f in duplicate["files"])  # dropped in stage 1: read from stage 0's output
    children = [row for row in index if row.get("files_note")]
    assert children and all(row["origin"] and not row["files"] for row in children)
    assert len(index) == sum(len(rows) for rows in report.rejects.values())
    funnel = {op.name: op for op in report.ops}
    assert funnel["blur"].samples_out == funnel["blur"].kept and funnel["blur"].samples_per_second > 0
    split = funnel["scene_split"]
    assert split.samples_out == split.kept + split.created and split.created > split.split


def test_nothing_read_or_nothing_kept_fails(shards, tmp_path):
    empty = shard(tmp_path / "empty-000.tar", [])
    with pytest.raises(CurationError, match="read 0 samples"):
        run([Blur(min_laplacian_var=1)], empty, tmp_path / "a")
    with pytest.raises(CurationError, match="kept 0 of 10 samples"):
        run([Blur(min_laplacian_var=1e9)], f"{shards}/images-000.tar", tmp_path / "b", workers=1)
    assert json.loads((tmp_path / "b" / "report.json").read_text())["dropped"] == 10  # the funnel explains why


def test_rerun_skips_finished_shards(shards, tmp_path, monkeypatch):
    calls = []
    original = executor_local.process_shard
    monkeypatch.setattr(executor_local, "process_shard", lambda job: calls.append(job.stem) or original(job))
    ops = [Blur(min_laplacian_var=20), ExactDedup()]
    run(ops, shards, tmp_path / "out", workers=1)
    assert sorted(calls) == ["images-000", "images-000", "images-001", "images-001", "videos-000", "videos-000"]
    calls.clear()
    again = run(ops, shards, tmp_path / "out", workers=1)
    assert calls == [] and again.samples_read == 25


def test_threshold_change_does_not_rescore(shards, tmp_path, monkeypatch):
    scored = []
    original = ops_image.Blur.score
    monkeypatch.setattr(ops_image.Blur, "score", lambda self, records: scored.extend(records) or original(self, records))
    images = f"{shards}/images-*.tar"
    loose = run([Blur(min_laplacian_var=20)], images, tmp_path / "out", workers=1)
    assert len(scored) == 15  # 17 images, each decodable one once: not the non-image, not the truncated JPEG
    scored.clear()
    strict = run([Blur(min_laplacian_var=150)], images, tmp_path / "out", workers=1)
    assert scored == [] and strict.kept < loose.kept
    shared = run([Blur(min_laplacian_var=150)], images, tmp_path / "other", workers=1, cache_dir=tmp_path / "out" / "_cache")
    assert scored == [] and shared.kept == strict.kept
    run([Blur(min_laplacian_var=150, analysis_short_side_px=128)], images, tmp_path / "out", workers=1)
    assert len(scored) == 15  # a scoring parameter changed: scores are recomputed


@pytest.mark.slow
def test_two_workers_write_the_same_shards_as_one(shards, tmp_path):
    ops = [Blur(min_laplacian_var=20), ExactDedup(), SceneSplit(), PerceptualDedup()]
    run(ops, shards, tmp_path / "one", workers=1)
    run(ops, shards, tmp_path / "two", workers=2)
    for path in sorted((tmp_path / "one" / "shards").iterdir()):
        assert path.read_bytes() == (tmp_path / "two" / "shards" / path.name).read_bytes()


def test_smoke_scale_curates_every_shard_and_limit_cuts_at_any_scale(shards, tmp_path):
    report = run([Blur(min_laplacian_var=20)], f"{shards}/images-*.tar", tmp_path / "out", scale="smoke", workers=1)
    assert report.input == [str(shards / "images-000.tar"), str(shards / "images-001.tar")]
    assert report.samples_read == 17  # 10 + 7: both shards
    limited = run([Probe()], f"{shards}/images-*.tar", tmp_path / "limited", limit=12, workers=1)
    assert (limited.shards, limited.samples_read) == (2, 12)  # all 10 of the first shard, 2 of the second
    with pytest.raises(CurationError, match="limit must be a positive number"):
        run([Probe()], shards, tmp_path / "zero", limit=0)


def test_a_pipeline_without_ops_passes_readable_samples_through(shards, tmp_path):
    report = run(Pipeline(name="as_is", sources=["s"], ops=[], output="d"), shards / "images-000.tar",
                 tmp_path / "out", workers=1)
    assert report.kept > 0 and report.dropped == 0
    assert report.kept + report.quarantined == report.samples_read


def test_pipeline_selection():
    flux = specs.load("flux1-dev")
    assert select_pipeline(flux, None)[0] == "flux"
    with pytest.raises(CurationError, match="has pipelines \\['flux'\\]"):
        select_pipeline(flux, "wan")
    pipeline = Pipeline(name="p", sources=["s"], ops=[Blur(min_laplacian_var=1)], output="d")
    assert select_pipeline(pipeline, None) == ("p", list(pipeline.ops))
    assert select_pipeline([{"kind": "blur", "min_laplacian_var": 1}], "mine")[0] == "mine"


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory) -> Path:
    """5 shards of 12 distinct small images: enough work to kill a run in the middle."""
    directory = tmp_path_factory.mktemp("many")
    for number in range(5):
        samples = [
            (f"s{number}_{i:02d}", {"jpg": encode(sharp_image(100 * number + i, 256, 192)), **meta()}) for i in range(12)
        ]
        shard(directory / f"part-{number:03d}.tar", samples)
    return directory


@pytest.mark.slow
def test_killed_run_resumes_to_identical_outputs(many_shards, tmp_path, monkeypatch):
    registry._discover()
    monkeypatch.setattr(registry, "_IMPLEMENTATIONS", dict(registry._IMPLEMENTATIONS))
    register_sleepy()
    reference = run(SLEEPY_OPS, many_shards, tmp_path / "reference", workers=1)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.runtime.curation.sleepy", str(many_shards), str(killed)],
        cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    manifests = killed / "_work" / "stage0"
    deadline = time.monotonic() + 60
    while not list(manifests.glob("*.json")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list(manifests.glob("*.json")))
    assert 1 <= finished < 5, "the run must be killed in the middle"
    assert not (killed / "shards").exists()  # stage 0 had not finished: no final shard can exist

    resumed = run(SLEEPY_OPS, many_shards, killed, workers=1)
    counts = ("samples_read", "kept", "dropped")
    assert [getattr(resumed, c) for c in counts] == [getattr(reference, c) for c in counts]
    for path in sorted((tmp_path / "reference" / "shards").iterdir()):
        assert member_keys(killed / "shards" / path.name) == member_keys(path)
        assert (killed / "shards" / path.name).read_bytes() == path.read_bytes()
    assert list(killed.rglob("*.tmp-*")) == []


def test_model_op_stages_decode_ahead_in_threads_with_the_same_outputs(shards, tmp_path, monkeypatch):
    """A stage with a model op decodes the next batches in decode threads while the op scores; the shards and
    ledger are those of a run decoding in the op itself."""
    import threading

    from runtime.curation.decode import Decoded
    from runtime.curation.runner import StageRunner
    from tests.runtime.curation.model_ops import register

    register()
    ops = [Blur(min_laplacian_var=20), Aesthetic(scorer="test-mean-luma", min_score=124, use="filter")]
    images = f"{shards}/images-*.tar"
    loads: list[str] = []
    original = Decoded.load

    def load(self, side, grey=False):
        loads.append(threading.current_thread().name)
        return original(self, side, grey)

    monkeypatch.setattr(Decoded, "load", load)
    run(ops, images, tmp_path / "ahead", workers=1)
    ahead = loads[:]
    assert ahead and any(name.startswith("decode") for name in ahead)
    monkeypatch.setattr(StageRunner, "prefetch_target", lambda self: None)
    loads.clear()
    run(ops, images, tmp_path / "inline", workers=1)
    assert loads and not any(name.startswith("decode") for name in loads)
    shards_written = sorted(p.relative_to(tmp_path / "inline") for p in (tmp_path / "inline").rglob("*.tar"))
    assert shards_written
    for path in shards_written:
        assert (tmp_path / "ahead" / path).read_bytes() == (tmp_path / "inline" / path).read_bytes(), path

    def ledger(root):  # op timings (trace) differ between runs; every other field must not
        return [{k: v for k, v in entry.items() if k != "trace"} for manifest in sorted(root.glob("_work/*/*.json"))
                for entry in json.loads(manifest.read_text())["records"]]

    assert ledger(tmp_path / "inline") and ledger(tmp_path / "ahead") == ledger(tmp_path / "inline")


def test_a_gpu_model_stage_shares_one_model_between_thread_workers(shards, tmp_path):
    """A stage whose model op asks for a GPU runs its shards in threads of one process, over one instance of
    the op (one copy of its model); the outputs are those of one worker. A CPU model op keeps processes."""
    import threading

    from runtime.curation.api import Resources
    from runtime.curation.curate import CurationRun
    from tests.runtime.curation.model_ops import MeanLuma, register

    scoring: set[int] = set()  # op instances that scored: each would hold a copy of the model (loaded lazily)
    threads: set[str] = set()

    class GpuMeanLuma(MeanLuma):
        def resources(self):
            return Resources(cpus=1.0, gpus=0.5)

        def score(self, records):
            scoring.add(id(self))
            threads.add(threading.current_thread().name)
            return super().score(records)

    register()
    registry._IMPLEMENTATIONS[("aesthetic", "test-gpu-mean-luma")] = GpuMeanLuma
    gpu = [Blur(min_laplacian_var=20), Aesthetic(scorer="test-gpu-mean-luma", min_score=124, use="filter")]
    cpu = [Blur(min_laplacian_var=20), Aesthetic(scorer="test-mean-luma", min_score=124, use="filter")]
    images = f"{shards}/images-*.tar"
    for ops, shared in ((gpu, True), (cpu, False)):
        plan = CurationRun.plan(ops, images, tmp_path / "unused")
        assert executor_local.shares_models(plan.jobs(plan.stages[0])[0]) == shared

    run(gpu, images, tmp_path / "threads", workers=2)
    assert len(scoring) == 1 and threads and all(name.startswith("shard") for name in threads)
    run(gpu, images, tmp_path / "one", workers=1)  # shard after shard in this process
    written = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.tar"))
    assert written
    for path in written:
        assert (tmp_path / "threads" / path).read_bytes() == (tmp_path / "one" / path).read_bytes(), path
