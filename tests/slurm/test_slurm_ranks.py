"""Training ranks on the real one-node Slurm cluster (conftest.py), with the real runtime.

- srun-started ranks (sbatch.sh: one srun task per rank, rendezvous from Slurm's environment) train exactly as
  the same stage under the DeepSpeed launcher (launch.sh, the local path), two CPU ranks on gloo;
- a stage longer than its one-minute time limit checkpoints on the USR1 Slurm sends before the limit,
  requeues itself, resumes, and ends with the losses of an uninterrupted run; a job after it (afterok) starts
  only once it has finished.

The bundle is flux1-dev at smoke scale for a test cluster file: one node of two CPU ranks, a one-minute
partition limit with 30 s of grace. GENSPEC_STEP_DELAY_S (runtime/train/preemption.py) makes each step last
long enough for the stage to outlast that limit without a bigger model: four steps of 16 s, 64 s of training
(plus each job's start-up) against the one-minute limit. Slurm sends the USR1 up to a minute early, so with a
one-minute limit it comes in the first half minute of every job, often during start-up: each job trains a
step or two (a rank stops after the first step it finishes), checkpoints and requeues. A job then lasts
start-up + 16 s + checkpoint and exit: about 25 s on an idle two-core machine, 50 s on one loaded ten times
over, where longer steps ran past the limit while the ranks exited (TIMEOUT, which Slurm never requeues).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from tests.slurm.conftest import FINAL_STATES, HOPELESS, ROOT, VENV_BIN, slurm_time

STAGE, STEPS = "pretrain", 4
CLUSTER = {"name": "two-cpu-ranks", "nodes": 1, "gpus_per_node": 0, "cpus_per_node": 2, "cpu_ranks_per_node": 2,
           "memory_gib_per_node": 8, "scheduler": "slurm", "time_limit_minutes": 1, "signal_grace_seconds": 30}


def write_image_shard(directory: Path) -> None:
    """Images and captions the trainer encodes on the fly (runtime/train/batch.py: KEY.png, KEY.txt)."""
    import webdataset as wds
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with wds.TarWriter(str(directory / "shard-00000.tar")) as sink:
        for index in range(8):
            png = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(png, format="PNG")
            sink.write({"__key__": f"{index:05d}", "png": png.getvalue(), "txt": f"shape number {index}",
                        "json": {"width": 2048, "height": 2048}})


@pytest.fixture(scope="module")
def stage_bundle(tmp_path_factory) -> Path:
    """The compiled bundle with its pretrain stage cut to STEPS steps, checkpointed only at the end (and on a
    signal) and never validated, so the checkpoints a run has come from preemption alone."""
    out = tmp_path_factory.mktemp("ranks") / "bundle"
    cluster = out.parent / "cluster.json"
    cluster.write_text(json.dumps(CLUSTER))
    done = subprocess.run([str(VENV_BIN / "genspec"), "compile", "flux1-dev", "--cluster", str(cluster),
                           "--scale", "smoke", "-o", str(out)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    path = out / "train" / STAGE / "stage.yaml"
    yaml = YAML(typ="safe")
    stage = yaml.load(path.read_text())
    stage["stage"]["steps"] = STEPS
    stage["stage"]["conditioning"] = "on_the_fly"  # write_image_shard writes images, not precomputed latents
    stage["checkpoint_every"] = stage["validation_every"] = 1000
    with open(path, "w") as stream:
        yaml.dump(stage, stream)
    return out


def run_root_with_data(bundle: Path, path: Path) -> Path:
    stage = YAML(typ="safe").load((bundle / "train" / STAGE / "stage.yaml").read_text())
    for use in stage["data"]:
        write_image_shard(path / use["shards"])
    return path


def losses(run_root: Path) -> dict[int, float]:
    lines = (run_root / "checkpoints" / STAGE / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def fresh_env(**extra: str) -> dict[str, str]:
    """This environment without torch.distributed variables an in-process test may have left behind."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    return {**env, **extra}


