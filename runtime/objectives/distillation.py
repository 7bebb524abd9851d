"""Guidance distillation (Meng et al. 2023, "On Distillation of Guided Diffusion Models"; FLUX.1 dev).

The student takes the guidance scale w as an input (embedded like the timestep) and regresses the teacher's
classifier-free-guided output at the same noisy input:

    target = teacher(x_t, t, uncond) + w (teacher(x_t, t, cond) - teacher(x_t, t, uncond)),  w ~ U(lo, hi)

The loss is the base objective's weighted loss against this target instead of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from runtime.objectives.cfg import guided
from runtime.objectives.conditioning import Conditioning

Call = Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor]


def sample_guidance(n: int, guidance_range: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """n guidance scales uniform in guidance_range, float32."""
    low, high = guidance_range
    if not low <= high:
        raise ValueError(f"stage.loss.guidance_range is {guidance_range}; give (low, high) with low <= high")
    return (low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)).float()


@torch.no_grad()
def guided_teacher_target(
    teacher: Call, x_in: torch.Tensor, timestep: torch.Tensor, cond: Conditioning, scale: torch.Tensor
) -> torch.Tensor:
    """The teacher's CFG output at (x_in, timestep) for per-sample scales, in one batched call."""
    both = teacher(torch.cat([x_in, x_in]), torch.cat([timestep, timestep]), cond.cat(cond.null()))
    cond_out, uncond_out = both.float().chunk(2)
    return guided(cond_out, uncond_out, scale)
