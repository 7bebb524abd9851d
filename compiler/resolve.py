"""The overrides and resolve passes: overrides applied, derived values filled, and the values later passes
need checked. compiler/pipeline.py runs them after the scale pass, so an override wins over a smoke value.

Passes, in order:
  1. overrides   `--set PATH=VALUE` (apply_overrides): VALUE parsed as a YAML scalar or flow collection
                 (never eval'd or imported), put at PATH, and coerced through the field's type by
                 re-validation. Each override is recorded with status `override`.
  2. derive      values the spec leaves implicit but the runtime needs, each with status `derived`
                 and the rule that produced it.
  3. needs       every leaf the planner and runtime read must hold a value; an undisclosed one is
                 listed with the `--set` that supplies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from compiler.document import PathError, Table, apply_changes, from_document, to_document, walk_leaves
from compiler.schema.provenance import Node, Provenance
from compiler.schema.spec import Spec


class OverrideError(ValueError):
    """A `--set` that cannot be applied: bad syntax, unknown path, or a value of the wrong type."""


@dataclass(frozen=True)
class Missing:
    """A value a later pass needs that the spec does not give."""

    path: str
    status: str

    def __str__(self) -> str:
        return (f"{self.path} is {self.status}; supply it with --set {self.path}=VALUE "
                "or state an assumption in the spec")


@dataclass(frozen=True)
class Resolved:
    """A spec with derived values applied, its provenance table, and what it still lacks."""

    spec: Spec
    table: Table
    missing: tuple[Missing, ...] = field(default=())


# 1. overrides ------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[str, Any]:
    """'schedule.stages[pretrain].steps=1000' -> ('schedule.stages[pretrain].steps', 1000)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    path, sep, raw = text.partition("=")
    if not sep or not path.strip():
        raise OverrideError(f"--set {text!r}: expected PATH=VALUE, e.g. schedule.stages[pretrain].steps=1000")
    try:
        value = YAML(typ="safe", pure=True).load(raw) if raw.strip() else ""
    except YAMLError as error:
        raise OverrideError(f"--set {text!r}: VALUE is not a YAML scalar or flow collection: "
                            f"{' '.join(str(error).split())}") from error
    return path.strip(), value


def apply_overrides(spec: Spec, overrides: list[str] | tuple[str, ...]) -> Spec:
    """The spec with each `PATH=VALUE` applied, in order, each recorded as an override."""
    from compiler.diagnostic import field_diagnostics

    if not overrides:
        return spec
    data, table = to_document(spec)
    for text in overrides:
        path, value = parse_override(text)
        reason = Provenance(status="override", reason=f"--set {path}={value!r}")
        try:
            data, table = apply_changes(data, table, {path: value}, reason)
        except PathError as error:
            raise OverrideError(f"--set {text!r}: {error}") from error
    try:
        return from_document(data, table)
    except ValidationError as error:
        details = "; ".join(f"{d.path}: {d.message}" for d in field_diagnostics(error, data))
        raise OverrideError(f"--set gave a value the schema rejects: {details}") from error
    except PathError as error:
        raise OverrideError(f"--set: {error}") from error


# 2. derived values -------------------------------------------------------------------------------


def _derive(spec: Spec) -> Spec:
    changes: dict[str, Any] = {}
    backbone = spec.architecture.backbone
    if getattr(backbone, "ffn_dim", 0) is None:
        changes["architecture.backbone.ffn_dim"] = (
            int(backbone.hidden_size * backbone.mlp_ratio),
            f"hidden_size {backbone.hidden_size} x mlp_ratio {backbone.mlp_ratio:g}",
        )
    dropout = spec.objective.cfg_dropout
    encoders = [e.name for e in spec.architecture.text_encoders]
    if dropout is not None and not dropout.per_encoder and len(encoders) > 1:
        # Independent drops at p^(1/k) each make all k encoders drop together at rate p.
        each = dropout.joint_rate ** (1 / len(encoders))
        changes["objective.cfg_dropout.per_encoder"] = (
            {name: round(each, 6) for name in encoders},
            f"joint rate {dropout.joint_rate:g} over {len(encoders)} independently dropped encoders: "
            f"p^(1/k) = {each:.4f} each",
        )
    if not changes:
        return spec
    data, table = to_document(spec)
    for path, (value, why) in changes.items():
        data, table = apply_changes(data, table, {path: value}, Provenance(status="derived", reason=why))
    return from_document(data, table)


# 3. needs ----------------------------------------------------------------------------------------

# Fields the planner, emitter and runtime read, per schema class. They must hold a value stated by the
# spec (documented, likely or assumed): a genspec default is not good enough for a model's dimensions.
_BACKBONE = ("hidden_size", "num_heads", "head_dim", "patch_size", "in_channels", "out_channels")
_ROPE = ("axes", "axes_dims")
NEEDED: dict[str, tuple[str, ...]] = {
    "MMDiT": _BACKBONE + ("double_blocks", "single_blocks", "context_dim"),
    "DiT": _BACKBONE + ("depth", "text_dim"),
    "SpacetimeDiT": _BACKBONE + ("depth", "text_dim"),
    "UNetStage": ("resolution", "channels", "channel_mult", "res_blocks"),
    "LatentSpace": ("channels", "spatial_compression", "temporal_compression", "causal"),
    "Rope": _ROPE,
    "MSRope": _ROPE,
    "ScaledRope": _ROPE,
    "TextEncoder": ("model", "role", "dim", "max_tokens"),
    "Stage": ("batch_size", "steps", "optimizer"),
    "Size": ("height", "width"),
    "AdamW": ("lr",),
    "Adam": ("lr",),
    "Adafactor": ("lr",),
    "InferenceSpec": ("sampler", "steps"),
    "Aesthetic": ("min_score",),
}


def needed_leaves(spec: Spec) -> list[tuple[str, Node, str, Any]]:
    """Every leaf a later pass reads, as (path, node, field, value)."""
    return [
        (path, node, name, value)
        for path, node, name, value in walk_leaves(spec)
        if name in NEEDED.get(type(node).__name__, ()) and not _not_applicable(node, name)
    ]


def _not_applicable(node: Node, name: str) -> bool:
    # An aesthetic op that only scores (or conditions) has no threshold to apply.
    return type(node).__name__ == "Aesthetic" and name == "min_score" and node.use in ("condition", "score_only")


def find_missing(spec: Spec) -> list[Missing]:
    """Needed leaves that hold no value (undisclosed, or empty)."""
    missing = []
    for path, node, name, value in needed_leaves(spec):
        provenance = node.provenance_of(name)
        if value is None:
            missing.append(Missing(path, provenance.status if provenance else "empty"))
    return missing


def resolve(spec: Spec) -> Resolved:
    """Derive values and find the missing ones of a spec whose overrides are applied (apply_overrides).
    Missing values are reported, not raised: the checks make them errors."""
    from compiler.document import provenance_table

    resolved = _derive(spec)
    return Resolved(resolved, provenance_table(resolved), tuple(find_missing(resolved)))
