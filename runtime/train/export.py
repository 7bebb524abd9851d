"""The final export: final/ holds the weights (and their EMA) twice, streamed one parameter at a time, and the
files that say what they are.

final/
  model.safetensors, ema.safetensors   the trainer's state-dict keys (`model.x_embedder.weight`): what init_from
                                       and a teacher load
  diffusers/, diffusers_ema/           the same weights as a diffusers model folder: config.json and
                                       diffusion_pytorch_model.safetensors, or past max_shard_bytes (diffusers'
                                       default 10 GB) numbered shards and diffusion_pytorch_model.safetensors.index.json;
                                       loadable by the family's diffusers class (runtime/models/diffusers_config.py).
                                       Families without a diffusers class (Imagen's U-Nets, Seedream's glyph MMDiT, a
                                       custom model factory) get none; provenance.json says why
  architecture.json                    the architecture, so a later stage can rebuild this model as its teacher
  stage.yaml, spec.resolved.yaml,      the stage file it ran, the bundle's resolved spec and the stage's row of
  plan.json, provenance.json           plan.json; the genspec version, the bundle's manifest facts, what the
                                       diffusers export wrote
  done.json                            written last

Gathering the whole model at once costs what the model does a second time on the accelerator (the old export
gathered every parameter and cloned it in fp32 there: 14.3B x 6 bytes = 86 GB for Wan 14B on an 80 GB card).
Here each parameter is gathered on its own (deepspeed.zero.GatheredParameters under ZeRO-3), copied to host
memory in the dtype it has (a cast on the accelerator would allocate an fp32 copy there), turned into fp32 on
the host, written to every file that holds it (model.safetensors and its diffusers shard) and dropped before
the next one is gathered. Extra accelerator memory during the export is therefore one gathered parameter (one
gathered fp32 EMA shadow for the EMA files); host memory holds one parameter too, since the files are written as
they go: a safetensors header (every tensor's shape and byte offsets) is known before any data, because every
tensor is written in fp32, and the shards are planned from the shapes alone.

Every rank calls export_final (the gathers are collective); rank 0 writes. Each file is written under a
temporary name and renamed (a diffusers folder as a whole), and done.json comes last, so a kill leaves no
half-written final/ that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from runtime.models.diffusers_config import DiffusersModel, NoDiffusersClass, diffusers_model
from runtime.models.factory import ModelAdapter
from runtime.train.checkpoint import ARCHITECTURE, DONE, FINAL

F32 = 4  # bytes per element: final/ weights are fp32
DIFFUSERS, DIFFUSERS_EMA = "diffusers", "diffusers_ema"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"  # diffusers.utils.constants SAFETENSORS_WEIGHTS_NAME
INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"  # SAFE_WEIGHTS_INDEX_NAME
# diffusers' ModelMixin.save_pretrained max_shard_size "10GB" (huggingface_hub counts a GB as 10^9 bytes).
MAX_SHARD_BYTES = 10 * 10**9
NETWORK_PREFIX = "model."  # runtime.models ModelAdapter holds the family network as `model`
PROVENANCE = "provenance.json"


@dataclass
class SelfDescription:
    """What final/ says about itself beside the weights: files copied or cut from the bundle (name -> text) and
    the facts of provenance.json."""

    files: dict[str, str] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


def export_final(
    engine,
    ema,
    output_dir: Path,
    rank: int,
    architecture_json: str,
    done: dict,
    description: SelfDescription | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> None:
    """Write final/ (see the module docstring) from rank 0, done.json holding `done` last (collective: every rank
    calls it). max_shard_bytes: the size past which a diffusers folder is sharded."""
    final = output_dir / FINAL
    if rank == 0:
        final.mkdir(parents=True, exist_ok=True)
        (final / DONE).unlink(missing_ok=True)
    module = engine.module
    target, no_diffusers = diffusers_target(module)
    weights = model_tensors(module)
    names = {name: name.removeprefix(NETWORK_PREFIX) for name, _, _ in weights}
    files = [_single_file(final / "model.safetensors", weights)]
    if target is not None:
        files.append(_diffusers_folder(final / DIFFUSERS, target, weights, names, max_shard_bytes))
    _stream(weights, files if rank == 0 else [])
    if ema is not None:
        shadows = ema_tensors(module, ema)
        files = [_single_file(final / "ema.safetensors", shadows)]
        entries = shadows
        if target is not None:  # the EMA covers the trained parameters; buffers and frozen ones are the model's
            averaged = {name for name, _, _ in shadows}
            entries = shadows + [entry for entry in weights if entry[0] not in averaged]
            files.append(_diffusers_folder(final / DIFFUSERS_EMA, target, entries, names, max_shard_bytes))
        _stream(entries, files if rank == 0 else [])
    if rank == 0:
        description = description or SelfDescription()
        folders = [DIFFUSERS] + ([DIFFUSERS_EMA] if ema is not None else [])
        diffusers = (
            {"class": target.class_name, "folders": folders} if target is not None else {"none": no_diffusers}
        )
        if target is None:
            print(f"{final}: no diffusers folder: {no_diffusers}", file=sys.stderr)
        _replace_text(final / ARCHITECTURE, architecture_json)
        for name, text in description.files.items():
            _replace_text(final / name, text)
        provenance = {**description.provenance, "diffusers": diffusers}
        _replace_text(final / PROVENANCE, json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        _replace_text(final / DONE, json.dumps(done, indent=2, sort_keys=True) + "\n")


def diffusers_target(module: nn.Module) -> tuple[DiffusersModel | None, str]:
    """The diffusers class and config of the trained module's network, or None and why it has none."""
    if not isinstance(module, ModelAdapter):
        return None, f"the model is a {type(module).__name__}, not a runtime.models network (a custom model factory)"
    try:
        return diffusers_model(module.model.config), ""
    except NoDiffusersClass as error:
        return None, str(error)


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


