"""The checks pass: named semantic rules over the whole spec, the stage graph's checks, and runtime support.

Every problem becomes a `Diagnostic` (compiler.diagnostic) with the path of the offending value, the rule's
name, the values involved and a fix. All diagnostics are reported at once; none stops the others. Each
problem has exactly one rule: semantic rules live in compiler/rules, column, barrier and cycle checks over
the stage graph in compiler/graph, what the runtime cannot build in compiler/schema/support.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from compiler.diagnostic import Diagnostic
from compiler.schema.spec import Spec

if TYPE_CHECKING:
    from compiler.graph import StageGraph

RUNTIME_SUPPORT = "runtime.supported"
STAND_IN_AT_FULL_SCALE = "runtime.stand-in-at-full-scale"

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


def runtime_support(spec: Spec) -> list[Diagnostic]:
    """What the spec uses that the runtime does not build or run (compiler/schema/support.py), as errors."""
    from compiler.schema.support import unsupported

    return [
        Diagnostic(found.path, RUNTIME_SUPPORT, f"{found.value!r} is not implemented by the runtime: {found.missing}",
                   "choose a value the runtime implements, or implement it in runtime/ and declare it in "
                   "compiler/schema/support.py")
        for found in unsupported(spec)
    ]


def stand_ins_at_full_scale(spec: Spec, scale: str) -> list[Diagnostic]:
    """Ops only a smoke-scale stand-in runs, as errors at full scale: the curation job would stop on them
    before reading a sample, after the GPU-hours of every stage before it were spent."""
    from compiler.schema.support import stand_ins

    if scale == "smoke":
        return []
    return [
        Diagnostic(path, STAND_IN_AT_FULL_SCALE,
                   f"scorer {scorer!r} runs only at smoke scale (a reported random stand-in): {support.why}",
                   f"--set {path}={support.instead} ({support.instead_is}), or compile at --scale smoke")
        for path, scorer, support in stand_ins(spec)
    ]


def validate(spec: Spec, stage_graph: StageGraph | None = None, scale: str = "full") -> list[Diagnostic]:
    """Every check compile runs on a resolved spec at `scale`: semantic rules, the stage graph's checks (on
    `stage_graph`, built here when not given), runtime support and stand-ins at full scale."""
    if stage_graph is None:
        from compiler.graph import build

        stage_graph = build(spec)
    return [*check_rules(spec), *stage_graph.diagnostics, *runtime_support(spec), *stand_ins_at_full_scale(spec, scale)]
