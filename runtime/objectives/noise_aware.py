"""Noise-aware compute redistribution (Hailuo 02): sample more often where the loss is still high.

MiniMax names the technique without its details. genspec's version: the unit interval of noise levels is cut
into `bins`; each bin keeps an exponential moving average of the per-sample loss of the timesteps that fell
in it; a timestep drawn from the objective's own sampler is accepted with probability

    w_b = max(L_b / max_c L_c, floor)      (bins never observed count as the maximum, w = 1)

(rejection sampling), so the sampling density becomes p(t) w_b(t) / Z: high-loss bins keep their base
density, low-loss bins are thinned down to at most `floor` of it. The redistribution is deliberate: losses
are not re-weighted back, the point is to spend steps where the model is weak.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from compiler.schema.objective import NoiseAwareCompute

Draw = Callable[[int, torch.Generator], torch.Tensor]


class NoiseAwareSampler:
    """Running loss per noise-level bin and the rejection sampler built on it."""

    def __init__(self, config: NoiseAwareCompute):
        self.config = config
        self.running = torch.zeros(config.bins, dtype=torch.float64)
        self.seen = torch.zeros(config.bins, dtype=torch.bool)

    def bin_of(self, unit: torch.Tensor) -> torch.Tensor:
        """Bin index of noise levels mapped to [0, 1]."""
        return (unit.double() * self.config.bins).long().clamp(0, self.config.bins - 1)

    def weights(self) -> torch.Tensor:
        """Acceptance probability per bin, in [floor, 1]."""
        if not self.seen.any():
            return torch.ones(self.config.bins, dtype=torch.float64)
        top = self.running[self.seen].max()
        relative = torch.where(self.seen, self.running / top.clamp_min(1e-12), torch.ones_like(self.running))
        return relative.clamp(self.config.floor, 1.0)

    def sample(self, n: int, draw: Draw, to_unit: Callable[[torch.Tensor], torch.Tensor], generator) -> torch.Tensor:
        """n timesteps: candidates from `draw`, each kept with its bin's weight, until n are kept."""
        weights = self.weights()
        kept: list[torch.Tensor] = []
        count = 0
        while count < n:
            candidates = draw(n, generator)
            accept = torch.rand(n, generator=generator, dtype=torch.float64) < weights[self.bin_of(to_unit(candidates))]
            kept.append(candidates[accept])
            count += int(accept.sum())
        return torch.cat(kept)[:n]

    def bin_totals(self, unit: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-bin sum of losses and sample counts of one batch (all-reduce these across ranks)."""
        bins = self.bin_of(unit).cpu()  # the running statistics live on the host: a few bins, read every step
        sums = torch.zeros(self.config.bins, dtype=torch.float64).index_add_(0, bins, losses.detach().double().cpu())
        counts = torch.zeros(self.config.bins, dtype=torch.float64).index_add_(0, bins, torch.ones_like(sums[bins]))
        return sums, counts

    def update(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """Fold one step's per-bin mean loss into the running average; a bin's first value is taken as is."""
        hit = counts > 0
        mean = torch.where(hit, sums / counts.clamp_min(1), torch.zeros_like(sums))
        decayed = self.config.ema * self.running + (1 - self.config.ema) * mean
        self.running = torch.where(hit, torch.where(self.seen, decayed, mean), self.running)
        self.seen = self.seen | hit

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Running losses and seen flags, for checkpoints."""
        return {"running": self.running.clone(), "seen": self.seen.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what state_dict returned."""
        if state["running"].shape != self.running.shape:
            raise ValueError(
                f"noise_aware_compute state has {state['running'].numel()} bins but objective.noise_aware_compute.bins "
                f"is {self.config.bins}; resume with the bin count the checkpoint was written with"
            )
        self.running = state["running"].clone()
        self.seen = state["seen"].clone()
