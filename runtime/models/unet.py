"""Text-conditioned pixel U-Nets of Imagen's cascade (Saharia et al. 2022, arXiv:2205.11487): the base U-Net
and the Efficient U-Net of the super-resolution stages.

Shared by both:
- ResBlocks take the time embedding as scale and shift after their second GroupNorm (guided-diffusion
  unet.py ResBlock with use_scale_shift_norm, as NeMo's Imagen uses it).
- Text reaches the network twice: the masked mean of the text tokens is added to the time embedding
  (imagen-pytorch Unet: to_text_non_attn_cond), and attention blocks attend over the text tokens. Where the
  stage has self-attention, one attention takes image and text keys together (NeMo blocks.py
  FusedCrossAttentionBlock); where it has none ("cross-attention only", Imagen's SR 1024), over text alone.
  A learned null key/value is always present, so a fully masked prompt is well defined (imagen-pytorch
  CrossAttention.null_kv).
- Super-resolution stages concatenate the low-resolution image, upsampled bicubically to the output size,
  to the noisy input. With noise conditioning augmentation the low-resolution image arrives already noised
  and its noise level in [0, 1] is embedded like the timestep and added to the time embedding (NeMo nets.py
  lowres_time_embed).

`UNet` (Imagen's base) has the guided-diffusion layout of NeMo nets.py UNetModel. `EfficientUNet` is NeMo nets.py
EfficientUNetModel after Imagen's Appendix B.1: each level downsamples before its ResBlocks and upsamples
after them, so no ResBlock runs at the output resolution; one skip per level, added; more ResBlocks at low
resolution (res_blocks [2, 4, 8, 8, 8]); each ResBlock's residual shortcut scaled by skip_scale (1/sqrt(2)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from runtime.models.attention import attention
from runtime.models.checkpointing import ActivationCheckpointing
from runtime.models.layers import EmbeddingMLP, timestep_embedding

if TYPE_CHECKING:
    from compiler.schema.architecture import UNetStage

NOISE_LEVEL_FACTOR = 1000.0  # the augmentation level in [0, 1] is embedded as 1000 s, like a DDPM step
HEAD_DIM = 64  # when the stage sets neither heads nor head width: NeMo's per_head_channels
GROUPS = 32  # GroupNorm groups (guided-diffusion normalization); fewer when the width is not a multiple


@dataclass(frozen=True)
class UNetConfig:
    """Sizes of one U-Net of the cascade; `from_stage` reads them off a spec's UNetStage."""

    resolution: int  # output side; attention_resolutions name feature sides relative to it
    channels: int  # base width: level i has channels * channel_mult[i]
    channel_mult: tuple[int, ...]
    res_blocks: tuple[int, ...]  # ResBlocks per level
    attention_resolutions: tuple[int, ...]  # feature sides with self-attention
    text_dim: int  # text encoder width (T5-XXL: 4096)
    cross_attention: bool = True
    # Attention keeps each level's width. A head width, when given, wins: heads = width / head_dim (NeMo
    # blocks.py num_head_channels); else num_heads heads; neither: 64-wide heads.
    num_heads: int | None = None
    head_dim: int | None = None
    image_channels: int = 3
    efficient: bool = False
    skip_scale: float = 1.0
    low_res_conditioning: bool = False  # super-resolution: the low-res image is an input
    noise_conditioning_augmentation: bool = False

    def __post_init__(self):
        if len(self.channel_mult) != len(self.res_blocks) or not self.channel_mult:
            raise ValueError(
                f"UNetConfig.channel_mult has {len(self.channel_mult)} levels but res_blocks has "
                f"{len(self.res_blocks)}; give one ResBlock count per level"
            )
        if self.resolution % self.min_multiple:
            raise ValueError(
                f"UNetConfig.resolution {self.resolution} does not halve {len(self.channel_mult) - 1} times; "
                f"use a multiple of {self.min_multiple}"
            )
        unknown = sorted(set(self.attention_resolutions) - set(self.level_sides))
        if unknown:
            raise ValueError(
                f"UNetConfig.attention_resolutions lists sides {unknown} that no level has; the levels' feature "
                f"sides are {list(self.level_sides)} (resolution {self.resolution}, efficient={self.efficient})"
            )
        if self.noise_conditioning_augmentation and not self.low_res_conditioning:
            raise ValueError(
                "UNetConfig.noise_conditioning_augmentation needs low_res_conditioning: only a super-resolution "
                "stage has a low-resolution image to augment"
            )

    @classmethod
    def from_stage(cls, stage: UNetStage, *, text_dim: int, image_channels: int) -> UNetConfig:
        """The config of a spec's cascade stage; text_dim and image_channels come from the architecture."""
        return cls(
            resolution=stage.resolution,
            channels=stage.channels,
            channel_mult=tuple(stage.channel_mult),
            res_blocks=tuple(stage.res_blocks),
            attention_resolutions=tuple(stage.attention_resolutions),
            text_dim=text_dim,
            cross_attention=stage.cross_attention,
            num_heads=stage.num_heads,
            head_dim=stage.head_dim,
            image_channels=image_channels,
            efficient=stage.efficient,
            skip_scale=stage.skip_scale,
            low_res_conditioning=stage.input_resolution is not None,
            noise_conditioning_augmentation=stage.noise_conditioning_augmentation,
        )

    @property
    def min_multiple(self) -> int:
        """Input sides must be multiples of this: the U-Net halves them len(channel_mult) - 1 times."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def level_sides(self) -> tuple[int, ...]:
        """Feature side of each level's ResBlocks at the nominal resolution.

        Base: resolution / 2**i. Efficient: every level but the deepest downsamples before its ResBlocks, so
        level i < L - 1 runs at resolution / 2**(i + 1) and the deepest shares the side of the one above it
        (NeMo DBlock conv_down = not is_last_level).
        """
        levels = len(self.channel_mult)
        if not self.efficient:
            return tuple(self.resolution // 2**i for i in range(levels))
        return tuple(self.resolution // 2 ** min(i + 1, levels - 1) for i in range(levels))

    def attention_at(self, level: int) -> tuple[bool, bool]:
        """(self-attention, text attention) at a level. Text attention goes where self-attention is; a stage
        without self-attention keeps it at its lowest-resolution levels (Imagen SR 1024: "cross-attention
        only", at the two deepest levels in NeMo sr1024-600m.yaml)."""
        side = self.level_sides[level]
        has_self = side in self.attention_resolutions
        text_sides = self.attention_resolutions or (min(self.level_sides),)
        return has_self, self.cross_attention and side in text_sides

    def attention_heads(self, width: int) -> tuple[int, int]:
        """(heads, head width) of attention over a level `width` wide; a head is never wider than the level."""
        if self.head_dim is None and self.num_heads is not None:
            return self.num_heads, width // self.num_heads
        head_dim = min(self.head_dim or HEAD_DIM, width)
        return width // head_dim, head_dim

    def build(self) -> UNet | EfficientUNet:
        """The U-Net this config describes."""
        return EfficientUNet(self) if self.efficient else UNet(self)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups, or the largest divisor of 32 that divides a narrower width."""
    return nn.GroupNorm(math.gcd(GROUPS, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv, then GroupNorm modulated by the time embedding (x (1 + scale) + shift), SiLU-Conv;
    plus the shortcut (1x1 conv when the width changes) scaled by skip_scale."""

    def __init__(self, in_channels: int, out_channels: int, temb_dim: int, skip_scale: float):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_proj = nn.Linear(temb_dim, 2 * out_channels)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        self.skip_scale = skip_scale

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, H, W), temb (B, temb_dim) -> (B, C_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time_proj(F.silu(temb))[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return h + self.shortcut(x) * self.skip_scale


class AttentionBlock(nn.Module):
    """Residual attention of the image tokens over themselves (to_k/to_v), the text tokens (add_k/add_v_proj
    behind a learned null token), or both at once."""

    def __init__(self, channels: int, heads: int, head_dim: int, text_dim: int, self_attention: bool, text: bool):
        super().__init__()
        inner = heads * head_dim
        self.head_dim = head_dim
        self.norm = group_norm(channels)
        self.to_q = nn.Linear(channels, inner)
        self.to_k = nn.Linear(channels, inner) if self_attention else None
        self.to_v = nn.Linear(channels, inner) if self_attention else None
        self.add_k_proj = nn.Linear(text_dim, inner) if text else None
        self.add_v_proj = nn.Linear(text_dim, inner) if text else None
        self.null_kv = nn.Parameter(torch.randn(2, inner)) if text else None
        self.to_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W), text (B, L, text_dim) normalised tokens, text_mask (B, L) bool -> (B, C, H, W)."""
        batch, _, height, _ = x.shape
        tokens = rearrange(self.norm(x), "b c h w -> b (h w) c")
        keys, values, masks = [], [], []
        if self.to_k is not None:
            keys.append(self.to_k(tokens))
            values.append(self.to_v(tokens))
            masks.append(text_mask.new_ones(batch, tokens.shape[1]))
        if self.add_k_proj is not None:
            null_k, null_v = self.null_kv[:, None, None, :].expand(2, batch, 1, -1).to(text.dtype)
            keys.append(torch.cat([null_k, self.add_k_proj(text)], dim=1))
            values.append(torch.cat([null_v, self.add_v_proj(text)], dim=1))
            masks.append(torch.cat([text_mask.new_ones(batch, 1), text_mask], dim=1))

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (-1, self.head_dim))

        mask = torch.cat(masks, dim=1)[:, None, None, :]
        out = attention(heads(self.to_q(tokens)), heads(torch.cat(keys, 1)), heads(torch.cat(values, 1)), mask)
        return x + rearrange(self.to_out(out), "b (h w) c -> b c h w", h=height)


class ResAttention(nn.Module):
    """A ResBlock followed by an attention block where the level has one."""

    def __init__(self, in_channels: int, out_channels: int, config: UNetConfig, level: int):
        super().__init__()
        self.resnet = ResBlock(in_channels, out_channels, 4 * config.channels, config.skip_scale)
        self.attention = level_attention(out_channels, config, level)

    def forward(self, x, temb, text, text_mask):
        """x (B, C_in, H, W) -> (B, C_out, H, W)."""
        x = self.resnet(x, temb)
        return x if self.attention is None else self.attention(x, text, text_mask)


def level_attention(channels: int, config: UNetConfig, level: int | None) -> AttentionBlock | None:
    """The attention block of a level (None: the middle block, which has self- and text attention)."""
    has_self, has_text = (True, config.cross_attention) if level is None else config.attention_at(level)
    if not (has_self or has_text):
        return None
    heads, head_dim = config.attention_heads(channels)
    return AttentionBlock(channels, heads, head_dim, config.text_dim, has_self, has_text)


class Conditioning(nn.Module):
    """temb = MLP(sinusoid(t)) + MLP(masked mean of the text tokens) [+ MLP(sinusoid(1000 level))],
    width 4 x channels (NeMo nets.py time_embed_dim); also returns the LayerNormed text tokens."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        dim = 4 * config.channels
        self.sinusoid_dim = config.channels
        self.time_embedder = EmbeddingMLP(config.channels, dim, nn.SiLU())
        self.noise_level_embedder = (
            EmbeddingMLP(config.channels, dim, nn.SiLU()) if config.noise_conditioning_augmentation else None
        )
        self.text_norm = nn.LayerNorm(config.text_dim)
        self.pooled_text_embedder = EmbeddingMLP(config.text_dim, dim, nn.SiLU())

    def forward(self, timestep, text, text_mask, noise_level) -> tuple[torch.Tensor, torch.Tensor]:
        """timestep (B,) DDPM step in [0, 1000), text (B, L, D), text_mask (B, L) bool, noise_level (B,) in
        [0, 1] or None -> temb (B, 4 channels), normalised text (B, L, D)."""
        text = self.text_norm(text)
        weights = text_mask[..., None].to(text.dtype)
        pooled = (text * weights).sum(1) / weights.sum(1).clamp(min=1)
        steps = timestep_embedding(timestep, self.sinusoid_dim).to(text.dtype)
        temb = self.time_embedder(steps) + self.pooled_text_embedder(pooled)
        if self.noise_level_embedder is not None:
            levels = timestep_embedding(noise_level, self.sinusoid_dim, scale=NOISE_LEVEL_FACTOR).to(text.dtype)
            temb = temb + self.noise_level_embedder(levels)
        return temb, text


class CascadeUNet(ActivationCheckpointing, nn.Module):
    """What both U-Nets share: conditioning, the low-res input and the checks on the inputs."""

    repeated_blocks = ("down_blocks", "up_blocks")  # one checkpoint / compiled graph per level

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        self.conditioning = Conditioning(config)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        low_res: torch.Tensor | None = None,
        low_res_noise_level: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise of `sample`.

        sample (B, C, H, W) noisy image; timestep (B,) the DDPM step in [0, 1000) (1000 t for t in [0, 1]);
        text (B, L, text_dim); text_mask (B, L), nonzero for real tokens (None: all real); low_res
        (B, C, h, w) the (augmented) low-resolution image, required exactly for super-resolution stages;
        low_res_noise_level (B,) in [0, 1], its augmentation level, required exactly with noise conditioning
        augmentation. Returns (B, C, H, W).
        """
        self._check_inputs(sample, low_res, low_res_noise_level)
        if text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        text_mask = text_mask.bool()
        temb, text = self.conditioning(timestep, text, text_mask, low_res_noise_level)
        if low_res is not None:
            upsampled = F.interpolate(low_res, size=sample.shape[-2:], mode="bicubic", align_corners=False)
            sample = torch.cat([sample, upsampled.to(sample.dtype)], dim=1)
        return self.denoise(sample, temb, text, text_mask)

    def denoise(self, x, temb, text, text_mask) -> torch.Tensor:
        """The U-Net proper, on the input with any low-res image already concatenated."""
        raise NotImplementedError(f"{type(self).__name__} must define denoise: use UNet or EfficientUNet")

    def _check_inputs(self, sample, low_res, low_res_noise_level):
        config = self.config
        if config.low_res_conditioning != (low_res is not None):
            needs = "needs" if config.low_res_conditioning else "takes no"
            raise ValueError(f"this U-Net {needs} a low-resolution image: pass low_res exactly for SR stages")
        if config.noise_conditioning_augmentation != (low_res_noise_level is not None):
            needs = "needs" if config.noise_conditioning_augmentation else "takes no"
            raise ValueError(
                f"this U-Net {needs} low_res_noise_level: pass the augmentation level exactly when the stage "
                "has noise_conditioning_augmentation"
            )
        height, width = sample.shape[-2:]
        if height % config.min_multiple or width % config.min_multiple:
            raise ValueError(
                f"sample is {height}x{width} but the U-Net halves it {len(config.channel_mult) - 1} times: "
                f"use sides that are multiples of {config.min_multiple}"
            )

    def _in_channels(self) -> int:
        return self.config.image_channels * (2 if self.config.low_res_conditioning else 1)

    def _widths(self) -> list[int]:
        return [self.config.channels * mult for mult in self.config.channel_mult]


class DownLevel(nn.Module):
    """One level of the base U-Net's down path: ResBlocks (with attention at attention sides), each output a
    skip, then a strided conv whose output is a skip too (NeMo nets.py UNetModel input_blocks)."""

    def __init__(self, in_channels: int, out_channels: int, config: UNetConfig, level: int, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResAttention(in_channels if i == 0 else out_channels, out_channels, config, level)
            for i in range(config.res_blocks[level])
        )
        self.downsample = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1) if downsample else None

    def forward(self, x, temb, text, text_mask) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, C_in, H, W) -> (x at the next level's side, the skips in the order produced)."""
        skips = []
        for block in self.blocks:
            x = block(x, temb, text, text_mask)
            skips.append(x)
        if self.downsample is not None:
            x = self.downsample(x)
            skips.append(x)
        return x, skips


class UpLevel(nn.Module):
    """One level of the base U-Net's up path: res_blocks + 1 ResBlocks, each on [x, skip] concatenated, then
    nearest 2x upsampling and a conv (NeMo nets.py UNetModel output_blocks)."""

    def __init__(
        self, in_channels: int, out_channels: int, skip_channels: list[int], config: UNetConfig, level: int,
        upsample: bool,
    ):
        super().__init__()
        widths = [in_channels] + [out_channels] * (len(skip_channels) - 1)
        self.blocks = nn.ModuleList(
            ResAttention(width + skip, out_channels, config, level) for width, skip in zip(widths, skip_channels)
        )
        self.upsample = None
        if upsample:
            conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)
            self.upsample = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), conv)

    def forward(self, x, skips: list[torch.Tensor], temb, text, text_mask) -> torch.Tensor:
        """x (B, C_in, H, W), skips in the order consumed (deepest first) -> (B, C_out, H', W')."""
        for block, skip in zip(self.blocks, skips, strict=True):
            x = block(torch.cat([x, skip], dim=1), temb, text, text_mask)
        return x if self.upsample is None else self.upsample(x)


