"""docs/reference.md: every schema type and field a spec author (or a cluster file) can write, generated.

    python -m compiler.reference          rewrite docs/reference.md (also run by `make regen`)
    python -m compiler.reference --check  exit 1 when docs/reference.md differs from the schema

Passes:
  1. types     every pydantic model reachable from Spec and Cluster, breadth first, in field order
  2. columns   per field: its type and allowed values (Literal choices, bounds), unit, default, what the
               planner does with it (compiler/plan/fields.py) and what the runtime supports of it
               (compiler/schema/support.py: the runtime's own declaration, checked by tests/runtime)
  3. render    one section per type, a table per section; the output is deterministic
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from compiler.plan.fields import planner_use
from compiler.schema import support
from compiler.schema.architecture import Backbone, Cascade, DiT, LearnedPositions, MMDiT, MSRope, Rope, ScaledRope
from compiler.schema.cluster import Cluster
from compiler.schema.data import Op
from compiler.schema.objective import ObjectiveBase
from compiler.schema.spec import Spec

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
ROOTS: tuple[type[BaseModel], ...] = (Spec, Cluster)

# Units by field name; a field whose name ends in a unit suffix gets it from UNIT_SUFFIXES.
UNITS = {
    "hidden_size": "features", "head_dim": "features", "context_dim": "features", "pooled_dim": "features",
    "text_dim": "features", "freq_dim": "features", "ffn_dim": "features", "dim": "features",
    "channels": "channels", "in_channels": "channels", "out_channels": "channels",
    "patch_size": "latent cells (t, h, w)", "spatial_compression": "pixels per latent cell",
    "temporal_compression": "frames per latent frame", "resolution": "px", "input_resolution": "px",
    "train_crop": "px", "attention_resolutions": "px (feature-map side)", "reference_grid": "positions per axis",
    "axes_dims": "features per axis", "max_tokens": "tokens", "params": "parameters",
    "params_documented": "parameters", "reward_model_params": "parameters", "batch_size": "samples",
    "steps": "steps", "warmup_steps": "steps", "student_steps": "sampling steps", "train_steps": "steps",
    "checkpoint_every": "steps", "validation_every": "steps", "frames": "frames", "frame_buckets": "frames",
    "aspect_ratios": "width:height -> fraction", "fps": "frames/s",
    "min_fps": "frames/s", "memory_gib": "GiB", "memory_gib_per_node": "GiB", "peak_bf16_tflops": "TFLOP/s",
    "cpu_peak_tflops": "TFLOP/s", "storage_write_gbps": "GB/s (aggregate)",
    "device_hours_per_interruption": "device-hours", "memory_headroom": "fraction",
    "lr": "learning rate", "weight": "fraction", "fraction": "fraction", "joint_rate": "probability",
    "count": "items", "kept_count": "items", "depth": "blocks", "double_blocks": "blocks",
    "single_blocks": "blocks", "nodes": "nodes", "gpus_per_node": "GPUs", "cpus_per_node": "CPU cores",
    "width": "px", "height": "px", "max_hamming": "bits", "hash_bits": "bits",
}
UNIT_SUFFIXES = {"_px": "px", "_seconds": "s", "_fraction": "fraction", "_ratio": "ratio"}
NO_PLAN = "—"
THROUGH_FIELDS = "through its fields"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for argument in typing.get_args(annotation) for model in _models_in(argument)]


def schema_types(roots: tuple[type[BaseModel], ...] = ROOTS) -> list[type[BaseModel]]:
    """Every model reachable from `roots`, breadth first in field order, each once."""
    found: list[type[BaseModel]] = []
    queue = list(roots)
    while queue:
        model = queue.pop(0)
        if model in found:
            continue
        found.append(model)
        for field in model.model_fields.values():
            queue += _models_in(field.annotation)
    return found


def _anchor(model: type[BaseModel]) -> str:
    return f"[{model.__name__}](#{model.__name__.lower()})"


def type_text(annotation: Any) -> str:
    """A field's type in words: models link to their section, Literals list their choices."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _anchor(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in arguments)
    if origin is typing.Annotated:
        return type_text(arguments[0])
    if origin in (Union, types.UnionType):
        options = [a for a in arguments if a is not type(None)]
        text = " or ".join(type_text(a) for a in options)
        return text + (" or null" if len(options) < len(arguments) else "")
    if origin is list:
        return f"list of {type_text(arguments[0])}"
    if origin is dict:
        return f"map of {type_text(arguments[0])} to {type_text(arguments[1])}"
    if origin is tuple:
        return "(" + ", ".join(type_text(a) for a in arguments) + ")"
    return getattr(annotation, "__name__", str(annotation))