def _stream(entries, files: list[_SafetensorsFiles]) -> None:
    """Fetch every entry once, in order (every rank: the gathers are collective), and hand its fp32 host copy to each
    file set that holds it (rank 0's; none elsewhere)."""
    for name, shape, fetch in entries:

        def write(host: torch.Tensor, name=name, shape=shape) -> None:
            if tuple(host.shape) != shape or host.dtype != torch.float32 or host.device.type != "cpu":
                raise RuntimeError(
                    f"export of {name}: got {host.dtype} {tuple(host.shape)} on {host.device}, expected "
                    f"float32 {shape} on the host"
                )
            for sink in files:
                sink.write(name, host)

        fetch(write)
    for sink in files:
        sink.close()


class _SafetensorsFiles:
    """safetensors files of fp32 tensors, written as the tensors arrive in order (nothing touches the disk before
    the first write, so every rank may build one). `shards` lists each file's name and (entry name, shape);
    entries of no file are skipped, and `names` renames an entry inside the files. Each header lists its tensors'
    byte ranges in order, as safetensors' reader checks.

    Without `extra`, the one file goes to PATH.part, renamed to PATH once written. With `extra` (name -> text,
    written last), PATH is a folder: everything goes to PATH.part/, which replaces PATH once complete."""

    def __init__(self, path: Path, shards, *, names=None, extra=None, metadata=None):
        self.path, self.shards, self.names, self.extra, self.metadata = path, shards, names or {}, extra, metadata
        self.where = {name: index for index, (_, members) in enumerate(shards) for name, _ in members}
        self.folder = None if extra is None else path.with_name(path.name + ".part")
        self.current, self.sink = -1, None

    def write(self, name: str, host: torch.Tensor) -> None:
        index = self.where.get(name)
        if index is None:
            return
        if index != self.current:  # a file holds consecutive entries: the next one starts
            self._finish_file()
            self.current = index
            self.sink = self._start_file(*self.shards[index])
        self.sink.write(host.contiguous().numpy().data)

    def close(self) -> None:
        self._finish_file()
        if self.folder is None:
            return
        self.folder.mkdir(exist_ok=True)
        for name, text in self.extra.items():
            (self.folder / name).write_text(text)
        if self.path.exists():
            shutil.rmtree(self.path)
        self.folder.replace(self.path)

    def _start_file(self, file_name: str, members):
        header, offset = {}, 0
        if self.metadata:
            header["__metadata__"] = self.metadata
        for name, shape in members:
            nbytes = F32 * math.prod(shape)
            header[self.names.get(name, name)] = {
                "dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]
            }
            offset += nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)  # safetensors aligns the data to 8 bytes
        if self.folder is None:
            target = self.path.with_name(file_name + ".part")
        else:
            if self.current == 0:  # the folder's first file: clear what a killed export left
                shutil.rmtree(self.folder, ignore_errors=True)
                self.folder.mkdir()
            target = self.folder / file_name
        sink = open(target, "wb")
        sink.write(struct.pack("<Q", len(encoded)))
        sink.write(encoded)
        return sink

    def _finish_file(self) -> None:
        if self.sink is None:
            return
        self.sink.close()
        if self.folder is None:
            part = Path(self.sink.name)
            part.replace(part.with_name(part.name.removesuffix(".part")))
        self.sink = None


