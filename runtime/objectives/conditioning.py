"""What a denoiser is conditioned on besides the noisy latents and the timestep (`Conditioning`), which
denoiser input each text encoder feeds, and noise conditioning augmentation of a low-resolution input.

`Conditioning.null()` is the unconditional input: a text encoder's output replaced by zeros and its token
sequence fully visible (mask all ones), so it does not depend on the prompt (CFG dropout at training and
CFG at sampling both use it; runtime/objectives/cfg.py).

Noise conditioning augmentation (Ho et al. 2021, "Cascaded Diffusion Models", section 4.2; Imagen): the
low-resolution image a super-resolution model reads is noised to a level s in [0, 1],
    z = sqrt(abar(s)) x + sqrt(1 - abar(s)) eps,   abar(s) = cos^2(pi s / 2)
(the continuous cosine schedule), and s is fed to the model. Training draws s ~ U(0, 1); sampling fixes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import torch

from compiler.schema.architecture import ROLE_INPUT, ArchitectureSpec, TextRegion

if TYPE_CHECKING:
    from runtime.encoders.text import TextEmbedding

__all__ = ["ROLE_INPUT", "Conditioning", "augment_lowres", "join_text", "region_mask", "text_input_widths"]


@dataclass(frozen=True)
class Conditioning:
    """Everything besides the noisy latents and the timestep that a denoiser reads; None where absent.

    text (B, T, D) token embeddings; pooled (B, P); text_mask (B, T), nonzero for real tokens;
    glyph (B, G, E) glyph-encoder tokens (Seedream); context_latents (B, C, H', W') a reference image (Kontext);
    lowres (B, C, h, w) the low-resolution image of a super-resolution stage; aug_level (B,) its noise level.
    """

    text: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None
    glyph: torch.Tensor | None = None
    context_latents: torch.Tensor | None = None
    lowres: torch.Tensor | None = None
    aug_level: torch.Tensor | None = None

    def kwargs(self) -> dict[str, torch.Tensor]:
        """The present fields as keyword arguments of the denoiser."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def null(self) -> Conditioning:
        """The unconditional input: text, pooled and glyph zeroed, every text token visible; the images a
        model is conditioned on (context_latents, lowres) kept."""
        return replace(
            self,
            text=None if self.text is None else torch.zeros_like(self.text),
            pooled=None if self.pooled is None else torch.zeros_like(self.pooled),
            glyph=None if self.glyph is None else torch.zeros_like(self.glyph),
            text_mask=None if self.text_mask is None else torch.ones_like(self.text_mask),
        )

    def cat(self, other: Conditioning) -> Conditioning:
        """Batch-concatenate with another conditioning of the same fields (e.g. [cond, uncond] in one call)."""
        merged = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if (mine is None) != (theirs is None):
                raise ValueError(f"cannot concatenate conditionings: {f.name} is set in one and not the other")
            merged[f.name] = None if mine is None else torch.cat([mine, theirs])
        return Conditioning(**merged)

    def map(self, fn) -> Conditioning:
        """Apply fn to every present tensor (e.g. a dtype or device move)."""
        return Conditioning(**{k: fn(v) for k, v in self.kwargs().items()})


def text_input_widths(architecture: ArchitectureSpec) -> dict[str, int]:
    """Denoiser text input ('text', 'pooled', 'glyph') -> its width, for the inputs the encoders feed."""
    widths = {}
    for encoder in architecture.text_encoders:
        for fed in encoder.inputs:
            if fed == "text":
                widths["text"] = architecture.text_width()
            elif fed == "pooled":
                widths["pooled"] = architecture.pooled_width()
            elif "glyph" in widths:
                raise NotImplementedError(
                    f"architecture.text_encoders: {encoder.name!r} is a second glyph encoder; the trainer reads one "
                    "glyph tensor per sample"
                )
            else:
                widths["glyph"] = encoder.dim
    return widths


def join_text(architecture: ArchitectureSpec, embeddings: dict[str, TextEmbedding],
              inputs: set[str] | frozenset[str] = frozenset(ROLE_INPUT.values())) -> dict[str, torch.Tensor]:
    """The denoiser's text inputs (of `inputs`) from each encoder's output, as diffusers'
    StableDiffusion3Pipeline.encode_prompt joins them: tokens of one joint_tokens list concatenated on the
    feature axis, zero-padded to the widest list, the lists concatenated on the sequence axis (text, text_mask);
    pooled vectors concatenated in text_encoders order (pooled); glyph tokens as they are (glyph)."""
    fields: dict[str, torch.Tensor] = {}
    width = architecture.text_width()
    tokens, masks = [], []
    for group in architecture.token_groups() if "text" in inputs else []:
        outputs = [embeddings[encoder.name] for encoder in group]
        joined = torch.cat([output.tokens.float() for output in outputs], dim=-1)
        tokens.append(torch.nn.functional.pad(joined, (0, width - joined.shape[-1])))
        # A position is real when it is in any encoder of the list (they share a tokenizer in SD3).
        masks.append(torch.stack([output.mask for output in outputs]).any(0).float())
    if tokens:
        fields["text"], fields["text_mask"] = torch.cat(tokens, dim=1), torch.cat(masks, dim=1)
    pooled = []
    for encoder in architecture.text_encoders:
        if "pooled" in encoder.inputs and "pooled" in inputs:
            vector = embeddings[encoder.name].pooled
            if vector is None:
                raise ValueError(f"text encoder {encoder.name!r} feeds the pooled input but its model returns no "
                                 "pooled output")
            pooled.append(vector.float())
        if encoder.role == "glyph" and "glyph" in inputs:
            fields["glyph"] = embeddings[encoder.name].tokens.float()
    if pooled:
        fields["pooled"] = torch.cat(pooled, dim=-1)
    return fields


def region_mask(region: TextRegion, like: torch.Tensor) -> torch.Tensor:
    """A bool mask over `like`'s per-sample dims, true where `region` lies ((T, D) for tokens, (D,) pooled)."""
    inside = torch.zeros(like.shape[1:], dtype=torch.bool, device=like.device)
    if inside.ndim == 2:
        inside[region.token_start or 0:region.token_stop, region.feature_start:region.feature_stop] = True
    else:
        inside[region.feature_start:region.feature_stop] = True
    return inside


def augment_lowres(lowres: torch.Tensor, level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Noise conditioning augmentation: sqrt(abar(s)) x + sqrt(1 - abar(s)) eps, abar(s) = cos^2(pi s / 2)."""
    alpha_bar = torch.cos(math.pi * level.double() / 2) ** 2
    alpha_bar = alpha_bar.to(lowres.dtype).view(-1, *([1] * (lowres.ndim - 1)))
    return alpha_bar.sqrt() * lowres + (1 - alpha_bar).sqrt() * noise
