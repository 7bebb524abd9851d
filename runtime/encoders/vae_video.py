"""A non-causal video KL autoencoder (Allegro's kind of latent space): k frames per latent frame, no lone first frame.

Allegro's VAE (rhymes-ai/Allegro; diffusers models/autoencoders/autoencoder_kl_allegro.py) compresses time
4x and space 8x with convolutions that see frames on both sides, so F frames become F / 4 latent frames and
F must be a multiple of 4 (its 88-frame clips are 22 latent frames). This module builds that kind of VAE from
plain 3D convolutions; its layout is NOT AutoencoderKLAllegro's (which interleaves per-frame 2D resnets with
temporal conv layers and encodes in overlapping 24-frame tiles), so released Allegro weights do not load
into it: runtime/encoders/latent.py refuses them with that reason.

Encoder: conv_in, per level `layers_per_block` residual blocks then a stride-2 downsampler (not after the last
level) that also halves time where `temporal_downsample` says, a mid block of two residual blocks,
GroupNorm-SiLU-conv_out to 2 x latent channels (mean and log-variance), a 1x1x1 quant conv. The decoder
mirrors it with one more residual block per level and nearest-neighbour upsampling followed by a conv; time
doubles at the mirrored levels. Every conv is zero-padded symmetrically in time (non-causal).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6  # GroupNorm epsilon, as diffusers' VAEs


@dataclass(frozen=True)
class VideoVAEConfig:
    """Sizes of a non-causal video VAE. Allegro halves time in its first two levels
    (diffusers AutoencoderKLAllegro temporal_downsample_blocks (True, True, False, False))."""

    block_out_channels: tuple[int, ...]
    latent_channels: int
    temporal_downsample: tuple[bool, ...]  # one per downsampling level: does it halve time too
    layers_per_block: int = 2
    norm_num_groups: int = 32
    in_channels: int = 3
    out_channels: int = 3

    def __post_init__(self):
        if len(self.temporal_downsample) != len(self.block_out_channels) - 1:
            raise ValueError(f"VideoVAEConfig.temporal_downsample {self.temporal_downsample} needs one entry per "
                             f"downsampling level: {len(self.block_out_channels) - 1} for block_out_channels "
                             f"{self.block_out_channels}")
        for width in self.block_out_channels:
            if width % self.norm_num_groups:
                raise ValueError(f"VideoVAEConfig.block_out_channels {self.block_out_channels}: {width} is not a "
                                 f"multiple of norm_num_groups={self.norm_num_groups} (GroupNorm needs it)")

    @property
    def spatial_compression(self) -> int:
        """Pixels per latent cell along each side: one 2x downsampling per level but the last."""
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def temporal_compression(self) -> int:
        """Frames per latent frame: 2x per level with temporal downsampling."""
        return 2 ** sum(self.temporal_downsample)


class ResnetBlock3D(nn.Module):
    """GroupNorm-SiLU-3x3x3 conv twice plus a (1x1x1-projected when widths differ) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=EPS)
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=EPS)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Downsample3D(nn.Module):
    """Stride-2 3x3x3 conv in space (padded at the bottom-right, as the 2D VAE) and, if `temporal`, in time.

    Time is padded one frame on each side, so an even frame count T becomes exactly T / 2.
    """

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, stride=(2 if temporal else 1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1, 1, 1)))


class Upsample3D(nn.Module):
    """Nearest-neighbour 2x upsampling in space (and time, if `temporal`) then a 3x3x3 conv."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.factor = (2.0 if temporal else 1.0, 2.0, 2.0)
        self.conv = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.factor, mode="nearest"))


class Level3D(nn.Module):
    """One resolution level: residual blocks, then a resampler unless it is the last level."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, groups: int, resampler: nn.Module | None):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, groups)
                                      for i in range(blocks)])
        self.resampler = resampler

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return x if self.resampler is None else self.resampler(x)


