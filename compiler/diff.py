"""Field-by-field, stage-by-stage differences between two specs, for review in a pull request.

Passes:
  1. pair      walk both specs together; list items are paired by identity (their name, then a kind
               that is unique among the unpaired), never by position
  2. classify  a pair whose `kind` differs is one replacement (score matching -> flow matching), not a
               pile of field edits; unpaired items are added or removed; paired items out of their
               relative order are moved; leaves differing in value or provenance are changed
  3. count     leaves that did not change are counted, not shown

Moves are the items outside a longest common subsequence of the paired names. Among several longest
ones, the kept set with the least total displacement, then the alphabetically first, is chosen: the
criterion does not depend on which spec is "before", so diff(b, a) mirrors diff(a, b).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any, Literal

from compiler.schema.provenance import IDENTITY_FIELDS, Node, Provenance, is_branch

ChangeKind = Literal["added", "removed", "changed", "replaced", "moved"]
SECTIONS = ("metadata", "data", "architecture", "objective", "schedule", "inference")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Change:
    """One difference. `before`/`after` are plain values (dicts for whole items)."""

    kind: ChangeKind
    path: str
    before: Any = None
    after: Any = None
    before_provenance: Provenance | None = None
    after_provenance: Provenance | None = None
    detail: str = ""

    @property
    def section(self) -> str:
        head = self.path.split(".")[0].split("[")[0]
        return head if head in SECTIONS else "metadata"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "section": self.section,
            "before": self.before,
            "after": self.after,
            "before_provenance": self.before_provenance.model_dump(exclude_none=True) if self.before_provenance else None,
            "after_provenance": self.after_provenance.model_dump(exclude_none=True) if self.after_provenance else None,
            "detail": self.detail,
        }


@dataclass
class SpecDiff:
    """All differences between spec `a` (before) and `b` (after)."""

    a: str
    b: str
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0

    def counts(self) -> dict[str, int]:
        counts = {kind: 0 for kind in ("added", "removed", "changed", "replaced", "moved")}
        for change in self.changes:
            counts[change.kind] += 1
        return counts

    def only(self, section: str | None) -> SpecDiff:
        if section is None:
            return self
        return SpecDiff(self.a, self.b, [c for c in self.changes if c.section == section], self.unchanged)

    def values_only(self) -> SpecDiff:
        """The value changes alone: provenance-only changes dropped (counted unchanged), provenance stripped."""
        kept = [replace(c, before_provenance=None, after_provenance=None) for c in self.changes
                if c.detail != "provenance only"]
        return SpecDiff(self.a, self.b, kept, self.unchanged + len(self.changes) - len(kept))

    def as_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "a": self.a,
            "b": self.b,
            "summary": {**self.counts(), "unchanged": self.unchanged},
            "changes": [c.as_dict() for c in self.changes],
        }


def diff(a: Node, b: Node) -> SpecDiff:
    """The differences from spec `a` to spec `b`."""
    result = SpecDiff(getattr(a, "name", "a"), getattr(b, "name", "b"))
    _diff_node(a, b, "", result)
    return result


# Pairing and classifying -------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A value as JSON-compatible data; for sub-nodes, only what the author stated (no defaults)."""
    if isinstance(value, Node):
        shown = {}
        for name in type(value).model_fields:
            field_value = getattr(value, name)
            provenance = value.provenance_of(name)
            if name in IDENTITY_FIELDS:
                if field_value and field_value != getattr(value, "kind", None):
                    shown[name] = field_value
            elif is_branch(field_value) or isinstance(field_value, Node):
                if nested := _plain(field_value):
                    shown[name] = nested
            elif provenance is None or provenance.status != "default":
                shown[name] = _plain(field_value)
        return shown
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _count_leaves(value: Any) -> int:
    if isinstance(value, Node):
        return sum(_count_leaves(getattr(value, f)) for f in type(value).model_fields if f not in IDENTITY_FIELDS)
    if is_branch(value):
        return sum(_count_leaves(v) for v in value)
    return 1


def _diff_node(a: Node, b: Node, path: str, out: SpecDiff) -> None:
    kind_a, kind_b = getattr(a, "kind", None), getattr(b, "kind", None)
    if type(a) is not type(b) or kind_a != kind_b:
        out.changes.append(Change(
            "replaced", path or "(spec)", _plain(a), _plain(b),
            a.provenance_of("kind"), b.provenance_of("kind"),
            detail=f"{kind_a or type(a).__name__} -> {kind_b or type(b).__name__}",
        ))
        return
    for name in type(a).model_fields:
        if name in IDENTITY_FIELDS:
            continue
        child = f"{path}.{name}" if path else name
        _diff_value(getattr(a, name), getattr(b, name), a, b, name, child, out)


def _diff_value(va: Any, vb: Any, a: Node, b: Node, name: str, path: str, out: SpecDiff) -> None:
    if isinstance(va, Node) and isinstance(vb, Node):
        _diff_node(va, vb, path, out)
    elif _is_named_list(va) and _is_named_list(vb):
        _diff_list(list(va), list(vb), path, out)
    elif is_branch(va) or is_branch(vb) or isinstance(va, Node) or isinstance(vb, Node):
        # A sub-node appearing or vanishing (None <-> Node), or an unnamed list of nodes: one leaf.
        _diff_leaf(_plain(va), _plain(vb), _leaf_provenance(a, name, va), _leaf_provenance(b, name, vb), path, out)
    else:
        _diff_leaf(va, vb, a.provenance_of(name), b.provenance_of(name), path, out)


