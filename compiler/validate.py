"""Validation: pydantic field rules first, then named semantic rules over the whole spec.

Every problem becomes a `Diagnostic` with the path of the offending value, the rule's name, the
values involved and a fix. All diagnostics are reported at once; none stops the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from compiler.document import item_key
from compiler.schema.spec import Spec

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


RuleFunction = Callable[[Spec], Iterator[Diagnostic]]


@dataclass(frozen=True)
class Rule:
    """A named semantic check over a whole spec."""

    name: str
    summary: str
    check: RuleFunction


RULES: dict[str, Rule] = {}


def rule(name: str, summary: str) -> Callable[[RuleFunction], RuleFunction]:
    """Register a semantic rule. The function yields Diagnostics; `name` must be unique."""

    def register(check: RuleFunction) -> RuleFunction:
        if name in RULES:
            raise ValueError(f"rule {name!r} is registered twice")
        RULES[name] = Rule(name, summary, check)
        return check

    return register


def check_rules(spec: Spec) -> list[Diagnostic]:
    """Run every registered semantic rule; a rule that crashes is itself reported, never raised."""
    import compiler.rules  # noqa: F401  (registers the rules)

    found: list[Diagnostic] = []
    for registered in RULES.values():
        try:
            found.extend(registered.check(spec))
        except Exception as error:  # a bug in one rule must not hide the others' findings
            found.append(
                Diagnostic("(spec)", registered.name, f"rule crashed: {type(error).__name__}: {error}",
                           "report this as a genspec bug")
            )
    return found


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


def validate(spec: Spec) -> list[Diagnostic]:
    """All semantic diagnostics of a spec that passed field validation."""
    return check_rules(spec)