@pytest.fixture(scope="module")
def launcher_losses(stage_bundle, tmp_path_factory) -> dict[int, float]:
    """The stage through the DeepSpeed launcher with two processes (launch.sh, uninterrupted)."""
    run_root = run_root_with_data(stage_bundle, tmp_path_factory.mktemp("launcher"))
    launch = stage_bundle / "train" / STAGE / "launch.sh"
    assert "--num_gpus 2 --no_local_rank" in launch.read_text()
    done = subprocess.run(["bash", str(launch), "--run-root", str(run_root)], env=fresh_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = losses(run_root)
    assert sorted(found) == list(range(1, STEPS + 1)), found
    return found


def submit(slurm, bundle: Path, run_root: Path, *options: str, **env: str) -> str:
    (run_root / "logs").mkdir(parents=True, exist_ok=True)  # Slurm fails the launch when --output's folder is missing
    done = subprocess.run(["sbatch", "--parsable", f"--chdir={bundle}", "--export=ALL",
                           f"--output={run_root}/logs/slurm-%x-%j.out", *options,
                           str(bundle / "train" / STAGE / "sbatch.sh")],
                          env=slurm.env(**fresh_env(GENSPEC_BUNDLE=str(bundle), GENSPEC_RUN_ROOT=str(run_root), **env)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


# How long a requeued job is held before the test lets it start (slurmctld holds it for two minutes, so that
# the node has let go of its old credential: started within a second, it failed at launch with "Job credential
# revoked" on this loaded one-node cluster).
REQUEUE_HOLD_S = 10


def wait(slurm, job_ids: list[str], run_root: Path, timeout: float) -> dict[str, dict[str, str]]:
    deadline = time.monotonic() + timeout
    held_since: dict[str, float] = {}
    while True:
        records = {job_id: slurm.jobs(job_id)[0] for job_id in job_ids}
        if all(r.get("JobState") in FINAL_STATES for r in records.values()):
            return records
        for job_id, record in records.items():
            # slurmctld holds a requeued job for two minutes (Reason=BeginTime): let it start after
            # REQUEUE_HOLD_S, so a test of several requeues takes minutes rather than a quarter of an hour.
            if record.get("JobState") == "PENDING" and record.get("Reason") == "BeginTime":
                since = held_since.setdefault(job_id, time.monotonic())
                if time.monotonic() - since >= REQUEUE_HOLD_S:
                    slurm.run("scontrol", "update", f"JobId={job_id}", "StartTime=now", check=False)
            else:
                held_since.pop(job_id, None)
        stuck = [r for r in records.values() if r.get("JobState") == "PENDING" and r.get("Reason") in HOPELESS]
        if stuck or time.monotonic() > deadline:
            logs = "\n".join(f"----- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(run_root.glob("logs/*")))
            pytest.fail(f"jobs not finished: {records}\n{logs}\n{slurm.log_tails()}", pytrace=False)
        time.sleep(1)


def test_srun_ranks_train_as_the_deepspeed_launcher_does(slurm, stage_bundle, launcher_losses, tmp_path):
    script = (stage_bundle / "train" / STAGE / "sbatch.sh").read_text()
    assert "#SBATCH --ntasks-per-node=2\n" in script and "ranks=(srun " in script
    run_root = run_root_with_data(stage_bundle, tmp_path / "run")
    # A longer limit than the bundle's minute: this run is the uninterrupted one.
    job = submit(slurm, stage_bundle, run_root, "--time=10")
    record = wait(slurm, [job], run_root, timeout=600)[job]
    log = "\n".join(p.read_text() for p in run_root.glob("logs/*"))
    assert (record["JobState"], record["Restarts"]) == ("COMPLETED", "0"), f"{record}\n{log[-3000:]}"
    assert losses(run_root) == launcher_losses


def test_a_stage_longer_than_its_time_limit_completes_across_requeues(slurm, stage_bundle, launcher_losses, tmp_path):
    script = (stage_bundle / "train" / STAGE / "sbatch.sh").read_text()
    assert "#SBATCH --time=0-00:01:00\n" in script and "#SBATCH --signal=B:USR1@30\n" in script
    run_root = run_root_with_data(stage_bundle, tmp_path / "run")
    delay = 16
    assert STEPS * delay > 60, "the stage must need more than its one-minute limit"
    job = submit(slurm, stage_bundle, run_root, GENSPEC_STEP_DELAY_S=str(delay))
    after = subprocess.run(["sbatch", "--parsable", f"--dependency=afterok:{job}", "--kill-on-invalid-dep=yes",
                            f"--output={run_root}/logs/after-%j.out", "--wrap", "true"],
                           env=slurm.env(), capture_output=True, text=True, timeout=60)
    assert after.returncode == 0, after.stderr
    dependant = after.stdout.strip()
    records = wait(slurm, [job, dependant], run_root, timeout=420)
    log = "\n".join(f"----- {p.name}\n{p.read_text()}" for p in sorted(run_root.glob("logs/*")))
    stage, next_job = records[job], records[dependant]
    assert stage["JobState"] == "COMPLETED" and int(stage["Restarts"]) >= 1, f"{stage}\n{log[-4000:]}"
    # Each requeued job stopped after a later step than the one before it (every job moved the stage on).
    stopped = sorted({int(step) for step in re.findall(r"stopped after step (\d+)", log)})
    restarts = int(stage["Restarts"])
    assert len(stopped) == restarts == log.count("requeueing job") and stopped[-1] < STEPS, log[-4000:]
    assert next_job["JobState"] == "COMPLETED", next_job
    assert slurm_time(next_job["StartTime"]) >= slurm_time(stage["EndTime"]), (stage, next_job)
    assert losses(run_root) == launcher_losses
    assert not list(run_root.glob("logs/stop-*")), "the stop file outlived its job"