class UNet(CascadeUNet):
    """Imagen's base U-Net (64 x 64, 2B: 512 channels, mult [1, 2, 3, 4], 3 ResBlocks per level, attention at
    32/16/8, 4 heads x 64): down levels, a middle ResBlock-attention-ResBlock, up levels with a skip per block."""

    def __init__(self, config: UNetConfig):
        super().__init__(config)
        widths, levels = self._widths(), len(config.channel_mult)
        self.conv_in = nn.Conv2d(self._in_channels(), widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        skip_channels = [widths[0]]  # conv_in's output is the first skip
        width = widths[0]
        for level in range(levels):
            self.down_blocks.append(DownLevel(width, widths[level], config, level, downsample=level < levels - 1))
            width = widths[level]
            skip_channels += [width] * (config.res_blocks[level] + (level < levels - 1))
        temb_dim = 4 * config.channels
        self.mid_resnet1 = ResBlock(width, width, temb_dim, config.skip_scale)
        self.mid_attention = level_attention(width, config, level=None)
        self.mid_resnet2 = ResBlock(width, width, temb_dim, config.skip_scale)
        self.up_blocks = nn.ModuleList()  # deepest level first, the order they run in
        for level in reversed(range(levels)):
            count = config.res_blocks[level] + 1
            level_skips, skip_channels = skip_channels[-count:][::-1], skip_channels[:-count]
            self.up_blocks.append(UpLevel(width, widths[level], level_skips, config, level, upsample=level > 0))
            width = widths[level]
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, config.image_channels, 3, padding=1)

    def denoise(self, x, temb, text, text_mask) -> torch.Tensor:
        """x (B, C_in, H, W) -> (B, image_channels, H, W)."""
        x = self.conv_in(x)
        skips = [x]
        for level in self.down_blocks:
            x, level_skips = level(x, temb, text, text_mask)
            skips += level_skips
        x = self.mid_resnet1(x, temb)
        x = self.mid_attention(x, text, text_mask)
        x = self.mid_resnet2(x, temb)
        for level in self.up_blocks:
            count = len(level.blocks)
            # A fresh list per level: checkpointed levels rerun on the same inputs in the backward pass.
            x = level(x, skips[-count:][::-1], temb, text, text_mask)
            skips = skips[:-count]
        return self.conv_out(F.silu(self.norm_out(x)))

    def init_weights(self) -> None:
        """Zero every residual branch's last layer and the output conv (guided-diffusion unet.py zero_module):
        ResBlocks start as their scaled shortcut, attention blocks as the identity, the prediction at zero."""
        zero_residual_outputs(self, [self.conv_out])


