"""Rules on provenance: a spec that says where its values come from says it for every value."""

from __future__ import annotations

from collections.abc import Iterator

from compiler.diagnostic import Diagnostic
from compiler.document import walk_leaves
from compiler.schema.provenance import AUTHORED_STATUSES
from compiler.schema.spec import Spec
from compiler.validate import rule


def unrecorded_leaves(spec: Spec) -> list[str]:
    """Paths of the values that carry no provenance, in a spec whose author marks provenance elsewhere
    (a spec without any marker, such as a test's plain one, has nothing to be inconsistent with)."""
    leaves = [(path, node.provenance_of(field)) for path, node, field, _ in walk_leaves(spec)]
    if not any(provenance is not None and provenance.status in AUTHORED_STATUSES for _, provenance in leaves):
        return []
    return [path for path, provenance in leaves if provenance is None]


@rule("provenance.recorded", "every value of a spec that marks provenance carries a marker")
def recorded(spec: Spec) -> Iterator[Diagnostic]:
    for path in unrecorded_leaves(spec):
        yield Diagnostic(
            path,
            "provenance.recorded",
            "the value has no provenance: it was set without a marker (typically derive(base, {path: value}) "
            "with a plain value), so nothing says where it comes from",
            "wrap it in documented(value, source), likely(...), assumed(value, reason) or undisclosed(reason)",
            "warning",
        )
