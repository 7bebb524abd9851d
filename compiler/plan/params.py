"""Parameter counts computed from an architecture section, term by term, the way the modules are built.

Counts follow the runtime's modules (runtime/models: flux.py, qwen_image.py, wan.py, unet.py), which follow
diffusers' FluxTransformer2DModel, QwenImageTransformer2DModel and WanTransformer3DModel and NeMo's Imagen
U-Nets, so they can be checked against a model instantiated on the meta device. Variants the runtime does
not build (a DiT's per-block adaLN and in-context text, bias-free QKV, LayerNorm QK norms, learned
positions) are counted as their papers build them. Each count is split by what it is applied to, because
FLOPs depend on it:

  per image token   patch embedding, image-stream attention and MLP, output projection
  per text token    text embedding, text-stream weights (MMDiT double blocks), cross-attention K/V
  per joint token   weights over the joint [text, image] sequence: FLUX single-stream blocks, the blocks of
                    an in-context-text DiT
  per glyph token   the glyph encoder's projection (Seedream)
  encoders          text encoders trained with the network, each over its own tokens
  per sample        timestep / guidance / pooled-text embeddings and all adaLN modulation linears

NOTE: modulation is 3.25B of FLUX's 11.9B parameters but runs once per sample, not once per token,
which is why MMDiT FLOPs are not 6 N per token.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from compiler.schema.architecture import DiT, MMDiT, QKNorm, SpacetimeDiT, UNetStage


def linear(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


@dataclass(frozen=True)
class ParamCount:
    """Parameters of one trained network, by what they are applied to."""

    image_token: int
    text_token: int
    sample: int
    other: int  # norms and tables: counted, negligible FLOPs
    largest_layer: int  # the biggest single block, for ZeRO-3's live-parameter estimate
    blocks: int
    joint_token: int = 0
    glyph_token: int = 0
    encoders: int = 0  # text encoders trained with the network (frozen: false), over their own tokens

    @property
    def total(self) -> int:
        return (self.image_token + self.text_token + self.joint_token + self.glyph_token + self.sample + self.other
                + self.encoders)


def _mlp(d: int, hidden: int) -> int:
    return linear(d, hidden) + linear(hidden, d)


def qk_norm_params(qk_norm: QKNorm, head_dim: int, inner: int) -> int:
    """Weights of one attention's q and k norms: RMSNorm has a scale, LayerNorm a scale and a bias."""
    return {"none": 0, "rmsnorm_per_head": 2 * head_dim, "rmsnorm_across_heads": 2 * inner,
            "layernorm_per_head": 4 * head_dim}[qk_norm]


def count_mmdit(arch: MMDiT, pooled: bool, glyph_dim: int | None = None) -> ParamCount:
    """FLUX-style (double + single stream) or Qwen-Image-style (double stream only) MMDiT.

    `pooled`: a pooled text encoder feeds `pooled_dim`; `glyph_dim`: the width of a glyph encoder whose
    tokens are projected to `context_dim` and follow the text tokens (flux block style, Seedream).
    """
    d, inner, hd = arch.hidden_size, arch.num_heads * arch.head_dim, arch.head_dim
    mlp_hidden = int(d * arch.mlp_ratio)
    _, ph, pw = arch.patch_size
    qk_norm = qk_norm_params(arch.qk_norm, hd, inner)
    # FLUX's proj_out emits packed channels; Qwen-Image's emits out_channels per cell of a p x p patch.
    out_width = arch.out_channels if arch.block_style == "flux" else arch.out_channels * ph * pw

    double_image = 3 * linear(d, inner, arch.qkv_bias) + linear(inner, d) + _mlp(d, mlp_hidden)
    double_text = double_image
    double_sample = 2 * linear(d, 6 * d)
    double_other = 2 * qk_norm
    single_tokens = 3 * linear(d, inner, arch.qkv_bias) + linear(d, mlp_hidden) + linear(inner + mlp_hidden, d)
    single_sample = linear(d, 3 * d)

    embed_sample = linear(256, d) + linear(d, d)  # sinusoidal timestep features (256) -> MLP
    if arch.guidance_embed:
        embed_sample += linear(256, d) + linear(d, d)
    if pooled and arch.pooled_dim:
        embed_sample += linear(arch.pooled_dim, d) + linear(d, d)
    other = arch.context_dim if arch.text_input_norm else 0  # RMSNorm weight on the text input
    glyph = linear(glyph_dim, arch.context_dim) + linear(arch.context_dim, arch.context_dim) if glyph_dim else 0

    n_double, n_single = arch.double_blocks, arch.single_blocks
    return ParamCount(
        image_token=linear(arch.in_channels, d) + n_double * double_image + linear(d, out_width),
        text_token=linear(arch.context_dim, d) + n_double * double_text,
        joint_token=n_single * single_tokens,
        glyph_token=glyph,
        sample=embed_sample + n_double * double_sample + n_single * single_sample + linear(d, 2 * d),
        other=other + n_double * double_other + n_single * qk_norm,
        largest_layer=max(double_image + double_text + double_sample + double_other,
                          single_tokens + single_sample + qk_norm if n_single else 0),
        blocks=n_double + n_single,
    )


