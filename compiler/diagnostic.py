"""A Diagnostic: one problem found in a spec, with the path of the offending value, the rule that found it,
the values involved and a fix. Every pass reports problems as Diagnostics; `field_diagnostics` turns
pydantic's field errors into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pydantic import ValidationError

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a spec."""

    path: str
    rule: str
    message: str
    fix: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message} [{self.rule}]\n  fix: {self.fix}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "rule": self.rule, "message": self.message, "fix": self.fix, "severity": self.severity}


def field_diagnostics(error: ValidationError, data: Any) -> list[Diagnostic]:
    """Pydantic's field errors as Diagnostics, with list indices turned into [name] selectors."""
    found = []
    for detail in error.errors():
        path = loc_to_path(detail["loc"], data)
        value = detail.get("input")
        shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
        found.append(
            Diagnostic(
                path=path,
                rule=f"field.{detail['type']}",
                message=f"{detail['msg']} (got {shown[:120]})",
                fix=_field_fix(detail),
            )
        )
    return found


def _field_fix(detail: dict[str, Any]) -> str:
    kind = detail["type"]
    if kind == "extra_forbidden":
        return "remove this key; `genspec schema` lists the fields each section accepts"
    if kind == "missing":
        return "add this field"
    if kind == "union_tag_invalid":
        expected = detail.get("ctx", {}).get("expected_tags", "")
        return f"set kind to one of: {expected}"
    return "give a value of the expected type and range (see `genspec schema`)"


def loc_to_path(loc: tuple[Any, ...], data: Any) -> str:
    """('data', 'pipelines', 0, 'ops', 1, 'aesthetic', 'min_score') -> data.pipelines[main].ops[x].min_score"""
    from compiler.document import item_key

    path = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            path += f"[{item_key(item, part) if item is not None else part}]"
            node = item
        elif isinstance(node, dict) and isinstance(node.get("kind"), str) and part == node.get("kind"):
            continue  # pydantic names the union member it tried; the kind is already in the data
        else:
            path += f".{part}" if path else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return path or "(spec)"
