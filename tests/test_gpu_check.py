"""scripts/gpu-check.sh --cpu: the GPU check's steps at reduced width on a CPU (what CI can run of it).

The script (about 3 minutes, mostly one core) starts in the background when the session starts and this test,
moved to the end by tests/conftest.py, waits for it."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


TIMEOUT_S = 900
_check: dict = {}


def start_in_background(session: pytest.Session, tmp_path_factory: pytest.TempPathFactory):
    """Called by tests/conftest.py before the session's first test; returns what stops the script."""
    workdir = tmp_path_factory.mktemp("gpu-check")
    env = {**os.environ, "PYTHON": sys.executable}
    # Files, not pipes: nobody reads until the test runs, and a full pipe would stall the script.
    with open(workdir / "stdout.txt", "w") as stdout, open(workdir / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--cpu", str(workdir / "out")],
            env=env, cwd=ROOT, stdout=stdout, stderr=stderr, start_new_session=True,
        )
    _check.update(process=process, workdir=workdir)

    def stop():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    return stop


@pytest.mark.slow
def test_gpu_check_runs_on_a_cpu():
    process, workdir = _check["process"], _check["workdir"]
    try:
        process.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    stdout, stderr = ((workdir / name).read_text() for name in ("stdout.txt", "stderr.txt"))
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    out = workdir / "out"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "gpu-check: passed" in result.stdout
    kernel = json.loads((out / "kernel.json").read_text())
    assert 0 <= kernel["max_abs_error"] <= 2**-7 * 8
    train = json.loads((out / "train.json").read_text())
    assert sorted(train) == ["flux1-dev", "wan2.1-t2v-1.3b"]
    for spec, entry in train.items():
        assert entry["planned_memory_gib"] > 0 and entry["mfu"] > 0, spec
        for run in entry["runs"]:
            assert run["losses"] and all(math.isfinite(loss) for loss in run["losses"]), (spec, run)
            assert run["step_seconds"] > 0 and run["peak_memory_gib"] > 0, (spec, run)
        assert f"{spec} {entry['stage']}: " in result.stdout
    assert [run["variant"] for run in train["flux1-dev"]["runs"]] == ["compiled", "eager"]
    assert train["flux1-dev"]["compiled_speedup"] > 0
