"""How often a stage writes a checkpoint and evaluates its validation loss.

Passes, per stage:
  1. checkpoint size  the DeepSpeed checkpoint of the trained model: 16-bit weights, the fp32 master copy
                      and the optimizer's moments, plus fp32 EMA weights
  2. write time       C = size / the cluster's aggregate storage write bandwidth
  3. interval         Young/Daly: the checkpoint period that minimises the expected time lost to writing
                      checkpoints and to redoing work after an interruption is sqrt(2 x C x MTBF), with MTBF
                      the job's mean time between interruptions (J. W. Young, "A first order approximation
                      to the optimum checkpoint interval", CACM 17(9), 1974; J. T. Daly, "A higher order
                      estimate of the optimum checkpoint interval for restart dumps", FGCS 22(3), 2006)
  4. steps            the interval over the planned step time, at least 1 step and at most the stage's steps
                      (the trainer also checkpoints at the last step, so a short stage still ends with one)
Validation runs every VALIDATION_MINUTES of planned training time, within the same bounds. A stage's own
`checkpoint_every` / `validation_every` replaces the computed value (capped at its steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from compiler.schema.cluster import Cluster
from compiler.schema.schedule import Adafactor, Stage

# A validation point every half hour of training: a loss curve someone watching the run can follow, at a
# cost (32 samples x 8 timesteps of forward passes, runtime/train/validation.py) of well under 1% of it.
VALIDATION_MINUTES = 30.0


@dataclass(frozen=True)
class Cadence:
    """Checkpoint and validation intervals of one stage, in steps and in minutes of planned training."""

    checkpoint_bytes: float
    checkpoint_write_seconds: float
    job_mtbf_hours: float
    checkpoint_every: int
    checkpoint_minutes: float
    checkpoint_source: str  # "Young/Daly" or "spec"
    validation_every: int
    validation_minutes: float
    validation_source: str  # "every 30 min" or "spec"


def checkpoint_bytes(params: int, stage: Stage, precision: str) -> float:
    """Bytes of one checkpoint: what DeepSpeed saves of the model and optimizer, plus the EMA weights.

    bf16: 16-bit weights (2P) + fp32 master weights (4P) + optimizer moments; fp32: the weights (4P) +
    moments. Adam and AdamW keep two fp32 moments (8P); Adafactor factors its second moment into a row and
    a column vector and keeps no first moment (torch.optim.Adafactor), negligible beside P.
    """
    moments = 0 if isinstance(stage.optimizer, Adafactor) else 8
    weights = 2 + 4 if precision == "bf16" else 4
    ema = 4 if stage.ema_decay else 0
    return float(params * (weights + moments + ema))


def _steps(seconds: float, step_seconds: float, steps: int) -> int:
    return max(1, min(steps, round(seconds / step_seconds)))


def cadence(params: int, stage: Stage, precision: str, step_seconds: float, cluster: Cluster) -> Cadence:
    """The stage's checkpoint interval at the Young/Daly optimum and its validation interval, in steps."""
    size = checkpoint_bytes(params, stage, precision)
    write = size / (cluster.checkpoint_write_gbps * 1e9)
    mtbf = cluster.job_mtbf_hours
    steps = stage.steps
    if stage.checkpoint_every is not None:
        checkpoint, checkpoint_source = min(stage.checkpoint_every, steps), "spec"
    else:
        optimum = math.sqrt(2 * write * mtbf * 3600)
        checkpoint, checkpoint_source = _steps(optimum, step_seconds, steps), "Young/Daly"
    if stage.validation_every is not None:
        validation, validation_source = min(stage.validation_every, steps), "spec"
    else:
        validation = _steps(VALIDATION_MINUTES * 60, step_seconds, steps)
        validation_source = f"every {VALIDATION_MINUTES:g} min"
    return Cadence(
        checkpoint_bytes=size, checkpoint_write_seconds=write, job_mtbf_hours=mtbf,
        checkpoint_every=checkpoint, checkpoint_minutes=checkpoint * step_seconds / 60,
        checkpoint_source=checkpoint_source,
        validation_every=validation, validation_minutes=validation * step_seconds / 60,
        validation_source=validation_source,
    )
