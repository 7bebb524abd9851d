"""Timestep samplers and timestep shifts of continuous-time objectives (t in [0, 1], t = 1 is pure noise).

Samplers (Esser et al. 2024, "Scaling Rectified Flow Transformers", SD3 paper, section 3.1):
  logit-normal  t = sigmoid(m + s n), n ~ N(0, 1)
  mode          t = 1 - u - scale (cos^2(pi u / 2) - 1 + u), u ~ U(0, 1)
  uniform       t = u

Shift (SD3 paper eq. 23; FLUX black-forest-labs/flux src/flux/sampling.py time_shift):
  t' = a t / (1 + (a - 1) t), equivalently t' / (1 - t') = a t / (1 - t): the noise-to-signal ratio times a.
The factor a comes from the shift rule: constant; the source document's resolution rule a = sqrt(m / n);
FLUX's a = exp(mu) with mu linear in image tokens (sampling.py get_lin_function); Qwen-Image's exponential
shift with a terminal stretch (diffusers schedulers/scheduling_flow_match_euler_discrete.py
stretch_shift_to_terminal).
"""

from __future__ import annotations

import math

import torch

from compiler.schema.objective import (
    ConstantShift,
    ExponentialShift,
    LogitNormal,
    ModeTimesteps,
    MuLinearShift,
    NoShift,
    ResolutionShift,
    UniformTimesteps,
)


def logit_normal(n: int, mean: float, std: float, generator: torch.Generator) -> torch.Tensor:
    """n timesteps t = sigmoid(mean + std * N(0, 1)) (SD3 paper eq. 19), float64."""
    return torch.sigmoid(mean + std * torch.randn(n, generator=generator, dtype=torch.float64))


def mode_sample(u: torch.Tensor, scale: float) -> torch.Tensor:
    """The SD3 mode-sampling map f(u) = 1 - u - scale (cos^2(pi u / 2) - 1 + u) (SD3 paper eq. 20).

    f is decreasing for scale in [-1, 2 / (pi - 2)], so quantile q of t is f(1 - q); scale 0 is uniform.
    """
    return 1 - u - scale * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)


def draw_timesteps(sampler: LogitNormal | UniformTimesteps | ModeTimesteps, n: int, generator: torch.Generator):
    """n timesteps in [0, 1] from the objective's `timesteps` sampler, float64."""
    if isinstance(sampler, LogitNormal):
        return logit_normal(n, sampler.mean, sampler.std, generator)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    if isinstance(sampler, ModeTimesteps):
        return mode_sample(u, sampler.scale)
    return u


def shift_timesteps(t: torch.Tensor, factor: float) -> torch.Tensor:
    """t' = a t / (1 + (a - 1) t) (SD3 paper eq. 23); a = 1 leaves t unchanged."""
    return factor * t / (1 + (factor - 1) * t)


def flux_mu(image_tokens: int, shift: MuLinearShift) -> float:
    """mu linear in image tokens through (base_tokens, base_shift) and (max_tokens, max_shift), extrapolated
    beyond them (flux src/flux/sampling.py get_lin_function; diffusers pipeline_flux.py calculate_shift)."""
    slope = (shift.max_shift - shift.base_shift) / (shift.max_tokens - shift.base_tokens)
    return shift.base_shift + slope * (image_tokens - shift.base_tokens)


def shift_factor(shift, image_tokens: int | None = None, pixels: int | None = None) -> float:
    """The factor a of `shift` (an objective's `shift` field) at a resolution.

    image_tokens: tokens the backbone sees (FLUX 1024^2: 64 x 64 latents in 2 x 2 patches = 4096);
    pixels: pixels of one frame (the resolution rule's m). Each is needed only by the rule that uses it.
    """
    if isinstance(shift, NoShift):
        return 1.0
    if isinstance(shift, ConstantShift):
        return shift.shift
    if isinstance(shift, ResolutionShift):
        if pixels is None:
            raise ValueError("objective.shift is 'resolution' (a = sqrt(m / n)): pass pixels, m, of the trained size")
        return math.sqrt(pixels / shift.base_pixels)
    if isinstance(shift, MuLinearShift):  # ExponentialShift too: same mu, the terminal stretch is sampling-only
        if image_tokens is None:
            raise ValueError(f"objective.shift is {shift.kind!r} (mu linear in image tokens): pass image_tokens")
        return math.exp(flux_mu(image_tokens, shift))
    raise TypeError(f"objective.shift: unknown shift {type(shift).__name__}; add it to shift_factor")


def applies_at(shift, phase: str) -> bool:
    """Whether `shift` acts in `phase` ('training' or 'sampling'), per its `applies` field."""
    if isinstance(shift, NoShift):
        return False
    return shift.applies in (phase, "both")


def sampling_sigmas(shift, steps: int, image_tokens: int | None = None, pixels: int | None = None) -> torch.Tensor:
    """steps + 1 noise levels from 1 down to 0 for an Euler sampler, shifted when the shift applies at sampling.

    The grid is linspace(1, 0, steps + 1) (flux sampling.py get_schedule; equal to diffusers'
    linspace(1, 1 / steps, steps) plus a final 0). Qwen-Image's exponential shift then stretches the grid so
    its last nonzero level is `terminal`: 1 - s'' = (1 - s') (1 - terminal) / (1 - s'_last).
    """
    if steps < 1:
        raise ValueError(f"sampling steps is {steps}; take at least one step")
    sigmas = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    if not applies_at(shift, "sampling"):
        return sigmas
    sigmas = shift_timesteps(sigmas, shift_factor(shift, image_tokens, pixels))
    if isinstance(shift, ExponentialShift):
        head = sigmas[:-1]
        scale = (1 - head[-1]) / (1 - shift.terminal)
        sigmas = torch.cat([1 - (1 - head) / scale, sigmas[-1:]])
    return sigmas
