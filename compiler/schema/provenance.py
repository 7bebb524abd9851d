"""Where every value in a spec comes from.

A spec author writes plain values wrapped in one of four markers::

    hidden_size=documented(3072, FLUX_UTIL)      # a public source states it
    loss=likely(FlowMatching(), SORA_REPORT)      # the source hedges
    depth=assumed(28, "sized to land near the 3x Hailuo 01 claim")
    params_documented=undisclosed("MiniMax has not published it")

`Node` (the base of every schema class) strips the markers while validating and keeps the
provenance beside the values, per field. A marker around a whole sub-node (or a list of them)
becomes the provenance of every leaf inside that the author set explicitly. Fields the author
left at their schema default get status `default`. The resolve pass adds `derived` and `override`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator

Status = Literal["documented", "likely", "assumed", "undisclosed", "default", "derived", "override"]

# Statuses a spec author may write; the others are produced by the compiler.
AUTHORED_STATUSES = ("documented", "likely", "assumed", "undisclosed")

# Fields that identify an element rather than state a fact about the model.
IDENTITY_FIELDS = frozenset({"name", "derived_from"})


class Provenance(BaseModel):
    """The origin of one value: its status and the source or reason behind it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Status
    source: str | None = None  # documented / likely: the citation
    reason: str | None = None  # assumed / undisclosed / default / derived / override: why

    @model_validator(mode="after")
    def _check_status_fields(self) -> Provenance:
        if self.status in ("documented", "likely") and not self.source:
            raise ValueError(f"provenance '{self.status}' needs a source: say where the value is stated")
        if self.status in ("assumed", "derived", "override") and not self.reason:
            raise ValueError(f"provenance '{self.status}' needs a reason: say why this value was chosen")
        return self

    def describe(self) -> str:
        """One line for comments, tables and `genspec explain`."""
        detail = self.source or self.reason
        return f"{self.status}: {detail}" if detail else self.status


@dataclass(frozen=True)
class Sourced:
    """A value carrying its provenance until a `Node` takes it apart."""

    value: Any
    provenance: Provenance


def documented(value: Any, source: str) -> Sourced:
    """A value a public source states; `source` names it (document and section, or repo and path)."""
    return Sourced(value, Provenance(status="documented", source=source))


def likely(value: Any, source: str) -> Sourced:
    """A value the source hedges on ("likely", "probably"); `source` names where."""
    return Sourced(value, Provenance(status="likely", source=source))


def assumed(value: Any, reason: str) -> Sourced:
    """An engineering choice that makes the spec runnable where no source gives the value."""
    return Sourced(value, Provenance(status="assumed", reason=reason))


def undisclosed(reason: str = "not disclosed by the authors") -> Sourced:
    """No value: the authors have not published it. Compiling a target that needs it is an error."""
    return Sourced(None, Provenance(status="undisclosed", reason=reason))


class Node(BaseModel):
    """Base of every schema class: frozen, strict about unknown keys, provenance per field."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    _provenance: dict[str, Provenance] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _lift_provenance(cls, data: Any, handler: Any) -> Any:
        if not isinstance(data, dict):
            return handler(data)
        plain: dict[str, Any] = {}
        marks: dict[str, Provenance] = {}
        for key, value in data.items():
            if isinstance(value, Sourced):
                marks[key] = value.provenance
                value = _stamp(value.value, value.provenance)
            elif isinstance(value, (list, tuple)) and any(isinstance(v, Sourced) for v in value):
                value = [_unwrap_item(key, v) for v in value]
            plain[key] = value
        node = handler(plain)
        for key, provenance in marks.items():
            value = getattr(node, key, None)
            if key in IDENTITY_FIELDS:
                continue
            if is_branch(value):
                # A marked plain value that validated into a sub-node (a side into a Size): mark its leaves.
                node.__dict__[key] = _stamp(value, provenance)
            else:
                node._provenance[key] = provenance
        for field in type(node).model_fields:
            if field in node.model_fields_set or field in IDENTITY_FIELDS:
                continue
            value = getattr(node, field)
            if is_branch(value):
                # A default sub-node may be a shared instance: give this node its own copy.
                node.__dict__[field] = _stamp(value, _default_provenance(type(node), field))
            else:
                node._provenance.setdefault(field, _default_provenance(type(node), field))
        return node

    def provenance_of(self, field: str) -> Provenance | None:
        """The provenance of one leaf field of this node, or None if nobody recorded one."""
        return self._provenance.get(field)

    def with_provenance(self, provenance: Provenance) -> Node:
        """A copy in which every explicitly set leaf without a provenance gets `provenance`."""
        copy = self.model_copy(deep=True)
        _fill(copy, provenance)
        return copy


def _default_provenance(cls: type[Node], field: str) -> Provenance:
    info = cls.model_fields[field]
    reason = f"genspec default for {cls.__name__}.{field}"
    if info.description:
        reason += f" ({info.description})"
    return Provenance(status="default", reason=reason)


def is_branch(value: Any) -> bool:
    """True for a sub-node or a non-empty list of sub-nodes: provenance lives on their leaves."""
    if isinstance(value, Node):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, Node) for v in value)


def _unwrap_item(key: str, item: Any) -> Any:
    """A marker on one list item: allowed for sub-nodes, whose leaves take its provenance."""
    if not isinstance(item, Sourced):
        return item
    if not isinstance(item.value, Node):
        raise ValueError(
            f"{key}: a provenance marker on a single list item needs a sub-node, got {item.value!r}; "
            "mark the whole list instead"
        )
    return item.value.with_provenance(item.provenance)


def _stamp(value: Any, provenance: Provenance) -> Any:
    """Push a marker's provenance down into a sub-node (or a list of them)."""
    if isinstance(value, Node):
        return value.with_provenance(provenance)
    if is_branch(value):
        return type(value)(v.with_provenance(provenance) for v in value)
    return value


def _fill(node: Node, provenance: Provenance) -> None:
    """Give `provenance` to every leaf the author set that has no status yet, and to the kind."""
    for field in type(node).model_fields:
        value = getattr(node, field)
        if is_branch(value) and field not in node.model_fields_set:
            continue  # a default sub-node keeps its default provenance
        if isinstance(value, Node):
            _fill(value, provenance)
        elif is_branch(value):
            for item in value:
                _fill(item, provenance)
        elif field in IDENTITY_FIELDS:
            continue
        elif field == "kind" and _is_default(node._provenance.get(field)):
            node._provenance[field] = provenance  # the marker states what kind of thing this is
        elif field in node.model_fields_set and node._provenance.get(field) is None:
            node._provenance[field] = provenance


def _is_default(provenance: Provenance | None) -> bool:
    return provenance is None or provenance.status == "default"
