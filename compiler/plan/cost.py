"""Tokens, FLOPs and activation memory of one training sample at a stage's resolution and frame count.

Passes:
  tokens       latent grid from resolution / spatial compression / patch; latent frames from frames,
               temporal compression and causality; text tokens from the token encoder
  flops        2 x params-applied x tokens for every linear, per the split in params.py, plus attention
               (4 x Nq x Nk x inner per attention layer: QK^T and AV); training = 3 x forward
               (backward is twice the forward), + 1 forward with activation checkpointing
  activations  bytes kept for backward, per sample (see `activation_bytes`)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from compiler.plan.params import ParamCount, count_dit, count_mmdit, count_unet
from compiler.schema.architecture import Cascade, DiT, LatentSpace, MMDiT, UNetStage
from compiler.schema.schedule import Stage
from compiler.schema.spec import Spec


@dataclass(frozen=True)
class Workload:
    """What one sample of a stage costs the network it trains."""

    model: str
    params: ParamCount
    image_tokens: int
    text_tokens: int
    latent_frames: int
    forward_flops: float
    attention_layers: int
    hidden_size: int
    frozen_params: float  # text encoders and VAE resident for on-the-fly encoding


def latent_frames(spec: Spec, frames: int | None) -> int:
    """Latent frames after temporal compression; a causal VAE encodes the first frame alone."""
    space = spec.architecture.space
    if not frames or not isinstance(space, LatentSpace) or space.temporal_compression == 1:
        return frames or 1
    if space.causal:
        return 1 + (frames - 1) // space.temporal_compression
    return math.ceil(frames / space.temporal_compression)


def _text_tokens(spec: Spec) -> int:
    encoders = [e for e in spec.architecture.text_encoders if e.role in ("tokens", "cross_attention")]
    return max((e.max_tokens or 0 for e in encoders), default=0)


def workload(spec: Spec, stage: Stage) -> Workload:
    """Tokens and forward FLOPs of one sample of `stage` (largest resolution of the stage)."""
    size = max(stage.resolutions, key=lambda s: s.pixels)
    backbone = spec.architecture.backbone
    text = _text_tokens(spec)
    frozen = sum(e.params or 0 for e in spec.architecture.text_encoders) + (getattr(spec.architecture.space, "params", 0) or 0)
    if isinstance(backbone, Cascade):
        unet = _unet(backbone, stage.model)
        count = count_unet(unet, max((e.dim or 0 for e in spec.architecture.text_encoders), default=0))
        pixels = unet.resolution**2 if unet.train_crop is None else unet.train_crop**2
        # A conv net applies each weight at every position of its level; use the mean level size.
        mean_positions = pixels / 4 ** (len(unet.channel_mult) / 2)
        flops = 2 * count.total * mean_positions
        return Workload(unet.name, count, int(mean_positions), text, 1, flops, 0, unet.channels, frozen)

    compression = spec.architecture.space.spatial_compression if isinstance(spec.architecture.space, LatentSpace) else 1
    pt, ph, pw = backbone.patch_size
    frames = latent_frames(spec, stage.frames)
    image = (size.height // (compression * ph)) * (size.width // (compression * pw)) * max(frames // pt, 1)
    if isinstance(backbone, MMDiT) and backbone.context_images == "sequence":
        image *= 2  # Kontext: the context image's tokens join the target's on the sequence axis
    inner = backbone.num_heads * backbone.head_dim
    if isinstance(backbone, MMDiT):
        pooled = any(e.role == "pooled" for e in spec.architecture.text_encoders)
        count = count_mmdit(backbone, pooled)
        layers = backbone.double_blocks + backbone.single_blocks
        attention = layers * 4 * (image + text) ** 2 * inner
    else:
        assert isinstance(backbone, DiT)
        count = count_dit(backbone)
        layers = backbone.depth
        attention = layers * 4 * (image * image + image * text) * inner
    linear = 2 * (count.image_token * image + count.text_token * text + count.sample)
    return Workload(stage.model, count, image, text, frames, linear + attention, layers, backbone.hidden_size, frozen)


def _unet(cascade: Cascade, name: str) -> UNetStage:
    for unet in cascade.stages:
        if unet.name == name:
            return unet
    return cascade.stages[0]


def training_flops(work: Workload, checkpointing: bool) -> float:
    """FLOPs of forward + backward for one sample; checkpointing recomputes the forward once."""
    return work.forward_flops * (4 if checkpointing else 3)


def activation_bytes(work: Workload, checkpointing: bool) -> float:
    """Bytes of activations kept for backward, per sample, in 16-bit.

    Per transformer layer and token about 34 x hidden bytes with fused (flash) attention, which keeps no
    score matrix (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
    Models", eq. 1 without the 5as/h term). With full checkpointing only each layer's input
    (2 x hidden bytes per token) is kept, plus one layer's activations during its recompute.
    """
    tokens = work.image_tokens + work.text_tokens
    per_layer = 34 * tokens * work.hidden_size
    layers = max(work.attention_layers, work.params.blocks, 1)
    if checkpointing:
        return layers * 2 * tokens * work.hidden_size + per_layer
    return layers * per_layer
