"""Data-parallel communication per training step, and how much of it the step cannot hide.

Volume per rank (ring collectives: an all-reduce moves 2 (N-1)/N of the buffer through each rank, a
reduce-scatter or an all-gather (N-1)/N), 16-bit gradients and parameters (fp32 on CPUs):
  ZeRO-0/1   gradient all-reduce, once per optimizer step (DeepSpeed reduces at the accumulation boundary)
  ZeRO-2     gradient reduce-scatter every micro-step (DeepSpeed reduces as the backward produces
             gradients) + the updated 16-bit parameters all-gathered once per step
  ZeRO-3     every micro-step: parameters all-gathered for the forward and again for the backward, gradients
             reduce-scattered
Bandwidth: the slowest link of the ring. Within one node the NVLink figure; across nodes each GPU's share of
its node's fabric ("InfiniBand 8x400 Gb/s" = 8 x 400 Gb/s = 400 GB/s per node, 50 GB/s per GPU of 8),
read from the cluster's `interconnect` text; unreadable, DEFAULT_GBPS_PER_GPU (stated in plan.md).
Overlap (the assumption): communication overlaps the backward pass only (about 2/3 of the compute, DeepSpeed's
overlap_comm), never the forward or the optimizer step; what exceeds the backward adds to the step.
"""

from __future__ import annotations

import re

from compiler.plan.memory import ZeroChoice
from compiler.schema.cluster import Cluster

# NOTE: 200 Gb/s per GPU, one HDR InfiniBand rail: a conservative figure when the cluster file states none.
DEFAULT_GBPS_PER_GPU = 25.0
BACKWARD_SHARE = 2 / 3  # backward = 2 x forward of forward + backward


def _figures(text: str, link: str) -> float | None:
    """GB/s of the `link` named in the interconnect text ('NVLink 900 GB/s', 'InfiniBand 8x400 Gb/s')."""
    match = re.search(rf"{link}\s+(?:(\d+)\s*x\s*)?([\d.]+)\s*(GB/s|Gb/s)", text, re.I)
    if not match:
        return None
    count, value, unit = int(match.group(1) or 1), float(match.group(2)), match.group(3)
    return count * value / (8 if unit == "Gb/s" else 1)


def bandwidth_gbps_per_rank(cluster: Cluster) -> float:
    """GB/s each rank's ring link carries: NVLink within a node, its share of the node fabric across nodes."""
    ranks_per_node = max(cluster.gpus_per_node, 1)
    if cluster.nodes == 1:
        nvlink = _figures(cluster.interconnect, "NVLink")
        return nvlink if nvlink is not None else DEFAULT_GBPS_PER_GPU
    fabric = _figures(cluster.interconnect, "InfiniBand") or _figures(cluster.interconnect, "RoCE")
    return fabric / ranks_per_node if fabric is not None else DEFAULT_GBPS_PER_GPU


def communication_bytes(params: int, ranks: int, zero: ZeroChoice, accumulation: int, precision: str) -> float:
    """Bytes one rank sends per optimizer step for data parallelism (see the module docstring)."""
    if ranks == 1:
        return 0.0
    width = 4 if precision == "fp32" else 2
    ring = (ranks - 1) / ranks * params * width
    if zero.stage <= 1:
        return 2 * ring
    if zero.stage == 2:
        return ring * accumulation + ring
    return 3 * ring * accumulation


def communication_seconds(params: int, cluster: Cluster, zero: ZeroChoice, accumulation: int, precision: str) -> float:
    """Seconds of data-parallel communication per optimizer step."""
    volume = communication_bytes(params, cluster.world_size, zero, accumulation, precision)
    return volume / (bandwidth_gbps_per_rank(cluster) * 1e9)


def step_seconds(compute: float, communication: float) -> float:
    """A step's time: compute, plus the communication the backward cannot hide."""
    return compute + max(0.0, communication - BACKWARD_SHARE * compute)
