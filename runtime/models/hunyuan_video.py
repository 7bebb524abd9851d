"""Video MMDiT (HunyuanVideo): a token refiner over the text, double-stream blocks over [video, text], then
single-stream blocks over the joint sequence; spacetime patches, RoPE over (frame, row, col), 5-D latents.

Module names and chunk orders are diffusers' HunyuanVideoTransformer3DModel (transformer_hunyuan_video.py), so
its state dict loads with strict=True; the structure is Tencent's (Tencent/HunyuanVideo hyvideo/modules/models.py).

Differences from the FLUX MMDiT (runtime/models/flux.py) that this module carries:
- the text goes through a token refiner first (`context_embedder`: its own timestep + mean-pooled-text
  conditioning and self-attention blocks with gated residuals), an extra module with its own parameters;
- RoPE rotates the video tokens only; text tokens are not rotated. Here the joint sequence is [text, video]
  as in flux.py, and the text rows of the RoPE tables are the identity rotation (cos 1, sin 0), which is
  exactly diffusers' "rotate the video part only";
- padded text tokens are masked out as keys everywhere (encoder_attention_mask);
- t is passed as is (diffusers' pipeline passes the scheduler's timesteps, 0..1000), RoPE theta 256 in float32.
"""

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from runtime.models.attention import Attention, JointAttention
from runtime.models.checkpointing import ActivationCheckpointing
from runtime.models.flux import TimestepGuidanceTextEmbedding
from runtime.models.kernels import layer_norm_modulate
from runtime.models.layers import AdaLNOut, AdaLNZero, GeluMLP, SpacetimePatchEmbed, init_dit_weights
from runtime.models.rope import RopeTables, grid_ids, rope_frequencies


@dataclass(frozen=True)
class HunyuanVideoConfig:
    """Sizes of a HunyuanVideo-style video MMDiT. Field names are diffusers HunyuanVideoTransformer3DModel's,
    so its config.json keys map one to one (HunyuanVideo: 20 double + 40 single blocks, 2 refiner blocks,
    24 heads x 128, in/out 16, patch 1 x 2 x 2, LLaVA-Llama text 4096, CLIP-L pooled 768, RoPE (16, 56, 56))."""

    in_channels: int
    out_channels: int
    num_attention_heads: int
    attention_head_dim: int
    num_layers: int  # double-stream blocks
    num_single_layers: int  # single-stream blocks
    num_refiner_layers: int  # token-refiner blocks over the text
    text_embed_dim: int  # token encoder width (HunyuanVideo's LLaVA-Llama-3: 4096)
    pooled_projection_dim: int  # pooled encoder width (CLIP-L: 768)
    guidance_embeds: bool
    rope_axes_dim: tuple[int, int, int]  # RoPE dims per (frame, row, col); sums to attention_head_dim
    patch_size: int = 2
    patch_size_t: int = 1
    mlp_ratio: float = 4.0
    rope_theta: float = 256.0
    qk_norm: str = "rms_norm"
    image_condition_type: str | None = None

    def __post_init__(self):
        if sum(self.rope_axes_dim) != self.attention_head_dim or any(d % 2 for d in self.rope_axes_dim):
            raise ValueError(
                f"HunyuanVideoConfig.rope_axes_dim {tuple(self.rope_axes_dim)} must be three even dims summing to "
                f"attention_head_dim {self.attention_head_dim}; RoPE rotates channel pairs over the whole head"
            )
        if self.qk_norm != "rms_norm":
            raise ValueError(
                f"HunyuanVideoConfig.qk_norm is {self.qk_norm!r}; only 'rms_norm' (every release) is built"
            )
        if self.image_condition_type is not None:
            raise ValueError(
                f"HunyuanVideoConfig.image_condition_type is {self.image_condition_type!r}; only text-to-video "
                "(None) is built, not the image-to-video variants"
            )

    @property
    def inner_dim(self) -> int:
        """Model width: heads x head dim."""
        return self.num_attention_heads * self.attention_head_dim


