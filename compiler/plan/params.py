"""Parameter counts computed from an architecture section, term by term, the way the modules are built.

Counts follow the diffusers module structures (FluxTransformer2DModel, QwenImageTransformer2DModel,
WanTransformer3DModel), so they can be checked against a model instantiated on the meta device.
Each count is split by what it is applied to, because FLOPs depend on it:

  per image token   patch embedding, image-stream attention and MLP, output projection
  per text token    text embedding, text-stream weights (MMDiT double blocks), cross-attention K/V
  per sample        timestep / guidance / pooled-text embeddings and all adaLN modulation linears

NOTE: modulation is 3.25B of FLUX's 11.9B parameters but runs once per sample, not once per token,
which is why MMDiT FLOPs are not 6 N per token.
"""

from __future__ import annotations

from dataclasses import dataclass

from compiler.schema.architecture import DiT, MMDiT, SpacetimeDiT, UNetStage


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

    @property
    def total(self) -> int:
        return self.image_token + self.text_token + self.sample + self.other


def _mlp(d: int, hidden: int) -> int:
    return linear(d, hidden) + linear(hidden, d)


def count_mmdit(arch: MMDiT, pooled: bool) -> ParamCount:
    """FLUX-style (double + single stream) or Qwen-Image-style (double stream only) MMDiT."""
    d, inner, hd = arch.hidden_size, arch.num_heads * arch.head_dim, arch.head_dim
    mlp_hidden = int(d * arch.mlp_ratio)
    _, ph, pw = arch.patch_size
    qk_norm = 2 * hd if arch.qk_norm != "none" else 0
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

    n_double, n_single = arch.double_blocks, arch.single_blocks
    return ParamCount(
        image_token=linear(arch.in_channels, d) + n_double * double_image + n_single * single_tokens
        + linear(d, out_width),
        text_token=linear(arch.context_dim, d) + n_double * double_text,
        sample=embed_sample + n_double * double_sample + n_single * single_sample + linear(d, 2 * d),
        other=other + n_double * double_other + n_single * qk_norm,
        largest_layer=max(double_image + double_text + double_sample + double_other,
                          single_tokens + single_sample + qk_norm if n_single else 0),
        blocks=n_double + n_single,
    )


def count_dit(arch: DiT | SpacetimeDiT) -> ParamCount:
    """Cross-attention DiT in Wan 2.1's structure (adaLN-single: one shared time projection to 6d,
    plus a learned (6, d) table per block)."""
    d, inner = arch.hidden_size, arch.num_heads * arch.head_dim
    ffn = arch.ffn_dim or int(d * arch.mlp_ratio)
    pt, ph, pw = arch.patch_size
    qk_norm = 2 * inner if arch.qk_norm == "rmsnorm_across_heads" else 2 * arch.head_dim if arch.qk_norm != "none" else 0

    self_attn = 4 * linear(d, inner)  # q, k, v, out over video tokens
    cross_image = 2 * linear(d, inner)  # cross-attention q and out over video tokens
    cross_text = 2 * linear(d, inner)  # k, v over text tokens already projected to d
    block_image = self_attn + cross_image + _mlp(d, ffn)
    block_other = 2 * qk_norm + (2 * d if arch.cross_attn_norm else 0) + 6 * d

    return ParamCount(
        image_token=linear(arch.in_channels * pt * ph * pw, d) + arch.depth * block_image
        + linear(d, arch.out_channels * pt * ph * pw),
        text_token=linear(arch.text_dim, d) + linear(d, d) + arch.depth * cross_text,
        sample=linear(arch.freq_dim, d) + linear(d, d) + linear(d, 6 * d),
        other=arch.depth * block_other + 2 * d,
        largest_layer=block_image + cross_text + block_other,
        blocks=arch.depth,
    )


def count_unet(stage: UNetStage, text_dim: int) -> ParamCount:
    """Estimate for a text-conditioned pixel U-Net (Imagen): residual blocks of two 3x3 convolutions,
    self-attention at the listed feature sides, cross-attention to text, down/upsampling convs.

    An estimate from the public config (NeMo imagen configs), not a module-exact count.
    """
    c0, levels = stage.channels, len(stage.channel_mult)
    res_blocks = stage.res_blocks if len(stage.res_blocks) == levels else [stage.res_blocks[0]] * levels
    temb = 4 * c0
    total, largest, side = 0, 0, stage.resolution
    previous = c0
    for level, (mult, blocks) in enumerate(zip(stage.channel_mult, res_blocks)):
        c = c0 * mult
        for index in range(blocks):
            c_in = previous if index == 0 else c
            block = 9 * c_in * c + 9 * c * c + linear(temb, 2 * c) + (c_in * c if c_in != c else 0)
            if side in stage.attention_resolutions:
                block += 4 * linear(c, c)
            if stage.cross_attention and side in stage.attention_resolutions:
                block += 2 * linear(c, c) + 2 * linear(text_dim, c)
            total += 2 * block  # the decoder mirrors the encoder
            largest = max(largest, block)
        if level < levels - 1:
            total += 2 * 9 * c * c  # down- and upsampling convolutions
            side //= 2
        previous = c
    total += linear(c0, temb) + linear(temb, temb) + 2 * 9 * 3 * c0 + linear(text_dim, temb)
    return ParamCount(image_token=total, text_token=0, sample=0, other=0, largest_layer=largest,
                      blocks=sum(res_blocks) * 2)
