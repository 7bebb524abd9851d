"""The compile pipeline: every pass, in order, each run once.

  load       a TARGET (shipped name, file.py:ATTR, .yaml/.json) -> a Spec          compiler.targets
  scale      smoke shrinks widths, steps and data, recorded as assumptions          compiler.scale
  overrides  --set PATH=VALUE, applied after scaling so they win, recorded as such  compiler.resolve
  resolve    derived values filled, needed values that are missing found            compiler.resolve
  checks     semantic rules, the stage graph's checks, runtime support, missing     compiler.validate
  plan       the parallel layout, memory and cost of each stage on a cluster        compiler.plan
  emit       every file of the bundle, rendered                                     compiler.emit

`check` runs load's result through the checks: what `genspec validate` reports. `compile` adds the plan,
`emit` renders the bundle: what `genspec compile` writes. The stage graph is built once, in `check`, and
the bundle reuses it. A spec `check` finds no error in compiles for any cluster its plan fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from compiler.diagnostic import Diagnostic

if TYPE_CHECKING:  # the schema loads with the first spec, not with this module (`genspec validate` starts fast)
    from compiler.emit.bundle import Bundle
    from compiler.graph import StageGraph
    from compiler.plan import Plan
    from compiler.resolve import Resolved
    from compiler.schema.cluster import Cluster
    from compiler.schema.spec import Spec

VALUE_NEEDED = "resolve.value-needed"


class CompileError(ValueError):
    """A spec that cannot be compiled for the target; the message lists every reason and its fix."""


@dataclass(frozen=True)
class Checked:
    """A spec after scale, overrides, resolve and checks: the resolved spec, its provenance, its stage graph
    and every diagnostic."""

    spec: Spec
    scale: str
    resolved: Resolved
    stage_graph: StageGraph
    diagnostics: tuple[Diagnostic, ...]

    @property
    def errors(self) -> list[Diagnostic]:
        """The diagnostics of severity error: any one stops compile."""
        return [d for d in self.diagnostics if d.severity == "error"]


@dataclass(frozen=True)
class Compiled:
    """A checked spec planned onto a cluster: everything emit needs, and the command that compiles it again."""

    checked: Checked
    cluster: Cluster
    plan: Plan
    command: str

    @property
    def spec(self) -> Spec:
        return self.checked.spec


def load(target: str) -> Spec:
    """The Spec a TARGET names (compiler.targets.load_target; raises its errors)."""
    from compiler.targets import load_target

    return load_target(target)


def apply(spec: Spec, scale: str = "full", overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """The scale and overrides passes: `spec` at `scale`, then each `--set PATH=VALUE`, recorded as an override
    (so it wins over a smoke value). Raises ValueError for an unknown scale, OverrideError for a bad --set."""
    from compiler.resolve import apply_overrides
    from compiler.scale import scaled

    return apply_overrides(scaled(spec, scale), overrides)


def check(spec: Spec, scale: str = "full", overrides: list[str] | tuple[str, ...] = ()) -> Checked:
    """Scale, override, resolve and check `spec`: every diagnostic compile would stop on, and warnings.

    Raises ValueError for an unknown scale and compiler.resolve.OverrideError for an override that cannot be
    applied; problems of the spec itself are diagnostics, never exceptions."""
    from compiler.graph import build
    from compiler.resolve import resolve
    from compiler.validate import validate

    resolved = resolve(apply(spec, scale, overrides))
    stage_graph = build(resolved.spec)
    missing = [Diagnostic(m.path, VALUE_NEEDED, f"the value is {m.status}, and the planner and runtime need it",
                          f"supply it with --set {m.path}=VALUE, or state an assumption in the spec")
               for m in resolved.missing]
    diagnostics = (*missing, *validate(resolved.spec, stage_graph, scale))
    return Checked(resolved.spec, scale, resolved, stage_graph, diagnostics)


def compile(spec: Spec, cluster: Cluster, scale: str = "full", overrides: list[str] | tuple[str, ...] = (), *,
            target: str | None = None, cluster_target: str | None = None) -> Compiled:
    """`check`, then plan onto `cluster`; raise CompileError with every error found.

    target and cluster_target are how the command line named the spec and the cluster (a file.py:ATTR, a
    .yaml file), for the rerun command the bundle prints; by default the spec's and the cluster's names."""
    from compiler.plan import PlanError, plan

    checked = check(spec, scale, overrides)
    if checked.errors:
        problems = "\n- ".join(str(d) for d in checked.errors)
        raise CompileError(f"{spec.name} cannot be compiled for {cluster.name}:\n- {problems}")
    try:
        planned = plan(checked.spec, cluster, scale)
    except PlanError as error:
        raise CompileError(str(error)) from error
    command = rerun_command(target or spec.name, cluster_target or cluster.name, scale, overrides)
    return Compiled(checked, cluster, planned, command)


def rerun_command(target: str, cluster: str, scale: str, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """The `genspec compile` command line that compiles a bundle again, shell-quoted."""
    import shlex

    words = ["genspec", "compile", target, "--cluster", cluster, "--scale", scale]
    for override in overrides:
        words += ["--set", override]
    return shlex.join(words)


def emit(compiled: Compiled) -> Bundle:
    """Every file of the bundle of a compiled spec, as text (compiler.emit.bundle)."""
    from compiler.emit.bundle import render_bundle

    return render_bundle(compiled)