class SiluMLP(nn.Module):
    """Linear -> SiLU -> Linear with diffusers FeedForward(activation_fn="linear-silu")'s keys net.0.proj, net.2."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Sequential(OrderedDict(proj=nn.Linear(dim, hidden_dim))), nn.SiLU(), nn.Linear(hidden_dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., dim)."""
        return self.net(x)


class RefinerGates(nn.Module):
    """Linear(SiLU(cond)) split into the attention and MLP gates (diffusers HunyuanVideoAdaNorm)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cond (B, D) -> two gates (B, 1, D)."""
        gate_msa, gate_mlp = self.linear(F.silu(cond)).chunk(2, dim=1)
        return gate_msa[:, None], gate_mlp[:, None]


class RefinerBlock(nn.Module):
    """Token-refiner block: pre-LayerNorm self-attention and SiLU MLP over the text, residuals gated by the
    refiner's conditioning (diffusers HunyuanVideoIndividualTokenRefinerBlock)."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, head_dim, qk_norm="none")
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.ff = SiluMLP(dim, int(dim * mlp_ratio))
        self.norm_out = RefinerGates(dim)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, D), temb (B, D), mask (B, 1, T, T) or None -> (B, T, D)."""
        gate_msa, gate_mlp = self.norm_out(temb)
        x = x + self.attn(self.norm1(x), mask=mask) * gate_msa
        return x + self.ff(self.norm2(x)) * gate_mlp


class TokenRefinerBlocks(nn.Module):
    """The refiner's block list under diffusers' key `token_refiner.refiner_blocks`."""

    def __init__(self, dim: int, heads: int, head_dim: int, num_layers: int, mlp_ratio: float):
        super().__init__()
        self.refiner_blocks = nn.ModuleList(RefinerBlock(dim, heads, head_dim, mlp_ratio) for _ in range(num_layers))


