"""python -m runtime.train --stage train/<stage>/stage.yaml --ds-config train/<stage>/ds_config.json
[--run-root DIR] [--max-steps N] [--model-factory module:function] [--model-dir DIR]"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from runtime.train.preemption import PREEMPTED_EXIT, REQUEST, Preempted

# A stop signal during start-up (Slurm sends USR1 up to a minute before the time it was asked for, while
# torch and DeepSpeed still import) must set the flag, not kill the rank: the handlers go in before them.
if __name__ == "__main__":
    REQUEST.install()

import torch.distributed  # noqa: E402 (after the handlers, on purpose)

from runtime.train.protocol import DEFAULT_FACTORY  # noqa: E402
from runtime.train.trainer import RunOptions, train  # noqa: E402


def deepspeed_shm_buffer() -> Path | None:
    """The shared-memory segment DeepSpeed's CPU all-reduce op made for this rank, or None.

    On the CPU accelerator, when every rank is on one node (the launcher sets LOCAL_SIZE), deepspeed.comm
    creates /dev/shm/deepspeed_allreduce_buffer_<uid>_<MASTER_ADDR>_<MASTER_PORT>_<rank> (about 69 MB;
    deepspeed/ops/csrc/cpu/comm/shm.cpp shm_initialize) and never unlinks it. The name carries the port, and
    single-node launch.sh picks a free port per run, so the segments piled up in /dev/shm (RAM) run after run.
    """
    address, port, rank = (os.environ.get(name) for name in ("MASTER_ADDR", "MASTER_PORT", "RANK"))
    if address is None or port is None or rank is None or not Path("/dev/shm").is_dir():
        return None
    return Path("/dev/shm") / f"deepspeed_allreduce_buffer_{os.getuid()}_{address}_{port}_{rank}"


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the stage."""
    parser = argparse.ArgumentParser(prog="python -m runtime.train", description="Run one training stage of a bundle.")
    parser.add_argument("--stage", type=Path, required=True, help="train/<stage>/stage.yaml")
    parser.add_argument("--ds-config", type=Path, required=True, help="train/<stage>/ds_config.json")
    parser.add_argument("--run-root", type=Path, default=Path("."), help="directory the stage's paths are relative to")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this step (resume continues later)")
    parser.add_argument("--model-factory", default=DEFAULT_FACTORY, help="module:function building the denoiser")
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="released weights: text encoders and VAE (on-the-fly encoding), init_from's released checkpoints"
    )
    args = parser.parse_args(argv)
    try:
        train(RunOptions(args.stage, args.ds_config, args.run_root, args.max_steps, args.model_factory, args.model_dir))
    except Preempted as stopped:
        # sbatch.sh requeues the job on this status; the requeued job resumes from the checkpoint just saved.
        print(f"stage {args.stage}: {stopped}", file=sys.stderr)
        preempted = True
    else:
        preempted = False
    finally:
        # Join the process group's threads before the interpreter exits: left to static destructors, a gloo
        # worker thread still running ended a two-process test run with "terminate called without an active
        # exception" (exit code 250) after training had finished.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        # Every rank is past initialisation (the only time other ranks open this segment), so it can go.
        segment = deepspeed_shm_buffer()
        if segment is not None:
            segment.unlink(missing_ok=True)
    if preempted:
        # The checkpoint is on disk and the process group is gone: skip the interpreter's teardown, seconds of
        # static destructors on a busy node (18 s seen with two ranks on two loaded cores), which a job told
        # to stop before its time limit may not have; Slurm kills at the limit, and a TIMEOUT is not requeued.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(PREEMPTED_EXIT)


if __name__ == "__main__":
    main()