class DownBlock(nn.Module):
    """Efficient U-Net DBlock: a strided 4x4 conv first (all levels but the deepest), then ResBlocks, then
    the level's attention (NeMo blocks.py DBlock)."""

    def __init__(self, in_channels: int, out_channels: int, config: UNetConfig, level: int, downsample: bool):
        super().__init__()
        temb_dim = 4 * config.channels
        self.downsample = nn.Conv2d(in_channels, in_channels, 4, stride=2, padding=1) if downsample else None
        self.resnets = nn.ModuleList(
            ResBlock(in_channels if i == 0 else out_channels, out_channels, temb_dim, config.skip_scale)
            for i in range(config.res_blocks[level])
        )
        self.attention = level_attention(out_channels, config, level)

    def forward(self, x, temb, text, text_mask) -> torch.Tensor:
        """x (B, C_in, H, W) -> (B, C_out, H/2 or H, W/2 or W)."""
        if self.downsample is not None:
            x = self.downsample(x)
        for resnet in self.resnets:
            x = resnet(x, temb)
        return x if self.attention is None else self.attention(x, text, text_mask)


class UpBlock(nn.Module):
    """Efficient U-Net UBlock: ResBlocks, the level's attention, then a 4x4 transposed conv upsampling (all
    levels but the deepest) (NeMo blocks.py UBlock)."""

    def __init__(self, in_channels: int, out_channels: int, config: UNetConfig, level: int, upsample: bool):
        super().__init__()
        temb_dim = 4 * config.channels
        self.resnets = nn.ModuleList(
            ResBlock(in_channels if i == 0 else out_channels, out_channels, temb_dim, config.skip_scale)
            for i in range(config.res_blocks[level])
        )
        self.attention = level_attention(out_channels, config, level)
        self.upsample = nn.ConvTranspose2d(out_channels, out_channels, 4, stride=2, padding=1) if upsample else None

    def forward(self, x, temb, text, text_mask) -> torch.Tensor:
        """x (B, C_in, H, W) -> (B, C_out, 2H or H, 2W or W)."""
        for resnet in self.resnets:
            x = resnet(x, temb)
        if self.attention is not None:
            x = self.attention(x, text, text_mask)
        return x if self.upsample is None else self.upsample(x)


