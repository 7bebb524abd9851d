"""Euler-ancestral sampling of a discrete-time DDPM model (noise or v prediction), as diffusers'
EulerAncestralDiscreteScheduler runs it (Allegro's released inference; k-diffusion sample_euler_ancestral).

The DDPM chain is read as x = x0 + sigma eps with sigma = sqrt((1 - abar) / abar), so the network's input
x_t = sqrt(abar) x0 + sqrt(1 - abar) eps is x / sqrt(sigma^2 + 1). Passes:
  1. timesteps: `steps` (at least 2) values spaced as inference.timestep_spacing says (runtime/samplers/ddpm.py
     spaced_timesteps; "linspace", diffusers' default: evenly from train_steps - 1 down to 0, not rounded);
     sigmas at them by linear interpolation of sigma over the integer steps, then a final 0;
  2. x = sigma_0 noise, or sqrt(sigma_0^2 + 1) noise with "leading" spacing (the scheduler's init_noise_sigma);
  3. each step from sigma to sigma': the (guided) model output at x / sqrt(sigma^2 + 1) and the fractional
     timestep; x0 = x - sigma eps (noise prediction) or x / (sigma^2 + 1) - sigma / sqrt(sigma^2 + 1) v
     (v prediction), dynamically thresholded when asked;
     sigma_up = sqrt(sigma'^2 (sigma^2 - sigma'^2) / sigma^2), sigma_down = sqrt(sigma'^2 - sigma_up^2)
     = sigma'^2 / sigma,
     x' = x + (x - x0) / sigma (sigma_down - sigma) + sigma_up z, z ~ N(0, 1) from the generator in x's dtype
     (diffusers schedulers/scheduling_euler_ancestral_discrete.py set_timesteps and step).
The last step lands on sigma' = 0, where sigma_up is 0 and x' = x0; diffusers still draws z there, this does not.
"""

from __future__ import annotations

import torch

from runtime.objectives.conditioning import Conditioning
from runtime.objectives.ddpm import DDPMObjective, VPredictionObjective
from runtime.samplers.ddpm import dynamic_threshold, spaced_timesteps
from runtime.samplers.guidance import ModelCall, guided_output


def ancestral_schedule(
    objective: DDPMObjective, steps: int, spacing: str = "linspace", offset: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(timesteps (steps,), sigmas (steps + 1,)), float64: timesteps spaced by `spacing` (and `offset`) and
    sigma = sqrt((1 - abar) / abar) interpolated at them, then 0."""
    if steps < 2:
        # np.linspace(0, T - 1, 1) is [0]: diffusers' single step starts at the least noise, from 0.01 noise
        raise ValueError(f"sampling steps is {steps}; Euler-ancestral sampling takes at least 2 steps")
    train_sigmas = ((1 - objective.alpha_bar) / objective.alpha_bar).sqrt()
    timesteps = spaced_timesteps(objective.steps, steps, spacing, offset)
    if timesteps.max() > objective.steps - 1:
        raise ValueError(
            f"steps_offset {offset} puts the first of {steps} leading steps past the last of {objective.steps} "
            "training steps; lower steps_offset"
        )
    lower = timesteps.floor().long()
    upper = (lower + 1).clamp(max=objective.steps - 1)
    fraction = timesteps - lower
    sigmas = train_sigmas[lower] + fraction * (train_sigmas[upper] - train_sigmas[lower])
    return timesteps, torch.cat([sigmas, sigmas.new_zeros(1)])


def predict_x0(objective: DDPMObjective, output: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The clean estimate at x = x0 + sigma eps from an eps or v output at the scaled input."""
    if isinstance(objective, VPredictionObjective):
        return x / (sigma**2 + 1) - sigma / (sigma**2 + 1) ** 0.5 * output
    return x - sigma * output


@torch.no_grad()
def euler_ancestral_sample(
    model: ModelCall,
    objective: DDPMObjective,
    noise: torch.Tensor,
    cond: Conditioning,
    steps: int,
    *,
    generator: torch.Generator,
    cfg_scale: float | None = None,
    threshold: float | None = None,
    spacing: str = "linspace",
    offset: int = 0,
) -> torch.Tensor:
    """Sample from standard-normal `noise` in `steps` Euler-ancestral steps (one model call each, CFG batched).

    objective: the noise- or v-prediction objective the model was trained with (schedule and target);
    generator: draws the ancestral noise of every step but the last;
    threshold: the dynamic-thresholding percentile applied to x0 (Imagen: 0.995), None for none.
    """
    if generator is None:
        raise ValueError("Euler-ancestral sampling draws fresh noise each step: pass a torch.Generator")
    timesteps, sigmas = ancestral_schedule(objective, steps, spacing, offset)
    levels = sigmas.tolist()
    batch = noise.shape[0]
    # diffusers' init_noise_sigma: the largest sigma, or sqrt(sigma^2 + 1) of it with leading spacing
    x = noise * (levels[0] if spacing != "leading" else (levels[0] ** 2 + 1) ** 0.5)
    for index, step in enumerate(timesteps.tolist()):
        sigma, sigma_next = levels[index], levels[index + 1]
        timestep = objective.model_timestep(torch.full((batch,), step, dtype=torch.float64)).to(x.device)
        output = guided_output(model, x / (sigma**2 + 1) ** 0.5, timestep, cond, cfg_scale).to(x.dtype)
        x0 = predict_x0(objective, output, x, sigma)
        if threshold is not None:
            x0 = dynamic_threshold(x0, threshold)
        sigma_up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5
        sigma_down = sigma_next**2 / sigma  # = sqrt(sigma'^2 - sigma_up^2), without its rounding below 0
        x = x + (x - x0) / sigma * (sigma_down - sigma)
        if sigma_up > 0:
            x = x + sigma_up * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x
