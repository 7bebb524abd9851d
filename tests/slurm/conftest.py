"""A real one-node Slurm cluster for tests of generated bundles, started once per session.

`slurm` runs scripts/slurm-up.sh in a fresh state directory (its own munge socket and ports, so a cluster a
developer started by hand is left alone) and scripts/slurm-down.sh at the end, also after failures; the end
asserts the recorded daemons are gone. The tests never skip: if Slurm cannot start, the session fails with
the daemon logs.

`run_dag` submits a bundle's submit_slurm.sh and waits, bounded, until every job is finished, failing at
once on a job that can never start. With use_real_runtime=False the jobs run stubs first on PATH (`python`,
`deepspeed`, `genspec`) that append their argv, job IDs and a timestamp to a JSON-lines log; with True they
run the real runtime from the project's virtualenv on a few generated shards.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
VENV_BIN = Path(sys.executable).parent
SPEC, CLUSTER, SCALE = "flux1-dev", "local-cpu", "smoke"
DAEMONS = ("munged", "slurmctld", "slurmd")
STUB_SHARDS = 3  # input shards per source in the stub run: local-cpu gives each its own array task

FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED"}
# Pending for one of these reasons, a job will never start on this cluster: fail at once, not at the deadline.
HOPELESS = {"PartitionConfig", "BadConstraints", "ReqNodeNotAvail", "PartitionNodeLimit", "PartitionTimeLimit",
            "InvalidAccount", "InvalidQOS", "JobHeldAdmin", "JobHeldUser", "launch_failed_requeued_held"}

# Job states as the stub log and Slurm report them -------------------------------------------------------------


def parse_fields(line: str) -> dict[str, str]:
    """`Key=Value Key=Value ...` (scontrol -o, the jobcomp log) as a dict; a value may contain spaces."""
    return dict(re.findall(r"(?:^|\s)([A-Za-z][\w:/]*)=(.*?)(?=\s+[A-Za-z][\w:/]*=|\s*$)", line.strip()))


def slurm_time(text: str) -> float:
    """A Slurm timestamp (local time, second resolution) as epoch seconds."""
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as error:
        return f"(unreadable: {error})"
    return "\n".join(text[-lines:])


# The cluster --------------------------------------------------------------------------------------------------


@dataclass
class SlurmCluster:
    """The running cluster: its state directory, how to call its commands, and what it logged."""

    state: Path
    up_env: dict[str, str] = field(default_factory=dict, repr=False)  # the environment slurm-up.sh ran with

    @property
    def conf(self) -> Path:
        return self.state / "slurm.conf"

    @property
    def jobcomp_log(self) -> Path:
        return self.state / "log" / "jobcomp.log"

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra}

    def run(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(list(args), env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{shlex.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    def node(self) -> dict[str, str]:
        return parse_fields(self.run("scontrol", "-o", "show", "node").stdout.splitlines()[0])

    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """scontrol's records of a job: one per array task once the array has split, one before."""
        done = self.run("scontrol", "-o", "show", "job", job_id, check=False)
        if done.returncode != 0:
            raise AssertionError(f"scontrol show job {job_id}: {done.stderr.strip()} (purged? MinJobAge is 600 s)")
        return [parse_fields(line) for line in done.stdout.splitlines() if line.strip()]

    def jobcomp(self) -> list[dict[str, str]]:
        if not self.jobcomp_log.exists():
            return []
        return [parse_fields(line) for line in self.jobcomp_log.read_text().splitlines() if line.strip()]

    def recorded_pids(self) -> dict[str, str]:
        pids = {}
        for name in DAEMONS:
            try:
                pids[name] = (self.state / "pids" / f"{name}.pid").read_text().strip()
            except OSError:
                pass
        return pids

    def is_running(self, name: str, pid: str) -> bool:
        """PID is still daemon NAME from this state directory (slurm-down.sh's own check; a zombie is not)."""
        check = [str(SCRIPTS / "slurm-down.sh"), "--check", str(self.state), name, pid]
        return subprocess.run(["bash", *check], capture_output=True, timeout=10).returncode == 0

    def log_tails(self) -> str:
        files = sorted((self.state / "log").glob("*")) + [self.state / "munge" / "munged.log"]
        return "\n".join(f"----- {path}\n{tail(path)}" for path in files if path.exists() and path.stat().st_size)


