"""The plan pass: each training stage laid out on a cluster so that memory per device fits.

Passes, per stage:
  1. workload     tokens and FLOPs per sample (cost.py), parameters from the architecture (params.py)
  2. layout       sequence-parallel degree sp (Ulysses, `sequence_parallel_degrees`): the smallest legal one
                  that brings a sample's training time under SAMPLE_SECONDS and fits memory; data-parallel
                  size = devices / sp, and the global batch must split evenly over it
  3. search       every ZeRO stage with and without activation checkpointing, each at the largest micro batch
                  that fits; the one with the shortest planned step wins (recompute costs a forward, ZeRO-3
                  all-gathers the parameters twice per micro-step, see comm.py); offload only when nothing
                  fits on the device; gradient accumulation makes up the global batch
  4. estimate     FLOPs per step, step time at a stated MFU, GPU-hours for the stage's steps
  5. cadence      checkpoint interval at the Young/Daly optimum, validation interval (cadence.py)
  6. buckets      a bucketed stage's buckets, each with its own micro-batch, checked against the data (buckets.py)
A stage that fits in no configuration is a PlanError with the numbers and what would make it fit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from compiler.plan.buckets import BucketPlan, plan_buckets
from compiler.plan.cadence import Cadence, cadence
from compiler.plan.comm import communication_seconds, step_seconds
from compiler.plan.cost import (
    PlanError,
    Workload,
    encoder_size,
    frozen_sizes,
    loss_passes,
    mean_forward_flops,
    sample_activation_bytes,
    training_flops,
    workload,
)
from compiler.plan.memory import GIB, ZeroChoice, host_bytes, model_state_bytes, zero_buffer_bytes
from compiler.schema.architecture import DiT, MMDiT
from compiler.schema.cluster import Cluster
from compiler.schema.spec import Spec

# NOTE: 40% model FLOPs utilisation is a typical sustained figure for large DiT training on H100s with
# bf16 and fused attention; CPUs reach a smaller share of their peak on these small matmuls.
GPU_MFU = 0.40
CPU_MFU = 0.25
_IN_DEVICE = [ZeroChoice(0), ZeroChoice(1), ZeroChoice(2), ZeroChoice(3)]
_OFFLOAD = [ZeroChoice(2, "optimizer"), ZeroChoice(3, "optimizer"), ZeroChoice(3, "optimizer_and_params")]
# A sample whose forward + backward takes longer than this on one device is split over a sequence-parallel
# group: image stages of the largest models take 1-3 s per sample, a 720p x 81-frame Wan 14B sample about 50 s,
# so its data-parallel step would run 20x the image stages' and checkpoints, preemption and the gradient
# all-reduce would wait on it. Ulysses divides that time by sp for two all-to-alls per attention.
SAMPLE_SECONDS = 10.0
# Ties in step time go to the earlier entry: lower ZeRO stage, no recompute. Offloading to the host costs PCIe
# traffic every step, which the step time does not model, so it is tried only when nothing else fits.
SEARCH = [(z, False) for z in _IN_DEVICE] + [(z, True) for z in _IN_DEVICE] + [
    (z, checkpointing) for z in _OFFLOAD for checkpointing in (False, True)
]


@dataclass(frozen=True)
class Memory:
    """GiB per training process."""

    model_states: float
    activations: float
    frozen: float
    extra_copies: float
    total: float
    capacity: float


@dataclass(frozen=True)
class StagePlan:
    """How one stage runs on the cluster, and what it costs."""

    stage: str
    model: str
    params: int
    params_documented: float | None
    image_tokens: int
    text_tokens: int
    latent_frames: int
    dp_size: int
    sp_size: int  # Ulysses sequence-parallel degree; dp_size x sp_size = devices
    sp_reason: str  # why sp_size: "-" (1 is enough), "step time" or "memory"
    global_batch: int
    micro_batch: int
    grad_accumulation: int
    zero_stage: int
    offload: str
    activation_checkpointing: bool
    precision: str
    compile: bool  # torch.compile the repeated blocks: on GPUs; on CPUs compile time outweighs smoke-run steps
    memory_gib: Memory
    flops_per_step: float
    mfu: float
    step_seconds: float
    steps: int
    device_hours: float
    cadence: Cadence
    # a resident (not precomputed) VAE whose size is unknown: counted 0 bytes, named in plan.md (an unsized
    # resident text encoder is refused)
    unsized_frozen: tuple[str, ...] = ()
    buckets: tuple[BucketPlan, ...] = ()  # a bucketed stage's buckets, each with its micro-batch (buckets.py)


@dataclass(frozen=True)
class Plan:
    """Every stage's plan on one cluster."""

    spec: str
    cluster: str
    scale: str
    stages: list[StagePlan] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _extra_copies(spec: Spec, stage, params: int, ranks: int, zero: ZeroChoice, precision: str) -> float:
    """EMA weights (fp32, partitioned under ZeRO-3) and a frozen teacher or DPO reference: a full copy per
    rank in the stage's precision, as runtime/train/device.py `frozen` holds it (DeepSpeed does not manage
    it, so ZeRO does not partition it)."""
    share = ranks if zero.stage == 3 else 1
    extra = 4 * params / share if stage.ema_decay else 0.0
    if loss_passes(stage).frozen_copy:
        extra += (4 if precision == "fp32" else 2) * params
    return extra


