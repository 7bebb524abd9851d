"""scripts/gpu-check.sh --cpu: the GPU check's steps at reduced width on a CPU (what CI can run of it)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_on_a_cpu(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--cpu", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "gpu-check: passed" in result.stdout
    kernel = json.loads((tmp_path / "kernel.json").read_text())
    assert 0 <= kernel["max_abs_error"] <= 2**-7 * 8
    train = json.loads((tmp_path / "train.json").read_text())
    assert sorted(train) == ["flux1-dev", "wan2.1-t2v-1.3b"]
    for spec, entry in train.items():
        assert entry["planned_memory_gib"] > 0 and entry["mfu"] > 0, spec
        for run in entry["runs"]:
            assert run["losses"] and all(math.isfinite(loss) for loss in run["losses"]), (spec, run)
            assert run["step_seconds"] > 0 and run["peak_memory_gib"] > 0, (spec, run)
        assert f"{spec} {entry['stage']}: " in result.stdout
    assert [run["variant"] for run in train["flux1-dev"]["runs"]] == ["compiled", "eager"]
    assert train["flux1-dev"]["compiled_speedup"] > 0
