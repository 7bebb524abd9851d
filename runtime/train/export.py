"""The final export: final/model.safetensors (and ema.safetensors) streamed one parameter at a time.

Gathering the whole model at once costs what the model does a second time on the accelerator (the old export
gathered every parameter and cloned it in fp32 there: 14.3B x 6 bytes = 86 GB for Wan 14B on an 80 GB card).
Here each parameter is gathered on its own (deepspeed.zero.GatheredParameters under ZeRO-3), copied to host
memory in the dtype it has (a cast on the accelerator would allocate an fp32 copy there), turned into fp32 on
the host, written and dropped before the next one is gathered. Extra accelerator memory during the export is
therefore one gathered parameter (one gathered fp32 EMA shadow for ema.safetensors); host memory holds one
parameter too, since the file is written as it goes: the safetensors header (every tensor's shape and byte
offsets) is known before any data, because every tensor is written in fp32.

Every rank calls export_final (the gathers are collective); rank 0 writes. Each file is written under a
temporary name and renamed, and done.json comes last, so a kill leaves no half-written final/ that looks
finished.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from runtime.train.checkpoint import ARCHITECTURE, DONE, FINAL

F32 = 4  # bytes per element: final/ weights are fp32


def export_final(engine, ema, output_dir: Path, rank: int, architecture_json: str, done: dict) -> None:
    """Write final/model.safetensors (and ema.safetensors with EMA), the architecture they belong to
    (architecture.json, so a later stage can rebuild this model as its teacher) and, last, done.json holding
    `done`, from rank 0 (collective: every rank calls it)."""
    final = output_dir / FINAL
    if rank == 0:
        final.mkdir(parents=True, exist_ok=True)
        (final / DONE).unlink(missing_ok=True)
    module = engine.module
    _write_streamed(final / "model.safetensors", model_tensors(module), rank)
    if ema is not None:
        _write_streamed(final / "ema.safetensors", ema_tensors(module, ema), rank)
    if rank == 0:
        _replace_text(final / ARCHITECTURE, architecture_json)
        _replace_text(final / DONE, json.dumps(done, indent=2, sort_keys=True) + "\n")


def model_tensors(module: nn.Module) -> list[tuple[str, tuple[int, ...], object]]:
    """(name, whole shape, fetch) for every state-dict entry; fetch(write) gathers the tensor, hands write its
    fp32 host copy and releases it (collective under ZeRO-3)."""
    entries = []
    for name, tensor in module.state_dict(keep_vars=True).items():
        shape = tuple(tensor.ds_shape) if hasattr(tensor, "ds_shape") else tuple(tensor.shape)
        entries.append((name, shape, lambda write, tensor=tensor: _fetch_parameter(tensor, write)))
    return entries


def ema_tensors(module: nn.Module, ema) -> list[tuple[str, tuple[int, ...], object]]:
    """model_tensors for the EMA (runtime/train/ema.py), whose shadow each rank holds in DeepSpeed's layout of the
    fp32 masters: a ZeRO-3 partition is gathered into one buffer here; a ZeRO-1/2 fragment or a whole tensor
    through EMA.whole, one parameter at a time."""
    params = dict(module.named_parameters())
    entries = []
    for index, (name, local) in enumerate(ema.state_dict()["shadow"].items()):
        param = params[name]
        shape = tuple(param.ds_shape) if hasattr(param, "ds_shape") else tuple(param.shape)
        if hasattr(param, "ds_tensor"):
            fetch = lambda write, local=local, param=param: _fetch_shadow(local, param, write)  # noqa: E731
        else:
            fetch = lambda write, index=index: write(ema.whole(index).detach().to("cpu").float())  # noqa: E731
        entries.append((name, shape, fetch))
    return entries


def _fetch_parameter(tensor: torch.Tensor, write) -> None:
    gathered = hasattr(tensor, "ds_id")  # a ZeRO-3 partitioned parameter
    context = _gathered(tensor) if gathered else contextlib.nullcontext()
    with context:  # written while gathered: on a CPU engine the host copy is the gathered tensor itself
        write(tensor.detach().to("cpu").float())


def _gathered(param: torch.Tensor):
    import deepspeed

    return deepspeed.zero.GatheredParameters([param], modifier_rank=None)


def _fetch_shadow(local: torch.Tensor, param: torch.Tensor, write) -> None:
    world = dist.get_world_size()
    whole = torch.empty(world * local.numel(), dtype=local.dtype, device=local.device)
    # all_gather into views of one buffer: every backend has it (gloo on CPUs too), and nothing is concatenated
    dist.all_gather(list(whole.chunk(world)), local.detach().reshape(-1))
    write(whole.to("cpu")[: param.ds_numel].view(param.ds_shape).float())
    del whole


def _write_streamed(path: Path, entries, rank: int) -> None:
    """A safetensors file of fp32 tensors, each fetched and written in turn (every rank fetches; rank 0
    writes). The header lists every tensor's byte range in entry order, as safetensors' reader checks."""
    header, offset = {}, 0
    for name, shape, _ in entries:
        nbytes = F32 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # safetensors aligns the data to 8 bytes
    part = path.with_name(path.name + ".part")
    with open(part, "wb") if rank == 0 else contextlib.nullcontext() as sink:
        if sink is not None:
            sink.write(struct.pack("<Q", len(encoded)))
            sink.write(encoded)
        for name, shape, fetch in entries:

            def write(host: torch.Tensor, name=name, shape=shape) -> None:
                if tuple(host.shape) != shape or host.dtype != torch.float32 or host.device.type != "cpu":
                    raise RuntimeError(
                        f"export of {name}: got {host.dtype} {tuple(host.shape)} on {host.device}, expected "
                        f"float32 {shape} on the host"
                    )
                if sink is not None:
                    sink.write(host.contiguous().numpy().data)

            fetch(write)
    if rank == 0:
        part.replace(path)


def _replace_text(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    part.replace(path)
