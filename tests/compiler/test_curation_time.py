"""Curation jobs on Slurm are sized to the data: compiler/plan/curation_time.py's estimate per shard, and
submit_slurm.sh's --array and --time from the shards it counts (run here with a stand-in sbatch)."""

from __future__ import annotations

import math
import os
import re
import subprocess

import pytest

import specs
from compiler.emit import render, write_bundle
from compiler.plan.curation_time import MARGIN, MODEL_SECONDS, STARTUP_MINUTES, curation_times
from compiler.schema.cluster import PRESETS


def flux_pipeline():
    return specs.load("flux1-dev").data.pipelines[0]


def test_a_shard_of_video_costs_more_than_one_of_images_and_no_gpu_costs_more_than_one():
    pipeline = flux_pipeline()
    image = curation_times(pipeline, False, cpus=8, gpus=1, samples_per_shard=1000)
    video = curation_times(pipeline, True, cpus=8, gpus=1, samples_per_shard=1000)
    cpu_only = curation_times(pipeline, False, cpus=8, gpus=0, samples_per_shard=1000)
    assert len(image.stages) == 2  # flux's perceptual_dedup barrier cuts it in two
    for stage in range(2):
        assert video.stages[stage] > image.stages[stage] and cpu_only.stages[stage] > image.stages[stage]
    # Twice the samples per shard, twice the seconds.
    double = curation_times(pipeline, False, cpus=8, gpus=1, samples_per_shard=2000)
    assert double.stages[0] == pytest.approx(2 * image.stages[0], abs=1)
    # Stage 0 scores safety and aesthetic on the GPU: at least their model time per sample, with the margin.
    assert image.stages[0] >= 2 * MODEL_SECONDS["image"] * 1000 * MARGIN


@pytest.fixture(scope="module")
def h100_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("sized") / "bundle"
    cluster = PRESETS["h100-512"].model_copy(update={"max_array_tasks": 5})
    write_bundle(render(specs.load("flux1-dev"), cluster, "full"), out, force=True)
    return out


def submitted(bundle, tmp_path, shards: int) -> list[list[str]]:
    """The sbatch command lines submit_slurm.sh runs for `shards` input shards (a stand-in sbatch logs them)."""
    raw = tmp_path / "raw"
    source = flux_pipeline().sources[0]
    (raw / source).mkdir(parents=True)
    for shard in range(shards):
        (raw / source / f"{shard:05d}.tar").touch()
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "sbatch.log"
    (fake / "sbatch").write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> "{log}"\necho 4242\n')
    (fake / "sbatch").chmod(0o755)
    done = subprocess.run(["bash", str(bundle / "submit_slurm.sh"), "--raw", str(raw), "--run-root", str(tmp_path / "run")],
                          env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [line.split() for line in log.read_text().splitlines()]


def option(line: list[str], name: str) -> str | None:
    return next((word.split("=", 1)[1] for word in line if word.startswith(f"--{name}=")), None)


def seconds_per_shard(bundle) -> dict[str, int]:
    """plan.md's curation table: job -> estimated seconds per shard."""
    rows = re.findall(r"^\| flux \| \d+ \| \d+ \| (.+?) \| (\d+) \|$", (bundle / "plan.md").read_text(), re.M)
    assert rows, "no curation table in plan.md"
    return {job: int(seconds) for job, seconds in rows}


@pytest.mark.parametrize("shards, tasks", [(9, 3), (1, 1), (400, 5)])
def test_arrays_get_a_task_per_four_shards_and_a_time_for_the_shards_each_reads(h100_bundle, tmp_path, shards, tasks):
    """h100-512: 4 shards per task (400 shards would need 100 tasks: the cluster allows 5, so 80 shards each)."""
    limit = PRESETS["h100-512"].time_limit_minutes
    assert tasks == min(math.ceil(shards / 4), 5)
    per_task = math.ceil(shards / tasks)
    estimate = seconds_per_shard(h100_bundle)
    lines = submitted(h100_bundle, tmp_path, shards)
    curation = [line for line in lines if any("/curation/" in word for word in line)]
    arrays = [line for line in curation if option(line, "array")]
    singles = [line for line in curation if not option(line, "array")]
    assert [option(line, "array") for line in arrays] == [f"0-{tasks - 1}"] * 2  # stages 0 and 1
    assert len(singles) == 2 and singles[0][-1] == "--barrier" and singles[1][-1] == "--finalize", singles
    for line, job, reads in [(arrays[0], "stage 0 array", per_task), (arrays[1], "stage 1 array", per_task),
                             (singles[0], "stage 1 barrier (one task, all shards)", shards),
                             (singles[1], "finalize (one task, all shards)", shards)]:
        wanted = min(math.ceil(reads * estimate[job] / 60) + STARTUP_MINUTES, limit)
        assert option(line, "time") == str(wanted), (job, line)
    # The barrier job sits between the two arrays: the stage 1 array depends on it, not on stage 0's array.
    order = [line[-1] if line[-1].startswith("--") else line[-2:] for line in curation]
    assert order[:3] == [["--stage", "0"], "--barrier", ["--stage", "1"]], order


def test_no_input_shards_is_an_error_before_anything_is_submitted(h100_bundle, tmp_path):
    raw = tmp_path / "raw"
    (raw / flux_pipeline().sources[0]).mkdir(parents=True)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text(f'#!/usr/bin/env bash\ntouch "{tmp_path}/submitted"\necho 1\n')
    (fake / "sbatch").chmod(0o755)
    done = subprocess.run(["bash", str(h100_bundle / "submit_slurm.sh"), "--raw", str(raw), "--run-root",
                           str(tmp_path / "run")], env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"},
                          capture_output=True, text=True)
    assert done.returncode == 2 and "no input shards" in done.stderr and str(raw) in done.stderr, done.stderr
    assert not (tmp_path / "submitted").exists()