def _leaf_provenance(node: Node, name: str, value: Any) -> Provenance | None:
    provenance = node.provenance_of(name)
    if provenance is None and isinstance(value, Node):
        provenance = value.provenance_of("kind")
    if provenance is None and is_branch(value) and not isinstance(value, Node):
        provenance = next((v.provenance_of(f) for v in value for f in type(v).model_fields if v.provenance_of(f)), None)
    return provenance


def _diff_leaf(va: Any, vb: Any, pa: Provenance | None, pb: Provenance | None, path: str, out: SpecDiff) -> None:
    if isinstance(va, tuple):
        va = list(va)
    if isinstance(vb, tuple):
        vb = list(vb)
    if va == vb and pa == pb:
        out.unchanged += 1
        return
    detail = "provenance only" if va == vb else ""
    out.changes.append(Change("changed", path, va, vb, pa, pb, detail))


def _is_named_list(value: Any) -> bool:
    return is_branch(value) and all(getattr(v, "name", None) for v in value)


def _pair(items_a: list[Node], items_b: list[Node]) -> list[tuple[int, int]]:
    """Index pairs: by equal name first, then by a kind unique among the still-unpaired items."""
    pairs = []
    names_b = {item.name: j for j, item in enumerate(items_b)}
    for i, item in enumerate(items_a):
        if item.name in names_b:
            pairs.append((i, names_b[item.name]))
    left_a = [i for i in range(len(items_a)) if i not in {p[0] for p in pairs}]
    left_b = [j for j in range(len(items_b)) if j not in {p[1] for p in pairs}]
    kinds_a = [getattr(items_a[i], "kind", None) for i in left_a]
    kinds_b = [getattr(items_b[j], "kind", None) for j in left_b]
    for i, kind in zip(left_a, kinds_a):
        if kind is not None and kinds_a.count(kind) == 1 and kinds_b.count(kind) == 1:
            pairs.append((i, left_b[kinds_b.index(kind)]))
    return sorted(pairs)


def _diff_list(items_a: list[Node], items_b: list[Node], path: str, out: SpecDiff) -> None:
    pairs = _pair(items_a, items_b)
    paired_a = {i for i, _ in pairs}
    paired_b = {j for _, j in pairs}
    for i, item in enumerate(items_a):
        if i not in paired_a:
            out.changes.append(Change("removed", f"{path}[{item.name}]", _plain(item), None,
                                      _leaf_provenance(item, "kind", item), None, _position(items_a, i)))
    for j, item in enumerate(items_b):
        if j not in paired_b:
            out.changes.append(Change("added", f"{path}[{item.name}]", None, _plain(item),
                                      None, _leaf_provenance(item, "kind", item), _position(items_b, j)))
    kept = _stable_pairs(pairs, items_a, items_b)
    for i, j in pairs:
        item_a, item_b = items_a[i], items_b[j]
        # A renamed item (paired by its kind) shows both names: [old=>new].
        label = item_a.name if item_a.name == item_b.name else f"{item_a.name}=>{item_b.name}"
        if item_a.name != item_b.name:
            out.changes.append(Change("changed", f"{path}[{label}].name", item_a.name, item_b.name,
                                      detail="renamed (paired by kind)"))
        if (i, j) not in kept:
            out.changes.append(Change("moved", f"{path}[{label}]", i, j,
                                      detail=f"{_position(items_a, i)} -> {_position(items_b, j)}"))
        _diff_node(item_a, item_b, f"{path}[{label}]", out)


def _position(items: list[Node], index: int) -> str:
    return "first" if index == 0 else f"after {items[index - 1].name}"


def _stable_pairs(pairs: list[tuple[int, int]], items_a: list[Node], items_b: list[Node]) -> set[tuple[int, int]]:
    """The pairs that keep their relative order: a longest chain increasing on both sides, chosen
    by a criterion symmetric in the two sides (least displacement, then the pairs' names)."""
    if len(pairs) <= 1:
        return set(pairs)

    def names(chain: tuple[tuple[int, int], ...]) -> list[tuple[str, str]]:
        return sorted(tuple(sorted((items_a[i].name, items_b[j].name))) for i, j in chain)

    for size in range(len(pairs), 0, -1):
        chains = [c for c in combinations(pairs, size) if _increasing(c)] if len(pairs) <= 16 else []
        if chains:
            return set(min(chains, key=lambda c: (sum(abs(i - j) for i, j in c), names(c))))
        if len(pairs) > 16:
            return set(_greedy_chain(pairs))
    return set()


def _increasing(chain: tuple[tuple[int, int], ...]) -> bool:
    return all(chain[k][1] < chain[k + 1][1] for k in range(len(chain) - 1))


def _greedy_chain(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Longest increasing subsequence on the b side (O(n^2)); used for lists too long to enumerate."""
    best: list[list[tuple[int, int]]] = []
    for k, pair in enumerate(pairs):
        previous = [best[m] for m in range(k) if pairs[m][1] < pair[1]]
        best.append(max(previous, key=len, default=[]) + [pair])
    return max(best, key=len)
