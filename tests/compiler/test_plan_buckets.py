"""Bucket planning: equal-area aspect-ratio buckets, frame buckets the VAE accepts, a micro-batch per bucket,
feasibility against the data's stated aspect ratios, and the bucket table in plan.md and stage.yaml."""

import json
import math
import re

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

import specs
from compiler.pipeline import CompileError, compile, emit
from compiler.cli import app
from compiler.plan.buckets import ASPECT_RATIOS, bucket_sizes, report_overrides
from compiler.schema.cluster import PRESETS
from compiler.schema.common import Size

WAN = "wan2.1-t2v-1.3b"  # joint image + video stages with aspect-ratio buckets; natural cluster h100-64


@pytest.fixture(scope="module")
def wan_bundle():
    compiled = compile(specs.load(WAN), PRESETS["h100-64"])
    return compiled, emit(compiled).files


def test_aspect_ratio_buckets_keep_the_area_and_take_the_named_ratios():
    spec = specs.load("flux1-dev")
    sizes = bucket_sizes(spec, Size(height=1024, width=1024), True)
    assert (1024, 1024) in sizes and len(sizes) == len(ASPECT_RATIOS)
    for (height, width), (w, h) in zip(sizes, ASPECT_RATIOS):  # portrait to landscape, as ASPECT_RATIOS
        assert height % 16 == 0 and width % 16 == 0  # 8x VAE x 2x2 patches
        assert height * width == pytest.approx(1024 * 1024, rel=0.03)
        assert width / height == pytest.approx(w / h, rel=0.04)
    assert bucket_sizes(spec, Size(height=512, width=768), False) == [(512, 768)]


def test_under_sequence_parallelism_every_bucket_splits_evenly():
    spec = specs.load("wan2.1-t2v-14b")
    for height, width in bucket_sizes(spec, Size(height=720, width=1280), True, sp=8):
        assert (height // 16) * (width // 16) % 8 == 0 and (height, width)


def test_joint_stage_plans_a_micro_batch_per_bucket(wan_bundle):
    compiled, _ = wan_bundle
    stage = compiled.plan.stages[0]
    assert stage.stage == "joint_256p"
    videos = [b for b in stage.buckets if b.frames == 81]
    images = [b for b in stage.buckets if b.frames == 1]
    assert len(videos) == len(images) == len(ASPECT_RATIOS)
    assert {(b.height, b.width) for b in videos} == {(b.height, b.width) for b in images}
    reference = next(b for b in videos if (b.height, b.width) == (256, 448))  # the stage's own resolution
    assert reference.micro_batch == stage.micro_batch and reference.time_ratio == pytest.approx(1.0)
    assert reference.memory_gib == pytest.approx(stage.memory_gib.total)  # counted as the planner counts it
    for bucket in stage.buckets:
        # Each bucket's micro-step takes about the stage's, unless memory caps it; all fit.
        assert bucket.memory_gib <= stage.memory_gib.capacity
        assert bucket.time_ratio == pytest.approx(1.0, abs=0.15) or bucket.micro_batch > stage.micro_batch
    assert min(b.micro_batch for b in images) > 5 * max(b.micro_batch for b in videos)


def test_plan_md_shows_the_bucket_table_and_stage_yaml_carries_it(wan_bundle):
    compiled, files = wan_bundle
    table = files["plan.md"].split("## Buckets", 1)[1].split("## Checkpoint", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| joint_256p |")]
    stage = compiled.plan.stages[0]
    assert len(rows) == len(stage.buckets) == 14
    own = rf"\| joint_256p \| 0 \| 256 x 448 x 81 \| 16:9 \| \d+ \| {stage.micro_batch} \| [\d.]+ \| 1\.00 \| - \|"
    assert re.search(own, table), table
    assert "| joint_256p | 0 | 336 x 336 x 1 | 1:1 |" in table
    stage_file = YAML(typ="safe").load(files["train/joint_256p/stage.yaml"])
    assert [(b["height"], b["width"], b["frames"], b["micro_batch"]) for b in stage_file["buckets"]] == [
        (b.height, b.width, b.frames, b.micro_batch) for b in stage.buckets
    ]


def test_a_bucket_that_cannot_fill_its_micro_batches_is_refused_with_its_numbers():
    overrides = ['data.datasets[wan_images].aspect_ratios={"16:9": 0.995, "9:16": 0.005}',
                 "data.datasets[wan_images].count=200000"]
    with pytest.raises(CompileError) as refused:
        compile(specs.load(WAN), PRESETS["h100-64"], overrides=overrides)
    message = str(refused.value)
    # 200000 x 0.5% = 1000 images at 9:16 over 64 ranks: 15.6 per rank per epoch, below the bucket's micro-batch
    assert "schedule.stages[joint_256p]: buckets cannot fill their micro-batches" in message, message
    assert "bucket 448x256 x 1 (9:16) holds 0.50% of dataset 'wan_images' (200000 items" in message
    assert "15.6 samples per data-parallel rank per epoch over 64 ranks, fewer than its micro-batch of" in message
    assert "(16:9)" not in message  # the bucket holding 99.5% fills its micro-batches
    plenty = compile(specs.load(WAN), PRESETS["h100-64"], overrides=[overrides[0], "data.datasets[wan_images].count=2e7"])
    shares = dict(next(b for b in plenty.plan.stages[0].buckets if (b.height, b.width, b.frames) == (448, 256, 1)).shares)
    assert shares == {"wan_images": pytest.approx(0.005)}


def test_a_curation_report_gives_the_kept_count_bucket_feasibility_reads(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"pipeline": "wan_images", "output": "wan_images", "kept": 200000}))
    assert report_overrides([str(report)]) == ["data.pipelines[wan_images].kept_count=200000"]
    ratios = 'data.datasets[wan_images].aspect_ratios={"16:9": 0.995, "9:16": 0.005}'
    result = CliRunner().invoke(app, ["compile", WAN, "--cluster", "h100-64", "-o", str(tmp_path / "b"),
                                      "--set", ratios, "--data-report", str(report)])
    assert result.exit_code == 1 and "holds 0.50% of dataset 'wan_images' (200000 items" in result.output, result.output
    report.write_text("{}")
    with pytest.raises(ValueError, match="not a curation report.json with 'pipeline' and 'kept'"):
        report_overrides([str(report)])


def test_frame_buckets_must_be_counts_the_vae_encodes():
    with pytest.raises(CompileError, match=r"frame_buckets has 40: .*1 \+ 4n frames.*use 37 instead"):
        compile(specs.load(WAN), PRESETS["h100-64"], overrides=["schedule.stages[joint_256p].frame_buckets=[41, 40]"])
    compiled = compile(specs.load(WAN), PRESETS["h100-64"], overrides=["schedule.stages[joint_256p].frame_buckets=[41]"])
    frames = {b.frames for b in compiled.plan.stages[0].buckets}
    assert frames == {81, 41, 1} and not math.isnan(compiled.plan.stages[0].step_seconds)
