"""Cascaded sampling (Ho et al. 2021, "Cascaded Diffusion Models"; Imagen): a base model samples at low
resolution, then each super-resolution model samples at its own size conditioned on the previous output,
noised at a fixed augmentation level that is also fed to the model (noise conditioning augmentation at
sampling; Imagen uses levels around 0.1 to 0.3). The low-res image is passed at its own size: the
super-resolution denoiser upsamples it (runtime.models UNet: bicubic)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from runtime.objectives.conditioning import Conditioning, augment_lowres

StageSampler = Callable[[torch.Tensor, Conditioning], torch.Tensor]


@dataclass(frozen=True)
class CascadeStage:
    """One model of the cascade: its sampler (noise, cond) -> sample, e.g. a configured `ddim_sample`,
    and the per-sample output shape (C, H, W)."""

    sample: StageSampler
    shape: tuple[int, ...]


@torch.no_grad()
def cascade_sample(
    stages: list[CascadeStage], cond: Conditioning, batch: int, aug_level: float | None, generator: torch.Generator
) -> list[torch.Tensor]:
    """Run the cascade; returns every stage's output, the final image last.

    Each super-resolution stage reads lowres = augment(previous, aug_level) and aug_level (B,); with
    aug_level None (stages trained without noise conditioning augmentation) the previous output as is.
    """
    if aug_level is not None and not 0 <= aug_level <= 1:
        raise ValueError(f"aug_level is {aug_level}; the noise augmentation level lies in [0, 1]")
    outputs: list[torch.Tensor] = []
    for index, stage in enumerate(stages):
        noise = torch.randn((batch, *stage.shape), generator=generator)
        stage_cond = cond
        if index > 0 and aug_level is None:
            stage_cond = replace(cond, lowres=outputs[-1])
        elif index > 0:
            level = torch.full((batch,), aug_level)
            lowres_noise = torch.randn(outputs[-1].shape, generator=generator)
            stage_cond = replace(cond, lowres=augment_lowres(outputs[-1], level, lowres_noise), aug_level=level)
        outputs.append(stage.sample(noise, stage_cond))
    return outputs
