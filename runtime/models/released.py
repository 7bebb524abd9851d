"""Released weights into the runtime's networks: `init_from: {released: MODEL_ID, layout, subfolder, file}`.

The networks carry diffusers' parameter names (tests/runtime/models: key-for-key parity), so a diffusers model
folder maps one to one. Two original layouts map by name, facts from diffusers' single-file converters
(diffusers/loaders/single_file_utils.py convert_flux_transformer_checkpoint_to_diffusers and
convert_wan_transformer_to_diffusers), read here in the other direction, from our name to the file's:

  bfl   Black Forest Labs' single file (flux1-dev.safetensors): double_blocks.N / single_blocks.N,
        q, k and v fused in one `qkv` (single blocks also fuse the MLP input into `linear1`), norms named
        `scale`, and final_layer.adaLN_modulation.1 holding (shift, scale) where diffusers' norm_out reads
        (scale, shift).
  wan   the Wan2.1 repository's checkpoints: blocks.N.self_attn / cross_attn with q, k, v, o, ffn.0 / ffn.2,
        `modulation` for diffusers' scale_shift_table, head.head / head.modulation, and norm2 / norm3 the
        other way round from diffusers (Wan's norm3 is the cross-attention norm).

Passes of `load_released`:
  1. find the weights: the model id's folder in the model directory (runtime/encoders/model_directory.py:
     org/name, org--name or the Hugging Face hub cache), its subfolder, then `file`, or else
     diffusion_pytorch_model.safetensors.index.json (sharded) or diffusion_pytorch_model.safetensors;
  2. plan: every network parameter's source (file key, its rows in a fused tensor, halves swapped);
  3. check before anything is copied: missing and unexpected keys by name, then every file tensor's shape
     against the one the spec's architecture gives (a fused tensor: its parts stacked);
  4. copy tensor by tensor (only a fused tensor's rows are read): host memory holds one parameter's worth on
     top of the model, never a second copy of it. A ZeRO-3 partitioned parameter is gathered on its own
     (deepspeed.zero.GatheredParameters, modifier_rank=0), written by rank 0 and re-partitioned.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from compiler.schema.schedule import ReleasedWeights

DIFFUSERS_FILE = "diffusion_pytorch_model.safetensors"
DIFFUSERS_INDEX = DIFFUSERS_FILE + ".index.json"
WRAPPER_PREFIX = "model.diffusion_model."  # single files repacked for ComfyUI-style loaders prefix every key
SHOWN = 10  # keys named in one error line


class ReleasedWeightsError(ValueError):
    """Released weights that cannot be found or do not fit the spec's network."""


@dataclass(frozen=True)
class Source:
    """Where one network parameter comes from in the file."""

    key: str
    fused: tuple[str, ...] = ()  # network parameters stacked along dim 0 in `key`, in order; () for one
    swap_halves: bool = False  # the file holds (shift, scale), the network reads (scale, shift)


# --- layouts: network name -> Source, None when the layout has no counterpart -----------------------------

# FLUX double-stream block: diffusers module path -> BFL module path, inside transformer_blocks.N / double_blocks.N.
BFL_DOUBLE = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
}
BFL_DOUBLE_FUSED = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
                    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}
BFL_SINGLE = {
    "norm.linear": "modulation.lin",
    "proj_out": "linear2",
    "attn.norm_q": "norm.query_norm",
    "attn.norm_k": "norm.key_norm",
}
BFL_SINGLE_FUSED = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")}
BFL_TOP = {
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "context_embedder": "txt_in",
    "x_embedder": "img_in",
    "proj_out": "final_layer.linear",
}
BFL_NORM_OUT = "final_layer.adaLN_modulation.1"