def count_video_mmdit(arch: MMDiT, pooled: bool) -> ParamCount:
    """HunyuanVideo-style MMDiT (runtime/models/hunyuan_video.py, diffusers HunyuanVideoTransformer3DModel): the
    FLUX blocks over spacetime patches (in/out channels per latent cell), and a token refiner in place of
    FLUX's text projection: its own timestep + pooled-text conditioning, a projection to the width, and
    blocks of LayerNorm, self-attention and a SiLU MLP whose residuals are gated from the conditioning."""
    flux = count_mmdit(arch.model_copy(update={"block_style": "flux"}), pooled)
    d, inner = arch.hidden_size, arch.num_heads * arch.head_dim
    pt, ph, pw = arch.patch_size
    cells = pt * ph * pw
    mlp_hidden = int(d * arch.mlp_ratio)
    # FLUX's terms for a patch embedding and output over packed channels, replaced by per-cell ones.
    image_io = linear(arch.in_channels, d) + linear(d, arch.out_channels)
    patch_io = linear(arch.in_channels * cells, d) + linear(d, arch.out_channels * cells)
    refiner_tokens = 3 * linear(d, inner) + linear(inner, d) + _mlp(d, mlp_hidden)
    # The refiner's conditioning (timestep MLP + mean-pooled text MLP) and each block's gates, once per sample;
    # its projection to the width is FLUX's text projection, already counted.
    blocks = arch.token_refiner_blocks
    refiner_sample = linear(256, d) + linear(d, d) + linear(arch.context_dim, d) + linear(d, d)
    return replace(
        flux,
        image_token=flux.image_token - image_io + patch_io,
        text_token=flux.text_token + blocks * refiner_tokens,
        sample=flux.sample + refiner_sample + blocks * linear(d, 2 * d),
        other=flux.other + blocks * 4 * d,  # two affine LayerNorms per refiner block
    )


def count_sd3(arch: MMDiT, pooled: bool) -> ParamCount:
    """SD3-class MMDiT (runtime/models/sd3.py, diffusers SD3Transformer2DModel): double-stream blocks only,
    the last one context-pre-only (text modulation to scale and shift only, no text output projection or
    MLP); a Conv2d patch embedding over latent cells. A fixed position table (`trained: false`) is a buffer,
    not counted here; a trained one is added by the caller."""
    d, inner, hd = arch.hidden_size, arch.num_heads * arch.head_dim, arch.head_dim
    _, ph, pw = arch.patch_size
    mlp = _mlp(d, int(d * arch.mlp_ratio))
    qk_norm = 2 * qk_norm_params(arch.qk_norm, hd, inner)  # image and text streams
    image = 3 * linear(d, inner, arch.qkv_bias) + linear(inner, d) + mlp
    text = 3 * linear(d, inner, arch.qkv_bias) + linear(inner, d) + mlp
    text_last = 3 * linear(d, inner, arch.qkv_bias)  # queries, keys and values only
    n = arch.double_blocks
    embed_sample = linear(256, d) + linear(d, d)
    if pooled and arch.pooled_dim:
        embed_sample += linear(arch.pooled_dim, d) + linear(d, d)
    block_sample = 2 * linear(d, 6 * d)
    last_sample = linear(d, 6 * d) + linear(d, 2 * d)
    return ParamCount(
        image_token=linear(arch.in_channels * ph * pw, d) + n * image + linear(d, arch.out_channels * ph * pw),
        text_token=linear(arch.context_dim, d) + (n - 1) * text + text_last if n else linear(arch.context_dim, d),
        sample=embed_sample + (n - 1) * block_sample + last_sample + linear(d, 2 * d) if n else embed_sample,
        other=n * qk_norm,
        largest_layer=image + text + block_sample + qk_norm,
        blocks=n,
    )


