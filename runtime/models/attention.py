"""Multi-head attention with QK RMSNorm and RoPE: the self/cross form (FLUX single-stream, Wan) and the
two-stream joint form (FLUX double-stream, Qwen-Image).

Parameter names follow diffusers (to_q, to_k, to_v, norm_q, norm_k, to_out.0; add_*_proj, norm_added_*,
to_add_out on the text stream) so released checkpoints load with strict=True.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from runtime.models.rope import RopeTables, apply_rope

QKNorm = Literal["per_head", "per_head_layer_norm", "across_heads", "none"]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention of (B, S, H, D) tensors; returns (B, S, H * D).

    `mask` broadcasts to (B, H, S_q, S_k): True (or 0.0) where a query may attend to a key.
    """
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2).flatten(2)


class Attention(nn.Module):
    """Attention of x over itself, or over `context` when given, with RMSNorm on q and k.

    qk_norm="per_head" normalises each head of q and k over head_dim (FLUX, Qwen-Image); "across_heads"
    normalises the whole inner dim before the head split (Wan 2.1, diffusers transformer_wan.py
    WanAttnProcessor); "per_head_layer_norm" is a LayerNorm with affine weights per head instead of RMSNorm
    (CogVideoX, diffusers attention_processor.py Attention(qk_norm="layer_norm")); "none" leaves q and k as
    projected (Allegro, diffusers transformer_allegro.py).
    out_proj=False returns the heads unprojected: FLUX single-stream blocks fuse the attention output
    projection with the MLP's.
    """

    def __init__(
        self, dim: int, heads: int, head_dim: int, *, qk_norm: QKNorm, eps: float = 1e-6, out_proj: bool = True
    ):
        super().__init__()
        if qk_norm not in ("per_head", "per_head_layer_norm", "across_heads", "none"):
            raise ValueError(
                f"qk_norm is {qk_norm!r}; it must be 'per_head', 'per_head_layer_norm', 'across_heads' or 'none'"
            )
        inner = heads * head_dim
        self.head_dim = head_dim
        self.qk_norm = qk_norm
        norm_dim = inner if qk_norm == "across_heads" else head_dim
        norm = nn.LayerNorm if qk_norm == "per_head_layer_norm" else nn.RMSNorm
        self.norm_q = norm(norm_dim, eps=eps) if qk_norm != "none" else None
        self.norm_k = norm(norm_dim, eps=eps) if qk_norm != "none" else None
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        # A list because diffusers keeps a dropout at index 1; the projection's key stays `to_out.0`.
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)]) if out_proj else None
        # Set by sequence_parallel.enable_sequence_parallel; None: this rank holds the whole sequence.
        self.sequence_parallel = None

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        rope: RopeTables | None = None,
        mask: torch.Tensor | None = None,
        replicated: int = 0,
    ) -> torch.Tensor:
        """x (B, S, dim), context (B, S_c, dim) or None, rope tables (S, head_dim), mask as `attention`
        -> (B, S, dim or inner).

        Under sequence parallelism x is this rank's slice, after `replicated` leading tokens (text) that every
        rank holds whole; self-attention then runs through DeepSpeed's DistributedAttention, while
        cross-attention to the replicated `context` stays local (each query sees the whole context)."""
        source = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(source), self.to_v(source)
        if self.qk_norm == "across_heads":
            q, k = self.norm_q(q), self.norm_k(k)
        q, k, v = (t.unflatten(-1, (-1, self.head_dim)) for t in (q, k, v))
        if self.qk_norm in ("per_head", "per_head_layer_norm"):
            q, k = self.norm_q(q), self.norm_k(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        if self.sequence_parallel is not None and context is None:
            out = self.sequence_parallel.attention(q, k, v, mask, replicated=replicated)
        else:
            out = attention(q, k, v, mask)
        return out if self.to_out is None else self.to_out[0](out)


class JointAttention(nn.Module):
    """MMDiT attention: image and text keep separate projections and QK norms, and attend jointly over the
    sequence [text, image] (Esser et al. 2024, arXiv:2403.03206 section 3.2; diffusers transformer_flux.py
    FluxAttnProcessor, transformer_qwenimage.py QwenDoubleStreamAttnProcessor2_0).

    qk_norm=False leaves q and k unnormalised (SD3-medium); context_out=False drops the text output projection
    for a last block whose text stream ends there (SD3's context_pre_only block), returning None for context.
    """

    def __init__(
        self, dim: int, heads: int, head_dim: int, eps: float = 1e-6, *, qk_norm: bool = True, context_out: bool = True
    ):
        super().__init__()
        inner = heads * head_dim
        self.head_dim = head_dim
        self.norm_q = nn.RMSNorm(head_dim, eps=eps) if qk_norm else None
        self.norm_k = nn.RMSNorm(head_dim, eps=eps) if qk_norm else None
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])  # key `to_out.0`, as in diffusers
        self.norm_added_q = nn.RMSNorm(head_dim, eps=eps) if qk_norm else None
        self.norm_added_k = nn.RMSNorm(head_dim, eps=eps) if qk_norm else None
        self.add_q_proj = nn.Linear(dim, inner)
        self.add_k_proj = nn.Linear(dim, inner)
        self.add_v_proj = nn.Linear(dim, inner)
        self.to_add_out = nn.Linear(inner, dim) if context_out else None
        self.sequence_parallel = None  # as in Attention: text replicated, image sharded when set

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        rope: RopeTables | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, S_x, dim) image, context (B, S_c, dim) text, rope tables over [text, image], mask over
        [text, image] keys as `attention` -> (x, context); context is None without a text output projection."""

        def heads(t: torch.Tensor, norm: nn.Module | None = None) -> torch.Tensor:
            t = t.unflatten(-1, (-1, self.head_dim))
            return t if norm is None else norm(t)

        q = torch.cat([heads(self.add_q_proj(context), self.norm_added_q), heads(self.to_q(x), self.norm_q)], 1)
        k = torch.cat([heads(self.add_k_proj(context), self.norm_added_k), heads(self.to_k(x), self.norm_k)], 1)
        v = torch.cat([heads(self.add_v_proj(context)), heads(self.to_v(x))], dim=1)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        if self.sequence_parallel is not None:
            out = self.sequence_parallel.attention(q, k, v, mask, replicated=context.shape[1])
        else:
            out = attention(q, k, v, mask)
        context_out, x_out = out.split([context.shape[1], x.shape[1]], dim=1)
        return self.to_out[0](x_out), None if self.to_add_out is None else self.to_add_out(context_out)
