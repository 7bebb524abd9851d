"""Text and low-resolution conditioning of a denoiser, CFG dropout, and noise conditioning augmentation.

CFG dropout: each text encoder is dropped independently; with k encoders and a joint rate p, each is dropped
with p^(1/k) so all are dropped together with probability p (Imagen: 10%; SD3 paper section 5.3 drops its
three encoders at 46.4% each). A dropped encoder's output is replaced by zeros, and a dropped token sequence
is fully visible (mask all ones), so the unconditional input does not depend on the prompt: `null()` builds
the same input for CFG at sampling.

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
from compiler.schema.objective import CfgDropout

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


def dropout_rates(config: CfgDropout, encoders: list[TextEncoder]) -> dict[str, float]:
    """Drop rate per encoder: `per_encoder` where given; the rest share what the joint rate leaves,
    (joint_rate / prod(given)) ** (1 / k_rest), so all encoders drop together at joint_rate."""
    names = [encoder.name for encoder in encoders]
    unknown = sorted(set(config.per_encoder) - set(names))
    if unknown:
        raise ValueError(
            f"objective.cfg_dropout.per_encoder names {unknown}, not in architecture.text_encoders {names}"
        )
    rest = [name for name in names if name not in config.per_encoder]
    rates = dict(config.per_encoder)
    if rest:
        given = math.prod(config.per_encoder.values())
        each = (config.joint_rate / given) ** (1 / len(rest)) if given > 0 else 0.0
        if each > 1:
            raise ValueError(
                f"objective.cfg_dropout: per_encoder rates multiply to {given:.4g}, below joint_rate "
                f"{config.joint_rate:g}, so the other encoders {rest} cannot make up the joint rate; "
                "raise the per-encoder rates or lower joint_rate"
            )
        rates.update({name: each for name in rest})
    return rates


class ConditioningDropout:
    """CFG dropout of each text encoder's input, independently per sample."""

    def __init__(self, config: CfgDropout, encoders: list[TextEncoder]):
        self.rates = dropout_rates(config, encoders)
        self.inputs = encoder_inputs(encoders)

    def __call__(self, cond: Conditioning, generator: torch.Generator) -> Conditioning:
        """`cond` with each encoder's input nulled for the samples it drops."""
        null = cond.null()
        changes = {}
        for name, rate in self.rates.items():
            slot = self.inputs[name]
            value = getattr(cond, slot)
            keep = torch.rand(_batch(cond), generator=generator, dtype=torch.float64) >= rate
            if value is None:
                continue
            changes[slot] = torch.where(_expand(keep, value), value, getattr(null, slot))
            if slot == "text" and cond.text_mask is not None:
                changes["text_mask"] = torch.where(_expand(keep, cond.text_mask), cond.text_mask, null.text_mask)
        return replace(cond, **changes)


def _batch(cond: Conditioning) -> int:
    return next(iter(cond.kwargs().values())).shape[0]


def _expand(keep: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return keep.to(like.device).view(-1, *([1] * (like.ndim - 1)))


def augment_lowres(lowres: torch.Tensor, level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Noise conditioning augmentation: sqrt(abar(s)) x + sqrt(1 - abar(s)) eps, abar(s) = cos^2(pi s / 2)."""
    alpha_bar = torch.cos(math.pi * level.double() / 2) ** 2
    alpha_bar = alpha_bar.to(lowres.dtype).view(-1, *([1] * (lowres.ndim - 1)))
    return alpha_bar.sqrt() * lowres + (1 - alpha_bar).sqrt() * noise


def guided(cond_out: torch.Tensor, uncond_out: torch.Tensor, scale) -> torch.Tensor:
    """Classifier-free guidance, out = uncond + w (cond - uncond) (Ho & Salimans 2022, eq. 6); w may be a
    number or a per-sample (B,) tensor."""
    if isinstance(scale, torch.Tensor):
        scale = scale.to(device=cond_out.device, dtype=cond_out.dtype).view(-1, *([1] * (cond_out.ndim - 1)))
    return uncond_out + scale * (cond_out - uncond_out)