class TokenRefiner(nn.Module):
    """The text's own small transformer before the MMDiT (diffusers HunyuanVideoTokenRefiner): conditioned on
    the timestep plus the masked mean of the raw text tokens, it projects the text to the model width and
    refines it with self-attention among the valid tokens."""

    def __init__(self, text_dim: int, heads: int, head_dim: int, num_layers: int, mlp_ratio: float = 4.0):
        super().__init__()
        dim = heads * head_dim
        # diffusers CombinedTimestepTextProjEmbeddings: the FLUX conditioning without guidance.
        self.time_text_embed = TimestepGuidanceTextEmbedding(dim, text_dim, guidance_embeds=False)
        self.proj_in = nn.Linear(text_dim, dim)
        self.token_refiner = TokenRefinerBlocks(dim, heads, head_dim, num_layers, mlp_ratio)

    def forward(self, text: torch.Tensor, timestep: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """text (B, T, text_dim), timestep (B,), mask (B, T) 1 for valid tokens -> (B, T, dim)."""
        weights = mask.float()[..., None]
        pooled = ((text * weights).sum(dim=1) / weights.sum(dim=1)).to(text.dtype)
        temb = self.time_text_embed(timestep, None, pooled)
        x = self.proj_in(text)
        valid = mask.bool()
        # A token attends to the valid tokens if it is valid; every token may attend to the first token, so no
        # padded row is fully masked (diffusers HunyuanVideoIndividualTokenRefiner.forward).
        pair_mask = (valid[:, None, :, None] & valid[:, None, None, :]).clone()
        pair_mask[..., 0] = True
        for block in self.token_refiner.refiner_blocks:
            x = block(x, temb, pair_mask)
        return x


class VideoPatchEmbed(nn.Module):
    """Spacetime patch embedding under diffusers' key `x_embedder.proj`."""

    def __init__(self, in_channels: int, dim: int, patch: tuple[int, int, int]):
        super().__init__()
        self.proj = SpacetimePatchEmbed(in_channels, dim, patch)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, F, H, W) -> (B, f * h * w, dim)."""
        return self.proj(video)


class DoubleStreamBlock(nn.Module):
    """Video and text keep their own modulation, QKV and MLP weights and meet in joint attention; the FLUX
    double-stream block plus a key mask (diffusers HunyuanVideoTransformerBlock)."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = AdaLNZero(dim, 6)
        self.norm1_context = AdaLNZero(dim, 6)
        self.attn = JointAttention(dim, heads, head_dim)
        self.ff = GeluMLP(dim, int(dim * mlp_ratio))
        self.ff_context = GeluMLP(dim, int(dim * mlp_ratio))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, temb: torch.Tensor, rope: RopeTables, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, S, D) video, context (B, T, D) text, temb (B, D), rope and key mask over [text, video]."""
        x_mod, (gate_msa, shift_mlp, scale_mlp, gate_mlp) = self.norm1(x, temb)
        c_mod, (c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp) = self.norm1_context(context, temb)
        x_attn, c_attn = self.attn(x_mod, c_mod, rope, mask)
        x = x + gate_msa[:, None] * x_attn
        x = x + gate_mlp[:, None] * self.ff(layer_norm_modulate(x, shift_mlp, scale_mlp, 1e-6))
        context = context + c_gate_msa[:, None] * c_attn
        c_mlp = self.ff_context(layer_norm_modulate(context, c_shift_mlp, c_scale_mlp, 1e-6))
        return x, context + c_gate_mlp[:, None] * c_mlp


class SingleStreamBlock(nn.Module):
    """Parallel attention and MLP over the joint sequence with one output projection, as FLUX's, plus a key
    mask (diffusers HunyuanVideoSingleTransformerBlock). adaLN chunks: shift, scale, gate."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.attn = Attention(dim, heads, head_dim, qk_norm="per_head", out_proj=False)
        self.norm = AdaLNZero(dim, 3)
        self.proj_mlp = nn.Linear(dim, hidden)
        self.proj_out = nn.Linear(dim + hidden, dim)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, rope: RopeTables, mask: torch.Tensor) -> torch.Tensor:
        """x (B, S, D) joint [text, video] sequence, temb (B, D) -> (B, S, D)."""
        x_mod, (gate,) = self.norm(x, temb)
        mlp = F.gelu(self.proj_mlp(x_mod), approximate="tanh")
        attn = self.attn(x_mod, rope=rope, mask=mask)
        return x + gate[:, None] * self.proj_out(torch.cat([attn, mlp], dim=-1))


