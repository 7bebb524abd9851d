"""A spec as a document: plain data plus a provenance table keyed by path, and edits by path.

Paths read like `data.pipelines[main].ops[aesthetic].min_score`: fields joined by dots, list items
selected by their `name` (or by index, `stages[0]`). The same paths key the provenance table, the
`--set` overrides, version derivation (`derive`), diagnostics and diffs.

Passes:
  to_document    Spec -> (data, table): `model_dump(mode="json")` and a walk collecting each leaf's provenance
  from_document  (data, table) -> Spec: pydantic validation, then each table entry put back on its node
  apply_changes  (data, table) + {path: value} -> (data, table): set, insert or remove at a path
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from compiler.schema.provenance import IDENTITY_FIELDS, Node, Provenance, Sourced, is_branch
from compiler.schema.spec import Spec

Table = dict[str, Provenance]

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[[^\]]+\])*)")


class PathError(ValueError):
    """A path that does not name anything in the spec."""


@dataclass(frozen=True)
class Insert:
    """Add a list item at a new `[name]` path, after the item named `after` (or at the end)."""

    item: Any
    after: str | None = None


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"


REMOVE = _Remove()


# Paths ----------------------------------------------------------------------------------------------


def parse_path(path: str) -> list[str | tuple[str]]:
    """Split a path into field names (str) and list selectors (1-tuples)."""
    parts: list[str | tuple[str]] = []
    for raw in path.split("."):
        match = _SEGMENT.fullmatch(raw)
        if not match:
            raise PathError(f"bad path segment {raw!r} in {path!r}: expected field or field[name]")
        parts.append(match.group(1))
        parts.extend((sel,) for sel in re.findall(r"\[([^\]]+)\]", match.group(2)))
    return parts


def item_key(item: Any, index: int) -> str:
    """How a list item shows in a path: its name, else its index."""
    name = item.get("name") if isinstance(item, dict) else getattr(item, "name", None)
    return str(name) if name else str(index)


def _select(items: list[Any], selector: str, path: str) -> int:
    for index, item in enumerate(items):
        if item_key(item, index) == selector:
            return index
    if selector.isdigit() and int(selector) < len(items):
        return int(selector)
    raise PathError(f"no item [{selector}] at {path!r}: {_selectors(items)}")


def _selectors(items: list[Any]) -> str:
    """What selects an item of `items`, in words: names where the items have them, else indexes."""
    if not items:
        return "the list is empty"
    named = [item_key(item, i) for i, item in enumerate(items) if item_key(item, i) != str(i)]
    if len(named) == len(items):
        return f"items are selected by name: {', '.join(named)}"
    if not named:
        return f"these items have no names: select them by index, 0 to {len(items) - 1}"
    keys = ", ".join(item_key(item, i) for i, item in enumerate(items))
    return f"items are selected by name, or by index where they have none: {keys}"


# Spec -> document -----------------------------------------------------------------------------------


def walk_leaves(node: Node, prefix: str = "") -> Iterator[tuple[str, Node, str, Any]]:
    """Every leaf under `node` as (path, owning node, field name, value), in declaration order."""
    for field in type(node).model_fields:
        value = getattr(node, field)
        path = f"{prefix}.{field}" if prefix else field
        if isinstance(value, Node):
            yield from walk_leaves(value, path)
        elif is_branch(value):
            for index, item in enumerate(value):
                yield from walk_leaves(item, f"{path}[{item_key(item, index)}]")
        elif field not in IDENTITY_FIELDS:
            yield path, node, field, value


def provenance_table(spec: Node) -> Table:
    """Path -> provenance for every leaf that has one."""
    table: Table = {}
    for path, node, field, _ in walk_leaves(spec):
        provenance = node.provenance_of(field)
        if provenance is not None:
            table[path] = provenance
    return table


def to_document(spec: Spec) -> tuple[dict[str, Any], Table]:
    """The spec as JSON-compatible data and its provenance table."""
    return spec.model_dump(mode="json"), provenance_table(spec)


# Document -> spec -----------------------------------------------------------------------------------


def from_document(data: dict[str, Any], table: Table | None = None) -> Spec:
    """Validate data into a Spec and restore each leaf's provenance from the table."""
    spec = Spec.model_validate(data)
    for path, provenance in (table or {}).items():
        node, field = _locate_leaf(spec, path)
        node._provenance[field] = provenance
    return spec


def _locate_leaf(spec: Node, path: str) -> tuple[Node, str]:
    parts = parse_path(path)
    node: Any = spec
    for position, part in enumerate(parts[:-1]):
        if isinstance(part, tuple):
            node = node[_select(node, part[0], path)]
        elif isinstance(node, Node) and part in type(node).model_fields:
            node = getattr(node, part)
        else:
            raise PathError(f"provenance entry {path!r}: nothing at {part!r}")
        if position == len(parts) - 2 and not isinstance(node, Node):
            break
    field = parts[-1]
    if not isinstance(node, Node) or isinstance(field, tuple) or field not in type(node).model_fields:
        raise PathError(f"provenance entry {path!r} does not name a field of the spec")
    return node, field


# Edits ----------------------------------------------------------------------------------------------


