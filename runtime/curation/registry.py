"""Which class implements each op kind (and scorer), found by importing every `ops_*` module of this package.

`@register("blur")` registers an implementation for every scorer of the kind; `@register("motion_score",
scorer="farneback")` for one scorer. Lookup tries (kind, scorer) first, then (kind, any scorer).

Declaring: the compiler checks a spec's ops against compiler/schema/support.py OPS, not against this registry
(compile imports nothing from runtime). A new implementation is declared there too, with `smoke_only` when
the class sets it; tests/runtime/test_support.py fails until the two hold the same (kind, scorer) slots.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from functools import cache
from typing import TYPE_CHECKING

from runtime.curation.api import OpConfigError, OpContext, OpImpl

if TYPE_CHECKING:
    from compiler.schema.data import Op

_ANY_SCORER = ""
_IMPLEMENTATIONS: dict[tuple[str, str], type[OpImpl]] = {}


def register(kind: str, scorer: str | None = None) -> Callable[[type[OpImpl]], type[OpImpl]]:
    """Class decorator: `cls` implements op `kind` (for `scorer` only, if given)."""

    def add(cls: type[OpImpl]) -> type[OpImpl]:
        slot = (kind, scorer or _ANY_SCORER)
        if slot in _IMPLEMENTATIONS and _IMPLEMENTATIONS[slot] is not cls:
            raise ValueError(
                f"op kind {kind!r} (scorer {scorer!r}) is already implemented by "
                f"{_IMPLEMENTATIONS[slot].__qualname__}; register {cls.__qualname__} for another scorer"
            )
        _IMPLEMENTATIONS[slot] = cls
        return cls

    return add


@cache
def _discover() -> None:
    """Import every module of runtime/curation/ops/; their decorators fill the table."""
    package = importlib.import_module("runtime.curation.ops")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"runtime.curation.ops.{module.name}")


def registered() -> dict[str, list[str]]:
    """Kind -> scorers with a registered implementation ('*' for an any-scorer implementation)."""
    _discover()
    table: dict[str, list[str]] = {}
    for kind, scorer in sorted(_IMPLEMENTATIONS):
        table.setdefault(kind, []).append(scorer or "*")
    return table


def missing_kinds(op_kinds: Iterable[str]) -> list[str]:
    """The kinds among `op_kinds` with no implementation at all, in first-seen order."""
    _discover()
    known = {kind for kind, _ in _IMPLEMENTATIONS}
    return list(dict.fromkeys(kind for kind in op_kinds if kind not in known))


def missing_implementations(ops: Iterable[Op]) -> list[str]:
    """One message per op that no registered class can run (unknown kind, or a scorer of a known kind)."""
    problems = []
    for op in ops:
        try:
            implementation_for(op)
        except OpConfigError as error:
            problems.append(str(error))
    return problems


def implementation_for(op: Op) -> type[OpImpl]:
    """The class implementing `op`, or OpConfigError saying what exists instead."""
    _discover()
    scorer = getattr(op, "scorer", None)
    for slot in ((op.kind, scorer or _ANY_SCORER), (op.kind, _ANY_SCORER)):
        if slot in _IMPLEMENTATIONS:
            return _IMPLEMENTATIONS[slot]
    scorers = sorted(s for k, s in _IMPLEMENTATIONS if k == op.kind)
    if scorers:
        raise OpConfigError(
            f"op {op.name!r} ({op.kind}): scorer {scorer!r} has no implementation; implemented scorers: "
            f"{', '.join(scorers)}; set {op.name}.scorer to one of them or register a model-backed one"
        )
    raise OpConfigError(
        f"op {op.name!r}: kind {op.kind!r} has no runtime implementation; register one with "
        f"@register({op.kind!r}) in runtime/curation/ops/*.py or remove the op from the pipeline"
    )


def build(op: Op, ctx: OpContext) -> OpImpl:
    """An instance of the implementation of `op` (its constructor validates the parameters)."""
    return implementation_for(op)(op, ctx)
