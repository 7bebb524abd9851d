"""Where a step's tensors live: the engine's device, for the trained model and everything around it.

DeepSpeed places the trained model on `cuda:LOCAL_RANK` (the CPU on a CPU machine); the trainer puts the rest
there too: batches (BatchBuilder's device), the frozen text encoders and VAE (built there, in the stage's
precision), the teacher and the reference model (`frozen`), noise and timesteps (drawn on the host by the
micro-batch's CPU generator and moved, runtime/train/losses.py), and EMA (kept beside the parameters).
"""

from __future__ import annotations

import torch
from torch import nn


def engine_device(engine) -> torch.device:
    """The device DeepSpeed put the trained model on."""
    return torch.device(engine.device)


def frozen(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A frozen network (teacher, DPO reference) on the engine's device in the stage's precision, in eval mode."""
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
