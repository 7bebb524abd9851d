"""Bundle documents computed from the plan and the provenance table."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from compiler.document import Table, walk_leaves
from compiler.plan import Plan
from compiler.schema.spec import Spec

# Order in assumptions.md: what a reviewer should look at first.
_REPORTED = ("override", "unrecorded", "assumed", "derived", "default")
UNRECORDED_WHY = "set without a provenance marker (warning provenance.recorded)"


def assumption_groups(table: Table, spec: Spec) -> list[tuple[str, list[dict[str, str]]]]:
    """Every value no public source states, grouped by status, with its value and reason; values with no
    provenance at all (compiler.rules.provenance) are `unrecorded`."""
    from compiler.rules.provenance import unrecorded_leaves

    values = {path: value for path, _, _, value in walk_leaves(spec)}
    unrecorded = [{"path": path, "value": _cell(values.get(path)), "why": UNRECORDED_WHY}
                  for path in unrecorded_leaves(spec)]
    groups = []
    for status in _REPORTED:
        rows = unrecorded if status == "unrecorded" else [
            {"path": path, "value": _cell(values.get(path)), "why": _cell(provenance.reason or provenance.source)}
            for path, provenance in table.items()
            if provenance.status == status
        ]
        if rows:
            groups.append((status, rows))
    return groups


def _cell(value: Any) -> str:
    text = "(none)" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def plan_json(plan: Plan, how: str) -> dict[str, Any]:
    return {"generated_by": how, **asdict(plan)}
