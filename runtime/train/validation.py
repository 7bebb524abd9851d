"""Validation loss: the unweighted denoising error at fixed, stratified timesteps with fixed noise, per
dataset and per timestep.

Every dataset of the stage contributes its first up to 32 samples (file order, after its `where` filter).
Sample i of a dataset is evaluated by rank i mod world size; ranks run the same number of micro-batches
(forward passes are collective under ZeRO-3), so a rank with fewer samples pads with copies that count for
nothing - at any world size, also beyond 32 ranks. A bucketed stage evaluates each bucket's samples (at its
first resolution) together, in micro-batches of that bucket's size, dealt over the ranks the same way. Each sample is evaluated at the objective's
`validation_timesteps` (8 by default; SD3 paper section 5.1 uses 8 equidistant t) with noise seeded by
(seed, dataset, sample), so two evaluations differ only by the weights, at any world size. The loss is the
plain masked MSE against the objective's target. Models that embed guidance are evaluated at guidance 1
(the conditional prediction); super-resolution stages with noise conditioning augmentation see their low-res
input noised once, at the sampling level (inference.noise_augmentation_level, 0 when unset).

The result: "val_loss" (mean over every dataset, sample and timestep), "val_loss/<dataset>" and
"val_loss_t/<t>" (the mean at each fixed timestep, over datasets; t as the first dataset's objective names it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist

from runtime.objectives.conditioning import augment_lowres
from runtime.objectives.masked import masked_mean
from runtime.train.batch import Batch
from runtime.train.launch import derived_seed
from runtime.train.losses import Denoise

VALIDATION_SAMPLES = 32  # per dataset
VALIDATION_STREAM = 0x76616C  # separates validation noise seeds from training seeds


@dataclass
class Part:
    """One validation micro-batch of this rank: the batch, its noise, and which samples count (1) or pad (0)."""

    dataset: int
    batch: Batch
    noise: torch.Tensor
    weight: torch.Tensor


def rank_indices(count: int, rank: int, world: int) -> list[int | None]:
    """The samples (of `count`) rank evaluates, padded with None to ceil(count / world) entries."""
    mine: list[int | None] = list(range(rank, count, world))
    return mine + [None] * (math.ceil(count / world) - len(mine))


def validation_parts(data, build, size: tuple[int, int], micro_batch: int, seed: int, rank: int, world: int,
                     lowres_level: float | None, buckets=None) -> list[Part]:
    """This rank's validation micro-batches over every dataset of the stage (data: StageData; build: the
    BatchBuilder; buckets: a bucketed stage's BucketTable, whose samples are evaluated in their buckets at the
    first resolution, each bucket in micro-batches of its own)."""
    parts = []
    for dataset in range(len(data.shards)):
        samples = data.first_samples(VALIDATION_SAMPLES, dataset)
        for members, shape, micro in _groups(samples, buckets, size, micro_batch):
            indices = [None if i is None else members[i] for i in rank_indices(len(members), rank, world)]
            parts.extend(_parts(build, samples, indices, members[0], shape, micro, dataset, seed, lowres_level))
    return parts


def _groups(samples, buckets, size, micro_batch) -> list[tuple[list[int], tuple, int]]:
    """(sample indices, (size, frames), micro-batch) of each bucket's validation samples, buckets in order of
    their first sample; one group at the stage's size without buckets."""
    if buckets is None:
        return [(list(range(len(samples))), (size, None), micro_batch)]
    groups: dict[tuple, list[int]] = {}
    for index, sample in enumerate(samples):
        groups.setdefault(buckets.assign(sample, 0), []).append(index)
    return [(members, buckets.geometry(key), buckets.micro(key)) for key, members in groups.items()]


def _parts(build, samples, indices, pad, shape, micro_batch, dataset, seed, lowres_level) -> list[Part]:
    """The micro-batches of one group of validation samples (indices: into samples; None: a copy of sample `pad`
    of the same group, which counts for nothing)."""
    parts = []
    for start in range(0, len(indices), micro_batch):
        chunk = indices[start : start + micro_batch]
        batch = build([samples[pad if i is None else i] for i in chunk], *shape)
        device = batch.latents.device  # drawn on the host like training noise, kept where the batch is
        noise = torch.stack([
            torch.randn(batch.latents.shape[1:], generator=_generator(seed, dataset, i or 0, 0)) for i in chunk
        ]).to(device)
        if lowres_level is not None and batch.cond.lowres is not None:
            level = torch.full((batch.size,), lowres_level, device=device)
            extra = torch.stack([
                torch.randn(batch.cond.lowres.shape[1:], generator=_generator(seed, dataset, i or 0, 1))
                for i in chunk
            ]).to(device)
            lowres = augment_lowres(batch.cond.lowres, level, extra)
            batch = replace(batch, cond=replace(batch.cond, lowres=lowres, aug_level=level))
        weight = torch.tensor([0.0 if i is None else 1.0 for i in chunk], dtype=torch.float64)
        parts.append(Part(dataset, batch, noise, weight))
    return parts


def _generator(seed: int, dataset: int, sample: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(seed, VALIDATION_STREAM, dataset, sample, stream))


class Validator:
    """Fixed validation batches and noise; `__call__(model)` returns the losses over all ranks."""

    def __init__(self, parts: list[Part], names: list[str], objective_for, timesteps: int):
        """names: the stage's dataset names, in data order."""
        self.parts, self.names = parts, names
        self.objective_for = objective_for
        self.timesteps = timesteps
        first = objective_for(parts[0].batch).validation_timesteps(timesteps) if parts else torch.zeros(timesteps)
        self.labels = [f"{value:.4g}" for value in first.tolist()]

    @torch.no_grad()
    def __call__(self, model: Denoise) -> dict[str, float]:
        """The validation losses (collective: every rank calls it, with as many parts as every other)."""
        total = count = None  # on the model output's device, as a NCCL all-reduce needs
        for part in self.parts:
            batch, objective = part.batch, self.objective_for(part.batch)
            for k, value in enumerate(objective.validation_timesteps(self.timesteps).tolist()):
                t = torch.full((batch.size,), value, dtype=torch.float64 if isinstance(value, float) else torch.long,
                               device=batch.latents.device)
                x_t = objective.add_noise(batch.latents, part.noise, t)
                output = model(objective.model_input(x_t, t), objective.model_timestep(t), batch.cond)
                error = masked_mean((output - objective.target(batch.latents, part.noise, t)) ** 2, batch.mask)
                if total is None:
                    total = torch.zeros(len(self.names), self.timesteps, dtype=torch.float64, device=error.device)
                    count = torch.zeros_like(total)
                weight = part.weight.to(error.device)
                total[part.dataset, k] += (error.double() * weight).sum()
                count[part.dataset, k] += weight.sum()
        if dist.is_initialized():
            dist.all_reduce(total)
            dist.all_reduce(count)
        total, count = total.cpu(), count.cpu()
        losses = {"val_loss": (total.sum() / count.sum().clamp_min(1)).item()}
        for index, name in enumerate(self.names):
            losses[f"val_loss/{name}"] = (total[index].sum() / count[index].sum().clamp_min(1)).item()
        for k, label in enumerate(self.labels):
            losses[f"val_loss_t/{label}"] = (total[:, k].sum() / count[:, k].sum().clamp_min(1)).item()
        return losses
