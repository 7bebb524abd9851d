"""Target clusters: what the planner fits a spec onto, and what the launch files address.

Presets cover this machine (`local-cpu`) and common GPU clusters; users define their own in Python or
YAML with the same fields. GPU figures are vendor datasheet values (dense bf16, no sparsity).

Reliability and storage figures set the checkpoint interval (compiler/plan/cadence.py). Where a cluster
file does not state them, they come from the largest public report of a GPU training run, "The Llama 3 Herd
of Models" (Meta, 2024, arXiv:2407.21783): section 3.3.4 reports 419 unexpected interruptions in a 54-day
snapshot on 16,384 H100s, one per 16,384 x 54 x 24 / 419 = 50,677 GPU-hours; section 3.3.1 gives its
checkpoint storage (Tectonic) a sustained 2 TB/s for those 16,384 GPUs, 0.122 GB/s per GPU.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from compiler.schema.provenance import Node

# Llama 3 (arXiv:2407.21783) section 3.3.4: 419 unexpected interruptions in 54 days on 16,384 GPUs.
LLAMA3_DEVICE_HOURS_PER_INTERRUPTION = 16_384 * 54 * 24 / 419
# Llama 3 section 3.3.1: Tectonic sustains 2 TB/s of checkpoint traffic for 16,384 GPUs.
LLAMA3_WRITE_GBPS_PER_GPU = 2000 / 16_384


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
    storage_write_gbps: float | None = Field(
        None, gt=0,
        description="aggregate write bandwidth of the checkpoint storage, GB/s (10^9 bytes/s); unset: "
        "0.122 GB/s per GPU, Llama 3's 2 TB/s sustained over 16,384 GPUs",
    )
    device_hours_per_interruption: float = Field(
        LLAMA3_DEVICE_HOURS_PER_INTERRUPTION, gt=0,
        description="mean device-hours between job interruptions (GPU-hours; node-hours on CPUs); default: "
        "Llama 3's 419 interruptions in 54 days on 16,384 GPUs, 50,677 GPU-hours",
    )

    @property
    def world_size(self) -> int:
        """Training processes: one per GPU, or one per CPU node."""
        return self.nodes * max(self.gpus_per_node, 1)

    @property
    def device_memory_gib(self) -> float:
        """Memory one training process may plan with."""
        return self.gpu.memory_gib if self.gpu else self.memory_gib_per_node

    @property
    def checkpoint_write_gbps(self) -> float:
        """Aggregate checkpoint write bandwidth, GB/s: the cluster's own figure or Llama 3's per GPU."""
        if self.storage_write_gbps is not None:
            return self.storage_write_gbps
        return LLAMA3_WRITE_GBPS_PER_GPU * self.world_size

    @property
    def job_mtbf_hours(self) -> float:
        """Mean hours between interruptions of a job on every device: a failure of any one stops it."""
        devices = self.world_size if self.gpu else self.nodes
        return self.device_hours_per_interruption / devices

    @property
    def backend(self) -> str:
        return "nccl" if self.gpus_per_node else "gloo"


H100 = Accelerator(name="H100-SXM-80GB", memory_gib=80, peak_bf16_tflops=989)
H200 = Accelerator(name="H200-SXM-141GB", memory_gib=141, peak_bf16_tflops=989)
A100 = Accelerator(name="A100-SXM-80GB", memory_gib=80, peak_bf16_tflops=312)


def _gpu_cluster(name: str, nodes: int, gpu: Accelerator, interconnect: str) -> Cluster:
    return Cluster(name=name, nodes=nodes, gpus_per_node=8, gpu=gpu, cpus_per_node=96,
                   memory_gib_per_node=1800, interconnect=interconnect, scheduler="slurm", partition="gpu",
                   storage_write_gbps=round(LLAMA3_WRITE_GBPS_PER_GPU * nodes * 8, 2))


PRESETS: dict[str, Cluster] = {
    "local-cpu": Cluster(
        name="local-cpu", nodes=1, gpus_per_node=0, cpus_per_node=2, memory_gib_per_node=24,
        cpu_peak_tflops=0.1, interconnect="none", scheduler="local", memory_headroom=0.7,
        storage_write_gbps=0.5,  # one local SSD, sequential writes; a conservative figure for a laptop or VM
    ),
    "h100-8": _gpu_cluster("h100-8", 1, H100, "NVLink 900 GB/s"),
    "h100-64": _gpu_cluster("h100-64", 8, H100, "NVLink 900 GB/s + InfiniBand 8x400 Gb/s"),
    "h100-512": _gpu_cluster("h100-512", 64, H100, "NVLink 900 GB/s + InfiniBand 8x400 Gb/s"),
    "h200-64": _gpu_cluster("h200-64", 8, H200, "NVLink 900 GB/s + InfiniBand 8x400 Gb/s"),
    "a100-64": _gpu_cluster("a100-64", 8, A100, "NVLink 600 GB/s + InfiniBand 8x200 Gb/s"),
}
