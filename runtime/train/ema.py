"""Exponential moving average of the trained weights, in fp32, ZeRO-3 aware.

    shadow <- decay * shadow + (1 - decay) * param      after every optimizer step

Each rank averages what it holds: the whole parameter under ZeRO 0-2, its own partition (`param.ds_tensor`)
under ZeRO-3, so the shadow is partitioned like the parameters and costs 4 bytes per local element. With bf16
training the average is taken of the bf16 weights the model runs with, accumulated in fp32.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def local_tensor(param: nn.Parameter) -> torch.Tensor:
    """The part of `param` this rank holds: its ZeRO-3 partition, or the parameter itself."""
    return param.ds_tensor if hasattr(param, "ds_tensor") else param.data


class EMA:
    """fp32 shadow of a module's trainable parameters."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.params = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        self.shadow = [local_tensor(p).detach().float().clone() for _, p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average."""
        for shadow, (_, param) in zip(self.shadow, self.params):
            shadow.lerp_(local_tensor(param).float(), 1 - self.decay)

    def state_dict(self) -> dict:
        """This rank's shadow, keyed by parameter name."""
        return {"decay": self.decay, "shadow": {name: s for (name, _), s in zip(self.params, self.shadow)}}

    def load_state_dict(self, state: dict) -> None:
        """Restore this rank's shadow."""
        for index, (name, _) in enumerate(self.params):
            if name not in state["shadow"]:
                raise KeyError(f"EMA checkpoint lacks parameter {name!r}; it was written for another model")
            self.shadow[index].copy_(state["shadow"][name])

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Whole fp32 EMA weights (collective under ZeRO-3: every rank must call it)."""
        full = {}
        for shadow, (name, param) in zip(self.shadow, self.params):
            if hasattr(param, "ds_tensor"):
                parts = [torch.empty_like(shadow) for _ in range(dist.get_world_size())]
                dist.all_gather(parts, shadow)
                full[name] = torch.cat(parts)[: param.ds_numel].view(param.ds_shape).clone()
            else:
                full[name] = shadow.clone()
        return full
