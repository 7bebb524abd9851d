"""Expert-adaLN video DiT (CogVideoX): text tokens sit in the sequence before the video tokens, one set of
attention and MLP weights serves both, but each block modulates text and video with separate ("expert")
adaLN chunks computed from a conditioning vector of its own width; LayerNorm QK norm per head, configurable
norm eps, 3-D RoPE over (frame, row, col) on the video tokens.

Yang et al. 2024, "CogVideoX: Text-to-Video Diffusion Models with An Expert Transformer" (arXiv:2408.06072).
Module names and chunk orders are diffusers' CogVideoXTransformer3DModel (cogvideox_transformer_3d.py), so
its state dict loads with strict=True. Built: CogVideoX 1.0 with RoPE (5B); not the 1.5 temporal patches,
the image-to-video ofs embedding or the 2B's sin-cos positions.

RoPE: diffusers' pipeline computes the tables (pipeline_cogvideox.py _prepare_rotary_positional_embeddings);
this model computes the same itself. The head dim splits as d/4, 3d/8, 3d/8 over (frame, row, col); a grid
other than the training one (sample_height x sample_width latents) has its rows and columns spread by
linspace over the resized-and-centred crop of the base grid (get_resize_crop_region_for_grid), the
positions 0..n-1 when the grid is the base grid. Text tokens get the identity rotation.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from runtime.models.attention import Attention
from runtime.models.checkpointing import ActivationCheckpointing
from runtime.models.layers import EmbeddingMLP, GeluMLP, init_dit_weights, timestep_embedding
from runtime.models.rope import RopeTables, rope_frequencies


@dataclass(frozen=True)
class CogVideoXConfig:
    """Sizes of a CogVideoX-style expert-adaLN DiT. Field names are diffusers CogVideoXTransformer3DModel's, so its
    config.json keys map one to one (CogVideoX-5B: 42 blocks, 48 heads x 64, in 16, out 16, time_embed_dim 512,
    T5-XXL 4096, patch 2, norm eps 1e-5, 480 x 720 latents of 60 x 90, RoPE)."""

    num_attention_heads: int
    attention_head_dim: int
    num_layers: int
    in_channels: int = 16
    out_channels: int = 16
    time_embed_dim: int = 512  # the conditioning width every block's modulation reads
    text_embed_dim: int = 4096
    patch_size: int = 2
    sample_height: int = 60  # training latent height and width: the base grid of the RoPE positions
    sample_width: int = 90
    norm_eps: float = 1e-5
    norm_elementwise_affine: bool = True
    attention_bias: bool = True
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    use_rotary_positional_embeddings: bool = True
    use_learned_positional_embeddings: bool = False
    patch_size_t: int | None = None
    ofs_embed_dim: int | None = None
    rope_theta: float = 10000.0
    freq_dim: int | None = None  # sinusoid width of the timestep; None: the model width, as diffusers builds it

    def __post_init__(self):
        unsupported = {
            "use_rotary_positional_embeddings": (self.use_rotary_positional_embeddings, True),
            "use_learned_positional_embeddings": (self.use_learned_positional_embeddings, False),
            "patch_size_t": (self.patch_size_t, None),
            "ofs_embed_dim": (self.ofs_embed_dim, None),
            "freq_shift": (self.freq_shift, 0),
            "norm_elementwise_affine": (self.norm_elementwise_affine, True),
            "attention_bias": (self.attention_bias, True),
        }
        for name, (value, built) in unsupported.items():
            if value != built:
                raise ValueError(
                    f"CogVideoXConfig.{name} is {value!r}; only CogVideoX 1.0 with RoPE (5B: {name}={built!r}) is "
                    "built, not the 2B's sin-cos positions or the 1.5 / image-to-video variants"
                )
        if self.attention_head_dim % 8:
            raise ValueError(
                f"CogVideoXConfig.attention_head_dim is {self.attention_head_dim}; the RoPE split d/4, 3d/8, 3d/8 "
                "needs a multiple of 8"
            )

    @property
    def inner_dim(self) -> int:
        """Model width: heads x head dim."""
        return self.num_attention_heads * self.attention_head_dim

    @property
    def rope_axes_dim(self) -> tuple[int, int, int]:
        """(frame, row, col) RoPE dims: d/4, 3d/8, 3d/8 (diffusers get_3d_rotary_pos_embed)."""
        d = self.attention_head_dim
        return d // 4, d // 8 * 3, d // 8 * 3


class ExpertLayerNormZero(nn.Module):
    """One LayerNorm (affine) shared by both streams, modulated by separate chunks for video and text:
    shift, scale, gate, then the text's shift, scale, gate (diffusers normalization.py CogVideoXLayerNormZero)."""

    def __init__(self, cond_dim: int, dim: int, eps: float):
        super().__init__()
        self.linear = nn.Linear(cond_dim, 6 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor, temb: torch.Tensor):
        """x (B, S, D) video, context (B, T, D) text, temb (B, cond_dim) -> (x, context, gate, context gate)."""
        shift, scale, gate, c_shift, c_scale, c_gate = self.linear(F.silu(temb)).chunk(6, dim=1)
        x = self.norm(x) * (1 + scale)[:, None] + shift[:, None]
        context = self.norm(context) * (1 + c_scale)[:, None] + c_shift[:, None]
        return x, context, gate[:, None], c_gate[:, None]