def free_port_pair() -> int:
    """A port P with P and P+1 free on every address: slurmctld's and slurmd's."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("0.0.0.0", 0))
            port = probe.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("0.0.0.0", port))
                b.bind(("0.0.0.0", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


class SlurmStartError(RuntimeError):
    """The cluster did not start (the message has the daemons' logs)."""


class SessionCluster:
    """The session's one cluster, started by whoever asks first: the `slurm` fixture, or a test module's
    background work (tests/slurm/test_slurm_ranks.py prepares its requeue run when the session starts), from any
    thread; stopped once, by whoever stops it first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cluster: SlurmCluster | None = None
        self._error: SlurmStartError | None = None
        self._started = False

    def get(self) -> SlurmCluster:
        with self._lock:
            if self._error is None and self._cluster is None:
                try:
                    self._cluster = self._start()
                except SlurmStartError as error:
                    self._error = error
            if self._error is not None:
                raise self._error
            return self._cluster

    def _start(self) -> SlurmCluster:
        if os.geteuid() != 0:
            raise SlurmStartError("tests/slurm start a Slurm cluster and need root (as on the project's machines "
                                  "and CI)")
        # Not under pytest's tmp (mode 0700): munged runs as the munge user and must reach its directory.
        state = Path(tempfile.mkdtemp(prefix="genspec-slurm-", dir="/tmp"))
        state.chmod(0o755)
        env = {**os.environ, "GENSPEC_SLURMCTLD_PORT": str(free_port_pair()), "GENSPEC_SLURM_TIMEOUT": "60",
               # Many small jobs share the two cores, so a 64-task array of stubs takes seconds, not minutes.
               "GENSPEC_SLURM_OVERSUBSCRIBE": "8"}
        cluster = SlurmCluster(state, env)
        self._cluster = cluster  # from here on, stop() takes down whatever slurm-up.sh started
        try:
            up = subprocess.run(["bash", str(SCRIPTS / "slurm-up.sh"), str(state)], env=env, capture_output=True,
                                text=True, timeout=300)
        except subprocess.TimeoutExpired as error:
            raise SlurmStartError(f"slurm-up.sh did not finish in 300 s:\n{error.stdout}{error.stderr}\n"
                                  f"{cluster.log_tails()}") from None
        if up.returncode != 0:
            raise SlurmStartError(f"slurm-up.sh exited {up.returncode}:\n{up.stdout}{up.stderr}\n"
                                  f"{cluster.log_tails()}")
        self._started = True
        return cluster

    def stop(self) -> list[str]:
        """Stop the cluster if one was started; the problems found (daemons or PID files left behind)."""
        with self._lock:
            cluster, self._cluster = self._cluster, None
            if cluster is None:
                return []
            pids = cluster.recorded_pids()
            down = subprocess.run(["bash", str(SCRIPTS / "slurm-down.sh"), str(cluster.state)], capture_output=True,
                                  text=True, timeout=120)
            left = {name: pid for name, pid in pids.items() if cluster.is_running(name, pid)}
            problems = []
            if down.returncode != 0:
                problems.append(f"slurm-down.sh exited {down.returncode}:\n{down.stdout}{down.stderr}")
            if left:
                problems.append(f"daemons still running after slurm-down.sh: {left}")
            if list((cluster.state / "pids").glob("*.pid")):
                problems.append(f"PID files left: {sorted(p.name for p in (cluster.state / 'pids').glob('*.pid'))}")
            if problems:
                problems.append(f"(state kept in {cluster.state})")
            else:
                shutil.rmtree(cluster.state, ignore_errors=True)
            if not self._started:  # the start failed and that is the error to show; this one goes to stderr
                print("\n".join(problems), file=sys.stderr)
                return []
            return problems


SESSION_CLUSTER = SessionCluster()


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    try:
        try:
            cluster = SESSION_CLUSTER.get()
        except SlurmStartError as error:
            pytest.fail(str(error), pytrace=False)
        yield cluster
    finally:
        problems = SESSION_CLUSTER.stop()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


# Bundles ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def stub_bundle(tmp_path_factory) -> Path:
    """flux1-dev for local-cpu at smoke scale, rendered in-process (the stub runs need the Slurm scripts)."""
    import specs
    from compiler.emit import render, write_bundle
    from compiler.schema.cluster import PRESETS

    out = tmp_path_factory.mktemp("bundle") / SPEC
    write_bundle(render(specs.load(SPEC), PRESETS[CLUSTER], SCALE), out, force=True)
    return out


def compile_real_bundle(out: Path) -> Path:
    """The bundle exactly as `genspec compile` writes it, every check included."""
    done = subprocess.run([str(VENV_BIN / "genspec"), "compile", SPEC, "--cluster", CLUSTER, "--scale", SCALE,
                           "-o", str(out), "--force"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, f"genspec compile {SPEC} --cluster {CLUSTER} --scale {SCALE} failed:\n" \
                                 f"{done.stdout}{done.stderr}"
    return out


@dataclass
class Job:
    name: str
    script: str
    parents: list[str]
    array: list[int] | None  # task IDs of an array job


def bundle_jobs(bundle: Path, raw: Path) -> list[Job]:
    """The DAG as submit_slurm.sh submits it: `submit NAME SCRIPT "PARENTS" [OPTIONS] -- [ARGS]` lines, in
    order. A curation job's options are "${sized[@]}", set by the `size_job PIPELINE array|single SECONDS` line
    before it: an array has one task per `shards_per_task` of the pipeline's input shards under RAW (its
    `count_shards PIPELINE SOURCE...` line), at most `max_array_tasks`; a single job is no array."""
    text = (bundle / "submit_slurm.sh").read_text()
    settings = {name: int(value) for name, value in re.findall(r"^(shards_per_task|max_array_tasks)=(\d+)$", text, re.M)}
    assert set(settings) == {"shards_per_task", "max_array_tasks"}, f"no array settings in {bundle / 'submit_slurm.sh'}"
    shards: dict[str, int] = {}
    jobs, sized = [], None
    for line in text.splitlines():
        if line.startswith("count_shards "):
            pipeline, *sources = shlex.split(line)[1:]
            shards[pipeline] = sum(len(list((raw / source).glob("*.tar"))) for source in sources)
        elif line.startswith("size_job "):
            pipeline, kind, _seconds = shlex.split(line)[1:]
            tasks = min(-(-shards[pipeline] // settings["shards_per_task"]), settings["max_array_tasks"])
            sized = list(range(tasks)) if kind == "array" else None
        elif line.startswith("submit "):
            name, script, parents, *rest = shlex.split(line)[1:]
            options = rest[: rest.index("--")] if "--" in rest else rest
            array = sized if "${sized[@]}" in options else array_tasks(bundle / script)
            jobs.append(Job(name, script, parents.split(), array))
            sized = None
    assert jobs, f"no `submit` lines in {bundle / 'submit_slurm.sh'}"
    return jobs


def declared_inputs(bundle: Path, jobs: list[Job]) -> dict[str, set[str]]:
    """Each job's inputs as the bundle's own files state them, independently of submit_slurm.sh: a stage needs
    the pipelines writing its data shards (curated/DATASET, pipeline.json "output") and the stages writing its
    init_from and teacher checkpoints (stage.yaml output_dir)."""
    from ruamel.yaml import YAML

    producers: dict[str, str] = {}
    stages: dict[str, dict] = {}
    for job in jobs:
        folder = bundle / Path(job.script).parent
        if (folder / "pipeline.json").exists():
            output = json.loads((folder / "pipeline.json").read_text())["pipeline"]["output"]
            producers[f"curated/{output}/shards"] = job.name  # the last job of a pipeline (its finalize) writes it
        if (folder / "stage.yaml").exists():
            stages[job.name] = YAML(typ="safe").load((folder / "stage.yaml").read_text())
            producers[stages[job.name]["output_dir"]] = job.name
    inputs = {job.name: set() for job in jobs}
    for name, stage in stages.items():
        needs = [d["shards"] for d in stage.get("data") or []] + [stage.get("init_from"), stage.get("teacher")]
        for need in filter(None, needs):
            assert need in producers, f"{name} needs {need}, which no job of the bundle writes"
            inputs[name].add(producers[need])
    return inputs


def array_tasks(script: Path) -> list[int] | None:
    match = re.search(r"^#SBATCH\s+--array[= ](\S+)", script.read_text(), re.M)
    return parse_array(match.group(1)) if match else None


def parse_array(spec: str) -> list[int]:
    """Task IDs of a Slurm --array value such as 0-63, 0,2,4 or 0-7%2."""
    tasks = []
    for part in spec.split("%")[0].split(","):
        first, _, last = part.partition("-")
        tasks += range(int(first), int(last or first) + 1)
    return tasks


def bundle_sources(bundle: Path) -> list[str]:
    """Source sub-folders the curation scripts read under --raw (`--input "$raw/"NAME`)."""
    names = set()
    for script in bundle.glob("curation/*/sbatch_array.sh"):
        for quoted in re.findall(r'--input "\$raw/"(\S+)', script.read_text()):
            names.add(shlex.split(quoted)[0])
    return sorted(names)


def fit_to_node(bundle: Path, cpus: int) -> list[str]:
    """Shrink #SBATCH requests this node can never satisfy (GPUs, more CPUs or nodes than it has), so the stub
    run can test ordering and chaining; every change is returned. test_requests_fit_the_cluster checks the
    unmodified requests, and the real-runtime run uses none of this."""
    changes = []
    for script in sorted(bundle.glob("*/*/sbatch*.sh")):
        lines = script.read_text().splitlines(keepends=True)
        kept = []
        for line in lines:
            new = line
            if re.match(r"#SBATCH\s+--(gpus|gpus-per-node|gres)[= ]", line):
                new = ""
            elif match := re.match(r"#SBATCH\s+--cpus-per-task[= ](\d+)\s*$", line):
                new = f"#SBATCH --cpus-per-task={min(int(match.group(1)), cpus)}\n"
            elif match := re.match(r"#SBATCH\s+--nodes[= ](\d+)\s*$", line):
                new = "#SBATCH --nodes=1\n"
            if new != line:
                changes.append(f"{script.relative_to(bundle)}: {line.strip()!r} -> {new.strip() or '(removed)'!r}")
            kept.append(new)
        script.write_text("".join(kept))
    return changes


def write_raw_shards(raw: Path, sources: list[str], shards: int = 2, samples: int = 4) -> None:
    """A few webdataset shards of small images with captions per source, for the real curation runtime."""
    from PIL import Image, ImageDraw

    for source in sources:
        (raw / source).mkdir(parents=True, exist_ok=True)
        for shard in range(shards):
            with tarfile.open(raw / source / f"{source}-{shard:05d}.tar", "w") as tar:
                for sample in range(samples):
                    seed = shard * samples + sample
                    image = Image.new("RGB", (256, 256), (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256))
                    draw = ImageDraw.Draw(image)
                    for k in range(6):
                        x, y = (seed * 31 + k * 47) % 200, (seed * 17 + k * 61) % 200
                        draw.rectangle((x, y, x + 40, y + 30), fill=((k * 80) % 256, (seed * 13) % 256, 255 - k * 40))
                    buffer = io.BytesIO()
                    image.save(buffer, "JPEG", quality=90)
                    key = f"{source}-{seed:06d}"
                    members = {f"{key}.jpg": buffer.getvalue(),
                               f"{key}.txt": f"a test picture of coloured rectangles number {seed}".encode(),
                               f"{key}.json": json.dumps({"key": key, "width": 256, "height": 256}).encode()}
                    for name, data in sorted(members.items()):
                        info = tarfile.TarInfo(name)
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))


# Stubs --------------------------------------------------------------------------------------------------------

STUB = '''#!{python} -I
"""genspec tests/slurm stub for `{tool}`: sleeps GENSPEC_STUB_SLEEP seconds, logs one JSON line with its
argv, Slurm job and start and end times, and exits 1 when GENSPEC_STUB_FAIL (TOOL:TEXT) matches."""
import json, os, sys, time
started = time.time()
time.sleep(float(os.environ.get("GENSPEC_STUB_SLEEP", "0")))
argv = sys.argv[1:]
hostfile = os.environ.get("GENSPEC_HOSTFILE")
record = {{"t": started, "t_end": time.time(), "tool": "{tool}", "argv": argv, "cwd": os.getcwd(),
          "job_id": os.environ.get("SLURM_JOB_ID"), "array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
          "array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"), "master_addr": os.environ.get("MASTER_ADDR"),
          "master_port": os.environ.get("MASTER_PORT"), "rank": os.environ.get("RANK"),
          "world_size": os.environ.get("WORLD_SIZE"),
          "hostfile": open(hostfile).read() if hostfile and os.path.exists(hostfile) else None,
          "env": {{k: v for k, v in os.environ.items() if k.startswith("GENSPEC_")}}}}
fail = os.environ.get("GENSPEC_STUB_FAIL", "")
tool, _, needle = fail.partition(":")
failing = tool == "{tool}" and needle in " ".join(argv)
record["exit"] = 1 if failing else 0
fd = os.open(os.environ["GENSPEC_STUB_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, (json.dumps(record) + "\\n").encode())
os.close(fd)
sys.exit(record["exit"])
'''


@pytest.fixture(scope="session")
def stub_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("stubs")
    for tool in ("python", "deepspeed", "genspec"):
        path = directory / tool
        path.write_text(STUB.format(python=sys.executable, tool=tool))
        path.chmod(0o755)
    return directory


# Submitting and waiting ---------------------------------------------------------------------------------------


@dataclass
class DagRun:
    """One submission of a bundle's submit_slurm.sh and what became of it."""

    cluster: SlurmCluster
    bundle: Path
    run_root: Path
    raw: Path
    jobs: list[Job]
    ids: dict[str, str] = field(default_factory=dict)  # job name -> Slurm job ID
    records: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # job name -> scontrol records
    stub_log: Path | None = None
    adapted: list[str] = field(default_factory=list)

    def declared_inputs(self) -> dict[str, set[str]]:
        return declared_inputs(self.bundle, self.jobs)

    def by_name(self) -> dict[str, Job]:
        return {job.name: job for job in self.jobs}

    def stub_calls(self) -> list[dict]:
        if not self.stub_log or not self.stub_log.exists():
            return []
        return [json.loads(line) for line in self.stub_log.read_text().splitlines()]

    def states(self) -> dict[str, list[str]]:
        return {name: sorted({r.get("JobState", "?") for r in records}) for name, records in self.records.items()}

    def diagnostics(self) -> str:
        parts = [f"bundle {self.bundle}, job IDs {self.ids}"]
        for name, job_id in self.ids.items():
            for record in self.records.get(name) or []:
                parts.append(f"{name} {record.get('JobId')} task={record.get('ArrayTaskId', '-')} "
                             f"{record.get('JobState')} reason={record.get('Reason')} "
                             f"dependency={record.get('Dependency')} exit={record.get('ExitCode')}")
        # submit_slurm.sh sends job output to RUN_ROOT/logs (a job submitted by hand writes it where it ran).
        outputs = sorted([*self.bundle.glob("slurm-*.out"), *self.run_root.glob("logs/slurm-*.out")],
                         key=lambda p: p.stat().st_mtime)
        for path in [p for p in outputs if p.stat().st_size][-6:]:
            parts.append(f"----- job output {path.name}\n{tail(path, 20)}")
        if self.stub_log:
            parts.append(f"----- stub log ({len(self.stub_calls())} calls)\n{tail(self.stub_log, 10)}")
        parts.append(self.cluster.log_tails())
        return "\n".join(parts)

    def start(self, name: str) -> float:
        return min(slurm_time(r["StartTime"]) for r in self.records[name])

    def end(self, name: str) -> float:
        return max(slurm_time(r["EndTime"]) for r in self.records[name])

    def poll(self) -> None:
        self.records = {name: self.cluster.jobs(job_id) for name, job_id in self.ids.items()}

    def finished(self) -> bool:
        return all(r.get("JobState") in FINAL_STATES for records in self.records.values() for r in records)

    def wait(self, timeout: float) -> DagRun:
        """Poll scontrol until every job is in a final state; fail at once if a job can never start."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if self.finished():
                return self
            stuck = [(name, r.get("Reason")) for name, records in self.records.items() for r in records
                     if r.get("JobState") == "PENDING" and r.get("Reason") in HOPELESS]
            if stuck:
                pytest.fail(f"jobs that can never start: {stuck}\n{self.diagnostics()}", pytrace=False)
            if time.monotonic() > deadline:
                never = [name for name, records in self.records.items() for r in records
                         if r.get("JobState") == "PENDING" and r.get("Reason") == "DependencyNeverSatisfied"]
                hint = (f"\n{never} stay PENDING (DependencyNeverSatisfied): kill_invalid_depend is not in effect "
                        "(slurm.conf needs DependencyParameters=kill_invalid_depend on its own line)") if never else ""
                pytest.fail(f"not finished after {timeout:.0f} s: {self.states()}{hint}\n{self.diagnostics()}",
                            pytrace=False)
            time.sleep(0.5)

    def jobcomp_records(self, timeout: float = 15) -> dict[str, list[dict[str, str]]]:
        """The jobcomp log's lines for these jobs, once it has one per scontrol record (bounded wait)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.cluster.jobcomp()
            found = {}
            for name, job_id in self.ids.items():
                found[name] = [r for r in lines if (r.get("JobId") == job_id and not r.get("ArrayJobId"))
                               or r.get("ArrayJobId") == job_id]
            if all(len(found[n]) >= len(self.records[n]) for n in self.ids) or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


