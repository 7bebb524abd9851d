"""A tiny denoiser following runtime/train/protocol.py, for trainer tests (importable by subprocesses as
`tiny_model:build` with this directory on PYTHONPATH)."""

import math

import torch
from torch import nn

WIDTH = 32
MAX_TOKENS = 512


def sinusoid(t: torch.Tensor, dim: int = WIDTH) -> torch.Tensor:
    freqs = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.modulation = nn.Linear(dim, 2 * dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x, cond):
        scale, shift = self.modulation(cond)[:, None].chunk(2, dim=-1)
        return x + self.mlp(self.norm(x) * (1 + scale) + shift)


class TinyDenoiser(nn.Module):
    """Per-cell MLP blocks with learned positions, modulated by timestep, pooled and mean text."""

    repeated_blocks = ("blocks",)

    def __init__(self, channels: int, text_dim: int, pooled_dim: int | None, time_scale: float, guidance: bool):
        super().__init__()
        self.time_scale = time_scale
        self.embed = nn.Linear(channels, WIDTH)
        self.positions = nn.Parameter(torch.randn(MAX_TOKENS, WIDTH) * 0.02)
        self.time = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.SiLU(), nn.Linear(WIDTH, WIDTH))
        self.text = nn.Linear(text_dim, WIDTH)
        self.pooled = nn.Linear(pooled_dim, WIDTH) if pooled_dim else None
        self.guidance = nn.Linear(WIDTH, WIDTH) if guidance else None
        self.blocks = nn.ModuleList(Block(WIDTH) for _ in range(3))
        self.out = nn.Linear(WIDTH, channels)

    def forward(self, latents, timestep, text, pooled=None, text_mask=None, guidance=None):
        tokens = latents.flatten(2).transpose(1, 2)
        x = self.embed(tokens) + self.positions[: tokens.shape[1]]
        cond = self.time(sinusoid(timestep / self.time_scale * 1000.0).to(x.dtype)) + self.text(text).mean(dim=1)
        if self.pooled is not None:
            cond = cond + self.pooled(pooled)
        if self.guidance is not None:
            cond = cond + self.guidance(sinusoid(guidance * 1000.0).to(x.dtype))
        for block in self.blocks:
            x = block(x, cond)
        return self.out(x).transpose(1, 2).reshape(latents.shape)


def build(architecture, model_name="main"):
    """Model factory: sizes from the architecture's space, encoders and backbone kind."""
    encoders = {encoder.role: encoder for encoder in architecture.text_encoders}
    text = encoders.get("tokens") or encoders["cross_attention"]
    pooled = encoders.get("pooled")
    backbone = architecture.backbone
    return TinyDenoiser(
        channels=architecture.space.channels,
        text_dim=text.dim,
        pooled_dim=pooled.dim if pooled else None,
        time_scale=1000.0 if backbone.kind == "dit" else 1.0,
        guidance=getattr(backbone, "guidance_embed", False),
    )