def apply_changes(data: dict[str, Any], table: Table, changes: dict[str, Any], reason: Provenance | None = None) -> tuple[dict[str, Any], Table]:
    """Apply {path: value} to a document. Values may be Sourced, Node, Insert or REMOVE.

    A plain value takes `reason` as its provenance (for `--set`: an override); a Sourced value its own;
    a Node keeps the provenance recorded on its leaves.
    """
    import copy

    data = copy.deepcopy(data)
    table = dict(table)
    for path, value in changes.items():
        _drop_table_under(table, path)
        if value is REMOVE:
            _remove(data, path)
            continue
        insert_after: str | None = None
        insert = isinstance(value, Insert)
        if insert:
            insert_after, value = value.after, value.item
        provenance = reason
        if isinstance(value, Sourced):
            provenance, value = value.provenance, value.value
        if isinstance(value, Node):
            plain = value.model_dump(mode="json")
            sub_table = provenance_table(value.with_provenance(provenance) if provenance else value)
            _assign(data, path, plain, insert, insert_after)
            table.update({f"{path}{_join(sub)}": prov for sub, prov in sub_table.items()})
        else:
            if isinstance(value, (list, tuple)) and value and all(isinstance(v, Node) for v in value):
                nodes = [v.with_provenance(provenance) if provenance else v for v in value]
                _assign(data, path, [v.model_dump(mode="json") for v in nodes], insert, insert_after)
                for index, node in enumerate(nodes):
                    for sub, prov in provenance_table(node).items():
                        table[f"{path}[{item_key(node, index)}].{sub}"] = prov
                continue
            renamed = _rename_target(data, path) if path.endswith(".name") else None
            _assign(data, path, value, insert, insert_after)
            if provenance is not None and not path.endswith(".name"):
                table[path] = provenance
            if renamed is not None:
                _rekey(table, renamed, f"{renamed.rsplit('[', 1)[0]}[{value}]")
    return data, table


def _rename_target(data: dict[str, Any], path: str) -> str | None:
    """For `...items[old].name`, the item's current path `...items[old]`; None if not a list item."""
    item_path = path[: -len(".name")]
    return item_path if item_path.endswith("]") and _SEGMENT.fullmatch(item_path.rsplit(".", 1)[-1]) else None


def _rekey(table: Table, old: str, new: str) -> None:
    """Move provenance entries from an item's old path to its new one after a rename."""
    for key in [k for k in table if k.startswith(old + ".") or k.startswith(old + "[")]:
        table[new + key[len(old):]] = table.pop(key)


def _join(sub: str) -> str:
    return "." + sub if not sub.startswith("[") else sub


def _drop_table_under(table: Table, path: str) -> None:
    for key in [k for k in table if k == path or k.startswith(path + ".") or k.startswith(path + "[")]:
        del table[key]


def _parent(data: dict[str, Any], parts: list[str | tuple[str]], path: str) -> Any:
    node: Any = data
    walked = ""
    for part in parts[:-1]:
        if isinstance(part, tuple):
            if not isinstance(node, list):
                raise PathError(f"{path!r}: {walked!r} is not a list, so [{part[0]}] selects nothing")
            node = node[_select(node, part[0], walked)]
            walked += f"[{part[0]}]"
        else:
            if not isinstance(node, dict) or part not in node:
                known = ", ".join(node) if isinstance(node, dict) else "(not a mapping)"
                raise PathError(f"{path!r}: no field {part!r} under {walked or 'the spec'!r}; fields: {known}")
            node = node[part]
            walked += f".{part}" if walked else part
    return node


def _assign(data: dict[str, Any], path: str, value: Any, insert: bool, after: str | None) -> None:
    parts = parse_path(path)
    parent = _parent(data, parts, path)
    last = parts[-1]
    if isinstance(last, tuple):
        if not isinstance(parent, list):
            raise PathError(f"{path!r}: [{last[0]}] selects from a list, and this is not one")
        names = [item_key(item, i) for i, item in enumerate(parent)]
        if insert:
            if last[0] in names:
                raise PathError(f"{path!r}: an item named {last[0]!r} exists already; set it without Insert")
            if isinstance(value, dict):
                value = {**value, "name": value.get("name") or last[0]}
            position = len(parent) if after is None else _select(parent, after, path) + 1
            parent.insert(position, value)
        else:
            parent[_select(parent, last[0], path)] = value
        return
    if insert:
        raise PathError(f"{path!r}: Insert needs a path ending in [name]")
    if not isinstance(parent, dict) or last not in parent:
        known = ", ".join(parent) if isinstance(parent, dict) else "(not a mapping)"
        raise PathError(f"{path!r}: no field {last!r}; fields here: {known}")
    parent[last] = value


def _remove(data: dict[str, Any], path: str) -> None:
    parts = parse_path(path)
    parent = _parent(data, parts, path)
    last = parts[-1]
    if isinstance(last, tuple) and isinstance(parent, list):
        del parent[_select(parent, last[0], path)]
    else:
        raise PathError(f"{path!r}: REMOVE takes a list item path ending in [name]")


def derive(base: Spec, changes: dict[str, Any], **metadata: Any) -> Spec:
    """A new version of `base` that states only what changed: `{path: value}` plus new metadata.

    `name` and other top-level metadata come as keyword arguments; `derived_from` is set to base's name.
    """
    data, table = to_document(base)
    metadata = {"derived_from": base.name, **metadata}
    data, table = apply_changes(data, table, {**changes, **{k: v for k, v in metadata.items()}})
    try:
        return from_document(data, table)
    except ValidationError as error:
        raise ValueError(f"deriving {metadata.get('name', '?')} from {base.name}: {error}") from error
