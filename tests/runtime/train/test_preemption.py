"""The stop request the trainer checks after every step (runtime/train/preemption.py): a signal sets it, and so
does the stop file sbatch.sh writes when Slurm's USR1 arrives; without either, training goes on. The whole
path through Slurm (checkpoint, requeue, resume) is tests/slurm/test_slurm_ranks.py."""

from __future__ import annotations

import os
import signal

import pytest
import torch.distributed as dist

from runtime.train.preemption import StopRequest


@pytest.fixture
def process_group(tmp_path):
    """A one-rank gloo group for after_step's all-reduce (an in-process trainer test may have left one)."""
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    if created:
        dist.destroy_process_group()


def test_the_stop_file_stops_training_after_the_step(process_group, tmp_path, monkeypatch):
    stop_file = tmp_path / "stop-42"
    monkeypatch.setenv("GENSPEC_STOP_FILE", str(stop_file))
    request = StopRequest()
    assert request.after_step() is False and request.received is None
    stop_file.touch()
    assert request.after_step() is True
    assert request.received == f"the stop file {stop_file}"


def test_a_signal_sets_the_flag_instead_of_killing_the_process(process_group, monkeypatch):
    monkeypatch.delenv("GENSPEC_STOP_FILE", raising=False)
    previous = {number: signal.getsignal(number) for number in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        request = StopRequest().install()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert request.received == "SIGUSR1" and request.after_step() is True
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
