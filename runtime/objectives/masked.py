"""Masked loss: cells a mask excludes (e.g. Seedream 3.0's defect regions) do not count in the mean.

Convention: a mask is 1 where the loss counts and 0 where it does not (fractions weight a cell). A pixel
mask is brought to the latent grid with `cell_mask`: a latent cell counts only if every pixel it covers
counts, so no defect pixel leaks into the loss through its cell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mean(squared_error: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over all but the batch dim of `squared_error`, counting only cells where `mask` is nonzero.

    mask broadcasts against the error (e.g. (B, 1, H, W) against (B, C, H, W)). A sample whose mask is all
    zero contributes 0.
    """
    dims = tuple(range(1, squared_error.ndim))
    if mask is None:
        return squared_error.mean(dim=dims)
    mask = mask.to(squared_error.dtype).expand_as(squared_error)
    return (squared_error * mask).sum(dim=dims) / mask.sum(dim=dims).clamp_min(1e-12)


def cell_mask(mask: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """A (B, H, W) or (B, F, H, W) keep-mask at pixel (or latent) resolution -> (B, 1, *grid) on the latent grid.

    Each latent cell takes the minimum over the pixels it covers (min-pooling), so it counts only if all do.
    `grid` is the latent (H, W) or (F, H, W); the mask's sizes must be whole multiples of it.
    """
    mask = mask.float()
    spatial = mask.shape[-len(grid) :]
    if mask.ndim != len(grid) + 1:
        raise ValueError(
            f"loss mask has shape {tuple(mask.shape)} but the latent grid is {grid}: give one mask per sample, "
            f"shape (batch, {', '.join('...' for _ in grid)})"
        )
    if any(size % cells for size, cells in zip(spatial, grid)):
        raise ValueError(
            f"loss mask of size {tuple(spatial)} does not tile the latent grid {grid}: mask sizes must be whole "
            "multiples of the latent sizes (the VAE's compression)"
        )
    kernel = tuple(size // cells for size, cells in zip(spatial, grid))
    pool = F.max_pool2d if len(grid) == 2 else F.max_pool3d
    return 1 - pool(1 - mask[:, None], kernel_size=kernel, stride=kernel)