class MidBlock3D(nn.Module):
    """Two residual blocks at the lowest resolution."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock3D(channels, channels, groups) for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.resnets[0](x))


class VideoEncoder3D(nn.Module):
    """Videos [B, 3, F, H, W] -> moments [B, 2 x latent, F / k, H / s, W / s]."""

    def __init__(self, config: VideoVAEConfig):
        super().__init__()
        widths, groups = config.block_out_channels, config.norm_num_groups
        last = len(widths) - 1
        self.conv_in = nn.Conv3d(config.in_channels, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([
            Level3D(widths[max(i - 1, 0)], widths[i], config.layers_per_block, groups,
                    Downsample3D(widths[i], config.temporal_downsample[i]) if i < last else None)
            for i in range(len(widths))
        ])
        self.mid_block = MidBlock3D(widths[-1], groups)
        self.conv_norm_out = nn.GroupNorm(groups, widths[-1], eps=EPS)
        self.conv_out = nn.Conv3d(widths[-1], 2 * config.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for level in self.down_blocks:
            x = level(x)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(x))))


class VideoDecoder3D(nn.Module):
    """Latents [B, latent, n, h, w] -> videos [B, 3, n x k, h x s, w x s]."""

    def __init__(self, config: VideoVAEConfig):
        super().__init__()
        widths, groups = config.block_out_channels[::-1], config.norm_num_groups
        temporal_up = config.temporal_downsample[::-1]  # time doubles where the encoder halved it, mirrored
        last = len(widths) - 1
        self.conv_in = nn.Conv3d(config.latent_channels, widths[0], 3, padding=1)
        self.mid_block = MidBlock3D(widths[0], groups)
        self.up_blocks = nn.ModuleList([
            Level3D(widths[max(i - 1, 0)], widths[i], config.layers_per_block + 1, groups,
                    Upsample3D(widths[i], temporal_up[i]) if i < last else None)
            for i in range(len(widths))
        ])
        self.conv_norm_out = nn.GroupNorm(groups, widths[-1], eps=EPS)
        self.conv_out = nn.Conv3d(widths[-1], config.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for level in self.up_blocks:
            x = level(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class NonCausalVideoVAE(nn.Module):
    """Videos [B, C, F, H, W] (F a multiple of k) to latent moments [B, 2 x latent, F / k, H / s, W / s] and back."""

    def __init__(self, config: VideoVAEConfig):
        super().__init__()
        self.config = config
        self.encoder = VideoEncoder3D(config)
        self.decoder = VideoDecoder3D(config)
        c = config.latent_channels
        self.quant_conv = nn.Conv3d(2 * c, 2 * c, 1)
        self.post_quant_conv = nn.Conv3d(c, c, 1)

    def encode_moments(self, video: torch.Tensor) -> torch.Tensor:
        """Mean and log-variance, concatenated on the channel axis; every k frames make one latent frame."""
        k, s = self.config.temporal_compression, self.config.spatial_compression
        if video.ndim != 5:
            raise ValueError(f"the non-causal video VAE takes videos [B, C, F, H, W]; got shape {tuple(video.shape)}")
        frames, height, width = video.shape[2:]
        if frames % k:
            below = frames // k * k
            fits = f"use {below} or {below + k}" if below else f"use {k}"
            raise ValueError(f"the non-causal video VAE turns every {k} frames into one latent frame, so frame counts "
                             f"must be multiples of {k}; got {frames} frames: {fits}")
        if height % s or width % s:
            raise ValueError(f"the non-causal video VAE needs height and width multiples of {s}; "
                             f"got {height}x{width}")
        return self.quant_conv(self.encoder(video))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unscaled latents [B, latent, n, h, w] -> videos [B, C, n x k, h x s, w x s]."""
        if latents.ndim != 5:
            raise ValueError(f"the non-causal video VAE decodes latents [B, latent, n, h, w]; "
                             f"got shape {tuple(latents.shape)}")
        return self.decoder(self.post_quant_conv(latents))