def bfl_source(name: str) -> Source | None:
    """The BFL single-file source of FLUX parameter `name` (diffusers FluxTransformer2DModel naming)."""
    module, _, param = name.rpartition(".")
    block = re.fullmatch(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)", module)
    if block is None:
        if module == "norm_out.linear":
            return Source(f"{BFL_NORM_OUT}.{param}", swap_halves=True)
        return Source(f"{BFL_TOP[module]}.{param}") if module in BFL_TOP else None
    kind, index, inner = block.groups()
    prefix, renames, fused = (
        (f"double_blocks.{index}", BFL_DOUBLE, BFL_DOUBLE_FUSED) if kind == "transformer_blocks"
        else (f"single_blocks.{index}", BFL_SINGLE, BFL_SINGLE_FUSED)
    )
    for target, parts in fused.items():
        if inner in parts:
            return Source(f"{prefix}.{target}.{param}", fused=tuple(f"{kind}.{index}.{p}.{param}" for p in parts))
    if inner not in renames:
        return None
    # BFL's RMSNorm names its weight `scale`.
    return Source(f"{prefix}.{renames[inner]}.{'scale' if renames[inner].endswith('_norm') else param}")


# Wan: diffusers WanTransformer3DModel module path -> Wan2.1 module path.
WAN_TOP = {
    "patch_embedding": "patch_embedding",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "proj_out": "head.head",
}
WAN_ATTENTION = {"attn1": "self_attn", "attn2": "cross_attn"}
WAN_PROJECTIONS = {
    "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "o", "norm_q": "norm_q", "norm_k": "norm_k",
    "add_k_proj": "k_img", "add_v_proj": "v_img", "norm_added_k": "norm_k_img",
}
WAN_BLOCK = {"norm2": "norm3", "norm3": "norm2", "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2"}


def wan_source(name: str) -> Source | None:
    """The Wan2.1 repository source of Wan parameter `name` (diffusers WanTransformer3DModel naming)."""
    if name == "scale_shift_table":
        return Source("head.modulation")
    block = re.fullmatch(r"blocks\.(\d+)\.(.+)", name)
    if block is None:
        module, _, param = name.rpartition(".")
        return Source(f"{WAN_TOP[module]}.{param}") if module in WAN_TOP else None
    index, inner = block.groups()
    if inner == "scale_shift_table":
        return Source(f"blocks.{index}.modulation")
    module, _, param = inner.rpartition(".")
    attention = re.fullmatch(r"(attn1|attn2)\.(.+)", module)
    if attention is not None:
        kind, projection = attention.groups()
        if projection not in WAN_PROJECTIONS:
            return None
        return Source(f"blocks.{index}.{WAN_ATTENTION[kind]}.{WAN_PROJECTIONS[projection]}.{param}")
    return Source(f"blocks.{index}.{WAN_BLOCK[module]}.{param}") if module in WAN_BLOCK else None


def diffusers_source(name: str) -> Source:
    """A diffusers folder names every parameter as the network does."""
    return Source(name)


LAYOUTS = {"diffusers": diffusers_source, "bfl": bfl_source, "wan": wan_source}