class ExpertBlock(nn.Module):
    """Full attention and one MLP over [text, video], each stream's residual modulated and gated by its own
    adaLN chunks (diffusers CogVideoXBlock)."""

    def __init__(self, dim: int, heads: int, head_dim: int, cond_dim: int, eps: float):
        super().__init__()
        self.norm1 = ExpertLayerNormZero(cond_dim, dim, eps)
        self.attn1 = Attention(dim, heads, head_dim, qk_norm="per_head_layer_norm", eps=1e-6)
        self.norm2 = ExpertLayerNormZero(cond_dim, dim, eps)
        self.ff = GeluMLP(dim, 4 * dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, temb: torch.Tensor, rope: RopeTables
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, S, D) video, context (B, T, D) text, temb (B, cond_dim), rope over [text, video]."""
        text_len = context.shape[1]
        x_mod, c_mod, gate, c_gate = self.norm1(x, context, temb)
        c_attn, x_attn = self.attn1(torch.cat([c_mod, x_mod], dim=1), rope=rope).split(
            [text_len, x.shape[1]], dim=1
        )
        x, context = x + gate * x_attn, context + c_gate * c_attn
        x_mod, c_mod, gate, c_gate = self.norm2(x, context, temb)
        ff = self.ff(torch.cat([c_mod, x_mod], dim=1))
        return x + gate * ff[:, text_len:], context + c_gate * ff[:, :text_len]


class TextVideoPatchEmbed(nn.Module):
    """Text projection and per-frame Conv2d patches, concatenated [text, video] (diffusers CogVideoXPatchEmbed
    with patch_size_t None and no additive positions)."""

    def __init__(self, in_channels: int, dim: int, text_dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch, stride=patch)
        self.text_proj = nn.Linear(text_dim, dim)

    def forward(self, text: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """text (B, T, text_dim), video (B, F, C, H, W) -> (B, T + F * h * w, dim), frame-major."""
        batch, frames = video.shape[:2]
        patches = self.proj(video.flatten(0, 1)).flatten(2).transpose(1, 2).unflatten(0, (batch, frames))
        return torch.cat([self.text_proj(text), patches.flatten(1, 2)], dim=1).contiguous()


class ExpertOutNorm(nn.Module):
    """Final adaLN from the conditioning vector: shift, scale (in that order), affine LayerNorm (diffusers
    normalization.py AdaLayerNorm with chunk_dim=1)."""

    def __init__(self, cond_dim: int, dim: int, eps: float):
        super().__init__()
        self.linear = nn.Linear(cond_dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """x (B, S, D), temb (B, cond_dim) -> (B, S, D)."""
        shift, scale = self.linear(F.silu(temb)).chunk(2, dim=1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


def crop_region(grid: tuple[int, int], base_width: int, base_height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The grid resized to fit the base grid and centred in it: ((top, left), (bottom, right)) (diffusers
    pipeline_cogvideox.py get_resize_crop_region_for_grid)."""
    height, width = grid
    if height / width > base_height / base_width:
        resize_height, resize_width = base_height, int(round(base_height / height * width))
    else:
        resize_width, resize_height = base_width, int(round(base_width / width * height))
    top, left = int(round((base_height - resize_height) / 2.0)), int(round((base_width - resize_width) / 2.0))
    return (top, left), (top + resize_height, left + resize_width)


