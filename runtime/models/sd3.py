"""SD3-class MMDiT (Stable Diffusion 3 / 3.5 large): joint blocks over [text, image] with absolute positional
embeddings cropped from a larger table, the last block's text stream "context-pre-only", optional QK RMSNorm,
and a pooled text vector (the concatenated pooled outputs of the text encoders) in the conditioning.

Esser et al. 2024, "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis" (arXiv:2403.03206).
Module names and chunk orders are diffusers' SD3Transformer2DModel (transformer_sd3.py, attention.py
JointTransformerBlock), so its state dict loads with strict=True. The text tokens passed in are the encoders'
token outputs already concatenated (SD3: CLIP-L and CLIP-G side by side, zero-padded to T5's 4096 channels,
then T5's tokens after them on the sequence axis: diffusers pipeline_stable_diffusion_3.py encode_prompt).

Positions: diffusers keeps the table as a persistent buffer `pos_embed.pos_embed` (1, M * M, D), built as 2-D
sin-cos and stored in the released checkpoints; it is a buffer here too, so the state dict and the parameter
count agree with diffusers'. An image of h x w patches adds the centred h x w crop of the M x M table.
"""

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from runtime.models.attention import JointAttention
from runtime.models.checkpointing import ActivationCheckpointing
from runtime.models.flux import TimestepGuidanceTextEmbedding
from runtime.models.kernels import layer_norm_modulate
from runtime.models.layers import AdaLNOut, AdaLNZero, GeluMLP, init_dit_weights


@dataclass(frozen=True)
class SD3Config:
    """Sizes of an SD3-class MMDiT. Field names are diffusers SD3Transformer2DModel's, so its config.json keys map
    one to one (SD3-medium: 24 blocks, 24 heads x 64, patch 2, in/out 16, joint 4096, caption 1536, pooled 2048,
    table 192 x 192, no QK norm; SD3.5 large: 38 blocks, 38 heads x 64, caption 2432, QK RMSNorm)."""

    num_layers: int
    num_attention_heads: int
    attention_head_dim: int
    joint_attention_dim: int  # width of the concatenated token outputs (T5-XXL: 4096)
    caption_projection_dim: int  # the model width the text is projected to (= heads x head dim)
    pooled_projection_dim: int  # width of the concatenated pooled outputs (CLIP-L 768 + CLIP-G 1280 = 2048)
    pos_embed_max_size: int  # side of the positional table, in patches
    in_channels: int = 16
    out_channels: int = 16
    patch_size: int = 2
    sample_size: int = 128  # the training latent side; sets the sin-cos table's base (diffusers PatchEmbed)
    qk_norm: str | None = None  # None or "rms_norm"
    dual_attention_layers: tuple[int, ...] = ()

    def __post_init__(self):
        if self.caption_projection_dim != self.inner_dim:
            raise ValueError(
                f"SD3Config.caption_projection_dim is {self.caption_projection_dim} but the model width (heads x "
                f"head dim) is {self.inner_dim}; the text stream runs at the model width, so make them equal"
            )
        if self.qk_norm not in (None, "rms_norm"):
            raise ValueError(f"SD3Config.qk_norm is {self.qk_norm!r}; it must be None or 'rms_norm'")
        if self.dual_attention_layers:
            raise ValueError(
                f"SD3Config.dual_attention_layers is {tuple(self.dual_attention_layers)}; SD3.5 medium's MMDiT-X "
                "second attention is not built: leave it empty (SD3-medium, SD3.5 large)"
            )

    @property
    def inner_dim(self) -> int:
        """Model width: heads x head dim."""
        return self.num_attention_heads * self.attention_head_dim


def sincos_table(dim: int, grid: int, base: int) -> torch.Tensor:
    """2-D sin-cos positions (grid * grid, dim) in float32, row-major, for a grid of `grid` patches whose
    positions are scaled so `base` patches span the unit range of a base x base grid: the first half of the
    channels encodes the column, the second the row, each as [sin, cos] (diffusers embeddings.py
    get_2d_sincos_pos_embed, as SD3's PatchEmbed builds its table)."""
    positions = torch.arange(grid, dtype=torch.float64) / (grid / base)
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))

    def one_axis(values: torch.Tensor) -> torch.Tensor:
        angles = torch.outer(values.reshape(-1), omega)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    rows, cols = torch.meshgrid(positions, positions, indexing="ij")
    return torch.cat([one_axis(cols), one_axis(rows)], dim=1).float()


