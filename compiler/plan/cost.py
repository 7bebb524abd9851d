"""Tokens, FLOPs and activation memory of one training sample at a stage's resolution and frame count.

Passes:
  tokens       latent grid from resolution / spatial compression / patch; latent frames from frames,
               temporal compression and causality; text tokens from the token encoder
  flops        2 x params-applied x tokens for every linear, per the split in params.py (image, text, joint
               [text, image], glyph tokens, once per sample), plus attention (4 x Nq x Nk x inner per
               attention layer: QK^T and AV), plus a trained text encoder over its tokens; U-Nets level by
               level (params.py unet_forward_flops); training = 3 x forward
               (backward is twice the forward), + 1 forward with activation checkpointing
  activations  bytes kept for backward, per sample (see `activation_bytes`)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from compiler.plan.memory import (
    BLOCK_FIELDS,
    TransformerShape,
    transformer_activation_bytes,
    unet_activation_bytes,
)
from compiler.plan.params import (
    ParamCount,
    count_dit,
    count_expert_dit,
    count_mmdit,
    count_sd3,
    count_unet,
    count_video_mmdit,
    UNetActivations,
    unet_activation_elements,
    unet_forward_flops,
)
from compiler.schema.architecture import (
    Cascade,
    DiT,
    LatentSpace,
    LearnedPositions,
    MMDiT,
    PixelSpace,
    TextEncoder,
    UNetStage,
)
from compiler.schema.schedule import Stage, edit_share
from compiler.schema.spec import Spec


class PlanError(ValueError):
    """A stage that cannot be planned or laid out on the cluster; the message says why and what would help."""


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
    transformer: TransformerShape | None = None  # None: a cascade U-Net
    unet: UNetActivations | None = None  # a cascade U-Net's activation elements at the stage's side


def latent_frames(spec: Spec, frames: int | None) -> int:
    """Latent frames after temporal compression; a causal VAE encodes the first frame alone."""
    space = spec.architecture.space
    if not frames or not isinstance(space, LatentSpace) or space.temporal_compression == 1:
        return frames or 1
    if space.causal:
        return 1 + (frames - 1) // space.temporal_compression
    return math.ceil(frames / space.temporal_compression)


def _text_tokens(spec: Spec) -> int:
    """Text tokens the backbone reads: one token encoder's max_tokens, or the joint_tokens lists' summed
    (SD3: 77 CLIP + 256 T5 = 333)."""
    if spec.architecture.joint_tokens:
        return spec.architecture.text_tokens()
    encoders = [e for e in spec.architecture.text_encoders if e.role in ("tokens", "cross_attention")]
    return max((e.max_tokens or 0 for e in encoders), default=0)


def _glyph(spec: Spec) -> tuple[int | None, int]:
    """(width, tokens) of the glyph encoder a flux-style MMDiT projects and appends to the text tokens."""
    backbone = spec.architecture.backbone
    glyphs = [e for e in spec.architecture.text_encoders if e.role == "glyph"]
    if not glyphs or not isinstance(backbone, MMDiT) or backbone.block_style != "flux":
        return None, 0
    return glyphs[0].dim, glyphs[0].max_tokens or 0


def trained_encoders(spec: Spec) -> list[TextEncoder]:
    """Text encoders trained with the backbone (`frozen: false`); each needs its documented `params`."""
    for index, encoder in enumerate(spec.architecture.text_encoders):
        if not encoder.frozen and encoder.params is None:
            raise PlanError(
                f"architecture.text_encoders[{index}] ({encoder.name}) is trained (frozen: false) but its params "
                "is unset: the planner needs its size for optimizer memory and FLOPs; set params (e.g. 4.7e9)"
            )
    return [encoder for encoder in spec.architecture.text_encoders if not encoder.frozen]


# Documented sizes of frozen encoders a spec names without `params` (encoder stacks only, as the runtime
# loads them), by the encoder's name or its model id: T5 v1.1 XXL encoder (google/t5-v1_1-xxl, the encoder half
# of 11.3B), UMT5-XXL encoder (google/umt5-xxl, Wan's text encoder), Qwen2.5-VL-7B-Instruct (model card),
# ByT5-small encoder, CLIP ViT-L/14's text tower (openai/clip-vit-large-patch14 CLIPTextModel, 123.1M),
# OpenCLIP ViT-bigG/14's (CLIPTextModelWithProjection, 694.7M) and LLaVA-Llama-3-8B's language model
# (HunyuanVideo's text encoder: Meta Llama 3 8B, 8.03B; its vision tower encodes no text).
KNOWN_ENCODER_PARAMS = {"t5_xxl": 4.76e9, "umt5_xxl": 5.68e9, "qwen2_5_vl": 8.29e9, "glyph_byt5": 0.22e9}
KNOWN_MODEL_PARAMS = {
    "google/t5-v1_1-xxl": 4.76e9, "google/umt5-xxl": 5.68e9, "Qwen/Qwen2.5-VL-7B-Instruct": 8.29e9,
    "google/byt5-small": 0.22e9, "openai/clip-vit-large-patch14": 0.123e9, "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k": 0.695e9,
    "xtuner/llava-llama-3-8b-v1_1-transformers": 8.03e9,
}
# Documented VAE sizes by `vae`: FLUX.1's autoencoder (diffusers AutoencoderKL of ae.safetensors, 83.8M) and
# Wan-VAE (Wan technical report, arXiv:2503.20314 section 3.1: 127M).
KNOWN_VAE_PARAMS = {"black-forest-labs/FLUX.1-dev ae.safetensors": 83.8e6, "Wan-VAE": 127e6}


def encoder_size(encoder: TextEncoder) -> float | None:
    """An encoder's parameters: its `params`, else a documented size for its name or model id."""
    if encoder.params is not None:
        return encoder.params
    return KNOWN_ENCODER_PARAMS.get(encoder.name, KNOWN_MODEL_PARAMS.get(encoder.model))


