"""Stopping a stage cleanly when the scheduler asks: checkpoint, then exit so the job can be requeued.

On Slurm, sbatch.sh asks for `--signal=B:USR1@GRACE`: the batch shell gets USR1 that long (and up to a minute
more) before the time limit and writes the stop file GENSPEC_STOP_FILE names, on the run root every node sees.
A file rather than a forwarded signal, because the USR1 may come while a rank is still starting, before any
handler could be installed, and would kill it. A preempting or cancelling scheduler sends SIGTERM (and
`python -m runtime.train` installs the handlers before it imports torch, so USR1 sent by hand is safe too):
either sets a flag here. After each step the ranks agree (an all-reduce of "a flag is set or the stop file
exists": ranks see both at slightly different moments, and every rank must stop after the same step), the
trainer saves a checkpoint with checkpoint.save and raises Preempted; `python -m runtime.train` turns that
into exit status 75, on which sbatch.sh runs `scontrol requeue`. The requeued job resumes from that
checkpoint like any restart. A rank always trains at least one step per job, so a job signalled during
start-up still moves the stage on.

GENSPEC_STEP_DELAY_S (seconds, tests only) lengthens every step, so a tiny smoke stage outlasts a one-minute
Slurm time limit without a bigger model.
"""

from __future__ import annotations

import os
import signal
import sys
import time

# sysexits.h EX_TEMPFAIL: "try again later", what a requeued job does.
PREEMPTED_EXIT = 75
SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class Preempted(Exception):
    """Training stopped after saving the checkpoint of `step`, because the scheduler asked."""

    def __init__(self, step: int, signal_name: str):
        super().__init__(f"stopped after step {step} on {signal_name}; checkpoint saved, resume continues from it")
        self.step = step


class StopRequest:
    """This rank's stop request (a signal, or the stop file) and the collective decision to stop."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.delay = float(os.environ.get("GENSPEC_STEP_DELAY_S", "0") or 0)
        self.stop_file = os.environ.get("GENSPEC_STOP_FILE") or None

    def install(self) -> StopRequest:
        for number in SIGNALS:
            signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, _frame) -> None:
        # Only a flag: the step in progress finishes and the checkpoint is written outside the handler.
        self.received = signal.Signals(number).name
        print(f"{self.received}: checkpointing after this step, then exiting for requeue", file=sys.stderr, flush=True)

    def after_step(self) -> bool:
        """True when any rank got a signal or sees the stop file (collective: every rank calls it after every step)."""
        import torch
        import torch.distributed as dist

        if self.delay:
            time.sleep(self.delay)
        if self.received is None and self.stop_file and os.path.exists(self.stop_file):
            self.received = f"the stop file {self.stop_file}"
        # NCCL reduces device tensors only; one float per step is noise next to a training step.
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([1.0 if self.received else 0.0], device=device)
        dist.all_reduce(flag)
        stop = flag.item() > 0
        if stop and self.received is None:
            self.received = "a stop request on another rank"
        return stop


# One per process: installed before torch is imported (`python -m runtime.train`), so a signal during start-up
# stops the stage after its first step instead of killing the rank; read by the step loop.
REQUEST = StopRequest()