class CroppedPatchEmbed(nn.Module):
    """Conv2d patch embedding plus the centred crop of an M x M positional table (diffusers PatchEmbed with
    pos_embed_max_size). Keys proj.weight, proj.bias and the buffer pos_embed."""

    def __init__(self, in_channels: int, dim: int, patch: int, max_size: int, base: int):
        super().__init__()
        self.patch = patch
        self.max_size = max_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch, stride=patch)
        self.register_buffer("pos_embed", sincos_table(dim, max_size, base)[None])

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """latents (B, C, H, W) -> tokens (B, H/p * W/p, dim), row-major."""
        height, width = (size // self.patch for size in latents.shape[-2:])
        if max(height, width) > self.max_size or latents.shape[-2] % self.patch or latents.shape[-1] % self.patch:
            raise ValueError(
                f"latents of {latents.shape[-2]} x {latents.shape[-1]} do not fit: each side must be a multiple of "
                f"the patch size {self.patch} and at most {self.max_size * self.patch} (pos_embed_max_size "
                f"{self.max_size} patches); resize the image"
            )
        top, left = (self.max_size - height) // 2, (self.max_size - width) // 2
        table = self.pos_embed.reshape(1, self.max_size, self.max_size, -1)
        positions = table[:, top : top + height, left : left + width].reshape(1, height * width, -1)
        tokens = self.proj(latents).flatten(2).transpose(1, 2)
        return (tokens + positions).to(tokens.dtype)


class JointBlock(nn.Module):
    """SD3 joint block: image and text keep their own modulation, QKV and MLP, attention over both.

    context_pre_only (the last block): the text stream is only read, not updated, so its modulation is the
    final-layer form (AdaLayerNormContinuous: scale, shift) and it has no output projection, MLP or gates.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, *, context_pre_only: bool, qk_norm: bool):
        super().__init__()
        self.context_pre_only = context_pre_only
        self.norm1 = AdaLNZero(dim, 6)
        self.norm1_context = AdaLNOut(dim) if context_pre_only else AdaLNZero(dim, 6)
        self.attn = JointAttention(dim, heads, head_dim, qk_norm=qk_norm, context_out=not context_pre_only)
        self.ff = GeluMLP(dim, 4 * dim)
        self.ff_context = None if context_pre_only else GeluMLP(dim, 4 * dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, temb: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, S, D) image, context (B, T, D) text, temb (B, D) -> (x, context or None after the last block)."""
        x_mod, (gate_msa, shift_mlp, scale_mlp, gate_mlp) = self.norm1(x, temb)
        if self.context_pre_only:
            x_attn, _ = self.attn(x_mod, self.norm1_context(context, temb))
        else:
            c_mod, (c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp) = self.norm1_context(context, temb)
            x_attn, c_attn = self.attn(x_mod, c_mod)
        x = x + gate_msa[:, None] * x_attn
        x = x + gate_mlp[:, None] * self.ff(layer_norm_modulate(x, shift_mlp, scale_mlp, 1e-6))
        if self.context_pre_only:
            return x, None
        context = context + c_gate_msa[:, None] * c_attn
        c_mlp = self.ff_context(layer_norm_modulate(context, c_shift_mlp, c_scale_mlp, 1e-6))
        return x, context + c_gate_mlp[:, None] * c_mlp


class SD3MMDiT(ActivationCheckpointing, nn.Module):
    """SD3-class MMDiT denoiser over latents (B, C, H, W); returns a prediction of the same layout.

    Forward mirrors diffusers SD3Transformer2DModel.forward (argument names included; t as the pipeline
    passes it, sigma x 1000).
    """

    repeated_blocks = ("transformer_blocks",)

    def __init__(self, config: SD3Config):
        super().__init__()
        self.config = config
        dim, heads, head_dim = config.inner_dim, config.num_attention_heads, config.attention_head_dim
        self.pos_embed = CroppedPatchEmbed(
            config.in_channels, dim, config.patch_size, config.pos_embed_max_size,
            base=config.sample_size // config.patch_size,
        )
        self.time_text_embed = TimestepGuidanceTextEmbedding(dim, config.pooled_projection_dim, guidance_embeds=False)
        self.context_embedder = nn.Linear(config.joint_attention_dim, config.caption_projection_dim)
        self.transformer_blocks = nn.ModuleList(
            JointBlock(
                dim, heads, head_dim,
                context_pre_only=index == config.num_layers - 1,
                qk_norm=config.qk_norm == "rms_norm",
            )
            for index in range(config.num_layers)
        )
        self.norm_out = AdaLNOut(dim)
        self.proj_out = nn.Linear(dim, config.patch_size**2 * config.out_channels)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        pooled_projections: torch.Tensor,
        timestep: torch.Tensor,
    ) -> torch.Tensor:
        """hidden_states (B, C, H, W) latents; encoder_hidden_states (B, T, joint_attention_dim) the concatenated
        token outputs; pooled_projections (B, pooled_projection_dim) the concatenated pooled outputs; timestep
        (B,) in 0..1000. Returns (B, out_channels, H, W)."""
        if hidden_states.ndim != 4:
            raise ValueError(
                f"hidden_states has shape {tuple(hidden_states.shape)}; an SD3 MMDiT takes 4-D latents "
                "(batch, channels, height, width)"
            )
        height, width = (size // self.config.patch_size for size in hidden_states.shape[-2:])
        x = self.pos_embed(hidden_states)
        temb = self.time_text_embed(timestep, None, pooled_projections)
        context = self.context_embedder(encoder_hidden_states)
        for block in self.transformer_blocks:
            x, context = block(x, context, temb)
        x = self.proj_out(self.norm_out(x, temb))
        patch = self.config.patch_size
        # diffusers unpatchifies with channels innermost in each token: (p, q, c).
        return rearrange(x, "b (h w) (p q c) -> b c (h p) (w q)", h=height, w=width, p=patch, q=patch)

    def init_weights(self) -> None:
        """DiT's scheme with adaLN-Zero (layers.init_dit_weights): block modulations, the final modulation and
        the output projection start at zero. The positional table keeps its sin-cos values."""
        init_dit_weights(
            self,
            embedders=[self.time_text_embed],
            zeroed=[
                *(block.norm1.linear for block in self.transformer_blocks),
                *(block.norm1_context.linear for block in self.transformer_blocks),
                self.norm_out.linear,
                self.proj_out,
            ],
        )
        nn.init.xavier_uniform_(self.pos_embed.proj.weight.view(self.pos_embed.proj.weight.shape[0], -1))
        nn.init.zeros_(self.pos_embed.proj.bias)