@pytest.fixture
def run_dag(slurm: SlurmCluster, stub_bundle: Path, stub_dir: Path, tmp_path: Path) -> Callable[..., DagRun]:
    """submit(use_real_runtime=False, fail=None, timeout=90): copy and submit the bundle, wait for its jobs.

    fail="TOOL:TEXT" makes that stub exit 1 when its argv contains TEXT (stubs only)."""

    def submit(use_real_runtime: bool = False, fail: str | None = None, timeout: float = 90) -> DagRun:
        bundle = tmp_path / "bundle"
        raw, run_root = tmp_path / "raw", tmp_path / "run"
        env = slurm.env()
        if use_real_runtime:
            assert fail is None, "failures are injected through the stubs"
            compile_real_bundle(bundle)
            write_raw_shards(raw, bundle_sources(bundle))
            env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
            stub_log, adapted = None, []
        else:
            shutil.copytree(stub_bundle, bundle)
            for source in bundle_sources(bundle):  # the stubs read nothing: empty shards size the arrays
                (raw / source).mkdir(parents=True)
                for shard in range(STUB_SHARDS):
                    (raw / source / f"{source}-{shard:05d}.tar").touch()
            adapted = fit_to_node(bundle, int(slurm.node()["CPUTot"]))
            stub_log = tmp_path / "stub-calls.jsonl"
            # Each call lasts a moment, so a job started too early overlaps its parent's and is caught.
            env.update(PATH=f"{stub_dir}{os.pathsep}{env['PATH']}", GENSPEC_STUB_LOG=str(stub_log),
                       GENSPEC_STUB_SLEEP="0.5")
            if fail:
                env["GENSPEC_STUB_FAIL"] = fail
        # Submit as a user's fresh shell would: no torch.distributed variables left behind by in-process
        # trainer tests (submit_slurm.sh exports the environment, and a stale MASTER_PORT is still bound).
        for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
            env.pop(name, None)
        dag = DagRun(slurm, bundle, run_root, raw, bundle_jobs(bundle, raw), stub_log=stub_log, adapted=adapted)
        done = subprocess.run(["bash", str(bundle / "submit_slurm.sh"), "--raw", str(raw), "--run-root",
                               str(run_root)], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        dag.ids = dict(re.findall(r"^submitted (\S+) as job (\d+)$", done.stdout, re.M))
        if done.returncode != 0:
            dag.poll()
            pytest.fail(f"submit_slurm.sh exited {done.returncode}:\n{done.stdout}{done.stderr}\n"
                        f"{dag.diagnostics()}", pytrace=False)
        assert list(dag.ids) == [job.name for job in dag.jobs], f"submitted {dag.ids}, expected {dag.jobs}"
        return dag.wait(timeout)

    return submit
