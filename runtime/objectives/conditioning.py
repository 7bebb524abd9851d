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

import torch

from compiler.schema.architecture import TextEncoder

# Which denoiser input each encoder role feeds: the pooled vector, the token sequence, or glyph tokens.
ROLE_INPUT = {"pooled": "pooled", "tokens": "text", "cross_attention": "text", "glyph": "glyph"}


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


def encoder_inputs(encoders: list[TextEncoder]) -> dict[str, str]:
    """Encoder name -> the denoiser input it feeds ('text', 'pooled' or 'glyph')."""
    inputs = {encoder.name: ROLE_INPUT[encoder.role] for encoder in encoders}
    for slot in ("text", "pooled", "glyph"):
        sharing = [name for name, fed in inputs.items() if fed == slot]
        if len(sharing) > 1:
            raise NotImplementedError(
                f"architecture.text_encoders {sharing} all feed the {slot!r} input; the trainer reads one {slot} "
                "tensor per sample, so per-encoder inputs (one shard key per encoder) are not implemented"
            )
    return inputs


def augment_lowres(lowres: torch.Tensor, level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Noise conditioning augmentation: sqrt(abar(s)) x + sqrt(1 - abar(s)) eps, abar(s) = cos^2(pi s / 2)."""
    alpha_bar = torch.cos(math.pi * level.double() / 2) ** 2
    alpha_bar = alpha_bar.to(lowres.dtype).view(-1, *([1] * (lowres.ndim - 1)))
    return alpha_bar.sqrt() * lowres + (1 - alpha_bar).sqrt() * noise