def frozen_sizes(spec: Spec) -> tuple[dict[str, float], list[str]]:
    """(parameters of each frozen encoder and the VAE, from `params` or the documented sizes above; the fields
    of those with neither), so that an unsized one is refused (text encoders, planner.py) or named in plan.md
    (the VAE, a few hundred MB at most) rather than counted as 0 silently."""
    sizes, unsized = {}, []
    for index, encoder in enumerate(spec.architecture.text_encoders):
        if not encoder.frozen:
            continue
        size = encoder_size(encoder)
        if size is None:
            unsized.append(f"architecture.text_encoders[{index}].params ({encoder.name})")
        else:
            sizes[encoder.name] = size
    space = spec.architecture.space
    if isinstance(space, LatentSpace):
        size = space.params if space.params is not None else KNOWN_VAE_PARAMS.get(space.vae)
        if size is None:
            unsized.append("architecture.space.params (VAE)")
        else:
            sizes["vae"] = size
    return sizes, unsized


def _image_channels(spec: Spec) -> int:
    space = spec.architecture.space
    return space.channels if isinstance(space, PixelSpace) else 3


def position_table(spec: Spec, backbone) -> int:
    """Learned absolute positions: one d-wide vector per position of the largest token grid a stage trains."""
    if not isinstance(backbone.positions, LearnedPositions) or not backbone.positions.trained:
        return 0
    if backbone.positions.max_size is not None:
        return backbone.positions.max_size**2 * backbone.hidden_size
    return max(_image_tokens(spec, backbone, stage) for stage in spec.schedule.stages) * backbone.hidden_size