class CogVideoXDiT(ActivationCheckpointing, nn.Module):
    """Expert-adaLN video DiT over latents (B, F, C, H, W) (CogVideoX's frame-major layout); returns a
    prediction of the same layout. Forward mirrors diffusers CogVideoXTransformer3DModel.forward, with the RoPE
    tables computed inside rather than passed."""

    repeated_blocks = ("transformer_blocks",)

    def __init__(self, config: CogVideoXConfig):
        super().__init__()
        self.config = config
        dim, cond = config.inner_dim, config.time_embed_dim
        self.freq_dim = config.freq_dim or dim
        self.patch_embed = TextVideoPatchEmbed(config.in_channels, dim, config.text_embed_dim, config.patch_size)
        self.time_embedding = EmbeddingMLP(self.freq_dim, cond, nn.SiLU())
        self.transformer_blocks = nn.ModuleList(
            ExpertBlock(dim, config.num_attention_heads, config.attention_head_dim, cond, config.norm_eps)
            for _ in range(config.num_layers)
        )
        self.norm_final = nn.LayerNorm(dim, eps=config.norm_eps)
        self.norm_out = ExpertOutNorm(cond, dim, config.norm_eps)
        self.proj_out = nn.Linear(dim, config.patch_size**2 * config.out_channels)

    def rope(self, frames: int, height: int, width: int, text_len: int, device) -> RopeTables:
        """RoPE tables over [text, video] for a grid of frames x height x width patches (see the module doc)."""
        patch = self.config.patch_size
        (top, left), (bottom, right) = crop_region(
            (height, width), self.config.sample_width // patch, self.config.sample_height // patch
        )

        def spread(start: int, stop: int, n: int) -> torch.Tensor:
            return torch.linspace(start, stop * (n - 1) / n, n, device=device, dtype=torch.float32)

        axes = (torch.arange(frames, device=device, dtype=torch.float32), spread(top, bottom, height),
                spread(left, right, width))
        ids = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
        cos, sin = rope_frequencies(ids, self.config.rope_axes_dim, self.config.rope_theta, torch.float32)
        head_dim = self.config.attention_head_dim
        identity = torch.ones(text_len, head_dim, device=device), torch.zeros(text_len, head_dim, device=device)
        return torch.cat([identity[0], cos]), torch.cat([identity[1], sin])

    def forward(
        self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, timestep: torch.Tensor
    ) -> torch.Tensor:
        """hidden_states (B, F, C, H, W) latents; encoder_hidden_states (B, T, text_embed_dim); timestep (B,)
        in 0..1000. Returns (B, F, out_channels, H, W)."""
        if hidden_states.ndim != 5:
            raise ValueError(
                f"hidden_states has shape {tuple(hidden_states.shape)}; CogVideoX takes 5-D latents "
                "(batch, frames, channels, height, width)"
            )
        _, frames, _, height, width = hidden_states.shape
        patch = self.config.patch_size
        if height % patch or width % patch:
            raise ValueError(f"latent size {height}x{width} is not divisible by the patch size {patch}; crop or pad it")
        t_emb = timestep_embedding(timestep, self.freq_dim, flip_sin_to_cos=self.config.flip_sin_to_cos)
        temb = self.time_embedding(t_emb.to(hidden_states.dtype))
        joint = self.patch_embed(encoder_hidden_states, hidden_states)
        text_len = encoder_hidden_states.shape[1]
        context, x = joint[:, :text_len], joint[:, text_len:]
        rope = self.rope(frames, height // patch, width // patch, text_len, x.device)
        for block in self.transformer_blocks:
            x, context = block(x, context, temb, rope)
        x = self.proj_out(self.norm_out(self.norm_final(x), temb))
        # diffusers unpatchifies with channels outermost in each token: (c, p, q).
        return rearrange(
            x, "b (f h w) (c p q) -> b f c (h p) (w q)", f=frames, h=height // patch, w=width // patch, p=patch, q=patch
        )

    def init_weights(self) -> None:
        """DiT's scheme with adaLN-Zero (layers.init_dit_weights): every block's modulation, the final
        modulation and the output projection start at zero."""
        init_dit_weights(
            self,
            embedders=[self.time_embedding],
            zeroed=[
                *(block.norm1.linear for block in self.transformer_blocks),
                *(block.norm2.linear for block in self.transformer_blocks),
                self.norm_out.linear,
                self.proj_out,
            ],
        )
        nn.init.xavier_uniform_(self.patch_embed.proj.weight.view(self.patch_embed.proj.weight.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
