"""Discrete-time DDPM objectives: noise prediction (Ho et al. 2020) and v-prediction (Salimans & Ho 2022).

    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,   t an integer step in [0, train_steps)
    noise prediction target eps;   v-prediction target v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0

Beta schedules:
  linear         beta linear from 1e-4 to 0.02 (Ho et al. 2020, section 4)
  scaled_linear  sqrt(beta) linear from sqrt(0.00085) to sqrt(0.012) (Stable Diffusion v1 config,
                 diffusers schedulers/scheduling_ddpm.py beta_schedule="scaled_linear")
  cosine         abar(t) = f(t) / f(0), f(t) = cos^2(pi/2 (t/T + s) / (1 + s)), s = 0.008, each beta capped
                 at 0.999 (Nichol & Dhariwal 2021 eq. 17; openai/improved-diffusion gaussian_diffusion.py)
min-SNR weighting, gamma = 5 (Hang et al. 2023 eq. 9): min(SNR, gamma) / SNR on eps,
min(SNR, gamma) / (SNR + 1) on v, SNR = abar / (1 - abar).
"""

from __future__ import annotations

import math

import torch

from compiler.schema.objective import NoisePrediction, VPrediction
from runtime.objectives.base import DiffusionObjective, per_sample
from runtime.objectives.noise_aware import NoiseAwareSampler

COSINE_OFFSET = 0.008  # s in Nichol & Dhariwal eq. 17: keeps beta_0 from vanishing
MAX_BETA = 0.999  # cap that keeps the cosine schedule's last step finite
MIN_SNR_GAMMA = 5.0  # Hang et al. 2023: gamma = 5 works across their settings
DDPM_WEIGHTINGS = ("none", "min_snr")


