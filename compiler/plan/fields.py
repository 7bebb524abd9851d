"""Which schema fields the planner reads, and for what: docs/reference.md's "planner" column.

A field that changes parameters or FLOPs is counted (params.py, cost.py; tests/compiler/test_params.py holds
a test per field); the others here set tokens, memory, the layout or the cadence. A field absent from this
table does not change the plan. Keys are (schema class name, field); a field declared on a base class
(Backbone) is found from its subclasses.
"""

from __future__ import annotations

from pydantic import BaseModel

PARAMS = "parameters and FLOPs"

PLANNER_FIELDS: dict[tuple[str, str], str] = {
    # Architecture: the network's size and its cost per token.
    ("ArchitectureSpec", "params_documented"): "shown beside the computed count in plan.md",
    ("TextEncoder", "role"): "tokens / cross_attention: text tokens; glyph: glyph tokens (flux block style)",
    ("TextEncoder", "dim"): "glyph projection width (flux block style); U-Net text width: " + PARAMS,
    ("TextEncoder", "max_tokens"): "text tokens per sample: FLOPs and activations",
    ("TextEncoder", "pooled"): "stored conditioning bytes (the pooled vector besides the tokens)",
    ("ArchitectureSpec", "joint_tokens"): "text tokens per sample (the lists' max_tokens summed) and the stored "
    "text width (the widest list)",
    ("TextEncoder", "params"): "frozen: resident memory unless embeddings are precomputed; trained: " + PARAMS,
    ("TextEncoder", "frozen"): "false: trained with the backbone (" + PARAMS + ", optimizer memory)",
    ("LatentSpace", "spatial_compression"): "image tokens",
    ("LatentSpace", "temporal_compression"): "latent frames",
    ("LatentSpace", "causal"): "latent frames (1 + (frames - 1) / temporal)",
    ("LatentSpace", "params"): "resident memory unless embeddings are precomputed",
    ("PixelSpace", "channels"): "U-Net input and output convolutions: " + PARAMS,
    ("LearnedPositions", "kind"): "a table over the largest token grid a stage trains: parameters",
    ("LearnedPositions", "max_size"): "set: a max_size x max_size table: parameters (when trained)",
    ("LearnedPositions", "trained"): "false: a fixed buffer, not parameters",
    ("Backbone", "hidden_size"): PARAMS + ", activations",
    ("Backbone", "num_heads"): PARAMS + " (attention width heads x head_dim)",
    ("Backbone", "head_dim"): PARAMS + " (attention width heads x head_dim)",
    ("Backbone", "patch_size"): "image tokens; patch embedding and output: " + PARAMS,
    ("Backbone", "in_channels"): PARAMS,
    ("Backbone", "out_channels"): PARAMS,
    ("Backbone", "mlp_ratio"): PARAMS,
    ("Backbone", "qkv_bias"): PARAMS,
    ("Backbone", "qk_norm"): "parameters",
    ("Backbone", "positions"): "learned positions: parameters",
    ("MMDiT", "double_blocks"): PARAMS,
    ("MMDiT", "single_blocks"): PARAMS + " (over text and image tokens)",
    ("MMDiT", "context_dim"): PARAMS,
    ("MMDiT", "pooled_dim"): "parameters (with a pooled encoder)",
    ("MMDiT", "guidance_embed"): "parameters",
    ("MMDiT", "context_images"): "sequence: twice the image tokens in edit samples (datasets of triplets)",
    ("MMDiT", "text_input_norm"): "parameters",
    ("MMDiT", "block_style"): PARAMS,
    ("MMDiT", "token_refiner_blocks"): "parameters (over the text tokens)",
    ("DiT", "depth"): PARAMS,
    ("DiT", "ffn_dim"): PARAMS,
    ("DiT", "text_dim"): PARAMS,
    ("DiT", "freq_dim"): "parameters",
    ("DiT", "cross_attn_norm"): "parameters",
    ("DiT", "modulation"): "parameters (per-block adaLN linears or shared projection + tables)",
    ("DiT", "text_conditioning"): PARAMS + " (in_context: no cross-attention, blocks run over the text)",
    ("DiT", "cond_dim"): "parameters (expert adaLN's modulation linears)",
    ("Cascade", "stages"): "one network per stage, planned for the schedule stages that train it",
    ("UNetStage", "name"): "matched by schedule stages' `model`",
    ("UNetStage", "resolution"): PARAMS + " (which levels attend)",
    ("UNetStage", "input_resolution"): "set: the low-res image is a second input: " + PARAMS,
    ("UNetStage", "channels"): PARAMS,
    ("UNetStage", "channel_mult"): PARAMS,
    ("UNetStage", "res_blocks"): PARAMS,
    ("UNetStage", "attention_resolutions"): PARAMS,
    ("UNetStage", "cross_attention"): PARAMS,
    ("UNetStage", "num_heads"): PARAMS,
    ("UNetStage", "head_dim"): PARAMS,
    ("UNetStage", "efficient"): PARAMS,
    ("UNetStage", "noise_conditioning_augmentation"): "parameters (noise-level embedding)",
    ("UNetStage", "train_crop"): "FLOPs (positions per sample)",
    # Schedule: tokens, the batch, memory and the cadence.
    ("Stage", "model"): "which network the stage trains",
    ("Stage", "datasets"): "datasets of triplets (edits): their share of FLOPs carries the reference image's "
    "tokens, and memory is planned for an edit sample",
    ("Stage", "tasks"): "not read: checked against the datasets, whose units and weights set the edit share",
    ("Stage", "resolutions"): "image tokens (the largest size)",
    ("Stage", "frames"): "latent frames, image tokens",
    ("Stage", "aspect_ratio_buckets"): "bucket table: equal-area aspect-ratio buckets, each with its micro-batch",
    ("Stage", "frame_buckets"): "bucket table: a bucket per frame count, each with its micro-batch",
    ("Dataset", "aspect_ratios"): "bucket feasibility: each bucket's share of the dataset per rank and epoch",
    ("Dataset", "count"): "bucket feasibility, with aspect_ratios",
    ("Pipeline", "kept_count"): "bucket feasibility of its dataset, with aspect_ratios, when the dataset has no count",
    ("Stage", "batch_size"): "data-parallel split, micro batch, gradient accumulation",
    ("Stage", "steps"): "GPU-hours; cadence upper bound",
    ("Stage", "optimizer"): "checkpoint size (Adafactor keeps no moments)",
    ("Stage", "ema_decay"): "set: fp32 EMA weights in memory and in each checkpoint",
    ("Stage", "precision"): "model-state memory, checkpoint size",
    ("Stage", "teacher"): "set: a full 16-bit teacher copy on every rank; its forwards per sample by the loss",
    ("Stage", "checkpoint_every"): "replaces the Young/Daly interval",
    ("Stage", "validation_every"): "replaces the half-hourly interval",
    ("PrecomputeEmbeddings", "kind"): "present: frozen encoders are not resident during training",
    # Cluster: where the plan runs.
    ("Accelerator", "memory_gib"): "capacity per GPU",
    ("Accelerator", "peak_bf16_tflops"): "step time (at 40% MFU)",
    ("Cluster", "nodes"): "world size, host memory",
    ("Cluster", "gpus_per_node"): "world size",
    ("Cluster", "gpu"): "capacity and step time; none: a CPU plan (fp32)",
    ("Cluster", "memory_gib_per_node"): "offload host memory; capacity of a CPU plan",
    ("Cluster", "cpu_peak_tflops"): "step time of a CPU plan",
    ("Cluster", "memory_headroom"): "usable share of device memory",
    ("Cluster", "storage_write_gbps"): "checkpoint write time, Young/Daly interval",
    ("Cluster", "device_hours_per_interruption"): "job MTBF, Young/Daly interval",
}


def planner_use(model: type[BaseModel], field: str) -> str | None:
    """How the planner uses `model.field` (looked up on the class and its schema bases), or None."""
    for klass in model.__mro__:
        found = PLANNER_FIELDS.get((klass.__name__, field))
        if found is not None:
            return found
    return None
