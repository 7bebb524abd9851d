"""Classifier-free guidance: CFG dropout of the text conditioning at training, the guided combination at
sampling (Ho & Salimans 2022).

CFG dropout: each text encoder is dropped independently; with k encoders and a joint rate p, each is dropped
with p^(1/k) so all are dropped together with probability p (Imagen: 10%; SD3 paper section 5.3 drops its
three encoders at 46.4% each). A dropped encoder's input becomes `Conditioning.null()`'s, the same
unconditional input CFG uses at sampling.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from compiler.schema.architecture import ArchitectureSpec, TextEncoder
from compiler.schema.objective import CfgDropout
from runtime.objectives.conditioning import Conditioning, region_mask


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
    """CFG dropout of each text encoder's input, independently per sample: a dropped encoder's part of each
    input it feeds (its tokens' region of a joint sequence, its share of a concatenated pooled vector)
    becomes the null conditioning's."""

    def __init__(self, config: CfgDropout, architecture: ArchitectureSpec):
        self.rates = dropout_rates(config, architecture.text_encoders)
        self.regions = architecture.text_regions()

    def __call__(self, cond: Conditioning, generator: torch.Generator) -> Conditioning:
        """`cond` with each encoder's input nulled for the samples it drops."""
        null = cond.null()
        changes = {name: getattr(cond, name) for name in ("text", "pooled", "glyph", "text_mask")}
        for name, rate in self.rates.items():
            keep = torch.rand(_batch(cond), generator=generator, dtype=torch.float64) >= rate
            for region in self.regions[name]:
                value = changes[region.input]
                if value is None:
                    continue
                drop = ~_expand(keep, value) & region_mask(region, value)
                changes[region.input] = torch.where(drop, getattr(null, region.input), value)
                if region.input == "text" and cond.text_mask is not None:
                    drop_tokens = drop.any(-1)  # a dropped token position is fully visible, as in the null input
                    changes["text_mask"] = torch.where(drop_tokens, null.text_mask, changes["text_mask"])
        return replace(cond, **changes)


def _batch(cond: Conditioning) -> int:
    return next(iter(cond.kwargs().values())).shape[0]


def _expand(keep: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return keep.to(like.device).view(-1, *([1] * (like.ndim - 1)))


def guided(cond_out: torch.Tensor, uncond_out: torch.Tensor, scale) -> torch.Tensor:
    """Classifier-free guidance, out = uncond + w (cond - uncond) (Ho & Salimans 2022, eq. 6); w may be a
    number or a per-sample (B,) tensor."""
    if isinstance(scale, torch.Tensor):
        scale = scale.to(device=cond_out.device, dtype=cond_out.dtype).view(-1, *([1] * (cond_out.ndim - 1)))
    return uncond_out + scale * (cond_out - uncond_out)
