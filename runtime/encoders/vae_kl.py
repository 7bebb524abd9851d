"""The 2D KL autoencoder of latent diffusion (FLUX, SD3): images to Gaussian latent moments and back.

Module names are diffusers' AutoencoderKL (models/autoencoders/autoencoder_kl.py, vae.py, unet_2d_blocks.py
DownEncoderBlock2D / UpDecoderBlock2D / UNetMidBlock2D, resnet.py ResnetBlock2D, attention_processor.py), so
a released diffusers-format state dict (e.g. FLUX.1's vae/ folder) loads with strict=True. The network only
maps pixels to moments and latents to pixels: posterior sampling and the latent scale and shift live in
runtime/encoders/latent.py.

Encoder: conv_in, per level `layers_per_block` residual blocks then a stride-2 conv (not after the last
level), a mid block (resnet, single-head self-attention, resnet), GroupNorm-SiLU-conv_out to 2 x latent
channels (mean and log-variance). The decoder mirrors it with one more residual block per level and
nearest-neighbour 2x upsampling followed by a conv.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6  # diffusers Encoder/Decoder pass resnet_eps=1e-6 to every GroupNorm
# Config keys of diffusers' AutoencoderKL that do not change the network (scaling is the LatentSpace's job);
# keys starting with '_' are diffusers' bookkeeping (_class_name, _diffusers_version, ...).
IGNORED_KEYS = frozenset({"sample_size", "scaling_factor", "shift_factor", "latents_mean", "latents_std",
                          "force_upcast"})


@dataclass(frozen=True)
class AutoencoderKLConfig:
    """Sizes of a KL autoencoder; names are diffusers AutoencoderKL's (FLUX.1: widths (128, 256, 512, 512),
    2 layers per block, 16 latent channels, 32 groups, no quant convs)."""

    block_out_channels: tuple[int, ...]
    latent_channels: int
    layers_per_block: int = 2
    norm_num_groups: int = 32
    in_channels: int = 3
    out_channels: int = 3
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True

    def __post_init__(self):
        for width in self.block_out_channels:
            if width % self.norm_num_groups:
                raise ValueError(f"AutoencoderKLConfig.block_out_channels {self.block_out_channels}: {width} is not "
                                 f"a multiple of norm_num_groups={self.norm_num_groups} (GroupNorm needs it)")

    @property
    def spatial_compression(self) -> int:
        """Pixels per latent cell along each side: one stride-2 conv per level but the last."""
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_diffusers(cls, config: dict, source: str) -> AutoencoderKLConfig:
        """Read a diffusers AutoencoderKL config.json, refusing settings this implementation does not build."""
        known = {f.name for f in fields(cls)}
        rules = {"down_block_types": "DownEncoderBlock2D", "up_block_types": "UpDecoderBlock2D"}
        for key, value in config.items():
            if key in rules and any(kind != rules[key] for kind in value):
                raise ValueError(f"{source}: {key} {value} is not supported; only {rules[key]} blocks are built")
            if key == "act_fn" and value != "silu":
                raise ValueError(f"{source}: act_fn {value!r} is not supported; only silu is built")
            if not key.startswith("_") and key not in known | IGNORED_KEYS | set(rules) | {"act_fn"}:
                raise ValueError(f"{source}: unknown AutoencoderKL config key {key!r} = {value!r}")
        values = {k: v for k, v in config.items() if k in known}
        values["block_out_channels"] = tuple(values["block_out_channels"])
        return cls(**values)


class ResnetBlock2D(nn.Module):
    """GroupNorm-SiLU-conv twice plus a (1x1-projected when widths differ) shortcut; diffusers resnet.py."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=EPS)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=EPS)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class SpatialSelfAttention(nn.Module):
    """Single-head self-attention over the H x W cells, residual; diffusers Attention in UNetMidBlock2D."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=EPS)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])  # index 0 as in diffusers (1 is dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        cells = self.group_norm(x).view(b, c, h * w).transpose(1, 2)
        q, k, v = (proj(cells).unsqueeze(1) for proj in (self.to_q, self.to_k, self.to_v))
        out = self.to_out[0](F.scaled_dot_product_attention(q, k, v).squeeze(1))
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class MidBlock2D(nn.Module):
    """Resnet, self-attention (optional), resnet at the lowest resolution."""

    def __init__(self, channels: int, groups: int, attention: bool):
        super().__init__()
        self.attentions = nn.ModuleList([SpatialSelfAttention(channels, groups)] if attention else [])
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups) for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attention in self.attentions:
            x = attention(x)
        return self.resnets[1](x)


class Downsample2D(nn.Module):
    """Stride-2 3x3 conv after padding one row and column at the bottom-right (diffusers padding=0)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    """Nearest-neighbour 2x upsampling then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: residual blocks, then a resampler unless it is the last level."""

    def __init__(self, widths: list[tuple[int, int]], groups: int, resample: type[nn.Module] | None, down: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(i, o, groups) for i, o in widths])
        # diffusers names the resampler list per direction; the same name keeps state-dict keys identical.
        self.resampler_name = "downsamplers" if down else "upsamplers"
        self.add_module(self.resampler_name, nn.ModuleList([resample(widths[-1][1])] if resample else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        for resampler in getattr(self, self.resampler_name):
            x = resampler(x)
        return x


def _widths(first: int, out: int, count: int) -> list[tuple[int, int]]:
    return [(first if i == 0 else out, out) for i in range(count)]


class Encoder2D(nn.Module):
    """Pixels [B, 3, H, W] -> moments [B, 2 x latent, H / s, W / s]."""

    def __init__(self, config: AutoencoderKLConfig):
        super().__init__()
        widths, groups = config.block_out_channels, config.norm_num_groups
        self.conv_in = nn.Conv2d(config.in_channels, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([
            Level(_widths(widths[max(i - 1, 0)], widths[i], config.layers_per_block), groups,
                  Downsample2D if i < len(widths) - 1 else None, down=True)
            for i in range(len(widths))
        ])
        self.mid_block = MidBlock2D(widths[-1], groups, config.mid_block_add_attention)
        self.conv_norm_out = nn.GroupNorm(groups, widths[-1], eps=EPS)
        self.conv_out = nn.Conv2d(widths[-1], 2 * config.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for level in self.down_blocks:
            x = level(x)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(x))))


class Decoder2D(nn.Module):
    """Latents [B, latent, h, w] -> pixels [B, 3, h x s, w x s]."""

    def __init__(self, config: AutoencoderKLConfig):
        super().__init__()
        widths, groups = config.block_out_channels[::-1], config.norm_num_groups
        self.conv_in = nn.Conv2d(config.latent_channels, widths[0], 3, padding=1)
        self.mid_block = MidBlock2D(widths[0], groups, config.mid_block_add_attention)
        self.up_blocks = nn.ModuleList([
            Level(_widths(widths[max(i - 1, 0)], widths[i], config.layers_per_block + 1), groups,
                  Upsample2D if i < len(widths) - 1 else None, down=False)
            for i in range(len(widths))
        ])
        self.conv_norm_out = nn.GroupNorm(groups, widths[-1], eps=EPS)
        self.conv_out = nn.Conv2d(widths[-1], config.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for level in self.up_blocks:
            x = level(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL2D(nn.Module):
    """Images [B, C, H, W] (H, W multiples of the compression) to latent moments and latents to images."""

    def __init__(self, config: AutoencoderKLConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder2D(config)
        self.decoder = Decoder2D(config)
        c = config.latent_channels
        self.quant_conv = nn.Conv2d(2 * c, 2 * c, 1) if config.use_quant_conv else None
        self.post_quant_conv = nn.Conv2d(c, c, 1) if config.use_post_quant_conv else None

    def encode_moments(self, pixels: torch.Tensor) -> torch.Tensor:
        """Mean and log-variance, concatenated on the channel axis: [B, 2 x latent, H / s, W / s]."""
        s = self.config.spatial_compression
        if pixels.ndim != 4 or pixels.shape[-1] % s or pixels.shape[-2] % s:
            raise ValueError(f"the 2D VAE takes images [B, C, H, W] with H and W multiples of {s}; "
                             f"got shape {tuple(pixels.shape)}")
        moments = self.encoder(pixels)
        return moments if self.quant_conv is None else self.quant_conv(moments)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unscaled latents [B, latent, h, w] -> images [B, C, h x s, w x s]."""
        return self.decoder(latents if self.post_quant_conv is None else self.post_quant_conv(latents))