# --- the file ---------------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """A safetensors checkpoint, one file or sharded: which file holds each key, and the tensors' shapes."""

    location: str  # for messages: the file, or the index of a sharded checkpoint
    files: dict[str, Path]  # key -> file
    shapes: dict[str, tuple[int, ...]]
    prefix: str = ""  # stripped from every key of the file
    _handles: dict[Path, object] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path) -> Checkpoint:
        """Read the headers of `path`: a .safetensors file or a sharded checkpoint's .index.json."""
        from safetensors import safe_open

        if path.name.endswith(".index.json"):
            weight_map = json.loads(path.read_text()).get("weight_map")
            if not isinstance(weight_map, dict):
                raise ReleasedWeightsError(f"{path}: a sharded checkpoint's index needs a 'weight_map' of key -> file")
            files = {key: path.parent / name for key, name in weight_map.items()}
            for shard in sorted(set(files.values())):
                if not shard.is_file():
                    raise ReleasedWeightsError(f"{path} names shard {shard.name}, which is not in {path.parent}")
        else:
            with safe_open(str(path), framework="pt") as handle:
                files = dict.fromkeys(handle.keys(), path)
        shapes = {}
        for shard in sorted(set(files.values())):
            with safe_open(str(shard), framework="pt") as handle:
                for key in handle.keys():
                    if files.get(key) == shard:
                        shapes[key] = tuple(handle.get_slice(key).get_shape())
        unlisted = sorted(set(files) - set(shapes))
        if unlisted:
            raise ReleasedWeightsError(f"{path} maps {_names(unlisted)} to shards that do not hold them")
        prefix = WRAPPER_PREFIX if files and all(key.startswith(WRAPPER_PREFIX) for key in files) else ""
        return cls(str(path), files, shapes, prefix)

    def keys(self) -> set[str]:
        """The file's keys, without the wrapper prefix."""
        return {key.removeprefix(self.prefix) for key in self.files}

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of tensor `key` (without the wrapper prefix) in the file."""
        return self.shapes[self.prefix + key]

    def rows(self, key: str, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        """Tensor `key`, or its rows [start, stop) read on their own."""
        from safetensors import safe_open

        path = self.files[self.prefix + key]
        if path not in self._handles:
            self._handles[path] = safe_open(str(path), framework="pt")
        tensor = self._handles[path].get_slice(self.prefix + key)
        return tensor[start:stop] if start is not None else tensor[:]


# --- loading ----------------------------------------------------------------------------------------------


def weights_path(weights: ReleasedWeights, model_dir: Path | str | None, field_path: str = "init_from") -> Path:
    """The file (or index) `weights` names, found in the model directory; errors say where it was expected."""
    from runtime.encoders.model_directory import ModelDirectory, folder_name

    if model_dir is None:
        raise ReleasedWeightsError(
            f"{field_path} names released weights {weights.released!r}, and no model directory was given: pass "
            f"--model-dir DIR (GENSPEC_MODEL_DIR in the bundle's scripts) holding the folder "
            f"{folder_name(weights.released)!r}"
        )
    directory = ModelDirectory(model_dir)
    entry = directory.entry(weights.released)
    if entry.path is None or not entry.path.is_dir():
        where = (f"models.yaml maps it to {entry.path}, which is not a folder" if entry.mapped else
                 f"put the model's folder at {directory.root / folder_name(weights.released)} (or "
                 f"{directory.root / weights.released}, or the Hugging Face hub cache's "
                 f"models--{folder_name(weights.released)}/snapshots/REVISION), or map the id in models.yaml")
        raise ReleasedWeightsError(f"{field_path}: no weights for {weights.released!r} in the model directory: {where}")
    folder = entry.path / weights.subfolder if weights.subfolder else entry.path
    if not folder.is_dir():
        raise ReleasedWeightsError(
            f"{field_path}.subfolder is {weights.subfolder!r} but {entry.path} has no such folder; it holds "
            f"{sorted(p.name for p in entry.path.iterdir())}"
        )
    if weights.file:
        path = folder / weights.file
        if not path.is_file():
            raise ReleasedWeightsError(f"{field_path}.file is {weights.file!r} but {path} does not exist")
        return path
    for name in (DIFFUSERS_INDEX, DIFFUSERS_FILE):
        if (folder / name).is_file():
            return folder / name
    present = sorted(p.name for p in folder.iterdir() if p.name.endswith((".safetensors", ".index.json")))
    raise ReleasedWeightsError(
        f"{field_path}: {folder} has neither {DIFFUSERS_INDEX} nor {DIFFUSERS_FILE}; set {field_path}.file to the "
        f"weights file (safetensors there: {present or 'none'})"
    )


def load_released(module: nn.Module, weights: ReleasedWeights, model_dir: Path | str | None,
                  allow_missing: bool = False, field_path: str = "init_from") -> list[str]:
    """Load released weights into `module` (a network, or the trainer's ModelAdapter around one), checked key by
    key and shape by shape before anything is copied. Returns the network parameters the file does not hold,
    which only `allow_missing` accepts (guidance distillation adds a guidance embedding)."""
    path = weights_path(weights, model_dir, field_path)
    checkpoint = Checkpoint.open(path)
    network = _network(module)
    targets = dict(network.state_dict(keep_vars=True))
    shapes = {name: tuple(getattr(t, "ds_shape", t.shape)) for name, t in targets.items()}
    plan, missing = _plan(weights.layout, shapes, checkpoint.keys())
    _check(checkpoint, weights, plan, missing, shapes, allow_missing)
    rank = _rank()
    with torch.no_grad():
        for name, source in plan.items():
            _copy(targets[name], lambda name=name, source=source: _read(checkpoint, source, name, shapes), rank)
    if rank == 0:
        print(f"{field_path}: {weights.released} ({weights.layout}) from {path}: {len(plan)} tensors loaded"
              + (f", {len(missing)} start fresh: {_names(missing)}" if missing else ""), file=sys.stderr)
    return missing


def _network(module: nn.Module) -> nn.Module:
    from runtime.models.factory import ModelAdapter

    return module.model if isinstance(module, ModelAdapter) else module


def _plan(layout: str, shapes: dict[str, tuple[int, ...]], keys: set[str]) -> tuple[dict[str, Source], list[str]]:
    """Each network parameter's source in the file, and the parameters the file lacks."""
    plan, missing = {}, []
    for name in shapes:
        source = LAYOUTS[layout](name)
        if source is None or source.key not in keys:
            missing.append(name)
        else:
            plan[name] = source
    return plan, missing


def _check(checkpoint: Checkpoint, weights: ReleasedWeights, plan: dict[str, Source], missing: list[str],
           shapes: dict[str, tuple[int, ...]], allow_missing: bool) -> None:
    first_use = {}  # file key -> the first parameter read from it
    for name, source in plan.items():
        first_use.setdefault(source.key, name)
    unexpected = sorted(checkpoint.keys() - set(first_use))
    if unexpected or (missing and not allow_missing):
        lacking = [_as_named(name, weights.layout) for name in missing]
        raise ReleasedWeightsError(
            f"{checkpoint.location} ({weights.released}, layout {weights.layout!r}) does not fit the spec's network: "
            f"missing {len(missing)} (the network has them, the file does not): {_names(lacking)}; "
            f"unexpected {len(unexpected)} (in the file, not in the network): {_names(unexpected)}. Check the "
            "layout and the architecture (block counts, guidance embedding) against the released model"
        )
    wrong = []
    for key, name in sorted(first_use.items()):
        expected = _file_shape(plan[name], name, shapes)
        if checkpoint.shape(key) != expected:
            wrong.append(f"{key}: expected {expected}, found {checkpoint.shape(key)}")
    if wrong:
        raise ReleasedWeightsError(
            f"{checkpoint.location} ({weights.released}): {len(wrong)} tensor(s) have another shape than the spec's "
            f"architecture gives: {'; '.join(wrong[:SHOWN])}{' ...' if len(wrong) > SHOWN else ''}. The file was "
            "written for another size of the model: check hidden size, heads, MLP ratio and channels"
        )


def _as_named(name: str, layout: str) -> str:
    """A missing parameter with the file key it was looked for under, where the layout renames it."""
    source = LAYOUTS[layout](name)
    if source is None:
        return f"{name} (no {layout} counterpart)"
    return name if source.key == name else f"{name} (as {source.key})"


def _file_shape(source: Source, name: str, shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    """The shape `source.key` must have in the file: the parameter's, or its fused parts stacked on dim 0."""
    if not source.fused:
        return shapes[name]
    parts = [shapes[part] for part in source.fused if part in shapes]  # a part the network lacks: a wrong shape
    return (sum(shape[0] for shape in parts), *parts[0][1:])


def _read(checkpoint: Checkpoint, source: Source, name: str, shapes: dict[str, tuple[int, ...]]) -> torch.Tensor:
    if source.fused:
        start = sum(shapes[part][0] for part in source.fused[: source.fused.index(name)])
        return checkpoint.rows(source.key, start, start + shapes[name][0])
    if source.swap_halves:
        half = shapes[name][0] // 2
        return torch.cat([checkpoint.rows(source.key, half, 2 * half), checkpoint.rows(source.key, 0, half)])
    return checkpoint.rows(source.key)


def _copy(param: torch.Tensor, read, rank: int) -> None:
    """Copy read() into `param`; a ZeRO-3 partitioned parameter is gathered, rank 0 writes, it re-partitions."""
    if hasattr(param, "ds_id"):
        import deepspeed

        context = deepspeed.zero.GatheredParameters([param], modifier_rank=0)
    else:
        context = contextlib.nullcontext()
    with context:
        if rank == 0 or not hasattr(param, "ds_id"):
            param.data.copy_(read())


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _names(keys: list[str]) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:SHOWN]) + (f" ... ({len(keys) - SHOWN} more)" if len(keys) > SHOWN else "")
