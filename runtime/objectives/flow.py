"""Flow matching with the velocity target (rectified flow; Lipman et al. 2023, Liu et al. 2023).

    x_t = (1 - t) x0 + t eps,   v = eps - x0,   x0 = x_t - t v
(FLUX, SD3, Qwen-Image and Wan agree; diffusers FlowMatchEulerDiscreteScheduler.scale_noise.)

Loss weightings (SD3 paper section 3.1; diffusers training_utils.py compute_loss_weighting_for_sd3):
  none        1
  sigma_sqrt  t^-2
  cosmap      2 / (pi (1 - 2t + 2t^2))

`adaptive` (Seedream 4.0, undisclosed) runs as the noise-aware timestep sampler the spec must then configure.
"""

from __future__ import annotations

import copy
import math

import torch

from compiler.schema.objective import FlowMatching
from runtime.objectives.base import DiffusionObjective, per_sample
from runtime.objectives.noise_aware import NoiseAwareSampler
from runtime.objectives.timesteps import applies_at, draw_timesteps, shift_factor, shift_timesteps

FLOW_WEIGHTINGS = ("none", "sigma_sqrt", "cosmap")


class FlowMatchingObjective(DiffusionObjective):
    """Rectified-flow objective; t in [0, 1], the network sees t * time_scale."""

    def __init__(
        self,
        config: FlowMatching,
        image_tokens: int | None,
        pixels: int | None,
        time_scale: float = 1.0,
        noise_aware: NoiseAwareSampler | None = None,
    ):
        super().__init__(noise_aware)
        if config.adaptive and config.noise_aware_compute is None:
            raise NotImplementedError(
                "objective.adaptive is True but objective.noise_aware_compute is not set: Seedream 4.0's adaptive "
                "flow matching is undisclosed, and the runtime implements it only as loss-adaptive timestep "
                "sampling; set objective.noise_aware_compute (as specs/seedream.py does) or adaptive=False"
            )
        if config.loss_weighting not in FLOW_WEIGHTINGS:
            raise ValueError(
                f"objective.loss_weighting is {config.loss_weighting!r}, which is not defined for flow matching; "
                f"use one of {FLOW_WEIGHTINGS}"
            )
        self.config = config
        self.time_scale = time_scale
        self.shift = self._training_shift(image_tokens, pixels)

    def _training_shift(self, image_tokens: int | None, pixels: int | None) -> float:
        if not applies_at(self.config.shift, "training"):
            return 1.0
        return shift_factor(self.config.shift, image_tokens, pixels)

    def at_resolution(self, image_tokens: int | None, pixels: int | None) -> FlowMatchingObjective:
        """A copy whose training shift is recomputed for another resolution."""
        other = copy.copy(self)
        other.shift = self._training_shift(image_tokens, pixels)
        return other

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """t from the objective's sampler, then shifted by the training shift factor."""
        return shift_timesteps(draw_timesteps(self.config.timesteps, n, generator), self.shift)

    def unit(self, t: torch.Tensor) -> torch.Tensor:
        """t itself."""
        return t

    def add_noise(self, x0, noise, t):
        """x_t = (1 - t) x0 + t eps."""
        t = per_sample(t, x0)
        return (1 - t) * x0 + t * noise

    def target(self, x0, noise, t):
        """v = eps - x0."""
        return noise - x0

    def model_timestep(self, t):
        """t * time_scale (FLUX, Qwen-Image: 1; Wan: 1000)."""
        return (t * self.time_scale).float()

    def loss_weight(self, t):
        """The objective's loss weighting at t."""
        t = t.double()
        if self.config.loss_weighting == "sigma_sqrt":
            weight = t**-2
        elif self.config.loss_weighting == "cosmap":
            weight = 2 / (math.pi * (1 - 2 * t + 2 * t**2))
        else:
            weight = torch.ones_like(t)
        return weight.float()

    def predict_x0(self, output, x_t, t):
        """x0 = x_t - t v."""
        return x_t - per_sample(t, x_t) * output

    def validation_timesteps(self, k: int) -> torch.Tensor:
        """Midpoints of k equal bins of [0, 1] (unshifted)."""
        return (torch.arange(k, dtype=torch.float64) + 0.5) / k
