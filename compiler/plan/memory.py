"""Model-state memory per training process under each ZeRO stage and offload choice.

bf16 mixed precision, Adam-family optimizer, P parameters, N data-parallel ranks, L the largest layer.
The ZeRO-2 and ZeRO-3 terms are DeepSpeed's own estimators
(deepspeed/runtime/zero/stage_1_and_2.py estimate_zero2_model_states_mem_needs,
deepspeed/runtime/zero/stage3.py estimate_zero3_model_states_mem_needs), whose 18 bytes per parameter
are 16-bit gradients (2) + fp32 gradients (4) + fp32 master weights (4) + Adam moments (8):

  stage 0   2P + 18P                 nothing partitioned
  stage 1   4P + 16P/N               optimizer side partitioned (the 16-bit weights and gradients are not)
  stage 2   2P + 18P/N               (optimizer offloaded: 2P)
  stage 3   4L + 18P/N               (optimizer offloaded: 4L + 2P/N; parameters too: 4L)

fp32 training (CPU runs) keeps 4-byte weights and gradients and 8 bytes of moments: 16P unpartitioned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GIB = 1024**3
Offload = Literal["none", "optimizer", "optimizer_and_params"]


@dataclass(frozen=True)
class ZeroChoice:
    """A ZeRO stage with its offload setting."""

    stage: int
    offload: Offload = "none"

    def __str__(self) -> str:
        return f"ZeRO-{self.stage}" + ("" if self.offload == "none" else f" + {self.offload.replace('_', ' ')} offload")


def model_state_bytes(params: int, largest_layer: int, ranks: int, zero: ZeroChoice, precision: str = "bf16") -> float:
    """Bytes of weights, gradients and optimizer state on one training process."""
    p, n, big = params, ranks, largest_layer
    if precision == "fp32":
        return {0: 16 * p, 1: 8 * p + 8 * p / n, 2: 4 * p + 12 * p / n, 3: 4 * big + 16 * p / n}[zero.stage]
    if zero.stage == 0:
        return 20 * p
    if zero.stage == 1:
        return 4 * p + 16 * p / n
    if zero.stage == 2:
        return 2 * p if zero.offload == "optimizer" else 2 * p + int(18 * p / n)
    if zero.offload == "optimizer_and_params":
        return 4 * big
    if zero.offload == "optimizer":
        return 4 * big + int(2 * p / n)
    return 4 * big + int(18 * p / n)


def host_bytes(params: int, gpus_per_node: int, nodes: int, zero: ZeroChoice, buffer: float = 1.5) -> float:
    """CPU memory per node when optimizer state (and parameters) are offloaded (DeepSpeed's estimators)."""
    total_gpus = gpus_per_node * nodes
    if zero.offload == "none":
        return 0.0
    if zero.stage == 2:
        return params * max(4 * total_gpus, 16) * buffer
    factor = 18 if zero.offload == "optimizer_and_params" else 16
    return params * factor / nodes * buffer


# DeepSpeed's bucket sizes as compiler/emit/deepspeed.py emits them, in elements.
REDUCE_BUCKET = ALLGATHER_BUCKET = 500_000_000
PREFETCH_BUCKET = REDUCE_BUCKET // 10


def zero_buffer_bytes(zero: ZeroChoice, precision: str, on_gpu: bool) -> float:
    """Communication buffers DeepSpeed allocates beside the model states, in the gradients' width:
    ZeRO-1/2 a reduce bucket (two with overlap_comm, which the emitted config turns on on GPUs at ZeRO-2)
    and the all-gather bucket of updated parameters; ZeRO-3 a reduce bucket and the prefetch bucket."""
    width = 4 if precision == "fp32" else 2
    if zero.stage == 0:
        return 0.0
    if zero.stage == 3:
        return (REDUCE_BUCKET + PREFETCH_BUCKET) * width
    reduce = REDUCE_BUCKET * (2 if on_gpu and zero.stage == 2 else 1)
    return (reduce + ALLGATHER_BUCKET) * width