class EfficientUNet(CascadeUNet):
    """Imagen's Efficient U-Net (SR 256, 600M: 128 channels, mult [1, 2, 4, 8, 8], ResBlocks [2, 4, 8, 8, 8],
    skip scale 1/sqrt(2), noise conditioning augmentation; SR 1024: the same with text attention only)."""

    def __init__(self, config: UNetConfig):
        super().__init__(config)
        widths, levels = self._widths(), len(config.channel_mult)
        inputs = [widths[0]] + widths[:-1]  # each level's input width; conv_in lifts to widths[0]
        self.conv_in = nn.Conv2d(self._in_channels(), widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            DownBlock(inputs[level], widths[level], config, level, downsample=level < levels - 1)
            for level in range(levels)
        )
        self.up_blocks = nn.ModuleList(  # deepest level first, the order they run in
            UpBlock(widths[level], inputs[level], config, level, upsample=level < levels - 1)
            for level in reversed(range(levels))
        )
        self.conv_out = nn.Conv2d(widths[0], config.image_channels, 1)

    def denoise(self, x, temb, text, text_mask) -> torch.Tensor:
        """x (B, C_in, H, W) -> (B, image_channels, H, W)."""
        x = self.conv_in(x)
        skips = []
        for level in self.down_blocks:
            x = level(x, temb, text, text_mask)
            skips.append(x)
        skips.pop()  # the deepest level's output is the up path's input, not a skip
        for index, level in enumerate(self.up_blocks):
            if index:
                x = x + skips.pop()
            x = level(x, temb, text, text_mask)
        return self.conv_out(x)

    def init_weights(self) -> None:
        """Zero every residual branch's last layer and the output conv (guided-diffusion unet.py zero_module):
        ResBlocks start as their scaled shortcut, attention blocks as the identity, the prediction at zero."""
        zero_residual_outputs(self, [self.conv_out])


def zero_residual_outputs(model: nn.Module, extra: list[nn.Module]) -> None:
    """Zero conv2 of every ResBlock, to_out of every AttentionBlock, and the modules in `extra`."""
    branches = [m.conv2 for m in model.modules() if isinstance(m, ResBlock)]
    branches += [m.to_out for m in model.modules() if isinstance(m, AttentionBlock)]
    with torch.no_grad():
        for module in branches + extra:
            for parameter in module.parameters():
                parameter.zero_()
