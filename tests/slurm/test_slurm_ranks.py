"""Training ranks on the real one-node Slurm cluster (conftest.py), with the real runtime.

- srun-started ranks (sbatch.sh: one srun task per rank, rendezvous from Slurm's environment) train exactly as
  the same stage under the DeepSpeed launcher (launch.sh, the local path), two CPU ranks on gloo;
- a stage with three minutes of training against its one-minute time limit checkpoints on the USR1 Slurm sends
  before the limit, requeues itself, resumes, and ends with the losses of an uninterrupted run, however many
  jobs it took; a job after it (afterok) starts only once it has finished.

The bundle is flux1-dev at smoke scale for a test cluster file: one node of two CPU ranks, a one-minute
partition limit with 20 s of grace. GENSPEC_STEP_DELAY_S (runtime/train/preemption.py) makes each step last
long enough for the stage to outlast that limit without a bigger model: 18 steps of 10 s, three minutes of
training. slurmctld looks at time limits every 30 s and sends the USR1 once a job has less than grace + 30 s
left (measured on this cluster: 6-29 s after the start with 30 s of grace, 13-36 s with 20 s), so with a
one-minute limit it comes 10-40 s into every job: after the batch shell's trap exists (with 30 s it came at
once in one job of 11 under load, and killed the shell before its trap was set), and early enough for the step
in progress (10 s), the checkpoint and the exit to end before the limit (a TIMEOUT is never requeued). Each job
trains two or three steps, so the stage takes eight or so jobs.

That run takes 7-9 minutes of waiting, most of it sleep. It is prepared when the session starts (tests/conftest.py
`start_in_background`: compile, the uninterrupted run) and submitted once the rest of the suite has run
(`the_rest_has_run`), beside the demos' last minutes; its test only checks what it recorded.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from tests.slurm.conftest import FINAL_STATES, HOPELESS, ROOT, SESSION_CLUSTER, VENV_BIN, slurm_time

STAGE, STEPS, STEP_DELAY_S = "pretrain", 18, 10
CLUSTER = {"name": "two-cpu-ranks", "nodes": 1, "gpus_per_node": 0, "cpus_per_node": 2, "cpu_ranks_per_node": 2,
           "memory_gib_per_node": 8, "scheduler": "slurm", "time_limit_minutes": 1, "signal_grace_seconds": 20}
REQUEUE_TIMEOUT_S = 1200  # about 8 jobs of under a minute each, with REQUEUE_HOLD_S between them


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


def compile_stage_bundle(out: Path) -> Path:
    """The compiled bundle in OUT with its pretrain stage cut to STEPS steps, checkpointed only at the end (and
    on a signal) and never validated, so the checkpoints a run has come from preemption alone."""
    cluster = out.parent / "cluster.json"
    cluster.write_text(json.dumps(CLUSTER))
    done = subprocess.run([str(VENV_BIN / "genspec"), "compile", "flux1-dev", "--cluster", str(cluster),
                           "--scale", "smoke", "-o", str(out)],
                          env=fresh_env(), capture_output=True, text=True, timeout=120, cwd=ROOT)
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


@pytest.fixture(scope="module")
def stage_bundle(tmp_path_factory) -> Path:
    return compile_stage_bundle(tmp_path_factory.mktemp("ranks") / "bundle")


def run_root_with_data(bundle: Path, path: Path) -> Path:
    stage = YAML(typ="safe").load((bundle / "train" / STAGE / "stage.yaml").read_text())
    for use in stage["data"]:
        write_image_shard(path / use["shards"])
    return path


def losses(run_root: Path) -> dict[int, float]:
    lines = (run_root / "checkpoints" / STAGE / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


# The environment of the session's start, before any test ran: the requeue run submits from a thread while
# in-process trainer tests set RANK and MASTER_PORT (and monkeypatch others) in os.environ.
SESSION_ENVIRONMENT = dict(os.environ)


def fresh_env(**extra: str) -> dict[str, str]:
    """The session's starting environment without torch.distributed variables (a shell of the user's would
    have none)."""
    env = {k: v for k, v in SESSION_ENVIRONMENT.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    return {**env, **extra}


def launcher_run_losses(bundle: Path, directory: Path) -> dict[int, float]:
    """The stage of BUNDLE through the DeepSpeed launcher with two processes (launch.sh, uninterrupted), run
    in DIRECTORY."""
    run_root = run_root_with_data(bundle, directory)
    launch = bundle / "train" / STAGE / "launch.sh"
    assert "--num_gpus 2 --no_local_rank" in launch.read_text()
    done = subprocess.run(["bash", str(launch), "--run-root", str(run_root)], env=fresh_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = losses(run_root)
    assert sorted(found) == list(range(1, STEPS + 1)), found
    return found


@pytest.fixture(scope="module")
def launcher_losses(stage_bundle, tmp_path_factory) -> dict[int, float]:
    return launcher_run_losses(stage_bundle, tmp_path_factory.mktemp("launcher"))


def submit(slurm, bundle: Path, run_root: Path, *options: str, **env: str) -> str:
    (run_root / "logs").mkdir(parents=True, exist_ok=True)  # Slurm fails the launch when --output's folder is missing
    done = subprocess.run(["sbatch", "--parsable", f"--chdir={bundle}", "--export=ALL",
                           f"--output={run_root}/logs/slurm-%x-%j.out", *options,
                           str(bundle / "train" / STAGE / "sbatch.sh")],
                          env=fresh_env(SLURM_CONF=str(slurm.conf), GENSPEC_BUNDLE=str(bundle),
                                        GENSPEC_RUN_ROOT=str(run_root), **env),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


# How long a requeued job is held before the test lets it start (slurmctld holds it for two minutes, so that
# the node has let go of its old credential: started within a second, it failed at launch with "Job credential
# revoked" on this loaded one-node cluster).
REQUEUE_HOLD_S = 10


def wait(slurm, job_ids: list[str], run_root: Path, timeout: float,
         stopping: threading.Event | None = None) -> dict[str, dict[str, str]]:
    """The jobs' scontrol records once all are finished; fails at TIMEOUT, on a job that can never start, or when
    STOPPING is set (the session is ending)."""
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
        if stuck or time.monotonic() > deadline or (stopping is not None and stopping.is_set()):
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


@dataclass
class RequeueRun:
    """What the requeue run recorded: the stage job's and its afterok dependant's final scontrol records, and
    every job log."""

    run_root: Path
    stage: dict[str, str]
    dependant: dict[str, str]
    log: str
    uninterrupted: dict[int, float]  # the same bundle's losses through the DeepSpeed launcher
    seconds: float  # from the stage's submission to the end of the job after it


class BackgroundRequeue:
    """The requeue run, in a thread from the session's start: compile, write the data, submit the stage (each
    step GENSPEC_STEP_DELAY_S long) and an afterok job after it, and wait for both."""

    def __init__(self, directory: Path):
        self._stopping = threading.Event()
        self._jobs: list[str] = []
        self._cluster = None
        self._pool = ThreadPoolExecutor(1)
        self._future = self._pool.submit(self._run, directory)

    def _run(self, directory: Path) -> RequeueRun:
        cluster = self._cluster = SESSION_CLUSTER.get()
        bundle = compile_stage_bundle(directory / "bundle")
        # The uninterrupted run first: on a fresh virtualenv its ranks build DeepSpeed's shared-memory op (a
        # minute or more of C++), which a requeued job's ranks would have to do inside their one-minute limit.
        uninterrupted = launcher_run_losses(bundle, directory / "uninterrupted")
        run_root = run_root_with_data(bundle, directory / "run")
        # The jobs wait for the rest of the suite: beside it (load 10 on two cores, in a clean-clone run) a
        # requeued job's ranks were still starting when its one minute ran out (TIMEOUT). Beside the demos
        # alone, which run at a lower priority (tests/runtime/test_demo.py DEMO_NICENESS), they are not.
        while not (REST_HAS_RUN.wait(5) or self._stopping.is_set()):
            pass
        if self._stopping.is_set():
            pytest.fail("the session ended before the requeue run was submitted", pytrace=False)
        submitted = time.monotonic()
        job = submit(cluster, bundle, run_root, GENSPEC_STEP_DELAY_S=str(STEP_DELAY_S))
        self._jobs.append(job)
        after = subprocess.run(["sbatch", "--parsable", f"--dependency=afterok:{job}", "--kill-on-invalid-dep=yes",
                                f"--output={run_root}/logs/after-%j.out", "--wrap", "true"],
                               env=fresh_env(SLURM_CONF=str(cluster.conf)), capture_output=True, text=True,
                               timeout=60)
        assert after.returncode == 0, after.stderr
        dependant = after.stdout.strip()
        self._jobs.append(dependant)
        records = wait(cluster, [job, dependant], run_root, timeout=REQUEUE_TIMEOUT_S, stopping=self._stopping)
        seconds = time.monotonic() - submitted
        log = "\n".join(f"----- {p.name}\n{p.read_text()}" for p in sorted(run_root.glob("logs/*")))
        return RequeueRun(run_root, records[job], records[dependant], log, uninterrupted, seconds)

    def result(self) -> RequeueRun:
        return self._future.result()

    def stop(self) -> None:
        """End of the session: cancel what is still queued or running, and stop the cluster if this run was its
        only user (the `slurm` fixture stops it otherwise)."""
        self._stopping.set()
        if not self._future.done() and self._jobs and self._cluster is not None:
            try:
                self._cluster.run("scancel", *self._jobs, check=False, timeout=10)
            except subprocess.TimeoutExpired:
                pass  # the `slurm` fixture has already stopped the cluster
        self._pool.shutdown(wait=True)
        problems = SESSION_CLUSTER.stop()
        assert not problems, "\n".join(problems)


_requeue: BackgroundRequeue | None = None
# Set by the_rest_has_run, which may come before start_in_background: when only background modules' tests are
# selected, the first of them is set up before the session fixture that starts the background work.
REST_HAS_RUN = threading.Event()


def start_in_background(session: pytest.Session, tmp_path_factory: pytest.TempPathFactory):
    """Called by tests/conftest.py before the session's first test: starts the requeue run if its test is
    selected; returns what stops it."""
    global _requeue
    test = test_a_stage_longer_than_its_time_limit_completes_across_requeues.__name__
    if not any(getattr(item, "originalname", None) == test for item in session.items):
        return lambda: None
    _requeue = BackgroundRequeue(tmp_path_factory.mktemp("requeue"))
    return _requeue.stop


def the_rest_has_run() -> None:
    """Called by tests/conftest.py when the tests outside background modules have run: submit the requeue run."""
    REST_HAS_RUN.set()


def test_a_stage_longer_than_its_time_limit_completes_across_requeues(slurm):
    assert _requeue is not None, "tests/conftest.py's background_work fixture did not start the requeue run"
    assert STEPS * STEP_DELAY_S >= 180, "the stage must need several times its one-minute limit"
    run = _requeue.result()
    script = (run.run_root.parent / "bundle" / "train" / STAGE / "sbatch.sh").read_text()
    assert "#SBATCH --time=0-00:01:00\n" in script and "#SBATCH --signal=B:USR1@20\n" in script
    stage, next_job, log = run.stage, run.dependant, run.log
    print(f"requeue run: {STEPS} steps of {STEP_DELAY_S} s in {int(stage['Restarts']) + 1} jobs of a one-minute "
          f"limit, {run.seconds:.0f} s from submission to the end of the job after it")
    assert stage["JobState"] == "COMPLETED" and int(stage["Restarts"]) >= 2, f"{stage}\n{log[-4000:]}"
    # Each requeued job stopped after a later step than the one before it (every job moved the stage on).
    stopped = sorted({int(step) for step in re.findall(r"stopped after step (\d+)", log)})
    restarts = int(stage["Restarts"])
    assert len(stopped) == restarts == log.count("requeueing job") and stopped[-1] < STEPS, log[-4000:]
    assert next_job["JobState"] == "COMPLETED", next_job
    assert slurm_time(next_job["StartTime"]) >= slurm_time(stage["EndTime"]), (stage, next_job)
    assert losses(run.run_root) == run.uninterrupted
    assert not list(run.run_root.glob("logs/stop-*")), "the stop file outlived its job"
