"""A device for CPU tests that refuses to mix with CPU tensors, as CUDA does, but computes real values.

PyTorch's meta device refuses mixing too, but its tensors have no values, so the transformers text encoders
(whose attention-mask code reads `mask.all()`) and anything data-dependent cannot run on it. Here a tensor "on the
device" is a `DeviceTensor`: a wrapper subclass that reports device `meta` and carries a CPU tensor with the
values. `StrictDevice`, a TorchDispatchMode, runs every aten op and refuses one that mixes a DeviceTensor with a
CPU tensor, with the message CUDA would give in spirit. As on CUDA:

- zero-dimensional CPU tensors (scalars) and empty ones mix freely (CUDA kernels read CPU scalars as arguments);
- `.to(device)`, `.cpu()`, `copy_` across devices and `.item()` are explicit transfers, allowed;
- a factory given `device=meta` (torch.zeros(..., device=x.device)) makes a DeviceTensor;
- a Python list indexing a DeviceTensor (x[:, [0, 2]]) is moved to the device, as PyTorch does for CUDA.

Use `DEVICE` wherever a test would write `torch.device("cuda")`.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

DEVICE = torch.device("meta")
aten = torch.ops.aten
TRANSFERS = {aten._to_copy.default, aten.copy_.default, aten._local_scalar_dense.default}


class MixedDevices(RuntimeError):
    """An op read a CPU tensor together with tensors on the device."""


class DeviceTensor(torch.Tensor):
    """A tensor on the strict device: reports `DEVICE`, holds its values in `elem` (a CPU tensor)."""

    @staticmethod
    def __new__(cls, elem: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(
            cls, elem.size(), strides=elem.stride(), storage_offset=elem.storage_offset(), dtype=elem.dtype,
            layout=elem.layout, device=DEVICE, requires_grad=elem.requires_grad,
        )

    def __init__(self, elem: torch.Tensor):
        self.elem = elem

    __torch_function__ = torch._C._disabled_torch_function_impl

    def __repr__(self) -> str:
        return f"DeviceTensor({self.elem!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(f"{func} reached a strict-device tensor outside StrictDevice; run the code under it")


def on_device(value) -> bool:
    """Whether `value` is a tensor on the strict device."""
    return isinstance(value, DeviceTensor)


class ListIndices(TorchFunctionMode):
    """x[list] builds the index tensor on x's device from host data, bypassing dispatch (and a meta tensor would
    lose the values): build it on the host and move it, which is what PyTorch does for CUDA."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and on_device(args[0]):
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            moved = tuple(torch.tensor(part).to(DEVICE) if isinstance(part, list) else part for part in index)
            args = (args[0], moved if isinstance(args[1], tuple) else moved[0], *args[2:])
        return func(*args, **kwargs)


class StrictDevice(TorchDispatchMode):
    """Runs ops on DeviceTensors with their CPU values; raises MixedDevices when an op mixes them with CPU tensors."""

    def __enter__(self):
        self.indices = ListIndices()
        self.indices.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self.indices.__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [value for value in tree_flatten((args, kwargs))[0] if isinstance(value, torch.Tensor)]
        # A real meta tensor: made on the device from data (torch.tensor(..., device=...)), which bypasses
        # dispatch. Only an empty one can be carried (transformers' caches start as torch.tensor([])).
        real_meta = [t for t in tensors if not on_device(t) and t.device == DEVICE]
        if any(t.numel() for t in real_meta):
            raise RuntimeError(f"{func}: a tensor was made on the device from host data, which this test device "
                               "cannot carry; make it on the host and move it with .to(device)")
        device_inputs = any(on_device(t) for t in tensors) or bool(real_meta)
        if device_inputs and func not in TRANSFERS:
            host = [t for t in tensors if t.device.type == "cpu" and t.dim() > 0 and t.numel() > 0]
            if host:
                shapes = [tuple(t.shape) for t in host]
                raise MixedDevices(f"{func}: tensor on device cpu {shapes[0]} (of {shapes}) is not on the expected "
                                   f"device {DEVICE}: move it with .to(device)")

        def unwrap(value):
            if on_device(value):
                return value.elem
            if isinstance(value, torch.Tensor) and value.device == DEVICE:  # empty, see above
                return torch.empty(value.shape, dtype=value.dtype)
            return value

        target = kwargs.get("device")
        to_device = target is not None and torch.device(target).type == DEVICE.type
        args, kwargs = tree_map(unwrap, args), tree_map(unwrap, kwargs)
        if to_device:
            kwargs = {**kwargs, "device": torch.device("cpu")}
        if func is aten.copy_.default:  # keep the destination's wrapper: copy into its values
            args[0].copy_(args[1])
            return tensors[0]
        out = func(*args, **kwargs)
        if func is aten._local_scalar_dense.default:
            return out
        leaves_device = target is not None and not to_device
        if not (to_device or (device_inputs and not leaves_device)):
            return out
        return tree_map(lambda value: DeviceTensor(value) if isinstance(value, torch.Tensor) else value, out)
