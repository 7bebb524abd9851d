"""What every diffusion objective answers: timesteps, noisy input, target, weighted per-sample loss.

An objective maps clean data x0, noise and a timestep t to the network's input and regression target:

    t      = objective.sample_timesteps(batch, generator)
    x_t    = objective.add_noise(x0, noise, t)
    output = model(objective.model_input(x_t, t), objective.model_timestep(t), ...)
    loss   = objective.loss(output, objective.target(x0, noise, t), t, mask)   # (batch,), weighted

`t` is the objective's own noise coordinate: t in [0, 1] for flow matching, an integer step for DDPM, sigma
for EDM. `unit(t)` maps it to [0, 1] (0 clean, 1 noise) for noise-aware compute bins.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from runtime.objectives.masked import masked_mean
from runtime.objectives.noise_aware import NoiseAwareSampler

AllReduce = Callable[[torch.Tensor], torch.Tensor]


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) tensor shaped (B, 1, 1, ...) to broadcast against `like`, in its dtype."""
    return values.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.ndim - 1)))


class DiffusionObjective(ABC):
    """Base of the objectives: timestep sampling with optional noise-aware compute, the weighted loss."""

    def __init__(self, noise_aware: NoiseAwareSampler | None = None):
        self.noise_aware = noise_aware

    # --- implemented by each objective -----------------------------------------------------------
    @abstractmethod
    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n timesteps from the objective's own sampler (shift included when it applies at training)."""

    @abstractmethod
    def unit(self, t: torch.Tensor) -> torch.Tensor:
        """t mapped to [0, 1], 0 clean and 1 pure noise."""

    @abstractmethod
    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noisy sample x_t."""

    @abstractmethod
    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network regresses at (x_t, t)."""

    @abstractmethod
    def model_timestep(self, t: torch.Tensor) -> torch.Tensor:
        """t in the units the network embeds, float32 (B,)."""

    @abstractmethod
    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample loss weight (B,), float32."""

    @abstractmethod
    def predict_x0(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean-sample estimate implied by a network output at (x_t, t)."""

    @abstractmethod
    def validation_timesteps(self, k: int) -> torch.Tensor:
        """k fixed, stratified timesteps for the validation loss."""

    # --- shared ----------------------------------------------------------------------------------
    def model_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network reads; x_t itself unless the objective preconditions it (EDM)."""
        return x_t

    def sample_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n training timesteps, re-weighted by noise-aware compute when the objective enables it."""
        if self.noise_aware is None:
            return self.draw(n, generator)
        return self.noise_aware.sample(n, self.draw, self.unit, generator)

    def loss(
        self, output: torch.Tensor, target: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-sample weighted loss w(t) * masked mean of (output - target)^2, float32 (B,)."""
        squared = (output.float() - target.float()) ** 2
        return self.loss_weight(t).to(squared.device) * masked_mean(squared, mask)

    def observe(self, t: torch.Tensor, losses: torch.Tensor, all_reduce: AllReduce | None = None) -> None:
        """Feed one step's per-sample losses to noise-aware compute (a no-op without it).

        all_reduce sums a tensor over data-parallel ranks, so every rank keeps the same running losses.
        """
        if self.noise_aware is None:
            return
        sums, counts = self.noise_aware.bin_totals(self.unit(t), losses)
        if all_reduce is not None:
            sums, counts = all_reduce(sums), all_reduce(counts)
        self.noise_aware.update(sums, counts)

    def state_dict(self) -> dict:
        """Training state worth checkpointing (noise-aware compute's running losses)."""
        return {} if self.noise_aware is None else {"noise_aware": self.noise_aware.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned."""
        if self.noise_aware is not None and "noise_aware" in state:
            self.noise_aware.load_state_dict(state["noise_aware"])

    def at_resolution(self, image_tokens: int | None, pixels: int | None) -> DiffusionObjective:
        """A copy for another resolution (resolution-dependent shifts); noise-aware state stays shared."""
        return copy.copy(self)
