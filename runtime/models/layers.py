"""Building blocks shared by the diffusion transformers: MLPs, timestep embedding, adaLN modulation, patches.

Submodule names follow diffusers (net.0.proj / net.2, linear_1 / linear_2, linear) so that released
checkpoints load with strict=True; the attention and RoPE blocks live in attention.py and rope.py.
"""

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from runtime.models.kernels import layer_norm_modulate


class GeluMLP(nn.Module):
    """Linear -> GELU (tanh approximation) -> Linear, the transformer MLP of FLUX, Qwen-Image and Wan.

    Keys net.0.proj and net.2 as diffusers attention.py FeedForward(activation_fn="gelu-approximate").
    """

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Sequential(OrderedDict(proj=nn.Linear(dim, hidden_dim))),
            nn.GELU(approximate="tanh"),
            nn.Linear(hidden_dim, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., dim)."""
        return self.net(x)


class EmbeddingMLP(nn.Module):
    """Linear -> activation -> Linear that lifts a conditioning vector to the model width.

    Keys linear_1 / linear_2 as diffusers embeddings.py TimestepEmbedding and PixArtAlphaTextProjection.
    """

    def __init__(self, in_dim: int, dim: int, activation: nn.Module):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.act = activation
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_dim) -> (..., dim)."""
        return self.linear_2(self.act(self.linear_1(x)))


def timestep_embedding(
    t: torch.Tensor, dim: int, *, scale: float = 1.0, flip_sin_to_cos: bool = True, max_period: float = 10000.0
) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) in float32 of timesteps t (B,): sin and cos of scale * t * f_i,
    f_i = max_period ** (-i / (dim / 2)); flip_sin_to_cos puts the cos half first.

    Formula and operation order of diffusers embeddings.py get_timestep_embedding with
    downscale_freq_shift=0, the setting FLUX, Wan and Qwen-Image use.
    """
    if t.ndim != 1:
        raise ValueError(f"timesteps have shape {tuple(t.shape)}; pass one timestep per sample, shape (batch,)")
    if dim % 2:
        raise ValueError(f"timestep embedding dim is {dim}; it must be even (sin and cos halves)")
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    angles = scale * (t.float()[:, None] * torch.exp(exponent)[None, :])
    halves = (torch.cos(angles), torch.sin(angles)) if flip_sin_to_cos else (torch.sin(angles), torch.cos(angles))
    return torch.cat(halves, dim=-1)


class AdaLNZero(nn.Module):
    """adaLN-Zero: LayerNorm of x modulated by chunks of Linear(SiLU(cond)), x_hat * (1 + scale) + shift
    (DiT, Peebles & Xie 2023, arXiv:2212.09748; `1 + scale` so a zero modulation is the identity).

    The chunks come in the order shift, scale, then the rest (gates and later shifts/scales), as
    diffusers normalization.py AdaLayerNormZero (6 chunks) and AdaLayerNormZeroSingle (3 chunks).
    Returns the modulated x and the remaining chunks, each (B, D).
    """

    def __init__(self, dim: int, num_chunks: int, eps: float = 1e-6):
        super().__init__()
        self.num_chunks = num_chunks
        self.eps = eps
        self.linear = nn.Linear(dim, num_chunks * dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, S, D), cond (B, D) -> (modulated x, [remaining num_chunks - 2 chunks])."""
        shift, scale, *rest = self.linear(F.silu(cond)).chunk(self.num_chunks, dim=-1)
        return layer_norm_modulate(x, shift, scale, self.eps), rest


class AdaLNOut(nn.Module):
    """Final adaLN before the output projection: chunks in the order scale, shift (the reverse of AdaLNZero),
    no gate, as diffusers normalization.py AdaLayerNormContinuous and BFL flux LastLayer."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.linear = nn.Linear(dim, 2 * dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, S, D), cond (B, D) -> (B, S, D)."""
        scale, shift = self.linear(F.silu(cond).to(x.dtype)).chunk(2, dim=-1)
        return layer_norm_modulate(x, shift, scale, self.eps)


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the parameter dtype (Wan keeps its norms in float32:
    diffusers normalization.py FP32LayerNorm); returns float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D) float32."""
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)


def patchify_2d(latents: torch.Tensor, patch: int = 2) -> torch.Tensor:
    """Pack latents (B, C, H, W) into tokens (B, H/p * W/p, C * p * p), row-major, channels outermost.

    The packing of diffusers pipeline_flux.py FluxPipeline._pack_latents (also Qwen-Image's).
    """
    _, _, height, width = latents.shape
    if height % patch or width % patch:
        raise ValueError(f"latent size {height}x{width} is not divisible by the patch size {patch}; crop or pad it")
    return rearrange(latents, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=patch, pw=patch)


def unpatchify_2d(tokens: torch.Tensor, height: int, width: int, patch: int = 2) -> torch.Tensor:
    """Inverse of patchify_2d: tokens (B, H/p * W/p, C * p * p) -> latents (B, C, H, W)."""
    return rearrange(tokens, "b (h w) (c ph pw) -> b c (h ph) (w pw)", h=height // patch, ph=patch, pw=patch)


class SpacetimePatchEmbed(nn.Conv3d):
    """Video patch embedding: a Conv3d with kernel = stride = patch, flattened to tokens frame-major.

    As Wan's `patch_embedding` (diffusers transformer_wan.py); patch (1, 2, 2) keeps every latent frame.
    """

    def __init__(self, in_channels: int, dim: int, patch: tuple[int, int, int]):
        super().__init__(in_channels, dim, kernel_size=patch, stride=patch)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video (B, C, F, H, W) -> tokens (B, F/pt * H/ph * W/pw, dim)."""
        for size, step, axis in zip(video.shape[2:], self.kernel_size, ("frames", "height", "width")):
            if size % step:
                raise ValueError(f"video {axis} is {size}, not divisible by the patch size {step}; crop or pad it")
        return super().forward(video).flatten(2).transpose(1, 2)


def unpatchify_3d(tokens: torch.Tensor, grid: tuple[int, int, int], patch: tuple[int, int, int]) -> torch.Tensor:
    """Tokens (B, f * h * w, pt * ph * pw * C) over a grid (f, h, w) of patches -> video (B, C, F, H, W).

    Channel layout (pt ph pw c), as diffusers transformer_wan.py WanTransformer3DModel.forward unpatchifies.
    """
    frames, height, width = grid
    pt, ph, pw = patch
    return rearrange(
        tokens,
        "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)",
        f=frames, h=height, w=width, pt=pt, ph=ph, pw=pw,
    )


def init_dit_weights(model: nn.Module, embedders: list[nn.Module], zeroed: list[nn.Module | nn.Parameter]) -> None:
    """DiT's initialisation for training from scratch (facebookresearch/DiT models.py DiT.initialize_weights):
    Xavier-uniform linear and patch-embedding weights with zero biases, N(0, 0.02) conditioning embedders,
    then adaLN-Zero: every module or parameter in `zeroed` (modulation projections, output layers) set to
    zero, so each residual block starts as the identity and the model's output starts at zero.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, SpacetimePatchEmbed)):
            # A patch embedding is a linear map of the flattened patch (DiT: xavier on weight.view(out, -1)).
            nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for embedder in embedders:
        for module in embedder.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
    with torch.no_grad():
        for item in zeroed:
            for parameter in [item] if isinstance(item, nn.Parameter) else item.parameters():
                parameter.zero_()
