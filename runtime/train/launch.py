"""Process setup before DeepSpeed is imported: the CPU accelerator, single-process rendezvous variables,
and the per-step random generators that make a run reproducible and resumable."""

from __future__ import annotations

import os
import socket

import numpy as np
import torch


def prepare_environment() -> None:
    """DS_ACCELERATOR=cpu without CUDA; RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and a free MASTER_PORT
    when no launcher set them (deepspeed --no_local_rank and torchrun do)."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" in os.environ:
        return
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])


def derived_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy SeedSequence), e.g. (seed, step, rank, micro)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0]) >> 1


def step_generator(seed: int, step: int, rank: int, micro: int) -> torch.Generator:
    """The generator of one micro-batch: timesteps, noise, CFG dropout and augmentation levels all come from
    it, so the draws depend on (seed, step, rank, micro) only, never on what ran before."""
    return torch.Generator().manual_seed(derived_seed(seed, step, rank, micro))