def beta_schedule(kind: str, steps: int, start: float | None = None, end: float | None = None) -> torch.Tensor:
    """Betas (steps,) float64 of a `linear`, `scaled_linear` or `cosine` schedule; `start` and `end` replace a
    linear schedule's default range (diffusers DDPMScheduler beta_start / beta_end)."""
    if kind == "linear":
        return torch.linspace(start or 1e-4, end or 0.02, steps, dtype=torch.float64)
    if kind == "scaled_linear":
        return torch.linspace((start or 0.00085) ** 0.5, (end or 0.012) ** 0.5, steps, dtype=torch.float64) ** 2
    if kind == "cosine":
        step = torch.arange(steps + 1, dtype=torch.float64) / steps
        alpha_bar = torch.cos((step + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=MAX_BETA)
    raise ValueError(f"objective.schedule is {kind!r}; use 'linear', 'scaled_linear' or 'cosine'")


def alphas_cumprod(kind: str, steps: int) -> torch.Tensor:
    """abar_t = prod_{s <= t} (1 - beta_s), float64 (steps,)."""
    return torch.cumprod(1 - beta_schedule(kind, steps), dim=0)


def rescale_zero_terminal_snr(alpha_bar: torch.Tensor) -> torch.Tensor:
    """abar rescaled so its last step is 0 (pure noise) and its first unchanged: sqrt(abar) shifted to end at
    zero and scaled to keep its start (Lin et al. 2024, arXiv:2305.08891, Algorithm 1; diffusers
    scheduling_ddim_cogvideox.py rescale_zero_terminal_snr)."""
    root = alpha_bar.sqrt()
    first, last = root[0].clone(), root[-1].clone()
    return ((root - last) * first / (first - last)) ** 2


def objective_alphas_cumprod(config: NoisePrediction | VPrediction) -> torch.Tensor:
    """abar of a DDPM objective: its schedule and beta range, the SNR shift abar / (s + (1 - s) abar), which
    divides the SNR abar / (1 - abar) by s, then zero terminal SNR, in the order of CogVideoX's scheduler
    (diffusers scheduling_ddim_cogvideox.py; with s = 1 it is DDPMScheduler's rescale_betas_zero_snr)."""
    betas = beta_schedule(config.schedule, config.train_steps, config.beta_start, config.beta_end)
    alpha_bar = torch.cumprod(1 - betas, dim=0)
    shift = config.snr_shift
    alpha_bar = alpha_bar / (shift + (1 - shift) * alpha_bar)
    return rescale_zero_terminal_snr(alpha_bar) if config.zero_terminal_snr else alpha_bar


class DDPMObjective(DiffusionObjective):
    """Shared DDPM machinery; subclasses pick the target."""

    def __init__(self, config: NoisePrediction | VPrediction, noise_aware: NoiseAwareSampler | None = None):
        super().__init__(noise_aware)
        if config.shift.kind != "none":
            raise ValueError(
                f"objective.shift is {config.shift.kind!r} with the discrete-time {config.kind} objective; "
                "a shift needs t in [0, 1]: use NoShift() or a continuous-time objective"
            )
        if config.loss_weighting not in DDPM_WEIGHTINGS:
            raise ValueError(
                f"objective.loss_weighting is {config.loss_weighting!r}, which is not defined for {config.kind}; "
                f"use one of {DDPM_WEIGHTINGS}"
            )
        if config.zero_terminal_snr and config.kind != "v_prediction":
            raise ValueError(
                f"objective.zero_terminal_snr is true with {config.kind}: at the last step x_t is pure noise, "
                "so the noise target says nothing about x0 (Lin et al. 2024, section 3.2); use v_prediction"
            )
        self.config = config
        self.steps = config.train_steps
        self.alpha_bar = objective_alphas_cumprod(config)

    def _abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return per_sample(self.alpha_bar[t.long().cpu()], like)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """abar / (1 - abar) at integer steps t, float64."""
        abar = self.alpha_bar[t.long().cpu()]
        return abar / (1 - abar)

    def draw(self, n, generator):
        """Integer steps uniform in [0, train_steps)."""
        return torch.randint(0, self.steps, (n,), generator=generator)

    def unit(self, t):
        """Step midpoint over train_steps."""
        return (t.double() + 0.5) / self.steps

    def add_noise(self, x0, noise, t):
        """x_t = sqrt(abar) x0 + sqrt(1 - abar) eps."""
        abar = self._abar(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def model_timestep(self, t):
        """The integer step as float (the network embeds the step index)."""
        return t.float()

    def validation_timesteps(self, k: int) -> torch.Tensor:
        """Steps at the midpoints of k equal bins of [0, train_steps)."""
        return ((torch.arange(k, dtype=torch.float64) + 0.5) / k * self.steps).long()


class NoisePredictionObjective(DDPMObjective):
    """DDPM with the eps target (Imagen)."""

    def target(self, x0, noise, t):
        """eps."""
        return noise

    def loss_weight(self, t):
        """1, or min(SNR, gamma) / SNR."""
        if self.config.loss_weighting == "min_snr":
            snr = self.snr(t)
            return (snr.clamp(max=MIN_SNR_GAMMA) / snr).float()
        return torch.ones(t.shape[0])

    def predict_x0(self, output, x_t, t):
        """x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)."""
        abar = self._abar(t, x_t)
        return (x_t - (1 - abar).sqrt() * output) / abar.sqrt()


class VPredictionObjective(DDPMObjective):
    """DDPM with the v target."""

    def target(self, x0, noise, t):
        """v = sqrt(abar) eps - sqrt(1 - abar) x0."""
        abar = self._abar(t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def loss_weight(self, t):
        """1, or min(SNR, gamma) / (SNR + 1)."""
        if self.config.loss_weighting == "min_snr":
            snr = self.snr(t)
            return (snr.clamp(max=MIN_SNR_GAMMA) / (snr + 1)).float()
        return torch.ones(t.shape[0])

    def predict_x0(self, output, x_t, t):
        """x0 = sqrt(abar) x_t - sqrt(1 - abar) v."""
        abar = self._abar(t, x_t)
        return abar.sqrt() * x_t - (1 - abar).sqrt() * output
