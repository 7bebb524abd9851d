"""The architecture section: backbone family, text encoders, latent or pixel space, positions, QK-norm.

Backbones are a discriminated union on `kind`: `mmdit` (FLUX, Qwen-Image, Seedream), `dit` with
cross-attention to text (Wan, Allegro, Hailuo), `spacetime_dit` (Sora: images are one-frame videos), and
`cascade` (Imagen 1: a base pixel U-Net and super-resolution U-Nets). A documented parameter count
is kept apart from the count the planner computes from the dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from compiler.schema.provenance import Node

EncoderRole = Literal["pooled", "tokens", "cross_attention", "glyph"]
# Which denoiser input each role feeds: the pooled vector, the text token sequence, or glyph tokens.
ROLE_INPUT = {"pooled": "pooled", "tokens": "text", "cross_attention": "text", "glyph": "glyph"}


class TextEncoder(Node):
    """A frozen (or trained) text encoder and how the backbone consumes it."""

    name: str
    model: str = Field(description="model identifier, e.g. google/t5-v1_1-xxl")
    role: EncoderRole = Field(
        description="pooled: a vector into modulation; tokens: a sequence joined with image tokens; "
        "cross_attention: keys/values of cross-attention; glyph: character-level text for rendering"
    )
    pooled: bool = Field(
        False, description="also feeds its pooled vector into the pooled input: one encoder in both roles (SD3's "
        "CLIP-L and CLIP-G give tokens and a pooled vector); role tokens or cross_attention only"
    )
    hidden_layer: int = Field(
        -1, le=-1, description="hidden state the tokens are read from, counted from the end: -1 the encoder's "
        "output (last_hidden_state), -2 the penultimate layer's (SD3 reads CLIP's hidden_states[-2])"
    )
    pooled_projection: bool = Field(
        False, description="the pooled vector through the model's text projection (CLIPTextModelWithProjection's "
        "text_embeds, as SD3 reads CLIP-L and CLIP-G); false: the pooler output (FLUX's CLIPTextModel)"
    )
    dim: int | None = Field(None, gt=0, description="output width")
    max_tokens: int | None = Field(None, gt=0)
    params: float | None = Field(None, gt=0, description="documented parameter count")
    frozen: bool = True

    @model_validator(mode="after")
    def _both_roles(self) -> TextEncoder:
        if self.pooled and self.role not in ("tokens", "cross_attention"):
            raise ValueError(f"pooled is true but role is {self.role!r}; an encoder in both roles has role 'tokens' "
                             "or 'cross_attention' and pooled true: change the role or drop pooled")
        return self

    @property
    def inputs(self) -> tuple[str, ...]:
        """The denoiser inputs this encoder feeds: its role's, then 'pooled' when it serves both roles."""
        return (ROLE_INPUT[self.role], "pooled") if self.pooled else (ROLE_INPUT[self.role],)


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
    latents_mean: list[float] | None = Field(
        None, description="per-channel latent means: latents = (z - mean) / std per channel (diffusers' "
        "AutoencoderKLWan / AutoencoderKLQwenImage latents_mean); with latents_std, instead of the two factors"
    )
    latents_std: list[float] | None = Field(None, description="per-channel latent standard deviations, each > 0")
    params: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _per_channel_statistics(self) -> LatentSpace:
        if (self.latents_mean is None) != (self.latents_std is None):
            raise ValueError("latents_mean and latents_std come together: give both (one value per channel) or neither")
        if self.latents_mean is None or self.latents_std is None:
            return self
        for name, values in (("latents_mean", self.latents_mean), ("latents_std", self.latents_std)):
            if len(values) != self.channels:
                raise ValueError(f"{name} has {len(values)} values for {self.channels} latent channels; give one "
                                 "per channel")
        if min(self.latents_std) <= 0:
            raise ValueError(f"latents_std has {min(self.latents_std)}; every standard deviation must be above 0")
        if self.scaling_factor is not None or self.shift_factor is not None:
            raise ValueError("latents_mean / latents_std normalise per channel and replace scaling_factor / "
                             "shift_factor: drop the factors")
        return self


class PixelSpace(Node):
    """Diffusion directly on pixels (Imagen 1's cascade)."""

    kind: Literal["pixel"] = "pixel"
    channels: int = 3


