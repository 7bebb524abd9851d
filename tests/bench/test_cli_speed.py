"""Cold-start cost of the fast commands, against a bare interpreter start in the same run.

Run with `make bench`. The contract (DESIGN.md): `genspec list` and `validate` stay sub-second because
the compiler imports nothing heavy; `genspec list` and the start of `validate` (without a TARGET: the CLI up to loading a
spec, exit 2) within 10x the bare interpreter, because no spec and no schema is loaded until asked for.
"""

import subprocess
import sys

import pytest

COMMANDS = {
    "python_startup_baseline": [sys.executable, "-c", "pass"],
    "genspec_list": [sys.executable, "-m", "compiler.cli", "list", "--json"],
    "genspec_validate_start": [sys.executable, "-m", "compiler.cli", "validate"],
    "genspec_validate_one": [sys.executable, "-m", "compiler.cli", "validate", "flux1-dev"],
    "genspec_validate_all": [sys.executable, "-m", "compiler.cli", "validate", "--all"],
}
EXIT_CODES = {"genspec_validate_start": 2}  # no TARGET: a usage error, after everything but loading a spec


@pytest.mark.parametrize("name", list(COMMANDS))
def test_cold_start(benchmark, name):
    benchmark.group = "cli cold start"
    benchmark.extra_info["baseline"] = "python_startup_baseline"
    result = benchmark.pedantic(
        subprocess.run, args=(COMMANDS[name],), kwargs={"capture_output": True}, rounds=5, iterations=1
    )
    assert result.returncode == EXIT_CODES.get(name, 0), result.stderr
