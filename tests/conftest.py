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


# A test module with a `start_in_background(session, tmp_path_factory)` function (tests/runtime/test_demo.py: the
# 15 demos) has slow subprocess work started before the first test so that it overlaps the rest of the suite,
# which mostly keeps one of this machine's two cores busy; its tests run last and wait for that work.
BACKGROUND_HOOK = "start_in_background"
# Such a module may also have `the_rest_has_run()`, called once when the first test of a background module is
# about to run: work that needs the machine quieter than the rest of the suite leaves it (tests/slurm/
# test_slurm_ranks.py: Slurm jobs with a one-minute time limit) waits for it.
REST_DONE_HOOK = "the_rest_has_run"
_rest_done_called = False


def _background_module(item: pytest.Item):
    module = getattr(item, "module", None)
    return module if hasattr(module, BACKGROUND_HOOK) else None


def _background_modules(session: pytest.Session) -> list:
    """The collected modules with background work, in collection order."""
    return list(dict.fromkeys(filter(None, map(_background_module, session.items))))


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: _background_module(item) is not None)  # stable: the rest keeps its order


def pytest_runtest_setup(item):
    global _rest_done_called
    if _rest_done_called or _background_module(item) is None:
        return
    _rest_done_called = True
    for module in _background_modules(item.session):
        if hasattr(module, REST_DONE_HOOK):
            getattr(module, REST_DONE_HOOK)()


@pytest.fixture(scope="session", autouse=True)
def background_work(request, tmp_path_factory):
    """Start the background work of every collected module that has some, and stop what is left of it when
    the session ends."""
    stops = [getattr(module, BACKGROUND_HOOK)(request.session, tmp_path_factory)
             for module in _background_modules(request.session)]
    yield
    for stop in stops:
        stop()
