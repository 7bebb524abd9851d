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

import re
from typing import Literal

from pydantic import Field, field_validator

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
    cpu_ranks_per_node: int = Field(1, gt=0, description="training processes per node of a CPU-only cluster")
    # Site settings: what every emitted script asks Slurm for and exports (templates/*.j2).
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit_minutes: int = Field(
        14 * 24 * 60, gt=0,
        description="the partition's wall-clock limit: a longer stage runs as a chain of requeued jobs",
    )
    signal_grace_seconds: int = Field(
        300, ge=10,
        description="USR1 this long before the limit (Slurm may send it up to a minute sooner): "
                    "the trainer checkpoints and the job requeues itself",
    )
    memory_request: str | None = Field(
        None, description="sbatch --mem per node, e.g. '0' (all of it) or '1800G'; unset: no --mem")
    exclusive: bool = Field(False, description="sbatch --exclusive: whole nodes, shared with no other job")
    modules: list[str] = Field(default_factory=list, description="environment modules each job loads first")
    container: str | None = Field(None, description="container image the ranks run in")
    container_runtime: Literal["pyxis", "apptainer"] = Field(
        "pyxis", description="pyxis: srun --container-image; apptainer: srun apptainer exec IMAGE")
    container_mounts: list[str] = Field(
        default_factory=list, description="SRC:DST bind mounts into the container (run root, models, data)")
    run_root: str | None = Field(
        None, description="shared storage for checkpoints, curated data and logs; unset: RUN_ROOT given at run time")
    model_dir: str | None = Field(None, description="pretrained weights (org/name or HF hub cache layout)")
    cache_dir: str | None = Field(None, description="HF_HOME, torch inductor and extension caches")
    environment: dict[str, str] = Field(default_factory=dict, description="extra environment for every job")
    # Curation arrays are sized when submit_slurm.sh runs, from the input shards it finds (compiler/plan/curation_time.py).
    curation_shards_per_task: int = Field(
        4, gt=0, description="input shards one curation array task reads; the array has ceil(shards / this) "
        "tasks")
    curation_samples_per_shard: int = Field(
        10_000, gt=0, description="samples in one raw input shard, for the curation jobs' --time estimate; "
        "default: img2dataset's number_sample_per_shard")
    max_array_tasks: int = Field(
        1000, gt=0, description="most tasks one Slurm array may have (the site's MaxArraySize - 1; Slurm's "
        "default MaxArraySize is 1001); more shards go to each task beyond it")
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

    @field_validator("memory_request")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9]+[KMGT]?", value):
            raise ValueError(f"memory_request {value!r} is not a Slurm --mem size; write e.g. '0', '512G' or '1800000M'")
        return value

    @field_validator("environment")
    @classmethod
    def _environment_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)]
        if bad:
            raise ValueError(f"environment names {bad} are not shell variable names; use letters, digits and _")
        return value

    @property
    def ranks_per_node(self) -> int:
        """Training processes (srun tasks) per node: one per GPU, or cpu_ranks_per_node on CPUs."""
        return self.gpus_per_node or self.cpu_ranks_per_node

    @property
    def world_size(self) -> int:
        """Training processes: one per GPU, or cpu_ranks_per_node per CPU node."""
        return self.nodes * self.ranks_per_node

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


# NCCL on InfiniBand clusters: fail a hung collective instead of waiting forever, and let NCCL pick the HCAs
# (NCCL_IB_HCA / NCCL_SOCKET_IFNAME are site-specific: a cluster file names its own).
GPU_ENVIRONMENT = {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "NCCL_DEBUG": "WARN",
                   "NCCL_SOCKET_IFNAME": "^lo,docker"}


def _gpu_cluster(name: str, nodes: int, gpu: Accelerator, interconnect: str) -> Cluster:
    # A typical GPU partition: 2-day limit, whole nodes, all their memory; checkpoints on shared storage.
    return Cluster(name=name, nodes=nodes, gpus_per_node=8, gpu=gpu, cpus_per_node=96,
                   memory_gib_per_node=1800, interconnect=interconnect, scheduler="slurm", partition="gpu",
                   time_limit_minutes=2 * 24 * 60, memory_request="0", exclusive=True,
                   run_root="/shared/genspec/run", model_dir="/shared/models", cache_dir="/shared/genspec/cache",
                   environment=dict(GPU_ENVIRONMENT),
                   storage_write_gbps=round(LLAMA3_WRITE_GBPS_PER_GPU * nodes * 8, 2))


PRESETS: dict[str, Cluster] = {
    "local-cpu": Cluster(
        name="local-cpu", nodes=1, gpus_per_node=0, cpus_per_node=2, memory_gib_per_node=24,
        cpu_peak_tflops=0.1, interconnect="none", scheduler="local", memory_headroom=0.7,
        storage_write_gbps=0.5,  # one local SSD, sequential writes; a conservative figure for a laptop or VM
        curation_shards_per_task=1,  # a handful of shards: one task each, so even two exercise an array
    ),
    "h100-8": _gpu_cluster("h100-8", 1, H100, "NVLink 900 GB/s"),
    "h100-64": _gpu_cluster("h100-64", 8, H100, "NVLink 900 GB/s + InfiniBand 8x400 Gb/s"),
    "h100-512": _gpu_cluster("h100-512", 64, H100, "NVLink 900 GB/s + InfiniBand 8x400 Gb/s"),
    "h200-64": _gpu_cluster("h200-64", 8, H200, "NVLink 900 GB/s + InfiniBand 8x400 Gb/s"),
    "a100-64": _gpu_cluster("a100-64", 8, A100, "NVLink 600 GB/s + InfiniBand 8x200 Gb/s"),
}
