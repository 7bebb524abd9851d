"""Validation loss: the unweighted denoising error at fixed, stratified timesteps with fixed noise.

The first up to 32 samples of the stage's first dataset (file order), split evenly over data-parallel
ranks, are each evaluated at the objective's `validation_timesteps` (8 by default; SD3 paper section 5.1
uses 8 equidistant t) with noise drawn once from a fixed seed, so two evaluations differ only by the
weights. The loss is the plain masked MSE against the objective's target, averaged over samples and
timesteps; models that embed guidance are evaluated at guidance 1 (the conditional prediction), and
super-resolution stages with noise conditioning augmentation see their low-res input noised once, at the
sampling level (inference.noise_augmentation_level, 0 when unset).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.distributed as dist

from runtime.objectives.conditioning import augment_lowres
from runtime.objectives.masked import masked_mean
from runtime.train.batch import Batch
from runtime.train.launch import derived_seed
from runtime.train.losses import Denoise

VALIDATION_SAMPLES = 32
VALIDATION_STREAM = 0x76616C  # separates validation noise seeds from training seeds


class Validator:
    """Fixed validation batches and noise; `__call__(model)` returns the mean loss over all ranks."""

    def __init__(
        self, batches: list[Batch], objective_for, timesteps: int, seed: int, rank: int, lowres_level: float | None
    ):
        self.objective_for = objective_for
        self.timesteps = timesteps
        self.noise, self.batches = [], []
        for index, batch in enumerate(batches):
            device = batch.latents.device  # drawn on the host like training noise, kept where the batch is
            generator = torch.Generator().manual_seed(derived_seed(seed, VALIDATION_STREAM, rank, index))
            self.noise.append(torch.randn(batch.latents.shape, generator=generator).to(device))
            if lowres_level is not None and batch.cond.lowres is not None:
                level = torch.full((batch.size,), lowres_level, device=device)
                lowres = augment_lowres(
                    batch.cond.lowres, level, torch.randn(batch.cond.lowres.shape, generator=generator).to(device)
                )
                batch = replace(batch, cond=replace(batch.cond, lowres=lowres, aug_level=level))
            self.batches.append(batch)

    @torch.no_grad()
    def __call__(self, model: Denoise) -> float:
        """Mean validation loss (collective: every rank calls it)."""
        device = self.noise[0].device if self.noise else torch.device("cpu")
        total, count = (torch.zeros(1, dtype=torch.float64, device=device) for _ in range(2))
        for batch, noise in zip(self.batches, self.noise):
            objective = self.objective_for(batch)
            for value in objective.validation_timesteps(self.timesteps).tolist():
                t = torch.full((batch.size,), value, dtype=torch.float64 if isinstance(value, float) else torch.long,
                               device=device)
                x_t = objective.add_noise(batch.latents, noise, t)
                output = model(objective.model_input(x_t, t), objective.model_timestep(t), batch.cond)
                error = masked_mean((output - objective.target(batch.latents, noise, t)) ** 2, batch.mask)
                total += error.double().sum()
                count += batch.size
        if dist.is_initialized():
            dist.all_reduce(total)
            dist.all_reduce(count)
        return (total / count.clamp_min(1)).item()