class HunyuanVideoMMDiT(ActivationCheckpointing, nn.Module):
    """Video MMDiT denoiser over 5-D latents (B, C, F, H, W); returns a prediction of the same layout.

    Forward mirrors diffusers HunyuanVideoTransformer3DModel.forward (argument names included).
    """

    repeated_blocks = ("transformer_blocks", "single_transformer_blocks")

    def __init__(self, config: HunyuanVideoConfig):
        super().__init__()
        self.config = config
        dim, heads, head_dim = config.inner_dim, config.num_attention_heads, config.attention_head_dim
        self.patch = (config.patch_size_t, config.patch_size, config.patch_size)
        self.x_embedder = VideoPatchEmbed(config.in_channels, dim, self.patch)
        self.context_embedder = TokenRefiner(config.text_embed_dim, heads, head_dim, config.num_refiner_layers)
        self.time_text_embed = TimestepGuidanceTextEmbedding(dim, config.pooled_projection_dim, config.guidance_embeds)
        self.transformer_blocks = nn.ModuleList(
            DoubleStreamBlock(dim, heads, head_dim, config.mlp_ratio) for _ in range(config.num_layers)
        )
        self.single_transformer_blocks = nn.ModuleList(
            SingleStreamBlock(dim, heads, head_dim, config.mlp_ratio) for _ in range(config.num_single_layers)
        )
        self.norm_out = AdaLNOut(dim)
        self.proj_out = nn.Linear(dim, config.patch_size_t * config.patch_size**2 * config.out_channels)

    def rope(self, grid: tuple[int, int, int], text_len: int, device) -> RopeTables:
        """RoPE tables over [text, video]: identity rows for the text, (frame, row, col) for the video,
        angles in float32 as diffusers get_1d_rotary_pos_embed (HunyuanVideoRotaryPosEmbed)."""
        cos, sin = rope_frequencies(
            grid_ids(*grid, device=device), self.config.rope_axes_dim, self.config.rope_theta, torch.float32
        )
        head_dim = self.config.attention_head_dim
        text_cos = torch.ones(text_len, head_dim, device=device)
        text_sin = torch.zeros(text_len, head_dim, device=device)
        return torch.cat([text_cos, cos]), torch.cat([text_sin, sin])

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        pooled_projections: torch.Tensor,
        guidance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden_states (B, C, F, H, W) latents; timestep (B,) as the scheduler gives it (0..1000);
        encoder_hidden_states (B, T, text_embed_dim) with encoder_attention_mask (B, T), 1 for valid tokens
        (padding after the valid tokens, as the pipeline pads); pooled_projections (B, pooled_projection_dim);
        guidance (B,) the embedded CFG scale x 1000, exactly when config.guidance_embeds.
        Returns (B, out_channels, F, H, W)."""
        if hidden_states.ndim != 5:
            raise ValueError(
                f"hidden_states has shape {tuple(hidden_states.shape)}; a video MMDiT takes 5-D latents "
                "(batch, channels, frames, height, width)"
            )
        if self.config.guidance_embeds != (guidance is not None):
            raise ValueError(
                f"config.guidance_embeds is {self.config.guidance_embeds} but guidance was "
                f"{'not ' if guidance is None else ''}passed: pass one CFG scale per sample exactly when embedded"
            )
        _, _, frames, height, width = hidden_states.shape
        pt, ph, pw = self.patch
        grid = (frames // pt, height // ph, width // pw)

        x = self.x_embedder(hidden_states)
        temb = self.time_text_embed(timestep, guidance, pooled_projections)
        context = self.context_embedder(encoder_hidden_states, timestep, encoder_attention_mask)
        rope = self.rope(grid, context.shape[1], x.device)
        keys = torch.cat([encoder_attention_mask.bool(), torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)], 1)
        mask = keys[:, None, None, :]

        for block in self.transformer_blocks:
            x, context = block(x, context, temb, rope, mask)
        joint = torch.cat([context, x], dim=1)
        for block in self.single_transformer_blocks:
            joint = block(joint, temb, rope, mask)
        x = self.proj_out(self.norm_out(joint[:, context.shape[1] :], temb))
        # diffusers unpatchifies with channels outermost in each token: (c, pt, ph, pw).
        return rearrange(
            x,
            "b (f h w) (c pt ph pw) -> b c (f pt) (h ph) (w pw)",
            f=grid[0], h=grid[1], w=grid[2], pt=pt, ph=ph, pw=pw,
        )

    def init_weights(self) -> None:
        """DiT's scheme with adaLN-Zero (layers.init_dit_weights): every block's modulation, the refiner's
        gates, the final modulation and the output projection start at zero, so each block is the identity
        and the prediction starts at zero."""
        init_dit_weights(
            self,
            embedders=[self.time_text_embed, self.context_embedder.time_text_embed],
            zeroed=[
                *(block.norm1.linear for block in self.transformer_blocks),
                *(block.norm1_context.linear for block in self.transformer_blocks),
                *(block.norm.linear for block in self.single_transformer_blocks),
                *(block.norm_out.linear for block in self.context_embedder.token_refiner.refiner_blocks),
                self.norm_out.linear,
                self.proj_out,
            ],
        )
