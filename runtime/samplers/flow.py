"""Euler sampling of a flow-matching model (FLUX black-forest-labs/flux src/flux/sampling.py denoise;
diffusers FlowMatchEulerDiscreteScheduler.step): x_{s'} = x_s + (s' - s) v(x_s, s), from s = 1 to 0."""

from __future__ import annotations

import torch

from runtime.objectives.conditioning import Conditioning
from runtime.samplers.guidance import ModelCall, guided_output


@torch.no_grad()
def flow_euler(
    model: ModelCall,
    noise: torch.Tensor,
    cond: Conditioning,
    sigmas: torch.Tensor,
    *,
    cfg_scale: float | None = None,
    guidance: float | None = None,
    time_scale: float = 1.0,
) -> torch.Tensor:
    """Integrate from `noise` along `sigmas` (decreasing from 1 to 0, e.g. objectives.sampling_sigmas, which
    applies the shift) to a sample.

    cfg_scale: true classifier-free guidance (two model calls per step, batched); guidance: the scale fed to
    a guidance-distilled model (FLUX.1 dev: 3.5); time_scale: the model sees sigma * time_scale.
    """
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(f"sigmas has shape {tuple(sigmas.shape)}; pass a 1-D grid of at least two levels")
    batch = noise.shape[0]
    embedded = None if guidance is None else torch.full((batch,), float(guidance), device=noise.device)
    x = noise
    for sigma, sigma_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        timestep = torch.full((batch,), sigma * time_scale, device=noise.device)
        velocity = guided_output(model, x, timestep, cond, cfg_scale, embedded)
        x = x + (sigma_next - sigma) * velocity.to(x.dtype)
    return x
