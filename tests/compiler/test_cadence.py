"""Checkpoint and validation cadence: the Young/Daly interval from the plan, the cluster and a stage's override."""

import math
import re

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

import specs
from compiler.cli import app
from compiler.clusters import load_cluster
from compiler.plan import plan
from compiler.scale import scaled
from compiler.resolve import OverrideError, apply_overrides
from compiler.schema.cluster import PRESETS

runner = CliRunner()


def _stage_files(bundle):
    return {path.parent.name: YAML(typ="safe").load(path.read_text()) for path in bundle.glob("train/*/stage.yaml")}


def test_flux_on_h100_64_checkpoints_and_validates_every_many_steps_and_plan_md_says_when(tmp_path):
    out = tmp_path / "flux"
    result = runner.invoke(app, ["compile", "flux1-dev", "--cluster", "h100-64", "-o", str(out)])
    assert result.exit_code == 0, result.output
    stage_files = _stage_files(out)
    assert len(stage_files) == len(specs.load("flux1-dev").schedule.stages) == 4
    plan_md = (out / "plan.md").read_text()
    for stage_file in stage_files.values():
        steps = stage_file["stage"]["steps"]
        assert 1 < stage_file["checkpoint_every"] < steps
        assert 1 < stage_file["validation_every"] < stage_file["checkpoint_every"]
        name = stage_file["stage"]["name"]
        row = re.search(rf"^\| {name} \|.*\| {stage_file['checkpoint_every']} steps = ([\d.]+) min .*"
                        rf"\| {stage_file['validation_every']} steps = ([\d.]+) min", plan_md, re.M)
        assert row, f"plan.md has no cadence row for {name} with the stage file's intervals"
        assert float(row[1]) > 60 and float(row[2]) == pytest.approx(30, abs=1)


def test_the_interval_is_young_daly_from_checkpoint_size_bandwidth_and_failure_rate():
    spec, cluster = specs.load("flux1-dev"), PRESETS["h100-64"]
    stage = plan(spec, cluster).stages[0]
    bytes_ = stage.params * (2 + 4 + 8)  # bf16 weights, fp32 master, Adam moments: no EMA in this stage
    write = bytes_ / (2000e9 / 16_384 * 64)  # Llama 3's 2 TB/s for 16,384 GPUs, scaled to 64
    mtbf = 16_384 * 54 * 24 / 419 / 64 * 3600  # Llama 3's 419 interruptions in 54 days, over 64 GPUs
    assert stage.cadence.checkpoint_bytes == bytes_
    assert stage.cadence.checkpoint_write_seconds == pytest.approx(write, rel=0.01)
    # The preset rounds its bandwidth to 7.81 GB/s.
    assert stage.cadence.checkpoint_every == pytest.approx(math.sqrt(2 * write * mtbf) / stage.step_seconds, rel=0.005)


def test_slower_storage_and_more_failures_move_the_interval_the_right_way():
    spec = specs.load("flux1-dev")
    base = PRESETS["h100-64"]
    every = plan(spec, base).stages[0].cadence.checkpoint_every
    slow_storage = base.model_copy(update={"storage_write_gbps": base.storage_write_gbps / 4})
    flaky = base.model_copy(update={"device_hours_per_interruption": base.device_hours_per_interruption / 4})
    # Young/Daly: the interval grows as sqrt(write time) and shrinks as sqrt(failure rate).
    assert plan(spec, slow_storage).stages[0].cadence.checkpoint_every == pytest.approx(2 * every, rel=0.01)
    assert plan(spec, flaky).stages[0].cadence.checkpoint_every == pytest.approx(every / 2, rel=0.01)


def test_a_smoke_stage_checkpoints_at_its_last_step():
    for stage in plan(scaled(specs.load("flux1-dev"), "smoke"), PRESETS["local-cpu"]).stages:
        assert stage.cadence.checkpoint_every == stage.steps == 3
        assert 1 <= stage.cadence.validation_every <= stage.steps


def test_a_stage_overrides_the_cadence():
    spec = apply_overrides(specs.load("flux1-dev"), ["schedule.stages[pretrain].checkpoint_every=1000",
                                                     "schedule.stages[pretrain].validation_every=250"])
    stage = plan(spec, PRESETS["h100-64"]).stages[0]
    assert (stage.cadence.checkpoint_every, stage.cadence.checkpoint_source) == (1000, "spec")
    assert (stage.cadence.validation_every, stage.cadence.validation_source) == (250, "spec")
    smoke = plan(scaled(spec, "smoke"), PRESETS["local-cpu"]).stages[0]
    assert smoke.cadence.checkpoint_every == smoke.cadence.validation_every == 3


def test_an_interval_longer_than_the_stage_is_refused_with_the_fix():
    with pytest.raises(OverrideError) as error:
        apply_overrides(specs.load("flux1-dev"), ["schedule.stages[pretrain].checkpoint_every=600000"])
    message = str(error.value)
    assert "checkpoint_every is 600000" in message and "at most 500000" in message


def test_a_cluster_file_states_its_storage_and_failure_rate(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text("name: site\nnodes: 2\ngpus_per_node: 8\ngpu: {name: H100, memory_gib: 80, peak_bf16_tflops: 989}\n"
                    "cpus_per_node: 64\nmemory_gib_per_node: 1000\nstorage_write_gbps: 40\n"
                    "device_hours_per_interruption: 20000\n")
    cluster = load_cluster(str(path))
    assert cluster.checkpoint_write_gbps == 40
    assert cluster.job_mtbf_hours == pytest.approx(20000 / 16)
    path.write_text(path.read_text().replace("storage_write_gbps: 40", "storage_write_gbps: 0"))
    with pytest.raises(Exception, match="storage_write_gbps"):
        load_cluster(str(path))
