"""Memory per training process: model states under each ZeRO stage and offload choice, ZeRO's buffers, and
activations from coefficients measured on the runtime's networks (ACTIVATION_COEFFICIENTS below).

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


# Activation bytes of the transformer families, measured (runtime/models/activation_memory.py; re-measure
# with `python scripts/measure_activations.py` and paste its output here). For each block list the
# runtime builds (`repeated_blocks`) and for the rest of the network ("outside": embedders, final layer, the
# RoPE tables and time embedding every block shares), the bytes saved for backward per image/video token and
# per text token, per block, as (a, b, c, e) in bytes = a d + b f + c h + e head_dim, d the model width, f the
# MLP width, h the heads. How: one forward of the smoke-scale network of a shipped spec (FLUX.1 dev, Qwen-Image,
# Wan 2.1 1.3B) or of tests/runtime/family_specs.py (HunyuanVideo, SD3 medium, CogVideoX 5B) under
# saved_tensors_hooks, each storage counted once and parameters left out; slopes from two image sizes and two
# text lengths, a/b/c/e from three widths (d 32, 2 heads of 16, f as the spec; 1 head of 32; f halved). The
# stages' precision: bf16 (the norms' and RoPE's float32 upcasts included: why a block keeps 43-85 d bytes per
# token at full width where Korthikanti et al.'s 34 d assumes 16-bit throughout), fp32 on CPUs. Eager mode:
# torch.compile'd blocks may save less (AOTAutograd recomputes cheap pointwise results), so on GPUs the figure
# is an upper bound until the GPU check measures it.
# FROZEN_ACTIVATION_COEFFICIENTS: the same network with frozen weights and the gradient flowing to its input
# only (LADD's teacher): its linear layers keep no input. MMDiT text streams join the gradient at the first
# joint attention, so their per-block text figure is the two smoke blocks' mean (a few % low for deep models).
ACTIVATION_COEFFICIENTS: dict[str, dict[str, dict[str, tuple]]] = {
    "bf16": {
        "flux": {
            "outside": ((14.25, 0, 0, 8), (2, 0, 0, 8)),
            "single_transformer_blocks": ((38.25, 4, 12, 0), (38.25, 4, 12, 0)),
            "transformer_blocks": ((48.5, 4, 12, 0), (48.5, 4, 12, 0)),
        },
        "qwen_image": {
            "outside": ((14.25, 0, 0, 8), (6, 0, 0, 8)),
            "transformer_blocks": ((48.5625, 4, 12, 0), (48.5625, 4, 12, 0)),
        },
        "dit": {
            "blocks": ((69.125, 4, 8, 0), (12.125, 0, 0, 0)),
            "outside": ((14.25, 0, 0, 8), (8, 0, 0, 0)),
        },
        "hunyuan_video": {
            "outside": ((14.25, 0, 0, 8), (78.25, 0, 0, 7.5)),
            "single_transformer_blocks": ((38.3125, 4, 12, 0), (38.3125, 4, 12, 0)),
            "transformer_blocks": ((48.5625, 4, 12, 0), (48.5625, 4, 12, 0)),
        },
        "sd3": {
            "outside": ((14.25, 0, 0, 0), (2, 0, 0, 0)),
            "transformer_blocks": ((48.5, 0, 4, 0), (33.375, 0, 4, 0)),
        },
        "cogvideox": {
            "outside": ((14.25, 0, 0, 8), (4, 0, 0, 8)),
            "transformer_blocks": ((43.25, 0, 12, 0), (43.25, 0, 12, 0)),
        },
    },
    "fp32": {
        "flux": {
            "outside": ((20.25, 0, 0, 8), (8, 0, 0, 8)),
            "single_transformer_blocks": ((52.25, 8, 12, 0), (52.25, 8, 12, 0)),
            "transformer_blocks": ((64.5, 8, 12, 0), (64.5, 8, 12, 0)),
        },
        "qwen_image": {
            "outside": ((20.25, 0, 0, 8), (8, 0, 0, 8)),
            "transformer_blocks": ((64.625, 8, 12, 0), (64.625, 8, 12, 0)),
        },
        "dit": {
            "blocks": ((89.125, 8, 8, 0), (16.125, 0, 0, 0)),
            "outside": ((20.25, 0, 0, 8), (16, 0, 0, 0)),
        },
        "hunyuan_video": {
            "outside": ((20.25, 0, 0, 8), (159.75, 0, 0, 7.5)),
            "single_transformer_blocks": ((52.375, 8, 12, 0), (52.375, 8, 12, 0)),
            "transformer_blocks": ((64.625, 8, 12, 0), (64.625, 8, 12, 0)),
        },
        "sd3": {
            "outside": ((20.25, 0, 0, 0), (4, 0, 0, 0)),
            "transformer_blocks": ((80.5, 0, 4, 0), (54.375, 0, 4, 0)),
        },
        "cogvideox": {
            "outside": ((28.5, 0, 0, 8), (8, 0, 0, 8)),
            "transformer_blocks": ((86.5, 0, 20, 0), (86.5, 0, 20, 0)),
        },
    },
}
FROZEN_ACTIVATION_COEFFICIENTS: dict[str, dict[str, dict[str, tuple]]] = {
    "bf16": {
        "flux": {
            "outside": ((4.25, 0, 0, 8), (0, 0, 0, 8)),
            "single_transformer_blocks": ((20.25, 2, 12, 0), (20.25, 2, 12, 0)),
            "transformer_blocks": ((24.5, 2, 12, 0), (18.375, 2, 8, 0)),
        },
        "qwen_image": {
            "outside": ((4.25, 0, 0, 8), (0, 0, 0, 8)),
            "transformer_blocks": ((24.5625, 2, 12, 0), (18.4375, 2, 8, 0)),
        },
        "dit": {
            "blocks": ((37.125, 2, 8, 0), (4, 0, 0, 0)),
            "outside": ((8.25, 0, 0, 8), (0, 0, 0, 0)),
        },
        "hunyuan_video": {
            "outside": ((8.25, 0, 0, 8), (0, 0, 0, 8)),
            "single_transformer_blocks": ((20.3125, 2, 12, 0), (20.3125, 2, 12, 0)),
            "transformer_blocks": ((24.5625, 2, 12, 0), (18.4375, 2, 8, 0)),
        },
        "sd3": {
            "outside": ((8.25, 0, 0, 0), (0, 0, 0, 0)),
            "transformer_blocks": ((24.5, 0, 4, 0), (16.25, 0, 4, 0)),
        },
        "cogvideox": {
            "outside": ((10.25, 0, 0, 8), (2, 0, 0, 8)),
            "transformer_blocks": ((23.25, 0, 12, 0), (23.25, 0, 12, 0)),
        },
    },
    "fp32": {
        "flux": {
            "outside": ((4.25, 0, 0, 8), (4, 0, 0, 8)),
            "single_transformer_blocks": ((28.25, 4, 12, 0), (28.25, 4, 12, 0)),
            "transformer_blocks": ((32.5, 4, 12, 0), (26.375, 4, 8, 0)),
        },
        "qwen_image": {
            "outside": ((4.25, 0, 0, 8), (0, 0, 0, 8)),
            "transformer_blocks": ((32.625, 4, 12, 0), (26.5, 4, 8, 0)),
        },
        "dit": {
            "blocks": ((49.125, 4, 8, 0), (8, 0, 0, 0)),
            "outside": ((12.25, 0, 0, 8), (0, 0, 0, 0)),
        },
        "hunyuan_video": {
            "outside": ((12.25, 0, 0, 8), (4, 0, 0, 8)),
            "single_transformer_blocks": ((28.375, 4, 12, 0), (28.375, 4, 12, 0)),
            "transformer_blocks": ((32.625, 4, 12, 0), (26.5, 4, 8, 0)),
        },
        "sd3": {
            "outside": ((12.25, 0, 0, 0), (0, 0, 0, 0)),
            "transformer_blocks": ((40.5, 0, 4, 0), (28.25, 0, 4, 0)),
        },
        "cogvideox": {
            "outside": ((20.5, 0, 0, 8), (4, 0, 0, 8)),
            "transformer_blocks": ((46.5, 0, 20, 0), (46.5, 0, 20, 0)),
        },
    },
}
# Cascade U-Nets: bytes per activation element of each kind the U-Net walk counts
# (compiler/plan/params.py unet_activation_elements): ResBlocks a n c_in + b n c_out (their norms', SiLUs' and
# convolutions' inputs), attention blocks per kind a n c, and "input" for the convolutions and norms outside
# them, each per position n. Measured as above on Imagen 1's smoke cascade (a base U-Net, two Efficient
# U-Nets), also with self-attention only and text attention only (unet_coefficients).
UNET_ACTIVATION_COEFFICIENTS: dict[str, dict[str, float]] = {
    "bf16": {
        "resblock_in": 6.0182, "resblock_out": 8.0576, "input": 2.0524,
        "attention_self": 12.3047, "attention_self_text": 12.7961, "attention_text": 8.6547,
    },
    "fp32": {
        "resblock_in": 12.0365, "resblock_out": 16.1152, "input": 4.1047,
        "attention_self": 24.4219, "attention_self_text": 25.4073, "attention_text": 17.1191,
    },
}
# Which backbone field counts each block list, per family (runtime/models/factory.py builds the lists).
BLOCK_FIELDS = {
    "flux": {"transformer_blocks": "double_blocks", "single_transformer_blocks": "single_blocks"},
    "qwen_image": {"transformer_blocks": "double_blocks"},
    "hunyuan_video": {"transformer_blocks": "double_blocks", "single_transformer_blocks": "single_blocks"},
    "sd3": {"transformer_blocks": "double_blocks"},
    "cogvideox": {"transformer_blocks": "depth"},
    "dit": {"blocks": "depth"},
}
OUTSIDE = "outside"


@dataclass(frozen=True)
class TransformerShape:
    """What activation memory of a transformer family depends on."""

    family: str  # a key of BLOCK_FIELDS
    blocks: tuple[tuple[str, int], ...]  # (block list, blocks in it)
    width: int  # d
    mlp_width: int  # f
    heads: int
    head_dim: int


def transformer_activation_bytes(shape: TransformerShape, image_tokens: float, text_tokens: int, precision: str,
                                 checkpointing: bool, frozen: bool = False) -> float:
    """Bytes one sample's forward keeps for backward (ACTIVATION_COEFFICIENTS; FROZEN_ACTIVATION_COEFFICIENTS
    for frozen weights with the gradient to the input). With activation checkpointing each block keeps its
    input (its stream's tokens x d) and one block's activations live during its recompute; the rest of the
    network is not checkpointed. Per-sample terms (adaLN vectors) are left out."""
    tables = FROZEN_ACTIVATION_COEFFICIENTS if frozen else ACTIVATION_COEFFICIENTS
    table = tables["fp32" if precision == "fp32" else "bf16"][shape.family]
    widths = (shape.width, shape.mlp_width, shape.heads, shape.head_dim)

    def per_block(name: str) -> float:
        image, text = table[name]
        return (image_tokens * sum(c * w for c, w in zip(image, widths))
                + text_tokens * sum(c * w for c, w in zip(text, widths)))

    outside = per_block(OUTSIDE)
    if not checkpointing:
        return outside + sum(count * per_block(name) for name, count in shape.blocks)
    element = 4 if precision == "fp32" else 2
    # Wan's blocks take the text as a shared input (counted outside); the MMDiTs' carry it through each block.
    stream = image_tokens + (0 if shape.family == "dit" else text_tokens)
    inputs = sum(count for _, count in shape.blocks) * stream * shape.width * element
    return outside + inputs + max(per_block(name) for name, _ in shape.blocks)


def unet_activation_bytes(total: dict[str, float], levels: list[dict[str, float]], boundary: float,
                          precision: str, checkpointing: bool) -> float:
    """Bytes a cascade U-Net keeps for backward from its activation elements by kind (unet_activation_elements).
    With checkpointing the levels keep their inputs and skips (`boundary`), one level's activations live during
    its recompute, and the rest (middle blocks, input and output convolutions) is kept."""
    table = UNET_ACTIVATION_COEFFICIENTS["fp32" if precision == "fp32" else "bf16"]

    def weigh(elements: dict[str, float]) -> float:
        return sum(table[kind] * count for kind, count in elements.items())

    if not checkpointing:
        return weigh(total)
    outside = {kind: count - sum(level.get(kind, 0.0) for level in levels) for kind, count in total.items()}
    element = 4 if precision == "fp32" else 2
    return weigh(outside) + boundary * element + max((weigh(level) for level in levels), default=0.0)