def count_expert_dit(arch: DiT | SpacetimeDiT) -> ParamCount:
    """Expert-adaLN DiT (runtime/models/cogvideox.py, diffusers CogVideoXTransformer3DModel): text tokens in
    the sequence share the attention and MLP weights; each block has two modulations (before attention and
    before the MLP), each a Linear(cond_dim, 6d) into separate text and video chunks plus an affine LayerNorm;
    the timestep's freq_dim-wide sinusoid is lifted to cond_dim; the text is projected by one linear."""
    d, inner = arch.hidden_size, arch.num_heads * arch.head_dim
    cond = arch.cond_dim or d
    ffn = arch.ffn_dim or int(d * arch.mlp_ratio)
    pt, ph, pw = arch.patch_size
    qk_norm = qk_norm_params(arch.qk_norm, arch.head_dim, inner)
    block_tokens = 3 * linear(d, inner, arch.qkv_bias) + linear(inner, d) + _mlp(d, ffn)
    block_sample = 2 * linear(cond, 6 * d)
    block_other = qk_norm + 2 * 2 * d
    cells = pt * ph * pw
    return ParamCount(
        image_token=linear(arch.in_channels * cells, d) + linear(d, arch.out_channels * cells),
        text_token=linear(arch.text_dim, d),
        joint_token=arch.depth * block_tokens,
        sample=linear(arch.freq_dim, cond) + linear(cond, cond) + arch.depth * block_sample + linear(cond, 2 * d),
        other=arch.depth * block_other + 2 * d + 2 * d,  # norm_final and the output modulation's LayerNorm
        largest_layer=block_tokens + block_sample + block_other,
        blocks=arch.depth,
    )


def count_dit(arch: DiT | SpacetimeDiT) -> ParamCount:
    """DiT in Wan 2.1's structure: self-attention, cross-attention to the text (or, with in-context text,
    the text tokens joining the self-attention sequence: no cross-attention), GELU MLP.

    Modulation `adaln_single` (Wan, PixArt-alpha): one shared time projection to 6d plus a learned (6, d)
    table per block and a (2, d) table before the output. `adaln_per_block` (DiT, Peebles & Xie 2023,
    arXiv:2212.09748, models.py DiTBlock.adaLN_modulation and FinalLayer): a SiLU -> Linear(d, 6d) per block
    and a Linear(d, 2d) before the output, no tables.
    """
    d, inner = arch.hidden_size, arch.num_heads * arch.head_dim
    ffn = arch.ffn_dim or int(d * arch.mlp_ratio)
    pt, ph, pw = arch.patch_size
    qk_norm = qk_norm_params(arch.qk_norm, arch.head_dim, inner)
    bias = arch.qkv_bias
    in_context = arch.text_conditioning == "in_context"

    self_attn = 3 * linear(d, inner, bias) + linear(inner, d)  # q, k, v, out over the sequence
    if in_context:
        cross_image = cross_text = 0
        block_other = qk_norm
    else:
        cross_image = linear(d, inner, bias) + linear(inner, d)  # cross-attention q and out over video tokens
        cross_text = 2 * linear(d, inner, bias)  # k, v over text tokens already projected to d
        block_other = 2 * qk_norm + (2 * d if arch.cross_attn_norm else 0)
    block_tokens = self_attn + _mlp(d, ffn)  # applied to video tokens, and to text tokens in context

    time_embed = linear(arch.freq_dim, d) + linear(d, d)
    if arch.modulation == "adaln_single":
        block_sample = 0
        sample = time_embed + linear(d, 6 * d)
        block_other += 6 * d
        other = arch.depth * block_other + 2 * d
    else:
        block_sample = linear(d, 6 * d)
        sample = time_embed + arch.depth * block_sample + linear(d, 2 * d)
        other = arch.depth * block_other

    patch_embed = linear(arch.in_channels * pt * ph * pw, d)
    proj_out = linear(d, arch.out_channels * pt * ph * pw)
    text_embed = linear(arch.text_dim, d) + linear(d, d)
    return ParamCount(
        image_token=patch_embed + proj_out + arch.depth * (cross_image + (0 if in_context else block_tokens)),
        text_token=text_embed + arch.depth * cross_text,
        joint_token=arch.depth * block_tokens if in_context else 0,
        sample=sample,
        other=other,
        largest_layer=block_tokens + cross_image + cross_text + block_sample + block_other,
        blocks=arch.depth,
    )


