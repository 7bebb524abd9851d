"""Qwen-Image MMDiT: double-stream blocks only, over [text, image], with centred multi-axis RoPE (MSRoPE).

Differs from FLUX in: no single-stream blocks, no pooled text or guidance embedding, RMSNorm on the text
encoder output, modulation as `img_mod` / `txt_mod` = SiLU -> Linear, and RoPE angles in float32.
Module names are diffusers' QwenImageTransformer2DModel (transformer_qwenimage.py), so its state dict loads
with strict=True.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from runtime.models.attention import JointAttention
from runtime.models.checkpointing import ActivationCheckpointing
from runtime.models.kernels import layer_norm_modulate
from runtime.models.layers import AdaLNOut, EmbeddingMLP, GeluMLP, init_dit_weights, timestep_embedding
from runtime.models.rope import RopeTables, qwen_image_ids, qwen_text_ids, rope_frequencies

TIMESTEP_CHANNELS = 256
TIME_FACTOR = 1000.0  # t in [0, 1], embedded as 1000 t (transformer_qwenimage.py QwenTimestepProjEmbeddings)


@dataclass(frozen=True)
class QwenImageConfig:
    """Sizes of a Qwen-Image MMDiT. Field names are diffusers QwenImageTransformer2DModel's (Qwen-Image:
    60 layers, 24 heads x 128, in 64, out 16, patch 2, text 3584, axes (16, 56, 56))."""

    in_channels: int  # packed latent channels: 16 x 2 x 2
    out_channels: int  # latent channels per pixel; the projection emits patch_size**2 of them per token
    num_layers: int
    num_attention_heads: int
    attention_head_dim: int
    joint_attention_dim: int  # text encoder width (Qwen2.5-VL-7B: 3584)
    axes_dims_rope: tuple[int, int, int]  # RoPE dims for (frame, row, col); sums to attention_head_dim
    patch_size: int = 2
    rope_theta: float = 10000.0
    mlp_ratio: float = 4.0

    def __post_init__(self):
        if len(self.axes_dims_rope) != 3 or any(dim % 2 for dim in self.axes_dims_rope):
            raise ValueError(
                f"QwenImageConfig.axes_dims_rope is {tuple(self.axes_dims_rope)}; MSRoPE needs three even dims "
                "for (frame, row, col)"
            )
        if sum(self.axes_dims_rope) != self.attention_head_dim:
            raise ValueError(
                f"QwenImageConfig.axes_dims_rope {tuple(self.axes_dims_rope)} sums to {sum(self.axes_dims_rope)} "
                f"but attention_head_dim is {self.attention_head_dim}; make the axes sum to the head dim"
            )

    @property
    def inner_dim(self) -> int:
        """Model width: heads x head dim."""
        return self.num_attention_heads * self.attention_head_dim


class QwenImageBlock(nn.Module):
    """Qwen-Image double-stream block. Each stream's modulation is SiLU -> Linear(D, 6D) with chunks shift,
    scale, gate (attention) then shift, scale, gate (MLP); LayerNorms have no affine, eps 1e-6."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float):
        super().__init__()
        self.img_mod = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.txt_mod = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.attn = JointAttention(dim, heads, head_dim)
        self.img_mlp = GeluMLP(dim, int(dim * mlp_ratio))
        self.txt_mlp = GeluMLP(dim, int(dim * mlp_ratio))

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        temb: torch.Tensor,
        rope: RopeTables,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, S_x, D) image, context (B, S_c, D) text, temb (B, D), rope over [text, image], mask
        (B, 1, 1, S_c + S_x) bool keys to attend to -> (x, context)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.img_mod(temb).chunk(6, dim=-1)
        c_shift1, c_scale1, c_gate1, c_shift2, c_scale2, c_gate2 = self.txt_mod(temb).chunk(6, dim=-1)
        x_attn, c_attn = self.attn(
            layer_norm_modulate(x, shift1, scale1), layer_norm_modulate(context, c_shift1, c_scale1), rope, mask
        )
        x = x + gate1[:, None] * x_attn
        context = context + c_gate1[:, None] * c_attn
        x = x + gate2[:, None] * self.img_mlp(layer_norm_modulate(x, shift2, scale2))
        context = context + c_gate2[:, None] * self.txt_mlp(layer_norm_modulate(context, c_shift2, c_scale2))
        return x, context