class LearnedPositions(Node):
    """Absolute position embeddings added to the patch tokens: a learned table, or a fixed one kept with the
    weights (SD3's sin-cos table, stored in its checkpoints as a buffer)."""

    kind: Literal["learned"] = "learned"
    max_size: int | None = Field(
        None,
        gt=0,
        description="side, in patches, of a square table an image of h x w patches takes its centred h x w crop "
        "from (SD3's pos_embed_max_size: 192); None: one vector per position of the largest grid trained",
    )
    trained: bool = Field(
        True, description="false: a fixed table (SD3's sin-cos buffer), kept with the weights but not a parameter"
    )


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
    """Multimodal DiT: double-stream blocks (separate text/image weights) then single-stream blocks.

    block_style: `flux` (FLUX.1, Seedream), `qwen_image`, `hunyuan_video` (HunyuanVideo: spacetime patches,
    5-D latents, a token refiner over the text, RoPE over (t, h, w) on the video tokens only, in_channels and
    out_channels per latent cell) and `sd3` (SD3 / SD3.5 large: double-stream blocks only, the last one's text
    stream context-pre-only, positions from a cropped table, in_channels and out_channels per latent cell).
    """

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
    block_style: Literal["flux", "qwen_image", "hunyuan_video", "sd3"] = "flux"
    token_refiner_blocks: int = Field(
        0,
        ge=0,
        description="blocks of a token refiner, an extra module with its own parameters that self-attends over "
        "the text before the MMDiT (HunyuanVideo: 2); hunyuan_video block style only",
    )

    @model_validator(mode="after")
    def _style_fields(self) -> MMDiT:
        if self.token_refiner_blocks and self.block_style != "hunyuan_video":
            raise ValueError(
                f"token_refiner_blocks is {self.token_refiner_blocks} but block_style is {self.block_style!r}; "
                "only the hunyuan_video block style has a token refiner: set it to 0 or change block_style"
            )
        if self.block_style == "sd3" and self.single_blocks:
            raise ValueError(
                f"single_blocks is {self.single_blocks} but the sd3 block style has double-stream blocks only; "
                "set single_blocks to 0"
            )
        return self


class DiT(Backbone):
    """DiT whose blocks self-attend over image/video tokens and cross-attend to text tokens."""

    kind: Literal["dit"] = "dit"
    depth: int = Field(gt=0)
    ffn_dim: int | None = Field(None, gt=0, description="MLP width; defaults to hidden_size * mlp_ratio")
    text_dim: int = Field(gt=0)
    freq_dim: int = Field(256, gt=0, description="sinusoidal timestep embedding width")
    cross_attn_norm: bool = True
    modulation: Literal["adaln_single", "adaln_per_block", "adaln_expert"] = Field(
        "adaln_single",
        description="adaln_single: one shared time projection plus a table per block (Wan, PixArt-alpha); "
        "adaln_per_block: a Linear(d, 6d) per block (DiT); adaln_expert: per block, separate chunks for the "
        "text and the video tokens from a conditioning vector of width cond_dim (CogVideoX, in-context text)",
    )
    cond_dim: int | None = Field(
        None, gt=0, description="width of the conditioning vector the modulation reads (CogVideoX's "
        "time_embed_dim: 512); None: hidden_size"
    )

    @model_validator(mode="after")
    def _expert_fields(self) -> DiT:
        if self.modulation == "adaln_expert" and self.text_conditioning != "in_context":
            raise ValueError(
                "modulation is 'adaln_expert' but text_conditioning is 'cross_attention'; expert adaLN modulates "
                "text tokens inside the sequence: set text_conditioning to 'in_context'"
            )
        if self.cond_dim is not None and self.modulation != "adaln_expert":
            raise ValueError(
                f"cond_dim is {self.cond_dim} but modulation is {self.modulation!r}; only adaln_expert reads a "
                "conditioning vector of its own width: drop cond_dim or set modulation to 'adaln_expert'"
            )
        return self
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


@dataclass(frozen=True)
class TextRegion:
    """Where one encoder's output sits in a denoiser input: positions [token_start, token_stop) on the
    sequence axis (None: the whole input has no sequence axis, or the stop is open) and channels
    [feature_start, feature_stop) on the feature axis."""

    input: str  # 'text', 'pooled' or 'glyph'
    token_start: int | None
    token_stop: int | None
    feature_start: int
    feature_stop: int