class _UNetWalk:
    """Adds up a cascade U-Net's parameters and forward FLOPs module by module, in runtime/models/unet.py's
    structure (NeMo's Imagen UNetModel and EfficientUNetModel). A weight applied at every position of a
    feature map costs 2 FLOPs per position; `scale` is the training side over the nominal resolution."""

    def __init__(self, stage: UNetStage, text_dim: int, image_channels: int, text_tokens: int, scale: float):
        self.stage, self.text_dim, self.text_tokens, self.scale = stage, text_dim, text_tokens, scale
        self.image_channels = image_channels
        self.temb = 4 * stage.channels
        self.spatial = self.text = self.sample = self.other = 0
        self.flops = 0.0
        self.largest = 0
        # Activation elements by kind (memory.UNET_ACTIVATION_COEFFICIENTS): ResBlock inputs and outputs,
        # attention blocks' widths by kind, and the inputs the convolutions and norms outside them keep.
        self.saved: dict[str, float] = {}
        self.levels: list[dict[str, float]] = []  # the same, per checkpointed level
        self.boundary = 0.0  # elements a checkpointed level keeps: its input and the skips it hands on
        self._mark: dict[str, float] = {}

    def positions(self, side: int) -> float:
        return (side * self.scale) ** 2

    def save(self, kind: str, elements: float) -> None:
        self.saved[kind] = self.saved.get(kind, 0.0) + elements

    def begin_level(self) -> int:
        """Mark a level's start; returns the parameter total so far (for `level`)."""
        self._mark = dict(self.saved)
        return self.total()

    def conv(self, c_in: int, c_out: int, kernel: int, side: int) -> int:
        params = c_in * c_out * kernel * kernel + c_out
        self.spatial += params
        self.flops += 2 * params * self.positions(side)
        return params

    def norm(self, channels: int) -> int:
        self.other += 2 * channels  # GroupNorm scale and shift
        return 2 * channels

    def resblock(self, c_in: int, c_out: int, side: int) -> int:
        params = self.norm(c_in) + self.conv(c_in, c_out, 3, side) + self.norm(c_out) + self.conv(c_out, c_out, 3, side)
        if c_in != c_out:
            params += self.conv(c_in, c_out, 1, side)
        self.sample += linear(self.temb, 2 * c_out)  # time embedding -> scale and shift, once per sample
        self.save("resblock_in", self.positions(side) * c_in)
        self.save("resblock_out", self.positions(side) * c_out)
        return params + linear(self.temb, 2 * c_out)

    def attention(self, channels: int, side: int, has_self: bool, has_text: bool) -> int:
        if not (has_self or has_text):
            return 0
        stage = self.stage
        if stage.head_dim is None and stage.num_heads is not None:
            inner = stage.num_heads * (channels // stage.num_heads)
        else:
            head_dim = min(stage.head_dim or 64, channels)  # runtime/models/unet.py HEAD_DIM
            inner = channels // head_dim * head_dim
        image = linear(channels, inner) * (3 if has_self else 1) + linear(inner, channels)
        text = 2 * linear(self.text_dim, inner) if has_text else 0
        n = self.positions(side)
        keys = (n if has_self else 0) + ((1 + self.text_tokens) if has_text else 0)  # + the learned null token
        self.spatial += image
        self.text += text
        self.other += 2 * channels + (2 * inner if has_text else 0)  # GroupNorm, null key and value
        self.flops += 2 * image * n + 2 * text * self.text_tokens + 4 * n * keys * inner
        self.save("attention_" + ("self_text" if has_self and has_text else "self" if has_self else "text"), n * channels)
        return image + text + 2 * channels + (2 * inner if has_text else 0)

    def level_sides(self) -> list[int]:
        stage, levels = self.stage, len(self.stage.channel_mult)
        if not stage.efficient:
            return [stage.resolution // 2**i for i in range(levels)]
        return [stage.resolution // 2 ** min(i + 1, levels - 1) for i in range(levels)]

    def attention_at(self, side: int) -> tuple[bool, bool]:
        """Self-attention at the listed sides; text attention with it, or at the deepest level without it."""
        has_self = side in self.stage.attention_resolutions
        text_sides = self.stage.attention_resolutions or [min(self.level_sides())]
        return has_self, self.stage.cross_attention and side in text_sides

    def block(self, c_in: int, c_out: int, side: int, attention: bool) -> None:
        self.resblock(c_in, c_out, side)
        if attention:
            self.attention(c_out, side, *self.attention_at(side))

    def total(self) -> int:
        return self.spatial + self.text + self.sample + self.other

    def level(self, start: int) -> None:
        """Close a level begun when the total was `start` (begin_level): levels are the repeated (checkpointed)
        blocks."""
        self.largest = max(self.largest, self.total() - start)
        self.levels.append({kind: value - self._mark.get(kind, 0.0) for kind, value in self.saved.items()})

    def conditioning(self) -> None:
        c, temb = self.stage.channels, self.temb
        embedders = 2 + (1 if self.stage.noise_conditioning_augmentation else 0)  # time, pooled text, noise level
        self.sample += (embedders - 1) * (linear(c, temb) + linear(temb, temb))
        self.sample += linear(self.text_dim, temb) + linear(temb, temb)
        self.other += 2 * self.text_dim  # LayerNorm on the text tokens

    def base(self, widths: list[int], sides: list[int], in_channels: int) -> None:
        stage, levels = self.stage, len(widths)
        self.conv(in_channels, widths[0], 3, stage.resolution)
        self.save("input", self.positions(stage.resolution) * in_channels)
        skips, width = [widths[0]], widths[0]
        for level in range(levels):
            start = self.begin_level()
            self.boundary += self.positions(sides[level]) * width  # the level's input
            for index in range(stage.res_blocks[level]):
                self.block(width if index == 0 else widths[level], widths[level], sides[level], True)
            width = widths[level]
            skips += [width] * stage.res_blocks[level]
            self.boundary += self.positions(sides[level]) * width * stage.res_blocks[level]  # skips held
            if level < levels - 1:
                self.conv(width, width, 3, sides[level + 1])
                self.save("input", self.positions(sides[level]) * width)  # the strided conv's input
                skips.append(width)
            self.level(start)
        self.block(width, width, sides[-1], False)
        self.attention(width, sides[-1], True, stage.cross_attention)
        self.block(width, width, sides[-1], False)
        for level in reversed(range(levels)):
            start = self.begin_level()
            self.boundary += self.positions(sides[level]) * width
            for _ in range(stage.res_blocks[level] + 1):
                self.block(width + skips.pop(), widths[level], sides[level], True)
                width = widths[level]
            if level > 0:
                self.conv(width, width, 3, sides[level - 1])
                self.save("input", self.positions(sides[level - 1]) * width)  # the upsampled map the conv keeps
            self.level(start)
        self.norm(width)
        self.conv(width, self.image_channels, 3, stage.resolution)
        self.save("input", 3 * self.positions(stage.resolution) * width)  # norm_out, SiLU and conv_out inputs

    def efficient(self, widths: list[int], sides: list[int], in_channels: int) -> None:
        stage, levels = self.stage, len(widths)
        inputs = [widths[0]] + widths[:-1]
        self.conv(in_channels, widths[0], 3, stage.resolution)
        self.save("input", self.positions(stage.resolution) * in_channels)
        for level in range(levels):
            start = self.begin_level()
            input_side = 2 * sides[level] if level < levels - 1 else sides[level]
            self.boundary += self.positions(input_side) * inputs[level]
            if level < levels - 1:
                self.conv(inputs[level], inputs[level], 4, sides[level])  # strided 4x4 down
                self.save("input", self.positions(input_side) * inputs[level])
            for index in range(stage.res_blocks[level]):
                self.block(inputs[level] if index == 0 else widths[level], widths[level], sides[level], False)
            self.attention(widths[level], sides[level], *self.attention_at(sides[level]))
            self.level(start)
        for level in reversed(range(levels)):
            start = self.begin_level()
            self.boundary += 2 * self.positions(sides[level]) * widths[level]  # its input and the skip added to it
            for index in range(stage.res_blocks[level]):
                self.block(widths[level] if index == 0 else inputs[level], inputs[level], sides[level], False)
            self.attention(inputs[level], sides[level], *self.attention_at(sides[level]))
            if level < levels - 1:
                self.conv(inputs[level], inputs[level], 4, sides[level])  # transposed 4x4 up, per input position
                self.save("input", self.positions(sides[level]) * inputs[level])
            self.level(start)
        self.conv(widths[0], self.image_channels, 1, stage.resolution)
        self.save("input", self.positions(stage.resolution) * widths[0])  # the 1x1 conv_out's input

    def count(self) -> ParamCount:
        stage = self.stage
        levels = len(stage.channel_mult)
        res_blocks = stage.res_blocks if len(stage.res_blocks) == levels else [stage.res_blocks[0]] * levels
        self.stage = stage.model_copy(update={"res_blocks": res_blocks})
        widths = [stage.channels * mult for mult in stage.channel_mult]
        in_channels = self.image_channels * (2 if stage.input_resolution is not None else 1)  # + the low-res image
        self.conditioning()
        (self.efficient if stage.efficient else self.base)(widths, self.level_sides(), in_channels)
        self.stage = stage
        return ParamCount(image_token=self.spatial, text_token=self.text, sample=self.sample, other=self.other,
                          largest_layer=self.largest, blocks=sum(res_blocks) * 2)


def count_unet(stage: UNetStage, text_dim: int, image_channels: int = 3) -> ParamCount:
    """Parameters of a text-conditioned pixel U-Net of a cascade (Imagen), module by module as
    runtime/models/unet.py builds it. `image_token` holds the convolution and attention weights applied at
    every feature-map position, `text_token` the text keys and values."""
    return _UNetWalk(stage, text_dim, image_channels, 0, 1.0).count()


@dataclass(frozen=True)
class UNetActivations:
    """Activation elements of one sample through a cascade U-Net, by kind (see _UNetWalk.saved)."""

    total: dict[str, float]
    levels: list[dict[str, float]]  # per checkpointed level (down levels, then up levels)
    boundary: float  # what checkpointed levels keep: their inputs and the skips between them


def unet_activation_elements(stage: UNetStage, text_dim: int, image_channels: int, side: int) -> UNetActivations:
    """The elements a U-Net keeps for backward at `side` pixels a side, by kind, as runtime/models/unet.py runs."""
    walk = _UNetWalk(stage, text_dim, image_channels, 0, side / stage.resolution)
    walk.count()
    return UNetActivations(walk.saved, walk.levels, walk.boundary)


def unet_forward_flops(stage: UNetStage, text_dim: int, image_channels: int, text_tokens: int, side: int) -> float:
    """Forward FLOPs of one sample at `side` pixels a side: every weight at every position of its level,
    attention over each level's positions (and the text tokens), the time embedding once."""
    walk = _UNetWalk(stage, text_dim, image_channels, text_tokens, side / stage.resolution)
    count = walk.count()
    return walk.flops + 2 * count.sample
