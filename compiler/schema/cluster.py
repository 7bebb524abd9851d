"""Target clusters: what the planner fits a spec onto, and what the launch files address.

Presets cover this machine (`local-cpu`) and common GPU clusters; users define their own in Python or
YAML with the same fields. GPU figures are vendor datasheet values (dense bf16, no sparsity).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from compiler.schema.provenance import Node


class Accelerator(Node):
    """One GPU model: memory and peak dense bf16 throughput."""

    name: str
    memory_gib: float = Field(gt=0)
    peak_bf16_tflops: float = Field(gt=0, description="dense, without sparsity")


class Cluster(Node):
    """Nodes, accelerators per node, interconnect, and the scheduler that launches jobs."""

    name: str
    nodes: int = Field(gt=0)
    gpus_per_node: int = Field(ge=0, description="0: a CPU-only machine (gloo, DS_ACCELERATOR=cpu)")
    gpu: Accelerator | None = None
    cpus_per_node: int = Field(gt=0)
    memory_gib_per_node: float = Field(gt=0)
    cpu_peak_tflops: float = Field(0.1, gt=0, description="fp32 throughput of one node's CPUs, for CPU plans")
    interconnect: str = Field("", description="e.g. 'NVLink 900 GB/s + InfiniBand 400 Gb/s'")
    scheduler: Literal["slurm", "hostfile", "local"] = "slurm"
    partition: str | None = None
    account: str | None = None
    container: str | None = Field(None, description="container image the jobs run in")
    environment: dict[str, str] = Field(default_factory=dict, description="extra environment for every job")
    memory_headroom: float = Field(0.85, gt=0, le=1, description="fraction of device memory a plan may use")

    @property
    def world_size(self) -> int:
        """Training processes: one per GPU, or one per CPU node."""
        return self.nodes * max(self.gpus_per_node, 1)

    @property
    def device_memory_gib(self) -> float:
        """Memory one training process may plan with."""
        return self.gpu.memory_gib if self.gpu else self.memory_gib_per_node

    @property
    def backend(self) -> str:
        return "nccl" if self.gpus_per_node else "gloo"


H100 = Accelerator(name="H100-SXM-80GB", memory_gib=80, peak_bf16_tflops=989)
H200 = Accelerator(name="H200-SXM-141GB", memory_gib=141, peak_bf16_tflops=989)
A100 = Accelerator(name="A100-SXM-80GB", memory_gib=80, peak_bf16_tflops=312)


def _gpu_cluster(name: str, nodes: int, gpu: Accelerator, interconnect: str) -> Cluster:
    return Cluster(name=name, nodes=nodes, gpus_per_node=8, gpu=gpu, cpus_per_node=96,
                   memory_gib_per_node=1800, interconnect=interconnect, scheduler="slurm", partition="gpu")


PRESETS: dict[str, Cluster] = {
    "local-cpu": Cluster(
        name="local-cpu", nodes=1, gpus_per_node=0, cpus_per_node=2, memory_gib_per_node=24,
        cpu_peak_tflops=0.1, interconnect="none", scheduler="local", memory_headroom=0.7,
    ),
    "h100-8": _gpu_cluster("h100-8", 1, H100, "NVLink 900 GB/s"),
    "h100-64": _gpu_cluster("h100-64", 8, H100, "NVLink 900 GB/s + InfiniBand 8x400 Gb/s"),
    "h100-512": _gpu_cluster("h100-512", 64, H100, "NVLink 900 GB/s + InfiniBand 8x400 Gb/s"),
    "h200-64": _gpu_cluster("h200-64", 8, H200, "NVLink 900 GB/s + InfiniBand 8x400 Gb/s"),
    "a100-64": _gpu_cluster("a100-64", 8, A100, "NVLink 600 GB/s + InfiniBand 8x200 Gb/s"),
}