class QwenImageMMDiT(ActivationCheckpointing, nn.Module):
    """Qwen-Image denoiser over packed latent tokens.

    Forward mirrors diffusers QwenImageTransformer2DModel.forward, except that img_shapes lists the
    (frames, height, width) token grids of one sample, shared by the whole batch (diffusers takes one such
    list per sample and uses the first).
    """

    repeated_blocks = ("transformer_blocks",)  # compiled one by one

    def __init__(self, config: QwenImageConfig):
        super().__init__()
        self.config = config
        dim = config.inner_dim
        # A dict only to keep diffusers' key time_text_embed.timestep_embedder.
        self.time_text_embed = nn.ModuleDict({"timestep_embedder": EmbeddingMLP(TIMESTEP_CHANNELS, dim, nn.SiLU())})
        self.txt_norm = nn.RMSNorm(config.joint_attention_dim, eps=1e-6)
        self.img_in = nn.Linear(config.in_channels, dim)
        self.txt_in = nn.Linear(config.joint_attention_dim, dim)
        self.transformer_blocks = nn.ModuleList(
            QwenImageBlock(dim, config.num_attention_heads, config.attention_head_dim, config.mlp_ratio)
            for _ in range(config.num_layers)
        )
        self.norm_out = AdaLNOut(dim)
        self.proj_out = nn.Linear(dim, config.patch_size**2 * config.out_channels)
        self.sequence_parallel = None  # set by sequence_parallel.enable_sequence_parallel

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        img_shapes: Sequence[tuple[int, int, int]],
        encoder_hidden_states_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden_states (B, L, in_channels) packed latents, L = sum of f * h * w over img_shapes;
        encoder_hidden_states (B, T, joint_dim); timestep (B,) in [0, 1]; encoder_hidden_states_mask (B, T),
        nonzero for real text tokens. Returns (B, L, patch_size**2 * out_channels)."""
        image_len = sum(frames * height * width for frames, height, width in img_shapes)
        if image_len != hidden_states.shape[1]:
            raise ValueError(
                f"img_shapes {list(img_shapes)} describe {image_len} tokens but hidden_states has "
                f"{hidden_states.shape[1]}; pass the (frames, height, width) token grid of each packed image"
            )
        x = self.img_in(hidden_states)
        context = self.txt_in(self.txt_norm(encoder_hidden_states))
        t_features = timestep_embedding(timestep.to(x.dtype), TIMESTEP_CHANNELS, scale=TIME_FACTOR).to(x.dtype)
        temb = self.time_text_embed["timestep_embedder"](t_features)

        device = x.device
        ids = torch.cat([qwen_text_ids(img_shapes, context.shape[1], device), qwen_image_ids(img_shapes, device)])
        rope = rope_frequencies(ids, self.config.axes_dims_rope, self.config.rope_theta, dtype=torch.float32)
        mask = None
        if encoder_hidden_states_mask is not None:
            image_keys = torch.ones(x.shape[:2], dtype=torch.bool, device=device)
            mask = torch.cat([encoder_hidden_states_mask.bool(), image_keys], dim=1)[:, None, None, :]
        sp = self.sequence_parallel
        if sp is not None:  # this rank keeps its slice of the image tokens; text (and the key mask) stay whole
            sp.check_shardable(x.shape[1], self.config.num_attention_heads, "image")
            x, rope = sp.shard(x), sp.shard_rope(rope, replicated=context.shape[1])

        for block in self.transformer_blocks:
            x, context = block(x, context, temb, rope, mask)
        out = self.proj_out(self.norm_out(x, temb))
        return out if sp is None else sp.gather_output(out)  # whole prediction, for the replicated loss

    def init_weights(self) -> None:
        """Initialise for training from scratch: DiT's scheme with adaLN-Zero (layers.init_dit_weights).

        Zeroed: every block's img_mod / txt_mod projection (gates start at zero, each block is the identity),
        the final modulation and the output projection (the prediction starts at zero).
        """
        init_dit_weights(
            self,
            embedders=[self.time_text_embed],
            zeroed=[
                *(block.img_mod for block in self.transformer_blocks),
                *(block.txt_mod for block in self.transformer_blocks),
                self.norm_out.linear,
                self.proj_out,
            ],
        )
