"""The architecture section: backbone family, text encoders, latent or pixel space, positions, QK-norm.

Backbones are a discriminated union on `kind`: `mmdit` (FLUX, Qwen-Image, Seedream), `dit` with
cross-attention to text (Wan, Allegro, Hailuo), `spacetime_dit` (Sora: images are one-frame videos), and
`cascade` (Imagen 1: a base pixel U-Net and super-resolution U-Nets). A documented parameter count
is kept apart from the count the planner computes from the dimensions.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from compiler.schema.provenance import Node

EncoderRole = Literal["pooled", "tokens", "cross_attention", "glyph"]


class TextEncoder(Node):
    """A frozen (or trained) text encoder and how the backbone consumes it."""

    name: str
    model: str = Field(description="model identifier, e.g. google/t5-v1_1-xxl")
    role: EncoderRole = Field(
        description="pooled: a vector into modulation; tokens: a sequence joined with image tokens; "
        "cross_attention: keys/values of cross-attention; glyph: character-level text for rendering"
    )
    dim: int | None = Field(None, gt=0, description="output width")
    max_tokens: int | None = Field(None, gt=0)
    params: float | None = Field(None, gt=0, description="documented parameter count")
    frozen: bool = True


class LatentSpace(Node):
    """A VAE latent space: channels and compression in space and time."""

    kind: Literal["latent"] = "latent"
    vae: str
    channels: int = Field(gt=0)
    spatial_compression: int = Field(gt=0, description="pixels per latent cell along height and width")
    temporal_compression: int = Field(1, gt=0, description="frames per latent frame (video VAEs)")
    causal: bool = Field(False, description="first frame encoded alone: frame counts must be 1 + k * temporal")
    scaling_factor: float | None = None
    shift_factor: float | None = None
    params: float | None = Field(None, gt=0)


class PixelSpace(Node):
    """Diffusion directly on pixels (Imagen 1's cascade)."""

    kind: Literal["pixel"] = "pixel"
    channels: int = 3


class LearnedPositions(Node):
    """Learned absolute position embeddings."""

    kind: Literal["learned"] = "learned"


class Rope(Node):
    """Rotary embeddings factorised over position axes; `axes_dims` split the head dimension."""

    kind: Literal["rope"] = "rope"
    axes: list[Literal["index", "t", "h", "w"]] = Field(description="position axes, in the order of axes_dims")
    axes_dims: list[int] = Field(description="rotary dims per axis; sum to the head dimension")
    theta: float = Field(10000.0, gt=0)
    text: Literal["none", "zeros", "cross_modality"] = Field(
        "zeros", description="how text tokens are positioned: unrotated, at position 0, or on their own axis"
    )


class MSRope(Node):
    """Qwen-Image's Multimodal Scalable RoPE: image positions centred, text placed on the diagonal after them."""

    kind: Literal["msrope"] = "msrope"
    axes: list[Literal["index", "t", "h", "w"]] = Field(default_factory=lambda: ["index", "h", "w"])
    axes_dims: list[int]
    theta: float = Field(10000.0, gt=0)
    centred: bool = True


class ScaledRope(Node):
    """RoPE whose positions are rescaled to a reference grid so other resolutions interpolate."""

    kind: Literal["scaled_rope"] = "scaled_rope"
    axes: list[Literal["index", "t", "h", "w"]]
    axes_dims: list[int]
    theta: float = Field(10000.0, gt=0)
    reference_grid: list[int] = Field(description="grid size per axis the positions are scaled to")


PositionalEncoding = Annotated[Union[LearnedPositions, Rope, MSRope, ScaledRope], Field(discriminator="kind")]
QKNorm = Literal["none", "rmsnorm_per_head", "rmsnorm_across_heads", "layernorm_per_head"]


class Backbone(Node):
    """Fields every transformer backbone shares."""

    hidden_size: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    patch_size: tuple[int, int, int] = Field((1, 2, 2), description="(time, height, width) in latent cells")
    in_channels: int = Field(
        gt=0,
        description="as in the family's diffusers config: MMDiT, the packed token width (FLUX 16 x 2 x 2 = 64); "
        "DiT, latent channels per cell (Wan 16)",
    )
    out_channels: int = Field(
        gt=0,
        description="as in the family's diffusers config: FLUX, the packed width (64); Qwen-Image and DiT, "
        "latent channels per cell (16)",
    )
    mlp_ratio: float = Field(4.0, gt=0)
    qkv_bias: bool = True
    qk_norm: QKNorm = "rmsnorm_per_head"
    norm_eps: float = Field(1e-6, gt=0)
    positions: PositionalEncoding


class MMDiT(Backbone):
    """Multimodal DiT: double-stream blocks (separate text/image weights) then single-stream blocks."""

    kind: Literal["mmdit"] = "mmdit"
    double_blocks: int = Field(ge=0)
    single_blocks: int = Field(ge=0)
    context_dim: int = Field(gt=0, description="width of the token text encoder's output")
    pooled_dim: int | None = Field(None, gt=0, description="width of the pooled text vector, if any")
    guidance_embed: bool = Field(False, description="guidance scale embedded like the timestep (distilled CFG)")
    context_images: Literal["none", "sequence"] = Field(
        "none", description="reference images appended to the image tokens on the sequence axis (Kontext)"
    )
    text_input_norm: bool = Field(False, description="RMSNorm on the text encoder output (Qwen-Image)")
    block_style: Literal["flux", "qwen_image"] = "flux"


class DiT(Backbone):
    """DiT whose blocks self-attend over image/video tokens and cross-attend to text tokens."""

    kind: Literal["dit"] = "dit"
    depth: int = Field(gt=0)
    ffn_dim: int | None = Field(None, gt=0, description="MLP width; defaults to hidden_size * mlp_ratio")
    text_dim: int = Field(gt=0)
    freq_dim: int = Field(256, gt=0, description="sinusoidal timestep embedding width")
    cross_attn_norm: bool = True
    modulation: Literal["adaln_single", "adaln_per_block"] = "adaln_single"
    text_conditioning: Literal["cross_attention", "in_context"] = "cross_attention"


class SpacetimeDiT(DiT):
    """DiT over spacetime patches of video latents; images train as one-frame videos (Sora)."""

    kind: Literal["spacetime_dit"] = "spacetime_dit"  # type: ignore[assignment]


class UNetStage(Node):
    """One U-Net of a pixel cascade: the base model or a super-resolution stage."""

    name: str
    resolution: int = Field(gt=0, description="output side in pixels")
    input_resolution: int | None = Field(None, gt=0, description="side of the low-res conditioning image (SR)")
    channels: int = Field(gt=0)
    channel_mult: list[int]
    res_blocks: list[int] = Field(description="residual blocks per level")
    attention_resolutions: list[int] = Field(default_factory=list, description="feature sides with self-attention")
    cross_attention: bool = True
    num_heads: int | None = Field(None, gt=0)
    head_dim: int | None = Field(None, gt=0)
    efficient: bool = Field(False, description="Efficient U-Net: params shifted to low-res blocks, reversed sampling")
    skip_scale: float = Field(1.0, gt=0, description="skip connections scaled (Efficient U-Net: 1/sqrt(2))")
    noise_conditioning_augmentation: bool = False
    params_documented: float | None = Field(None, gt=0)
    train_crop: int | None = Field(None, gt=0, description="training crop side, if trained on crops")


class Cascade(Node):
    """A base pixel U-Net followed by super-resolution U-Nets, each trained separately (Imagen 1)."""

    kind: Literal["cascade"] = "cascade"
    stages: list[UNetStage] = Field(min_length=1)


BackboneSpec = Annotated[Union[MMDiT, DiT, SpacetimeDiT, Cascade], Field(discriminator="kind")]
Space = Annotated[Union[LatentSpace, PixelSpace], Field(discriminator="kind")]


class ArchitectureSpec(Node):
    """The network: backbone, text encoders, the space it denoises in, and its size."""

    backbone: BackboneSpec
    text_encoders: list[TextEncoder]
    space: Space
    params_documented: float | None = Field(None, gt=0, description="total parameters as the authors state")
    extras: list[str] = Field(default_factory=list, description="named techniques outside the fields above")
