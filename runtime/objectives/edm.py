"""Denoising score matching with EDM preconditioning (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", Table 1; NVlabs/edm training/loss.py EDMLoss, networks.py EDMPrecond).

    sigma = exp(P_mean + P_std n),   x = x0 + sigma eps
    D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)
    c_skip = sd^2 / (sigma^2 + sd^2),  c_out = sigma sd / sqrt(sigma^2 + sd^2),
    c_in = 1 / sqrt(sigma^2 + sd^2),   c_noise = ln(sigma) / 4
    loss = lambda(sigma) ||D - x0||^2,  lambda = (sigma^2 + sd^2) / (sigma sd)^2

The network output F regresses (x0 - c_skip x) / c_out, so in F space the EDM weighting is
lambda c_out^2 = 1 and the unweighted D-space loss ("none") is c_out^2.
A timestep shift a multiplies sigma: with t = sigma / (1 + sigma) the flow shift t' = a t / (1 + (a - 1) t)
is exactly sigma' = a sigma.
"""

from __future__ import annotations

import copy

import torch

from compiler.schema.objective import ScoreMatching
from runtime.objectives.base import DiffusionObjective, per_sample
from runtime.objectives.noise_aware import NoiseAwareSampler
from runtime.objectives.timesteps import applies_at, shift_factor

EDM_WEIGHTINGS = ("none", "edm")


class EDMObjective(DiffusionObjective):
    """EDM score matching; t is sigma."""

    def __init__(
        self,
        config: ScoreMatching,
        image_tokens: int | None,
        pixels: int | None,
        noise_aware: NoiseAwareSampler | None = None,
    ):
        super().__init__(noise_aware)
        if config.loss_weighting not in EDM_WEIGHTINGS:
            raise ValueError(
                f"objective.loss_weighting is {config.loss_weighting!r}, which is not defined for score matching; "
                f"use one of {EDM_WEIGHTINGS}"
            )
        self.config = config
        self.sigma_data = config.sigma_data
        self.shift = self._training_shift(image_tokens, pixels)

    def _training_shift(self, image_tokens, pixels) -> float:
        if not applies_at(self.config.shift, "training"):
            return 1.0
        return shift_factor(self.config.shift, image_tokens, pixels)

    def at_resolution(self, image_tokens, pixels) -> EDMObjective:
        """A copy whose sigma shift is recomputed for another resolution."""
        other = copy.copy(self)
        other.shift = self._training_shift(image_tokens, pixels)
        return other

    def preconditioning(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in, c_noise) at sigma, float64."""
        sigma = sigma.double()
        sd2 = self.sigma_data**2
        total = sigma**2 + sd2
        return sd2 / total, sigma * self.sigma_data / total.sqrt(), 1 / total.sqrt(), sigma.log() / 4

    def draw(self, n, generator):
        """sigma = exp(P_mean + P_std n) times the training shift."""
        normal = torch.randn(n, generator=generator, dtype=torch.float64)
        return (self.config.p_mean + self.config.p_std * normal).exp() * self.shift

    def unit(self, t):
        """sigma / (1 + sigma), the flow-matching t of the same noise-to-signal ratio."""
        return t / (1 + t)

    def add_noise(self, x0, noise, t):
        """x = x0 + sigma eps."""
        return x0 + per_sample(t, x0) * noise

    def model_input(self, x_t, t):
        """c_in x."""
        return per_sample(self.preconditioning(t)[2], x_t) * x_t

    def model_timestep(self, t):
        """c_noise = ln(sigma) / 4."""
        return self.preconditioning(t)[3].float()

    def target(self, x0, noise, t):
        """(x0 - c_skip x) / c_out."""
        c_skip, c_out, _, _ = self.preconditioning(t)
        x = self.add_noise(x0, noise, t)
        return (x0 - per_sample(c_skip, x0) * x) / per_sample(c_out, x0)

    def loss_weight(self, t):
        """1 for 'edm' (lambda c_out^2), c_out^2 for 'none' (plain D-space MSE)."""
        if self.config.loss_weighting == "edm":
            return torch.ones(t.shape[0])
        return (self.preconditioning(t)[1] ** 2).float()

    def predict_x0(self, output, x_t, t):
        """D = c_skip x + c_out F."""
        c_skip, c_out, _, _ = self.preconditioning(t)
        return per_sample(c_skip, x_t) * x_t + per_sample(c_out, x_t) * output

    def validation_timesteps(self, k: int) -> torch.Tensor:
        """Sigmas at the k stratified quantiles (i + 0.5) / k of the training log-normal."""
        quantiles = (torch.arange(k, dtype=torch.float64) + 0.5) / k
        normal = torch.distributions.Normal(0.0, 1.0).icdf(quantiles)
        return (self.config.p_mean + self.config.p_std * normal).exp() * self.shift