def _frozen_bytes(spec: Spec, work: Workload) -> float:
    """Text encoders and VAE stay resident unless the data pipeline precomputes their outputs."""
    return 0.0 if _precomputed(spec) else 2 * work.frozen_params


def _check_frozen_encoders(spec: Spec) -> None:
    """A resident frozen text encoder needs a size: an LLM encoder is GiBs, so counting it as 0 would plan
    layouts that do not fit."""
    if _precomputed(spec):
        return
    for index, encoder in enumerate(spec.architecture.text_encoders):
        if encoder.frozen and encoder_size(encoder) is None:
            raise PlanError(
                f"architecture.text_encoders[{index}].params ({encoder.name}, model {encoder.model}) is unset and "
                f"genspec knows no documented size for it, but the encoder stays resident on every GPU (the data "
                f"pipelines have no precompute_embeddings op), so its memory cannot be planned. Fix: set its "
                f"size, --set architecture.text_encoders[{encoder.name}].params=N (e.g. 7e9 for a 7B LLM; in a "
                f"spec, as an assumption with its reason), or precompute the embeddings in curation."
            )


def _precomputed(spec: Spec) -> bool:
    return any(op.kind == "precompute_embeddings" for p in spec.data.pipelines for op in p.ops)


def sequence_parallel_degrees(spec: Spec, work: Workload, world: int, batch: int) -> list[int]:
    """Legal Ulysses degrees, ascending: sp divides the devices (dp x sp = world), the attention heads and the
    image/video tokens (each rank holds an equal slice; text is replicated), and the global batch splits over
    dp = world / sp. Only transformer backbones whose runtime supports it (MMDiT, cross-attention DiT) get
    more than 1."""
    backbone = spec.architecture.backbone
    supported = isinstance(backbone, MMDiT) or (
        isinstance(backbone, DiT) and getattr(backbone, "text_conditioning", "cross_attention") != "in_context"
    )
    if not supported:
        return [1]
    return [
        sp for sp in range(1, world + 1)
        if world % sp == 0 and backbone.num_heads % sp == 0 and work.image_tokens % sp == 0
        and batch % (world // sp) == 0
    ]


def _sample_seconds(work: Workload, cluster: Cluster) -> float:
    """One sample's forward + backward on one device at the planned MFU (no recompute)."""
    if cluster.gpu:
        return training_flops(work, False) / (cluster.gpu.peak_bf16_tflops * 1e12 * GPU_MFU)
    return training_flops(work, False) / (cluster.cpu_peak_tflops * 1e12 * CPU_MFU)


def plan_stage(spec: Spec, stage, cluster: Cluster) -> StagePlan:
    _check_frozen_encoders(spec)
    work = workload(spec, stage)
    world = cluster.world_size
    batch, steps = stage.batch_size, stage.steps
    if batch is None or steps is None:
        raise PlanError(f"schedule.stages[{stage.name}]: batch_size and steps are needed to plan; "
                        f"supply them with --set schedule.stages[{stage.name}].batch_size=N")
    _check_batch(stage, batch, world, cluster)
    degrees = sequence_parallel_degrees(spec, work, world, batch) if cluster.gpu else [1]
    # The smallest degree that brings a sample under SAMPLE_SECONDS (the largest legal one if none does);
    # larger degrees are tried only when memory needs them.
    timely = [sp for sp in degrees if _sample_seconds(work, cluster) / sp <= SAMPLE_SECONDS] or degrees[-1:]
    candidates = [sp for sp in degrees if sp >= timely[0]]
    best_need = None
    for sp in candidates:
        fitted, need = _fit(spec, stage, cluster, work, sp)
        best_need = need if best_need is None else min(best_need, need)
        if fitted is not None:
            reason = "-" if sp == 1 else ("step time" if sp == timely[0] else "memory")
            fitted = replace(fitted, sp_reason=reason)
            return replace(fitted, buckets=plan_buckets(spec, stage, cluster, fitted))
    capacity = cluster.device_memory_gib * cluster.memory_headroom
    raise PlanError(
        f"schedule.stages[{stage.name}] does not fit {cluster.name}: at best it needs {best_need:.1f} GiB per "
        f"{'GPU' if cluster.gpu else 'process'} in its leanest layout (micro batch 1, every ZeRO and offload "
        f"choice tried, activation checkpointing on, sequence parallelism up to {candidates[-1]}), "
        f"the cluster has {capacity:.1f} GiB usable ({cluster.device_memory_gib:g} GiB x headroom "
        f"{cluster.memory_headroom:g}). Model: {work.params.total / 1e9:.2f}B parameters, "
        f"{work.image_tokens + work.text_tokens} tokens per sample. Fix: a cluster with more or larger devices, "
        f"a smaller resolution or frame count, or `--scale smoke`."
    )


def _check_batch(stage, batch: int, ranks: int, cluster: Cluster) -> None:
    if batch % ranks:
        raise PlanError(
            f"schedule.stages[{stage.name}]: global batch {batch} does not split over {ranks} data-parallel "
            f"ranks on {cluster.name}; use a batch that is a multiple of {ranks} "
            f"(--set schedule.stages[{stage.name}].batch_size={max(ranks, batch // ranks * ranks)}) or another cluster"
        )


def _fit(spec: Spec, stage, cluster: Cluster, work: Workload, sp: int) -> tuple[StagePlan | None, float]:
    """The layout with the shortest planned step that fits at sequence-parallel degree sp, and the least
    memory any layout needs. Layouts on the device are weighed by step time (checkpointing's recompute against
    ZeRO-3's extra all-gathers, larger micro batches against more communication); offloading, whose PCIe
    traffic the step time does not model, only when nothing fits on the device."""
    layouts, best_need = _layouts(spec, stage, cluster, work, sp)
    in_device = [plan for plan in layouts if plan.offload == "none"]
    if in_device:  # min keeps the first of equals: the SEARCH order (lower ZeRO stage, no recompute) breaks ties
        return min(in_device, key=lambda plan: plan.step_seconds), best_need
    return (layouts[0] if layouts else None), best_need


def _layouts(spec: Spec, stage, cluster: Cluster, work: Workload, sp: int) -> tuple[list[StagePlan], float]:
    """For each ZeRO / offload / checkpointing choice in SEARCH order, the plan at the largest micro batch that
    fits (none if none does), and the least memory any of them needs."""
    ranks, batch = cluster.world_size, stage.batch_size
    dp = ranks // sp
    _check_batch(stage, batch, dp, cluster)
    precision = stage.precision if cluster.gpu else "fp32"  # CPUs train in fp32 here
    capacity = cluster.device_memory_gib * cluster.memory_headroom
    frozen = _frozen_bytes(spec, work)
    per_rank = batch // dp
    micro_options = sorted((m for m in range(1, min(per_rank, 64) + 1) if per_rank % m == 0), reverse=True)
    best_need, layouts = None, []
    for zero, checkpointing in SEARCH:
        if zero.offload != "none" and not cluster.gpu:
            continue  # offloading to the CPU a CPU run already uses gains nothing
        if zero.offload != "none" and host_bytes(work.params.total, cluster.gpus_per_node, cluster.nodes, zero) > cluster.memory_gib_per_node * GIB:
            continue
        states = model_state_bytes(work.params.total, work.params.largest_layer, ranks, zero, precision) + zero_buffer_bytes(zero, precision, cluster.gpu is not None)
        copies = _extra_copies(spec, stage, work.params.total, ranks, zero, precision)
        for micro in micro_options:
            activations = sample_activation_bytes(work, loss_passes(stage), checkpointing, sp, precision) * micro
            need = (states + frozen + copies + activations) / GIB
            best_need = need if best_need is None else min(best_need, need)
            if need <= capacity:
                memory = Memory(states / GIB, activations / GIB, frozen / GIB, copies / GIB, need, capacity)
                layouts.append(_stage_plan(spec, stage, cluster, work, micro, zero, checkpointing, precision, memory, dp))
                break
    return layouts, best_need


def _step_seconds(compute: float, work: Workload, cluster: Cluster, zero: ZeroChoice, accumulation: int,
                  precision: str) -> float:
    """Compute time plus the data-parallel communication the backward cannot hide (comm.py)."""
    return step_seconds(compute, communication_seconds(work.params.total, cluster, zero, accumulation, precision))


def _stage_plan(spec, stage, cluster, work, micro, zero, checkpointing, precision, memory, dp) -> StagePlan:
    ranks = cluster.world_size
    flops = training_flops(work, checkpointing, loss_passes(stage), mean_forward_flops(spec, stage)) * stage.batch_size
    if cluster.gpu:
        mfu, peak = GPU_MFU, cluster.gpu.peak_bf16_tflops * 1e12 * ranks
    else:
        mfu, peak = CPU_MFU, cluster.cpu_peak_tflops * 1e12 * cluster.nodes
    step = _step_seconds(flops / (peak * mfu), work, cluster, zero, stage.batch_size // (micro * dp), precision)
    devices = ranks if cluster.gpu else cluster.nodes
    return StagePlan(
        stage=stage.name, model=work.model, params=work.params.total,
        params_documented=spec.architecture.params_documented,
        image_tokens=work.image_tokens, text_tokens=work.text_tokens, latent_frames=work.latent_frames,
        dp_size=dp, sp_size=ranks // dp, sp_reason="-", global_batch=stage.batch_size, micro_batch=micro,
        grad_accumulation=stage.batch_size // (micro * dp), zero_stage=zero.stage, offload=zero.offload,
        activation_checkpointing=checkpointing, precision=precision, compile=cluster.gpu is not None,
        memory_gib=memory, flops_per_step=flops, mfu=mfu, step_seconds=step, steps=stage.steps,
        device_hours=step * stage.steps * devices / 3600,
        cadence=cadence(work.params.total, stage, precision, step, cluster),
        unsized_frozen=() if _precomputed(spec) else tuple(frozen_sizes(spec)[1]),
    )


def plan(spec: Spec, cluster: Cluster, scale: str = "full") -> Plan:
    """Plan every stage; the first stage that cannot fit raises PlanError."""
    return Plan(spec.name, cluster.name, scale, [plan_stage(spec, stage, cluster) for stage in spec.schedule.stages])
