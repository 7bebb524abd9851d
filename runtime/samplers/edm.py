"""Deterministic EDM sampling of a score-matching model (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", Algorithm 1 without churn; NVlabs/edm generate.py edm_sampler with
S_churn = 0): Heun's 2nd-order method on dx/dsigma = (x - D(x; sigma)) / sigma along the Karras schedule

    sigma_i = (sigma_max^(1/rho) + i / (n - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,  i < n,  sigma_n = 0

from x = sigma_max eps; the step into sigma = 0 is Euler. D is the preconditioned denoiser the trainer
regresses (runtime/objectives/edm.py): D = c_skip x + c_out F(c_in x, c_noise).
"""

from __future__ import annotations

from itertools import pairwise

import torch

from runtime.objectives.conditioning import Conditioning
from runtime.objectives.edm import EDMObjective
from runtime.samplers.guidance import ModelCall, guided_output

# The EDM paper's sampling defaults (Table 1, "Sampling": sigma_min, sigma_max, rho).
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0


def karras_sigmas(
    steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO
) -> torch.Tensor:
    """steps levels from sigma_max down to sigma_min, evenly spaced in sigma^(1/rho), then a final 0 (float64)."""
    if steps < 1:
        raise ValueError(f"sampling steps is {steps}; take at least one step")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"Karras schedule from sigma_max {sigma_max} to sigma_min {sigma_min}: need 0 < min < max")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    low, high = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return torch.cat([(high + ramp * (low - high)) ** rho, torch.zeros(1, dtype=torch.float64)])


@torch.no_grad()
def edm_heun(
    model: ModelCall,
    objective: EDMObjective,
    noise: torch.Tensor,
    cond: Conditioning,
    sigmas: torch.Tensor,
    *,
    cfg_scale: float | None = None,
    guidance: float | None = None,
) -> torch.Tensor:
    """Sample from standard-normal `noise` (scaled here by sigmas[0]) along `sigmas` (e.g. karras_sigmas).

    objective: the EDM objective the model was trained with (preconditioning); cfg_scale guides the network
    output F, which guides D alike (D is affine in F); guidance: the scale fed to a guidance-distilled model.
    """
    if sigmas.ndim != 1 or len(sigmas) < 2 or not bool((sigmas[:-1] > 0).all()):
        raise ValueError(f"sigmas is {sigmas.tolist()}; pass a 1-D decreasing grid of positive levels, then 0")
    batch = noise.shape[0]
    embedded = None if guidance is None else torch.full((batch,), float(guidance), device=noise.device)

    def denoised(x: torch.Tensor, sigma: float) -> torch.Tensor:
        t = torch.full((batch,), sigma, dtype=torch.float64)
        output = guided_output(
            model, objective.model_input(x, t), objective.model_timestep(t).to(x.device), cond, cfg_scale, embedded
        )
        return objective.predict_x0(output.to(x.dtype), x, t)

    levels = sigmas.tolist()
    x = noise * levels[0]
    for sigma, sigma_next in pairwise(levels):
        slope = (x - denoised(x, sigma)) / sigma
        x_next = x + (sigma_next - sigma) * slope
        if sigma_next != 0:
            slope_next = (x_next - denoised(x_next, sigma_next)) / sigma_next
            x_next = x + (sigma_next - sigma) * (slope + slope_next) / 2
        x = x_next
    return x
