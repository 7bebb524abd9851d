"""How samplers call a denoiser: one call per step, classifier-free guidance batched, embedded guidance.

A sampler takes `model(latents, timestep, cond, guidance) -> output`, where cond is a `Conditioning`.
`denoiser_call` adapts a module that follows the trainer's protocol (runtime/train/protocol.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from runtime.objectives.cfg import guided
from runtime.objectives.conditioning import Conditioning

ModelCall = Callable[[torch.Tensor, torch.Tensor, Conditioning, torch.Tensor | None], torch.Tensor]


def denoiser_call(denoiser) -> ModelCall:
    """Wrap a protocol module, forward(latents, timestep, *, text, pooled, text_mask, ..., guidance)."""

    def call(latents, timestep, cond, guidance):
        extra = {} if guidance is None else {"guidance": guidance}
        return denoiser(latents, timestep, **cond.kwargs(), **extra)

    return call


def guided_output(
    model: ModelCall,
    x: torch.Tensor,
    timestep: torch.Tensor,
    cond: Conditioning,
    cfg_scale: float | None = None,
    guidance: torch.Tensor | None = None,
) -> torch.Tensor:
    """The model output at one step: with cfg_scale (and not 1), uncond + w (cond - uncond) from one batched
    call on [cond, cond.null()]; `guidance` (B,) is passed to guidance-distilled models as is."""
    if cfg_scale is None or cfg_scale == 1.0:
        return model(x, timestep, cond, guidance)
    both_guidance = None if guidance is None else torch.cat([guidance, guidance])
    both = model(torch.cat([x, x]), torch.cat([timestep, timestep]), cond.cat(cond.null()), both_guidance)
    cond_out, uncond_out = both.chunk(2)
    return guided(cond_out, uncond_out, cfg_scale)