def bounds_text(field: FieldInfo) -> str:
    """Numeric bounds and length limits from the field's constraints, e.g. '> 0, <= 1'."""
    signs = {annotated_types.Gt: ("> ", "gt"), annotated_types.Ge: (">= ", "ge"), annotated_types.Lt: ("< ", "lt"),
             annotated_types.Le: ("<= ", "le"), annotated_types.MinLen: ("at least ", "min_length")}
    parts = []
    for constraint in field.metadata:
        for kind, (sign, attribute) in signs.items():
            if isinstance(constraint, kind):
                value = getattr(constraint, attribute)
                parts.append(f"{sign}{value:g}" + (" items" if attribute == "min_length" else ""))
    return ", ".join(parts)


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return f"{type(value).__name__} defaults"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, (list, dict, str)) and not value:
        return "empty"
    return f"`{value}`"


def unit_text(name: str) -> str:
    if name in UNITS:
        return UNITS[name]
    return next((unit for suffix, unit in UNIT_SUFFIXES.items() if name.endswith(suffix)), "")


def runtime_field_text(model: type[BaseModel], name: str) -> str:
    """What the runtime supports of a field when narrower than the schema, else every value."""
    narrower = support.field_support(model, name)
    if narrower is not None:
        return narrower
    if issubclass(model, Op) and name == "scorer":
        kind = model.model_fields["kind"].default
        scorers = support.OPS.get(kind, {})
        if support.ANY_SCORER not in scorers:
            named = [s + (" (smoke scale only)" if scorers[s].smoke_only else "") for s in sorted(scorers)]
            return ", ".join(named) if named else "none"
    return "all"


def runtime_type_text(model: type[BaseModel]) -> str | None:
    """What the runtime does with a whole type: builds a backbone or encoding, trains an objective, runs an
    op. None for types without a runtime counterpart of their own."""
    kind = model.model_fields["kind"].default if "kind" in model.model_fields else None
    if issubclass(model, Op):
        scorers = support.OPS.get(kind, {})
        if not scorers:
            return "not implemented: validate reports it"
        if support.ANY_SCORER not in scorers:
            return "implemented for the scorers listed under `scorer`"
        return "implemented" + (" (a stand-in at smoke scale only)" if support.op_smoke_only(kind) else "")
    if issubclass(model, MMDiT):
        styles = [f"`{key.split('/')[1]}` ({family.module})" for key, family in support.FAMILIES.items()
                  if key.startswith("mmdit/")]
        return "builds block styles " + ", ".join(styles)
    if issubclass(model, (DiT, Cascade)):
        family = support.FAMILIES.get(kind)
        return f"builds {family.module}" if family else "not built: validate reports it"
    if model in (LearnedPositions, Rope, MSRope, ScaledRope):
        return "built" if kind in support.POSITIONS else "built by no family: validate reports it"
    if issubclass(model, ObjectiveBase):
        weightings = support.OBJECTIVES.get(kind)
        return f"trained (loss weightings {', '.join(weightings)})" if weightings else "not trained: validate reports it"
    return None


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _section(model: type[BaseModel]) -> list[str]:
    doc = " ".join((model.__doc__ or "").split())
    lines = [f"## {model.__name__}", "", doc, ""]
    runtime = runtime_type_text(model)
    if runtime:
        lines += [f"Runtime: {runtime}.", ""]
    lines += ["| field | type and allowed values | unit | default | planner | runtime | description |",
              "|---|---|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        allowed = type_text(field.annotation)
        bounds = bounds_text(field)
        cells = [f"`{name}`", allowed + (f"; {bounds}" if bounds else ""), unit_text(name), default_text(field),
                 planner_use(model, name) or (THROUGH_FIELDS if _models_in(field.annotation) else NO_PLAN),
                 runtime_field_text(model, name), field.description or ""]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return lines + [""]


HEADER = """<!-- Generated by `python -m compiler.reference` (run by `make regen`) from compiler/schema,
compiler/plan/fields.py and compiler/schema/support.py. Do not edit: a test fails when this file drifts. -->

# Field reference

Every type a spec (`compiler.schema.Spec`) or a cluster file (`compiler.schema.cluster.Cluster`) is made of,
and every field. Columns:

- **type and allowed values**: a linked type, `one of` the accepted values, bounds (`> 0`); `or null` where
  a field may be left unset (an undisclosed value is null).
- **unit**: what the number counts.
- **default**: what an unset field takes; `required` fields have none.
- **planner**: what `genspec compile` plans from the field (parameters and FLOPs, tokens, memory, layout,
  checkpoint cadence); `—` where the field does not change the plan; `through its fields` for a nested type.
- **runtime**: what the runtime builds and runs of the field, from the runtime's declaration
  (compiler/schema/support.py); `all` where it supports every value the schema accepts. `genspec validate`
  reports a spec that uses something the runtime lacks.

Polymorphic fields (backbone, positions, ops, objective, ...) take one of several types, chosen by `kind`.
"""


def render() -> str:
    """docs/reference.md's text."""
    types_ = schema_types()
    index = ", ".join(_anchor(model) for model in types_)
    lines = [HEADER, f"Types: {index}.", ""]
    for model in types_:
        lines += _section(model)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/reference.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
        if current != text:
            print(f"{REFERENCE} is out of date: run python -m compiler.reference", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text, encoding="utf-8")
    print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
