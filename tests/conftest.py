"""Session-wide test settings: offline model hubs, a persistent compile cache."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Idle OpenMP threads spin by default; on 2 cores shared with DeepSpeed's processes that costs ~10x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".cache" / "inductor"))
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))

import pytest  # noqa: E402

# What runtime.train.launch.prepare_environment sets in this process when a test trains in-process. Left
# behind, every later subprocess (a demo's launch.sh, srun ranks) inherits one MASTER_PORT that this process's
# store may still hold: EADDRINUSE.
RENDEZVOUS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def rendezvous_variables_stay_in_their_test():
    """Each test starts and ends with the session's rendezvous variables (none, normally)."""
    saved = {name: os.environ.get(name) for name in RENDEZVOUS}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
