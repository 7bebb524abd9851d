"""Euler and Heun sampling of a flow-matching model, x_t = (1 - t) x0 + t eps with velocity v = eps - x0.

Euler (FLUX black-forest-labs/flux src/flux/sampling.py denoise; diffusers FlowMatchEulerDiscreteScheduler.step):
    x_{s'} = x_s + (s' - s) v(x_s, s), from s = 1 to 0.
Heun, 2nd order (Karras et al. 2022 Algorithm 1 without churn; diffusers FlowMatchHeunDiscreteScheduler.step):
    x' = x_s + (s' - s) v(x_s, s),  x_{s'} = x_s + (s' - s) (v(x_s, s) + v(x', s')) / 2,
    except into s' = 0, where v is undefined for the correction and the step stays Euler.
"""

from __future__ import annotations

from itertools import pairwise

import torch

from runtime.objectives.conditioning import Conditioning
from runtime.samplers.guidance import ModelCall, guided_output


def check_sigmas(sigmas: torch.Tensor) -> list[float]:
    """The noise levels of a flow sampler as floats; a 1-D grid of at least two levels, else an error."""
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(f"sigmas has shape {tuple(sigmas.shape)}; pass a 1-D grid of at least two levels")
    return sigmas.tolist()


def flow_velocity(model: ModelCall, cond: Conditioning, cfg_scale, guidance, time_scale: float):
    """v(x, sigma): the (guided) model velocity with the model seeing sigma * time_scale, in x's dtype.

    guidance: the scale fed to a guidance-distilled model, or None.
    """

    def velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
        batch = x.shape[0]
        timestep = torch.full((batch,), sigma * time_scale, device=x.device)
        embedded = None if guidance is None else torch.full((batch,), float(guidance), device=x.device)
        return guided_output(model, x, timestep, cond, cfg_scale, embedded).to(x.dtype)

    return velocity


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
    levels = check_sigmas(sigmas)
    velocity = flow_velocity(model, cond, cfg_scale, guidance, time_scale)
    x = noise
    for sigma, sigma_next in pairwise(levels):
        x = x + (sigma_next - sigma) * velocity(x, sigma)
    return x


@torch.no_grad()
def flow_heun(
    model: ModelCall,
    noise: torch.Tensor,
    cond: Conditioning,
    sigmas: torch.Tensor,
    *,
    cfg_scale: float | None = None,
    guidance: float | None = None,
    time_scale: float = 1.0,
) -> torch.Tensor:
    """Heun's 2nd-order method along `sigmas`, arguments as `flow_euler`: two model evaluations per step
    (one into a final level 0), so n levels cost 2 (n - 1) - 1 calls when the grid ends at 0."""
    levels = check_sigmas(sigmas)
    velocity = flow_velocity(model, cond, cfg_scale, guidance, time_scale)
    x = noise
    for sigma, sigma_next in pairwise(levels):
        step = sigma_next - sigma
        v = velocity(x, sigma)
        if sigma_next == 0:
            x = x + step * v
            continue
        v_next = velocity(x + step * v, sigma_next)
        x = x + step * (v + v_next) / 2
    return x
