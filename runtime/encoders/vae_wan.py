"""Wan 2.1's causal video VAE: time compressed 4x and space 8x, the first frame encoded alone.

Structure after Wan-Video/Wan2.1 wan/modules/vae.py; module names are diffusers' AutoencoderKLWan
(models/autoencoders/autoencoder_kl_wan.py, Wan 2.1 layout: is_residual=False, no patch_size), so a
diffusers-format Wan 2.1 VAE state dict loads with strict=True, and so does Qwen-Image's
AutoencoderKLQwenImage, whose keys and sizes are the same. Not covered: Wan 2.2's residual VAE
(is_residual=True, patch_size 2), attention inside the encoder levels (attn_scales), the original
Wan2.1_VAE.pth key names, and tiled encoding.

Causality: every 3D conv pads only the past side of time. A video is streamed through the network in
chunks -- frame 0 alone, then `temporal_compression` frames at a time when encoding, one latent frame at
a time when decoding, as the reference does -- and each causal conv keeps the last frames of its input in a
`cache` dict keyed by the module, standing in for the zero padding of the next chunk. That makes the
chunked result equal to one causal pass over the whole video while memory stays bounded by a chunk.
The temporal resamplers treat frame 0 apart: the stride-2 time conv starts at the second chunk (so
1 + 4k frames become 1 + k latent frames) and the decoder's frame-doubling conv skips the first latent frame.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

# Config keys of diffusers' AutoencoderKLWan / AutoencoderKLQwenImage that do not change the network
# (the latent statistics are read by runtime/encoders/latent.py).
IGNORED_KEYS = frozenset({"dropout", "scale_factor_temporal", "scale_factor_spatial", "latents_mean",
                          "latents_std"})
# Keys that must keep their Wan 2.1 value: the variants they switch on are not built here.
FIXED_KEYS = {"is_residual": False, "patch_size": None, "attn_scales": []}
Cache = dict[nn.Module, "torch.Tensor | bool"]


@dataclass(frozen=True)
class CausalVAEConfig:
    """Sizes of a Wan 2.1-style causal VAE; names are diffusers AutoencoderKLWan's (Wan 2.1 and Qwen-Image:
    base 96, mults (1, 2, 4, 4), 2 residual blocks, 16 latent channels, time downsampling (False, True, True))."""

    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temperal_downsample: tuple[bool, ...] = (False, True, True)  # sic: diffusers' spelling, kept so configs load
    decoder_base_dim: int | None = None
    in_channels: int = 3
    out_channels: int = 3

    def __post_init__(self):
        if len(self.temperal_downsample) != len(self.dim_mult) - 1:
            raise ValueError(f"CausalVAEConfig.temperal_downsample {self.temperal_downsample} needs one entry per "
                             f"downsampling level: {len(self.dim_mult) - 1} for dim_mult {self.dim_mult}")

    @property
    def spatial_compression(self) -> int:
        """Pixels per latent cell along each side: one 2x downsampling per level but the last."""
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_compression(self) -> int:
        """Frames per latent frame after the first: 2x per level with temporal downsampling."""
        return 2 ** sum(self.temperal_downsample)

    @classmethod
    def from_diffusers(cls, config: dict, source: str) -> CausalVAEConfig:
        """Read a diffusers AutoencoderKLWan / AutoencoderKLQwenImage config.json."""
        known = {f.name for f in fields(cls)}
        values = {}
        for key, value in config.items():
            key = "in_channels" if key == "input_channels" else key  # Qwen-Image's name for it
            if key in FIXED_KEYS:
                if value != FIXED_KEYS[key]:
                    raise ValueError(f"{source}: {key}={value!r} is not supported (only the Wan 2.1 layout, "
                                     f"{key}={FIXED_KEYS[key]!r}, is built)")
            elif key in known:
                values[key] = tuple(value) if isinstance(value, list) else value
            elif not key.startswith("_") and key not in IGNORED_KEYS:
                raise ValueError(f"{source}: unknown AutoencoderKLWan config key {key!r} = {value!r}")
        return cls(**values)


class CausalConv3d(nn.Conv3d):
    """Conv3d zero-padded in space on both sides and in time on the past side only (2 x padding frames)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)
        pad_t, pad_h, pad_w = (padding,) * 3 if isinstance(padding, int) else padding
        self.history = 2 * pad_t  # past frames each output frame sees
        self.space_pad = (pad_w, pad_w, pad_h, pad_h)

    def forward(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        front = self.history
        if self.history:
            past = cache.get(self)
            if past is not None:
                x = torch.cat([past, x], dim=2)
                front -= past.shape[2]
            cache[self] = x[:, :, -self.history:].clone()  # a view would keep the whole chunk alive
        return super().forward(F.pad(x, (*self.space_pad, front, 0)))


class RMSNorm(nn.Module):
    """x / ||x|| over channels, times sqrt(channels) and a learned gain (diffusers WanRMS_norm, no bias)."""

    def __init__(self, channels: int, spatial_dims: int):
        super().__init__()
        self.scale = channels**0.5
        self.gamma = nn.Parameter(torch.ones(channels, *(1,) * spatial_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float(), dim=1).to(x.dtype) * self.scale * self.gamma


class ResidualBlock(nn.Module):
    """RMSNorm-SiLU-causal conv twice, plus a (1x1x1-projected when widths differ) shortcut."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm1 = RMSNorm(in_dim, 3)
        self.conv1 = CausalConv3d(in_dim, out_dim, 3, padding=1)
        self.norm2 = RMSNorm(out_dim, 3)
        self.conv2 = CausalConv3d(out_dim, out_dim, 3, padding=1)
        self.conv_shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else None

    def forward(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x, cache)
        x = self.conv1(F.silu(self.norm1(x)), cache)
        return self.conv2(F.silu(self.norm2(x)), cache) + shortcut


class FrameAttention(nn.Module):
    """Single-head self-attention over the cells of each frame separately, residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim, 2)
        self.to_qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        qkv = self.to_qkv(self.norm(frames)).reshape(b * t, 1, 3 * c, h * w).transpose(2, 3)
        out = F.scaled_dot_product_attention(*qkv.chunk(3, dim=-1))  # [bt, 1, hw, c]
        out = self.proj(out.squeeze(1).transpose(1, 2).reshape(b * t, c, h, w))
        return x + out.view(b, t, c, h, w).transpose(1, 2)


class MidBlock(nn.Module):
    """Residual block, frame attention, residual block."""

    def __init__(self, dim: int):
        super().__init__()
        self.attentions = nn.ModuleList([FrameAttention(dim)])
        self.resnets = nn.ModuleList([ResidualBlock(dim, dim), ResidualBlock(dim, dim)])

    def forward(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        x = self.resnets[0](x, cache)
        return self.resnets[1](self.attentions[0](x), cache)


class Resample(nn.Module):
    """2x down- or upsampling of each frame, and with `3d` also of time (frame 0 excepted)."""

    def __init__(self, dim: int, mode: str):
        super().__init__()
        self.mode = mode
        if mode.startswith("up"):
            # Wan 2.1 halves the width at every upsampling (diffusers upsample_out_dim default dim // 2).
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          nn.Conv2d(dim, dim // 2, 3, padding=1))
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(dim, 2 * dim, (3, 1, 1), padding=(1, 0, 0))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
            if mode == "downsample3d":
                self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        if self.mode == "upsample3d":
            if self in cache:  # not the first latent frame: each frame becomes two
                b, c, t, h, w = x.shape
                x = self.time_conv(x, cache).view(b, 2, c, t, h, w)
                x = torch.stack((x[:, 0], x[:, 1]), dim=3).reshape(b, c, 2 * t, h, w)
            cache[self] = True
        b, c, t, h, w = x.shape
        x = self.resample(x.transpose(1, 2).reshape(b * t, c, h, w))
        x = x.view(b, t, *x.shape[1:]).transpose(1, 2)
        if self.mode == "downsample3d":
            past = cache.get(self)
            cache[self] = x[:, :, -1:].clone()
            if past is not None:  # the first chunk (frame 0) passes alone; later windows start at its frame
                x = self.time_conv(torch.cat([past, x], dim=2), cache)
        return x


class UpBlock(nn.Module):
    """Residual blocks then (except at the last level) a resampler."""

    def __init__(self, in_dim: int, out_dim: int, blocks: int, mode: str | None):
        super().__init__()
        self.resnets = nn.ModuleList([ResidualBlock(in_dim if i == 0 else out_dim, out_dim) for i in range(blocks)])
        self.upsamplers = nn.ModuleList([Resample(out_dim, mode)] if mode else [])

    def forward(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        for layer in [*self.resnets, *self.upsamplers]:
            x = layer(x, cache)
        return x


class CausalEncoder3D(nn.Module):
    """Video chunk [B, 3, f, H, W] -> moments [B, 2 x z, f', H / s, W / s] given the cache of earlier chunks."""

    def __init__(self, config: CausalVAEConfig):
        super().__init__()
        dims = [config.base_dim * m for m in (1, *config.dim_mult)]
        self.conv_in = CausalConv3d(config.in_channels, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        for level, (in_dim, out_dim) in enumerate(pairwise(dims)):
            layers += [ResidualBlock(in_dim if i == 0 else out_dim, out_dim) for i in range(config.num_res_blocks)]
            if level < len(config.dim_mult) - 1:
                mode = "downsample3d" if config.temperal_downsample[level] else "downsample2d"
                layers.append(Resample(out_dim, mode))
        self.down_blocks = nn.ModuleList(layers)  # one flat list, as in diffusers
        self.mid_block = MidBlock(dims[-1])
        self.norm_out = RMSNorm(dims[-1], 3)
        self.conv_out = CausalConv3d(dims[-1], 2 * config.z_dim, 3, padding=1)

    def forward(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        x = self.conv_in(x, cache)
        for layer in self.down_blocks:
            x = layer(x, cache)
        x = self.mid_block(x, cache)
        return self.conv_out(F.silu(self.norm_out(x)), cache)


class CausalDecoder3D(nn.Module):
    """Latent chunk [B, z, n, h, w] -> video frames [B, 3, f, h x s, w x s] given the cache of earlier chunks."""

    def __init__(self, config: CausalVAEConfig):
        super().__init__()
        base = config.decoder_base_dim or config.base_dim
        dims = [base * m for m in (config.dim_mult[-1], *config.dim_mult[::-1])]
        temporal_up = config.temperal_downsample[::-1]
        self.conv_in = CausalConv3d(config.z_dim, dims[0], 3, padding=1)
        self.mid_block = MidBlock(dims[0])
        blocks = []
        for level, (in_dim, out_dim) in enumerate(pairwise(dims)):
            last = level == len(config.dim_mult) - 1
            mode = None if last else ("upsample3d" if temporal_up[level] else "upsample2d")
            # Every level after the first receives the halved width of the previous level's upsampler.
            blocks.append(UpBlock(in_dim // 2 if level else in_dim, out_dim, config.num_res_blocks + 1, mode))
        self.up_blocks = nn.ModuleList(blocks)
        self.norm_out = RMSNorm(dims[-1], 3)
        self.conv_out = CausalConv3d(dims[-1], config.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, cache: Cache) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z, cache), cache)
        for block in self.up_blocks:
            x = block(x, cache)
        return self.conv_out(F.silu(self.norm_out(x)), cache)


class CausalVideoVAE(nn.Module):
    """Videos [B, C, 1 + t*k, H, W] to latent moments [B, 2z, 1 + k, H/s, W/s], and latents back to videos."""

    def __init__(self, config: CausalVAEConfig):
        super().__init__()
        self.config = config
        self.encoder = CausalEncoder3D(config)
        self.quant_conv = CausalConv3d(2 * config.z_dim, 2 * config.z_dim, 1)
        self.post_quant_conv = CausalConv3d(config.z_dim, config.z_dim, 1)
        self.decoder = CausalDecoder3D(config)

    def encode_moments(self, video: torch.Tensor) -> torch.Tensor:
        """Mean and log-variance on the channel axis; frame 0 is encoded alone, then t frames per latent frame."""
        t, s = self.config.temporal_compression, self.config.spatial_compression
        if video.ndim != 5:
            raise ValueError(f"the causal video VAE takes videos [B, C, F, H, W]; got shape {tuple(video.shape)}")
        frames, height, width = video.shape[2:]
        if (frames - 1) % t:
            below = 1 + (frames - 1) // t * t
            raise ValueError(
                f"the causal video VAE encodes the first frame alone and then {t} frames per latent frame, so "
                f"frame counts must be 1 + {t}k; got {frames} frames: use {below} or {below + t}")
        if height % s or width % s:
            raise ValueError(f"the causal video VAE needs height and width multiples of {s}; got {height}x{width}")
        cache: Cache = {}
        chunks = video.split([1] + [t] * ((frames - 1) // t), dim=2)
        moments = torch.cat([self.encoder(chunk, cache) for chunk in chunks], dim=2)
        return self.quant_conv(moments, cache)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unscaled latents [B, z, n, h, w] -> videos [B, C, 1 + t(n - 1), h x s, w x s], clamped to [-1, 1]."""
        if latents.ndim != 5:
            raise ValueError(f"the causal video VAE decodes latents [B, z, n, h, w]; got shape {tuple(latents.shape)}")
        cache: Cache = {}
        x = self.post_quant_conv(latents, cache)
        frames = [self.decoder(x[:, :, i:i + 1], cache) for i in range(x.shape[2])]
        return torch.cat(frames, dim=2).clamp(-1.0, 1.0)  # the reference clamps its output too
