"""Ancestral DDPM (Ho et al. 2020) and DDIM (Song et al. 2021) sampling of discrete-time models, with CFG
and Imagen's dynamic thresholding.

One update from step t to the previous step p of a (possibly respaced) subsequence, with x0 the model's
clean estimate (thresholded) and eps re-derived from it (DDIM paper eq. 12):
    eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)
    sigma = eta sqrt((1 - abar_p) / (1 - abar_t) (1 - abar_t / abar_p))
    x_p = sqrt(abar_p) x0 + sqrt(1 - abar_p - sigma^2) eps + sigma z
eta = 0 is DDIM; eta = 1 has the DDPM posterior variance and mean, i.e. ancestral DDPM.
Dynamic thresholding (Saharia et al. 2022, Imagen section 2.3): s = quantile(|x0|, p) per sample,
s = max(s, 1), x0 = clip(x0, -s, s) / s.
"""

from __future__ import annotations

import torch

from runtime.objectives.conditioning import Conditioning
from runtime.objectives.ddpm import DDPMObjective
from runtime.samplers.guidance import ModelCall, guided_output


def dynamic_threshold(x0: torch.Tensor, percentile: float = 0.995) -> torch.Tensor:
    """Imagen's dynamic thresholding of a clean-sample estimate, per sample."""
    flat = x0.abs().flatten(1).float()
    s = torch.quantile(flat, percentile, dim=1).clamp_min(1.0).to(x0.dtype)
    s = s.view(-1, *([1] * (x0.ndim - 1)))
    return torch.maximum(torch.minimum(x0, s), -s) / s


SPACINGS = ("linspace", "leading", "trailing")


def spaced_timesteps(train_steps: int, steps: int, spacing: str = "linspace", offset: int = 0) -> torch.Tensor:
    """`steps` timesteps from most to least noise, float64 and not rounded, as diffusers' schedulers space them
    (DDIMScheduler / DDPMScheduler / EulerAncestralDiscreteScheduler set_timesteps, config timestep_spacing):
      linspace: evenly from train_steps - 1 down to 0;
      leading:  k * (train_steps // steps) for k = steps - 1 .. 0, plus `offset` (their steps_offset);
      trailing: train_steps - k * train_steps / steps for k = 0 .. steps - 1, rounded, minus 1.
    `offset` is only defined for leading, where diffusers adds it."""
    if not 1 <= steps <= train_steps:
        raise ValueError(f"sampling steps is {steps}; choose between 1 and the {train_steps} training steps")
    if spacing not in SPACINGS:
        raise ValueError(f"timestep spacing is {spacing!r}; use one of {SPACINGS}")
    if offset and spacing != "leading":
        raise ValueError(f"steps_offset is {offset} with {spacing!r} spacing; diffusers adds it only with 'leading'")
    index = torch.arange(steps, dtype=torch.float64)
    if spacing == "linspace":
        return torch.linspace(0, train_steps - 1, steps, dtype=torch.float64).flip(0)
    if spacing == "leading":
        return (index * (train_steps // steps)).flip(0) + offset
    # np.round(np.arange(T, 0, -T / n)) - 1; round half to even as numpy does
    return (train_steps - index * (train_steps / steps)).round() - 1


def respaced_steps(train_steps: int, steps: int, spacing: str = "linspace", offset: int = 0) -> list[int]:
    """`steps` integer steps from most to least noise, spaced as `spaced_timesteps` and rounded (DDIMScheduler)."""
    timesteps = spaced_timesteps(train_steps, steps, spacing, offset).round().long()
    if int(timesteps.max()) >= train_steps:
        raise ValueError(
            f"steps_offset {offset} puts the first of {steps} leading steps at {int(timesteps.max())}, past the "
            f"last of {train_steps} training steps; lower steps_offset"
        )
    return timesteps.tolist()


@torch.no_grad()
def ddim_sample(
    model: ModelCall,
    objective: DDPMObjective,
    noise: torch.Tensor,
    cond: Conditioning,
    steps: int,
    *,
    eta: float = 0.0,
    spacing: str = "linspace",
    offset: int = 0,
    cfg_scale: float | None = None,
    threshold: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample from `noise` in `steps` steps; eta 0 is DDIM, eta 1 is ancestral DDPM (needs `generator`).

    objective: the noise- or v-prediction objective the model was trained with (schedule and target);
    threshold: the dynamic-thresholding percentile (Imagen: 0.995), None for no thresholding;
    spacing, offset: which steps (`respaced_steps`). Each step goes to the next one of the schedule, and the
    last returns the clean estimate (diffusers' DDIMScheduler with set_alpha_to_one; its step goes to
    t - train_steps // steps instead, which differs from the next step for linspace and trailing spacing).
    """
    if eta > 0 and generator is None:
        raise ValueError("eta > 0 draws fresh noise each step: pass a torch.Generator")
    batch = noise.shape[0]
    schedule = respaced_steps(objective.steps, steps, spacing, offset)
    x = noise
    for index, step in enumerate(schedule):
        t = torch.full((batch,), step, dtype=torch.long)
        output = guided_output(model, x, objective.model_timestep(t).to(x.device), cond, cfg_scale).to(x.dtype)
        x0 = objective.predict_x0(output, x, t)
        if threshold is not None:
            x0 = dynamic_threshold(x0, threshold)
        abar = objective.alpha_bar[step].item()
        if index == len(schedule) - 1:
            return x0
        abar_prev = objective.alpha_bar[schedule[index + 1]].item()
        eps = (x - abar**0.5 * x0) / (1 - abar) ** 0.5
        sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)) ** 0.5
        x = abar_prev**0.5 * x0 + (1 - abar_prev - sigma**2) ** 0.5 * eps
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x


def ddpm_sample(
    model, objective, noise, cond, steps, *, spacing="linspace", offset=0, cfg_scale=None, threshold=None,
    generator=None,
):
    """Ancestral DDPM sampling: `ddim_sample` with eta = 1."""
    return ddim_sample(
        model, objective, noise, cond, steps, eta=1.0, spacing=spacing, offset=offset, cfg_scale=cfg_scale,
        threshold=threshold, generator=generator,
    )