class ArchitectureSpec(Node):
    """The network: backbone, text encoders, the space it denoises in, and its size."""

    backbone: BackboneSpec
    text_encoders: list[TextEncoder]
    joint_tokens: list[list[str]] = Field(
        default_factory=list,
        description="several token encoders making the one text sequence the backbone reads: the encoders of "
        "each inner list concatenated along the feature axis (their max_tokens equal), each list zero-padded "
        "on the feature axis to the widest list, then the lists concatenated along the sequence in order (SD3: "
        "[[clip_l, clip_g], [t5]]: 77 tokens of 768 + 1280 = 2048 padded to 4096, then T5's 256 tokens); "
        "empty: at most one token encoder. Pooled vectors of several encoders are concatenated in "
        "text_encoders order (SD3: 768 + 1280 = 2048)",
    )
    space: Space
    params_documented: float | None = Field(None, gt=0, description="total parameters as the authors state")
    extras: list[str] = Field(default_factory=list, description="named techniques outside the fields above")

    @model_validator(mode="after")
    def _joint_lists(self) -> ArchitectureSpec:
        names = [name for group in self.joint_tokens for name in group]
        if any(not group for group in self.joint_tokens):
            raise ValueError(f"joint_tokens {self.joint_tokens} has an empty list; each list names the encoders "
                             "concatenated along the feature axis: drop the empty one")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"joint_tokens names {repeated} more than once; each token encoder sits in one place")
        return self

    def token_groups(self) -> list[list[TextEncoder]]:
        """The token encoders, grouped as they are joined: joint_tokens' lists, else each encoder alone."""
        by_name = {encoder.name: encoder for encoder in self.text_encoders if ROLE_INPUT[encoder.role] == "text"}
        if self.joint_tokens:  # names that are no token encoder: architecture.joint-tokens-cover-encoders
            return [[by_name[name] for name in group if name in by_name] for group in self.joint_tokens]
        return [[encoder] for encoder in self.text_encoders if ROLE_INPUT[encoder.role] == "text"]

    def text_regions(self) -> dict[str, list[TextRegion]]:
        """Per encoder name, where its outputs sit in the denoiser inputs it feeds.

        Token lists (joint_tokens) follow one another on the sequence axis, each max_tokens long (the last
        open-ended: precomputed text keeps the real tokens only), and within a list the encoders follow one
        another on the feature axis; pooled vectors follow one another on the feature axis in text_encoders
        order (diffusers StableDiffusion3Pipeline.encode_prompt). Needs every width (dim) set."""
        regions: dict[str, list[TextRegion]] = {encoder.name: [] for encoder in self.text_encoders}
        groups = self.token_groups()
        start = 0
        for index, group in enumerate(groups):
            if not group:
                continue
            last = index == len(groups) - 1
            stop = None if last else start + (group[0].max_tokens or 0)
            feature = 0
            for encoder in group:
                regions[encoder.name].append(TextRegion("text", start, stop, feature, feature + (encoder.dim or 0)))
                feature += encoder.dim or 0
            start = stop or start
        feature = 0
        for encoder in self.text_encoders:
            if "pooled" in encoder.inputs:
                regions[encoder.name].append(TextRegion("pooled", None, None, feature, feature + (encoder.dim or 0)))
                feature += encoder.dim or 0
            if encoder.role == "glyph":
                regions[encoder.name].append(TextRegion("glyph", None, None, 0, encoder.dim or 0))
        return regions

    def text_width(self) -> int:
        """Width of the text token input: the widest token list's summed dims (0 without token encoders)."""
        return max((sum(encoder.dim or 0 for encoder in group) for group in self.token_groups()), default=0)

    def text_tokens(self) -> int:
        """Length of the text token input: the token lists' max_tokens, summed (each list's first encoder's)."""
        return sum(group[0].max_tokens or 0 for group in self.token_groups() if group)

    def pooled_width(self) -> int:
        """Width of the pooled input: the pooled vectors' dims, summed (0 without pooled encoders)."""
        return sum(encoder.dim or 0 for encoder in self.text_encoders if "pooled" in encoder.inputs)
