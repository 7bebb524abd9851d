"""DeepSpeed configs from a stage plan: numbers only ("auto" is resolved only under accelerate).

Batch rule (DeepSpeed): train_batch_size == train_micro_batch_size_per_gpu x
gradient_accumulation_steps x data-parallel size, where data-parallel size = world size /
sequence_parallel_size (deepspeed/runtime/config.py divides the world by it).
"""

from __future__ import annotations

from typing import Any

from compiler.plan.planner import StagePlan
from compiler.schema.schedule import Stage

# Bucket sizes in elements, DeepSpeed's documented defaults; large enough to overlap communication.
_BUCKET = 500_000_000


def ds_config(stage: Stage, plan: StagePlan, on_gpu: bool, generated_by: str) -> dict[str, Any]:
    """The ds_config.json of one training stage. JSON has no comments: the first key says what wrote it
    (DeepSpeed ignores unknown top-level keys; it rejects unknown keys inside its sections)."""
    zero: dict[str, Any] = {
        "stage": plan.zero_stage,
        "contiguous_gradients": plan.zero_stage >= 2,
        "overlap_comm": on_gpu and plan.zero_stage >= 2,
        "reduce_bucket_size": _BUCKET,
        "allgather_bucket_size": _BUCKET,
    }
    if plan.zero_stage == 3:
        zero.update({
            "stage3_prefetch_bucket_size": _BUCKET // 10,
            "stage3_param_persistence_threshold": 100_000,
            "stage3_max_live_parameters": 1_000_000_000,
            "stage3_gather_16bit_weights_on_model_save": True,
        })
    if plan.offload in ("optimizer", "optimizer_and_params"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if plan.offload == "optimizer_and_params":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    config: dict[str, Any] = {
        "_generated_by": generated_by,
        "train_batch_size": plan.global_batch,
        "train_micro_batch_size_per_gpu": plan.micro_batch,
        "gradient_accumulation_steps": plan.grad_accumulation,
        "steps_per_print": 100,
        "wall_clock_breakdown": False,
        "zero_optimization": zero,
        "bf16": {"enabled": plan.precision == "bf16"},
        "scheduler": _scheduler(stage),
        # The trainer builds no fused CUDA optimizer on CPU machines: plain torch Adam.
        "zero_allow_untested_optimizer": True,
    }
    optimizer = _optimizer(stage)
    if optimizer is not None:
        config["optimizer"] = optimizer
    if stage.grad_clip:
        config["gradient_clipping"] = stage.grad_clip
    if plan.sp_size > 1:
        # Ulysses: ZeRO partitions and gradients reduce over dp x sp ranks; the trainer builds the groups
        # from stage.yaml's layout.sp_size (runtime/models/sequence_parallel.py).
        config["sequence_parallel_size"] = plan.sp_size
    if plan.activation_checkpointing:
        config["activation_checkpointing"] = {"partition_activations": False, "contiguous_memory_optimization": False}
    return config


def _optimizer(stage: Stage) -> dict[str, Any] | None:
    """DeepSpeed's optimizer block; None for Adafactor, which DeepSpeed lacks: the trainer builds it
    from stage.yaml and passes it to deepspeed.initialize."""
    optimizer = stage.optimizer
    if optimizer is None:
        raise ValueError(f"schedule.stages[{stage.name}].optimizer is needed to write ds_config.json")
    if optimizer.kind == "adafactor":
        return None
    return {
        "type": "AdamW" if optimizer.kind == "adamw" else "Adam",
        "params": {"lr": optimizer.lr, "betas": list(optimizer.betas), "eps": optimizer.eps,
                   "weight_decay": optimizer.weight_decay, "torch_adam": True},
    }


def _scheduler(stage: Stage) -> dict[str, Any]:
    lr = stage.optimizer.lr if stage.optimizer else 0.0
    warmup = stage.lr_schedule.warmup_steps
    if stage.lr_schedule.kind == "constant":
        return {"type": "WarmupLR", "params": {"warmup_min_lr": 0.0, "warmup_max_lr": lr,
                                               "warmup_num_steps": max(warmup, 1), "warmup_type": "linear"}}
    if stage.lr_schedule.kind == "cosine":
        return {"type": "WarmupCosineLR", "params": {"total_num_steps": stage.steps, "warmup_num_steps": warmup,
                                                     "cos_min_ratio": stage.lr_schedule.min_lr_ratio}}
    return {"type": "WarmupDecayLR", "params": {"total_num_steps": stage.steps, "warmup_min_lr": 0.0,
                                                "warmup_max_lr": lr, "warmup_num_steps": warmup}}