def _single_file(path: Path, entries) -> _SafetensorsFiles:
    """One safetensors file of `entries` under their own names."""
    return _SafetensorsFiles(path, [(path.name, [(name, shape) for name, shape, _ in entries])])


def _diffusers_folder(path: Path, target: DiffusersModel, entries, names: dict[str, str], max_shard_bytes: int):
    """The files of a diffusers model folder for `entries` (network keys through `names`): config.json and one
    weights file, or past max_shard_bytes numbered shards and their index, as diffusers' save_pretrained names them."""
    tensors = [(name, shape) for name, shape, _ in entries]
    shards = shard_plan(tensors, max_shard_bytes)
    if len(shards) == 1:
        files = [(WEIGHTS_NAME, shards[0])]
    else:
        stem = WEIGHTS_NAME.removesuffix(".safetensors")
        files = [(f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors", shard) for i, shard in enumerate(shards)]
    extra = {"config.json": target.config_json()}
    if len(files) > 1:
        index = {
            "metadata": {"total_size": sum(F32 * math.prod(shape) for _, shape in tensors)},
            "weight_map": {names[name]: file for file, members in files for name, _ in members},
        }
        extra[INDEX_NAME] = json.dumps(index, indent=2, sort_keys=True) + "\n"
    # the safetensors metadata diffusers' save_pretrained writes
    return _SafetensorsFiles(path, files, names=names, extra=extra, metadata={"format": "pt"})


def shard_plan(tensors: list[tuple[str, tuple[int, ...]]], max_shard_bytes: int) -> list[list[tuple[str, tuple]]]:
    """(name, shape) in order, split into consecutive shards of at most max_shard_bytes of fp32, a larger tensor
    alone in its shard: huggingface_hub's split_torch_state_dict_into_shards, which diffusers' save_pretrained
    calls, in the order the tensors are gathered."""
    shards, current, size = [], [], 0
    for name, shape in tensors:
        nbytes = F32 * math.prod(shape)
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += nbytes
    if current:
        shards.append(current)
    return shards


def _replace_text(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    part.replace(path)


def describe(stage_path: Path, stage_file) -> SelfDescription:
    """final/'s self-description for a stage run from bundle/train/<stage>/stage.yaml: that file, the bundle's
    spec.resolved.yaml, the stage's row of the bundle's plan.json, and provenance.json (the genspec version that
    trained it, the spec, stage and model, the stage file's sha256 and what the bundle's manifest.json says about
    how it was compiled). A stage file outside a bundle describes itself alone; provenance.json lists what was
    not found."""
    from compiler import __version__

    stage_path = Path(stage_path)
    bundle = stage_path.resolve().parent.parent.parent
    stage = stage_file.stage
    files = {"stage.yaml": stage_path.read_text()}
    provenance = {
        "genspec_version": __version__,
        "spec": stage_file.spec,
        "scale": stage_file.scale,
        "stage": stage.name,
        "model": stage.model,
        "stage_sha256": hashlib.sha256(stage_path.read_bytes()).hexdigest(),  # as done.json's
        "bundle": str(bundle),
        "not_found": [],
    }
    resolved = bundle / "spec.resolved.yaml"
    if resolved.is_file():
        files["spec.resolved.yaml"] = resolved.read_text()
    else:
        provenance["not_found"].append(str(resolved))
    row = plan_row(bundle / "plan.json", stage.name, stage.model)
    if row is not None:
        files["plan.json"] = json.dumps(row, indent=2, sort_keys=True) + "\n"
    else:
        provenance["not_found"].append(f"{bundle / 'plan.json'} (stage {stage.name!r})")
    manifest = bundle / "manifest.json"
    if manifest.is_file():
        compiled = json.loads(manifest.read_text())
        provenance["compiled"] = {key: compiled.get(key) for key in ("generated_by", "compiler_version", "spec_sha256",
                                                                     "cluster")}
    else:
        provenance["not_found"].append(str(manifest))
    return SelfDescription(files, provenance)


def plan_row(plan_path: Path, stage: str, model: str | None) -> dict | None:
    """The row of a bundle's plan.json that plans `stage` (of cascade model `model`), None when there is none."""
    if not plan_path.is_file():
        return None
    rows = json.loads(plan_path.read_text()).get("stages", [])
    return next((row for row in rows if row.get("stage") == stage and row.get("model") in (None, model)), None)