def _image_tokens(spec: Spec, backbone, stage: Stage) -> int:
    size = max(stage.resolutions, key=lambda s: s.pixels)
    space = spec.architecture.space
    compression = space.spatial_compression if isinstance(space, LatentSpace) else 1
    pt, ph, pw = backbone.patch_size
    frames = latent_frames(spec, stage.frames)
    return (size.height // (compression * ph)) * (size.width // (compression * pw)) * max(frames // pt, 1)


def count_network(spec: Spec, model: str = "main") -> ParamCount:
    """Parameters of the network `model` trains (a cascade stage name for cascades), as the runtime builds
    it, with the text encoders trained alongside (`frozen: false`)."""
    arch = spec.architecture
    backbone = arch.backbone
    encoders = sum(int(e.params) for e in trained_encoders(spec))
    if isinstance(backbone, Cascade):
        count = count_unet(_unet(backbone, model), _cascade_text_dim(spec), _image_channels(spec))
    elif isinstance(backbone, MMDiT):
        pooled = any("pooled" in e.inputs for e in arch.text_encoders)
        if backbone.block_style == "hunyuan_video":
            count = count_video_mmdit(backbone, pooled)
        elif backbone.block_style == "sd3":
            count = count_sd3(backbone, pooled)
        else:
            count = count_mmdit(backbone, pooled, _glyph(spec)[0])
    elif backbone.modulation == "adaln_expert":
        count = count_expert_dit(backbone)
    else:
        count = count_dit(backbone)
    if not isinstance(backbone, Cascade):
        count = replace(count, other=count.other + position_table(spec, backbone))
    return replace(count, encoders=encoders)


def _cascade_text_dim(spec: Spec) -> int:
    return max((e.dim or 0 for e in spec.architecture.text_encoders if e.role in ("cross_attention", "tokens")),
               default=0)


def workload(spec: Spec, stage: Stage, edit: bool | None = None) -> Workload:
    """Tokens and forward FLOPs of one sample of `stage` (largest resolution of the stage): an edit sample's
    when `edit` (its reference image's tokens join the sequence), a generation sample's when not; None: the
    largest the stage trains (an edit's when some dataset of the stage holds triplets)."""
    backbone = spec.architecture.backbone
    text = _text_tokens(spec)
    frozen = sum(frozen_sizes(spec)[0].values())
    count = count_network(spec, stage.model)
    # A trained text encoder runs forward and backward over its own tokens.
    encoder_flops = sum(2 * e.params * (e.max_tokens or 1) for e in trained_encoders(spec))
    if isinstance(backbone, Cascade):
        unet = _unet(backbone, stage.model)
        side = unet.train_crop or unet.resolution
        flops = unet_forward_flops(unet, _cascade_text_dim(spec), _image_channels(spec), text, side) + encoder_flops
        # The "tokens" plan.md shows for a U-Net: the mean feature-map size over its levels (activation memory
        # walks every level: unet_activation_elements).
        mean_positions = side**2 / 4 ** (len(unet.channel_mult) / 2)
        elements = unet_activation_elements(unet, _cascade_text_dim(spec), _image_channels(spec), side)
        return Workload(unet.name, count, int(mean_positions), text, 1, flops, 0, unet.channels, frozen,
                        unet=elements)

    frames = latent_frames(spec, stage.frames)
    image = _image_tokens(spec, backbone, stage)
    if edit is None:
        edit = edit_share(stage, spec.data.datasets) > 0
    if isinstance(backbone, MMDiT) and backbone.context_images == "sequence" and edit:
        image *= 2  # Kontext: the context image's tokens join the target's on the sequence axis
    inner = backbone.num_heads * backbone.head_dim
    glyph = _glyph(spec)[1]
    if isinstance(backbone, MMDiT):
        text += glyph  # glyph tokens follow the text tokens through the text stream
        layers = backbone.double_blocks + backbone.single_blocks
        attention = layers * 4 * (image + text) ** 2 * inner
    else:
        assert isinstance(backbone, DiT)
        layers = backbone.depth
        if backbone.text_conditioning == "in_context":
            attention = layers * 4 * (image + text) ** 2 * inner
        else:
            attention = layers * 4 * (image * image + image * text) * inner
    linear = 2 * (count.image_token * image + count.text_token * text + count.joint_token * (image + text)
                  + count.glyph_token * glyph + count.sample)
    flops = linear + attention + encoder_flops
    return Workload(stage.model, count, image, text, frames, flops, layers, backbone.hidden_size, frozen,
                    transformer_shape(backbone))


def transformer_shape(backbone: MMDiT | DiT) -> TransformerShape:
    """The family and sizes activation memory is planned from (memory.ACTIVATION_COEFFICIENTS)."""
    if isinstance(backbone, MMDiT):
        family = backbone.block_style
    else:
        family = "cogvideox" if backbone.modulation == "adaln_expert" else "dit"
    ffn = getattr(backbone, "ffn_dim", None) or int(backbone.hidden_size * backbone.mlp_ratio)
    blocks = tuple((name, getattr(backbone, field)) for name, field in BLOCK_FIELDS[family].items()
                   if getattr(backbone, field))
    return TransformerShape(family, blocks, backbone.hidden_size, ffn, backbone.num_heads, backbone.head_dim)


def _unet(cascade: Cascade, name: str) -> UNetStage:
    for unet in cascade.stages:
        if unet.name == name:
            return unet
    return cascade.stages[0]


def mean_forward_flops(spec: Spec, stage: Stage) -> float:
    """Forward FLOPs of one sample averaged over a progressive stage's resolutions, each trained for an equal
    share of the stage's steps (the schema names the sizes, not their split: the assumption plan.md states),
    and over a joint stage's tasks by their shares (an edit's reference tokens only in the edit share).
    Memory is planned at the largest, which must fit; time at the mean."""
    sizes = stage.resolutions
    edits = edit_share(stage, spec.data.datasets)  # a joint stage's micro-batches: edits, and generation the rest
    mixed = 0.0
    for size in sizes:
        single = stage.model_copy(update={"resolutions": [size]})
        mixed += edits * workload(spec, single, edit=True).forward_flops
        mixed += (1 - edits) * workload(spec, single, edit=False).forward_flops
    return mixed / len(sizes)


@dataclass(frozen=True)
class LossPasses:
    """Passes over one sample that a stage's loss runs, in units of one forward of the network.

    Read off runtime/train/losses.py:
      plain denoising       the student over 1 sample; nothing frozen
      guidance distillation the student over 1; the teacher forward on [cond, uncond] in one batched call:
                            2 forwards, no backward (distillation.py guided_teacher_target)
      LADD (adversarial and timestep distillation, LADD assumed)
                            the student over 1; the teacher forward on the student's re-noised sample with
                            gradients to the student's input (1 forward + 1 input-gradient backward, about one
                            forward: the teacher's weights take no gradient), then the discriminator step's two
                            no-grad teacher forwards (fake, real): 4. The grad-enabled teacher call keeps its
                            activations until the student's backward, beside the student's: a frozen network's
                            (memory.FROZEN_ACTIVATION_COEFFICIENTS), whole (the runtime does not split the
                            teacher over the sequence-parallel group). The teacher's blocks are checkpointed
                            when the student's are (LaddLoss checkpoint_teacher): one more teacher forward, the
                            backward's recompute through every block up to the last tapped one (the last block)
      Diffusion-DPO         the student over 2 (preferred + rejected concatenated); the reference forward over
                            the same 2, no backward
    """

    student_samples: int = 1  # the student's forward + backward runs over this many samples per sample
    frozen_forwards: float = 0.0  # teacher / reference passes per sample (forward, or an input-only backward)
    frozen_copy: bool = False  # a teacher or reference network is resident
    teacher_activations: bool = False  # the teacher runs with gradients to its input: its activations are kept


def loss_passes(stage: Stage) -> LossPasses:
    """What the stage's loss runs per sample beyond the student's forward + backward (see LossPasses)."""
    kind = stage.loss.kind if stage.loss is not None else None
    if kind == "guidance_distillation":
        return LossPasses(frozen_forwards=2, frozen_copy=True)
    if kind in ("ladd", "timestep_distillation"):
        return LossPasses(frozen_forwards=4, frozen_copy=True, teacher_activations=True)
    if kind == "diffusion_dpo":
        return LossPasses(student_samples=2, frozen_forwards=2, frozen_copy=True)
    return LossPasses(frozen_copy=stage.teacher is not None)


def training_flops(work: Workload, checkpointing: bool, passes: LossPasses = LossPasses(),
                   forward: float | None = None) -> float:
    """FLOPs of one sample's training step: the student's forward + backward (backward twice the forward;
    checkpointing recomputes the forward once) over `passes.student_samples`, plus the teacher's or
    reference's forwards (no weight gradients), and with checkpointing LADD's teacher's recompute.
    `forward`: one forward's FLOPs if not the workload's (a progressive stage's mean over its resolutions)."""
    forward = work.forward_flops if forward is None else forward
    teacher_recompute = 1 if checkpointing and passes.teacher_activations else 0
    return forward * ((4 if checkpointing else 3) * passes.student_samples + passes.frozen_forwards
                      + teacher_recompute)


def sample_activation_bytes(work: Workload, passes: LossPasses, checkpointing: bool, sp: int, precision: str) -> float:
    """Activation bytes per micro-batch sample of a stage (the planner's and each bucket's): the student's over
    the samples its loss runs (DPO: preferred + rejected), with 1/sp of the image/video tokens under sequence
    parallelism, and LADD's teacher's: a frozen network's, checkpointed with the student, whole under sequence
    parallelism (LossPasses)."""
    student = activation_bytes(work, checkpointing, sp, precision) * passes.student_samples
    teacher = activation_bytes(work, checkpointing, 1, precision, frozen=True) if passes.teacher_activations else 0.0
    return student + teacher


def activation_bytes(work: Workload, checkpointing: bool, sequence_parallel: int = 1,
                     precision: str = "bf16", frozen: bool = False) -> float:
    """Bytes of activations kept for backward, per sample and rank.

    Under Ulysses sequence parallelism of degree sp a rank holds 1/sp of the image/video tokens and all text
    tokens (replicated across the group: runtime/models/sequence_parallel.py).

    Transformers: per block and token, the bytes the runtime's blocks were measured to save
    (memory.transformer_activation_bytes, ACTIVATION_COEFFICIENTS). Cascade U-Nets: per ResBlock, attention
    block and convolution at each level's feature-map size, likewise measured
    (memory.unet_activation_bytes, UNET_ACTIVATION_COEFFICIENTS).

    frozen: the network's weights are frozen and the gradient flows to its input only (LADD's teacher); the
    U-Nets' trained figure is then an upper bound (no cascade stage distils with LADD).
    """
    if work.transformer is not None:
        image = work.image_tokens / sequence_parallel
        return transformer_activation_bytes(work.transformer, image, work.text_tokens, precision, checkpointing,
                                            frozen)
    unet = work.unet
    return unet_activation_bytes(unet.total, unet.levels, unet.boundary, precision, checkpointing)
