"""Diffusion-DPO (Wallace et al. 2023, "Diffusion Model Alignment Using Direct Preference Optimization",
eq. 14; diffusers examples/research_projects/diffusion_dpo/train_diffusion_dpo.py).

For a preferred sample w and a rejected sample l noised with the same t and noise, with per-sample denoising
errors e = ||output - target||^2 of the trained model and of a frozen reference model:

    loss = -log sigmoid(-beta / 2 * ((e_w - e_l) - (e_ref_w - e_ref_l)))

The timestep weighting T omega(lambda_t) of the paper is folded into beta, as in the reference code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def diffusion_dpo_loss(
    model_w: torch.Tensor, model_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor, beta: float
) -> torch.Tensor:
    """Per-pair Diffusion-DPO loss (B,) from per-sample errors (B,) of model and reference."""
    inside = -0.5 * beta * ((model_w - model_l) - (ref_w - ref_l))
    return -F.logsigmoid(inside)
