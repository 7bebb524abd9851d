"""Exponential moving average of the trained weights, from DeepSpeed's fp32 master weights, ZeRO aware.

    shadow <- decay * shadow + (1 - decay) * master      after every optimizer step

The average is taken of the fp32 masters the optimizer updates, not of the bf16 weights the model runs with:
with decay 0.9999 an EMA of bf16 weights would lose every update smaller than bf16's resolution (2^-8
relative), while the masters keep them. Each rank averages the part of the masters it holds
(deepspeed/utils/tensor_fragment.py), so the shadow is partitioned like the optimizer and costs 4 bytes per
local element:
  - ZeRO-3: the parameter's fp32 partition (safe_get_local_fp32_param; the same layout as param.ds_tensor);
  - ZeRO-1/2 (DeepSpeedZeroOptimizer, BF16_Optimizer): the fragment of the flattened parameter in this
    rank's fp32 partition (param._hp_mapping: hp_fragment at lp_fragment_address), possibly empty;
  - bf16 under ZeRO-0 (FP16_Optimizer / FP16_UnfusedOptimizer with bf16 weights): the parameter's slice of
    the whole fp32 copy of its group (fp32_groups_flat[g], flattened in the order of fp16_groups[g]), or its
    own fp32 copy (fp32_groups[g][i]);
  - fp32 without ZeRO: the parameter itself, which is the master.
full_state_dict puts the parts together (collective).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

WHOLE, FRAGMENT, PARTITION, FLAT = "whole", "fragment", "partition", "flat"


def layout(param: nn.Parameter, flat: dict | None = None) -> str:
    """How DeepSpeed holds `param`'s fp32 master on this rank (flat: flat_masters of the optimizer)."""
    if hasattr(param, "ds_id"):
        return PARTITION
    if hasattr(param, "_hp_mapping"):
        return FRAGMENT
    if flat and id(param) in flat:
        return FLAT
    return WHOLE


def flat_masters(optimizer) -> dict[int, tuple[int, int]]:
    """id(param) -> (group, offset) in an FP16_Optimizer's flat fp32 copies, or (group, index) in an
    FP16_UnfusedOptimizer's fp32 copies; empty for other optimizers."""
    groups = getattr(optimizer, "fp16_groups", None)
    if groups is None or not (hasattr(optimizer, "fp32_groups_flat") or hasattr(optimizer, "fp32_groups")):
        return {}
    flat = hasattr(optimizer, "fp32_groups_flat")
    where = {}
    for index, group in enumerate(groups):
        offset = 0
        for position, param in enumerate(group):
            where[id(param)] = (index, offset if flat else position)
            offset += param.numel()
    return where


def local_master(param: nn.Parameter, flat: dict | None = None, optimizer=None) -> torch.Tensor:
    """The fp32 master values of `param` this rank holds (flat for partitions and fragments)."""
    kind = layout(param, flat)
    if kind == FLAT:
        group, place = flat[id(param)]
        if hasattr(optimizer, "fp32_groups_flat"):
            return optimizer.fp32_groups_flat[group].narrow(0, place, param.numel()).view(param.shape)
        return optimizer.fp32_groups[group][place].data
    if kind == PARTITION:
        from deepspeed.utils import safe_get_local_fp32_param

        return safe_get_local_fp32_param(param).flatten()
    if kind == FRAGMENT:
        mapping = param._hp_mapping  # looked up each time: DeepSpeed relinks it after loading a checkpoint
        if mapping is None:
            return torch.empty(0, dtype=torch.float32, device=param.device)
        return mapping.get_hp_fragment().flatten()
    return param.data


class EMA:
    """fp32 shadow of a module's trainable parameters."""

    def __init__(self, module: nn.Module, decay: float, optimizer=None):
        """optimizer: the engine's (engine.optimizer), where DeepSpeed keeps the masters of ZeRO-0 bf16."""
        self.decay = decay
        self.optimizer = optimizer
        self.flat = flat_masters(optimizer)
        self.params = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        self.shadow = [self._master(p).detach().float().clone() for _, p in self.params]

    def _master(self, param: nn.Parameter) -> torch.Tensor:
        return local_master(param, self.flat, self.optimizer)

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current master weights into the average (after the optimizer step)."""
        for shadow, (_, param) in zip(self.shadow, self.params):
            shadow.lerp_(self._master(param).float(), 1 - self.decay)

    def state_dict(self) -> dict:
        """This rank's shadow, keyed by parameter name."""
        return {"decay": self.decay, "shadow": {name: s for (name, _), s in zip(self.params, self.shadow)}}

    def load_state_dict(self, state: dict) -> None:
        """Restore this rank's shadow."""
        for index, (name, _) in enumerate(self.params):
            if name not in state["shadow"]:
                raise KeyError(f"EMA checkpoint lacks parameter {name!r}; it was written for another model")
            saved = state["shadow"][name]
            if saved.shape != self.shadow[index].shape:
                raise ValueError(
                    f"EMA checkpoint holds {name!r} as {tuple(saved.shape)}, this rank's part is "
                    f"{tuple(self.shadow[index].shape)}; resume with the world size and ZeRO stage it was saved with"
                )
            self.shadow[index].copy_(saved)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Whole fp32 EMA weights (collective under ZeRO: every rank must call it)."""
        return {name: self.whole(index) for index, (name, _) in enumerate(self.params)}

    def whole(self, index: int) -> torch.Tensor:
        """The whole fp32 EMA tensor of parameter `index`, one parameter at a time (collective under ZeRO)."""
        shadow, (_, param) = self.shadow[index], self.params[index]
        kind = layout(param, self.flat)
        if kind == PARTITION:
            parts = [torch.empty_like(shadow) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, shadow)
            return torch.cat(parts)[: param.ds_numel].view(param.ds_shape).clone()
        if kind == FRAGMENT:
            whole = torch.zeros(param.numel(), dtype=torch.float32, device=shadow.device)
            mapping = param._hp_mapping
            if mapping is not None:
                address = mapping.lp_fragment_address
                whole.narrow(0, address.start, address.numel).copy_(shadow)
            if dist.is_initialized():
                dist.all_reduce(whole, group=getattr(param, "_dp_group", None))
            return whole.view(param.shape)
        return shadow.reshape(param.shape).clone()
