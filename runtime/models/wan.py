"""Wan 2.1 text-to-video DiT: self-attention with 3D RoPE, cross-attention to text, adaLN from a shared
time projection plus a learned per-block table.

The modulation, norms and residual sums run in float32 whatever the parameter dtype, as in the reference
(Wan-Video/Wan2.1 wan/modules/model.py WanAttentionBlock). Module names are diffusers'
WanTransformer3DModel (transformer_wan.py), so its state dict loads with strict=True.

The factory builds the other cross-attention DiTs (Allegro, Sora, Hailuo, Imagen 3) from this class;
`rope_axes_dims` and `qk_norm` cover where their specs differ from Wan (RoPE split, per-head or no QK norm).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from runtime.models.attention import Attention, QKNorm
from runtime.models.checkpointing import ActivationCheckpointing
from runtime.models.kernels import layer_norm_modulate
from runtime.models.layers import (
    EmbeddingMLP,
    FP32LayerNorm,
    GeluMLP,
    SpacetimePatchEmbed,
    init_dit_weights,
    timestep_embedding,
    unpatchify_3d,
)
from runtime.models.rope import RopeTables, grid_ids, rope_frequencies, wan_axes_dims


@dataclass(frozen=True)
class WanDiTConfig:
    """Sizes of a Wan 2.1 DiT. Field names are diffusers WanTransformer3DModel's (Wan 2.1 1.3B: 12 heads x
    128, ffn 8960, 30 layers; 14B: 40 heads x 128, ffn 13824, 40 layers; both text 4096, freq 256)."""

    patch_size: tuple[int, int, int]  # (frames, height, width) per token: (1, 2, 2)
    num_attention_heads: int
    attention_head_dim: int
    in_channels: int  # VAE latent channels (16)
    out_channels: int
    text_dim: int  # text encoder width (umT5-XXL: 4096)
    freq_dim: int  # sinusoidal timestep width (256)
    ffn_dim: int
    num_layers: int
    cross_attn_norm: bool = True  # affine LayerNorm before cross-attention (Wan 2.1: on)
    eps: float = 1e-6
    rope_theta: float = 10000.0
    # RoPE dims over (frame, row, col), 0 for an axis without rotation; None: Wan's split (44/42/42 of 128).
    rope_axes_dims: tuple[int, int, int] | None = None
    qk_norm: QKNorm = "across_heads"  # Wan 2.1 normalises q and k over all heads; "per_head" as FLUX

    def __post_init__(self):
        if len(self.patch_size) != 3:
            raise ValueError(f"WanDiTConfig.patch_size is {self.patch_size}; give (frames, height, width)")
        if self.attention_head_dim % 2:
            raise ValueError(f"WanDiTConfig.attention_head_dim is {self.attention_head_dim}; RoPE needs it even")
        axes = self.axes_dims_rope
        if len(axes) != 3 or sum(axes) != self.attention_head_dim or any(dim % 2 for dim in axes):
            raise ValueError(
                f"WanDiTConfig.rope_axes_dims is {axes}; give three even dims for (frame, row, col) summing to "
                f"attention_head_dim {self.attention_head_dim}, or None for Wan's split"
            )

    @property
    def axes_dims_rope(self) -> tuple[int, int, int]:
        """RoPE dims over (frame, row, col)."""
        return self.rope_axes_dims or wan_axes_dims(self.attention_head_dim)

    @property
    def inner_dim(self) -> int:
        """Model width: heads x head dim."""
        return self.num_attention_heads * self.attention_head_dim


class WanConditionEmbedder(nn.Module):
    """Time embedding temb = MLP(sinusoid(t)), its projection to the six block modulations, and the text
    projection MLP (GELU-tanh), as diffusers transformer_wan.py WanTimeTextImageEmbedding without images."""

    def __init__(self, dim: int, freq_dim: int, text_dim: int):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_embedder = EmbeddingMLP(freq_dim, dim, nn.SiLU())
        self.time_proj = nn.Linear(dim, 6 * dim)
        self.text_embedder = EmbeddingMLP(text_dim, dim, nn.GELU(approximate="tanh"))

    def forward(self, timestep: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """timestep (B,) in [0, 1000], text (B, T, text_dim) -> temb (B, D), modulation (B, 6, D), text (B, T, D)."""
        features = timestep_embedding(timestep, self.freq_dim).to(self.time_embedder.linear_1.weight.dtype)
        temb = self.time_embedder(features).type_as(text)
        modulation = self.time_proj(F.silu(temb)).unflatten(1, (6, -1))
        return temb, modulation, self.text_embedder(text)


class WanBlock(nn.Module):
    """Wan block: modulated self-attention (RoPE, QK RMSNorm across heads), ungated cross-attention to the
    text, modulated GELU-tanh FFN. Modulation = scale_shift_table + time projection, chunks shift, scale,
    gate (self-attention) then shift, scale, gate (FFN)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, cross_attn_norm: bool, eps: float, qk_norm: QKNorm):
        super().__init__()
        self.eps = eps
        self.attn1 = Attention(dim, heads, dim // heads, qk_norm=qk_norm, eps=eps)
        self.attn2 = Attention(dim, heads, dim // heads, qk_norm=qk_norm, eps=eps)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        self.ffn = GeluMLP(dim, ffn_dim)
        # Wan2.1 wan/modules/model.py WanAttentionBlock.modulation, initialised randn / sqrt(dim) as there.
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, modulation: torch.Tensor, rope: RopeTables
    ) -> torch.Tensor:
        """x (B, S, D) video tokens, context (B, T, D) text, modulation (B, 6, D), rope (S, head_dim) -> x."""
        table = self.scale_shift_table + modulation.float()
        shift, scale, gate, c_shift, c_scale, c_gate = table.unbind(dim=1)
        h = layer_norm_modulate(x, shift, scale, self.eps)
        x = (x.float() + self.attn1(h, rope=rope) * gate[:, None]).type_as(x)
        x = x + self.attn2(self.norm2(x.float()).type_as(x), context)
        h = layer_norm_modulate(x, c_shift, c_scale, self.eps)
        return (x.float() + self.ffn(h).float() * c_gate[:, None]).type_as(x)


class WanDiT(ActivationCheckpointing, nn.Module):
    """Wan 2.1 text-to-video denoiser: video latents (B, C, F, H, W) in, same shape out.

    Forward mirrors diffusers WanTransformer3DModel.forward for text-to-video (one timestep per sample).
    """

    repeated_blocks = ("blocks",)  # compiled one by one

    def __init__(self, config: WanDiTConfig):
        super().__init__()
        self.config = config
        dim = config.inner_dim
        self.patch_embedding = SpacetimePatchEmbed(config.in_channels, dim, config.patch_size)
        self.condition_embedder = WanConditionEmbedder(dim, config.freq_dim, config.text_dim)
        block_sizes = (dim, config.num_attention_heads, config.ffn_dim)
        self.blocks = nn.ModuleList(
            WanBlock(*block_sizes, config.cross_attn_norm, config.eps, config.qk_norm) for _ in range(config.num_layers)
        )
        self.proj_out = nn.Linear(dim, config.out_channels * math.prod(config.patch_size))
        # Final (shift, scale) table, no gate (Wan2.1 wan/modules/model.py Head.modulation).
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)
        self.sequence_parallel = None  # set by sequence_parallel.enable_sequence_parallel

    def forward(
        self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> torch.Tensor:
        """hidden_states (B, C, F, H, W) latents, timestep (B,) in [0, 1000], encoder_hidden_states
        (B, T, text_dim) -> (B, out_channels, F, H, W)."""
        if timestep.ndim != 1:
            raise ValueError(
                f"timestep has shape {tuple(timestep.shape)}; Wan 2.1 takes one timestep per sample, shape (batch,)"
            )
        grid = tuple(size // step for size, step in zip(hidden_states.shape[2:], self.config.patch_size))
        x = self.patch_embedding(hidden_states)
        temb, modulation, context = self.condition_embedder(timestep, encoder_hidden_states)
        ids = grid_ids(*grid, device=x.device)
        rope = rope_frequencies(ids, self.config.axes_dims_rope, self.config.rope_theta)
        sp = self.sequence_parallel
        if sp is not None:  # this rank keeps its slice of the video tokens; the text context stays whole
            sp.check_shardable(x.shape[1], self.config.num_attention_heads, "video")
            x, rope = sp.shard(x), sp.shard_rope(rope, replicated=0)

        for block in self.blocks:
            x = block(x, context, modulation, rope)

        shift, scale = (self.scale_shift_table + temb[:, None]).unbind(dim=1)
        x = self.proj_out(layer_norm_modulate(x, shift, scale, self.config.eps))
        if sp is not None:  # the whole prediction, for the loss every rank computes
            x = sp.gather_output(x)
        return unpatchify_3d(x, grid, self.config.patch_size)

    def init_weights(self) -> None:
        """Initialise for training from scratch: DiT's scheme with adaLN-Zero (layers.init_dit_weights).

        Zeroed: the shared time projection and every modulation table (so all gates start at zero), the
        cross-attention output projections (ungated in Wan, zeroed as PixArt-alpha does: PixArt-alpha
        diffusion/model/nets/PixArt.py initialize_weights) and the output projection. Every block then starts
        as the identity and the model's output as zero.
        """
        embedder = self.condition_embedder
        init_dit_weights(
            self,
            embedders=[embedder.time_embedder, embedder.text_embedder],
            zeroed=[
                embedder.time_proj,
                self.scale_shift_table,
                self.proj_out,
                *(block.scale_shift_table for block in self.blocks),
                *(block.attn2.to_out for block in self.blocks),
            ],
        )
