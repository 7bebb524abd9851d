"""The stage graph: sources -> curation ops -> datasets -> training stages -> checkpoints, as networkx.

  build(spec)         the StageGraph: the graph, each pipeline's optimised run order, its jobs, decode plan
                      and reorders, and every graph diagnostic (compiler.graph.build)
  render(spec, fmt)   the graph as dot, mermaid, json or svg text (compiler.graph.render)
  contract(op)        what a curation op reads, adds and costs (compiler.graph.contracts)

Modules: contracts (column contracts), optimise (reorder, jobs, decodes), pipeline_checks and checks (the
graph.* rules), build, render. Importing this package imports networkx; `compiler` itself does not.
"""

from compiler.graph.build import StageGraph, build
from compiler.graph.contracts import Contract, DecodeNeed, contract
from compiler.graph.optimise import DecodeStep, Job, Reorder
from compiler.graph.render import FORMATS, RenderError, render_graph
from compiler.schema.spec import Spec

__all__ = [
    "FORMATS",
    "Contract",
    "DecodeNeed",
    "DecodeStep",
    "Job",
    "RenderError",
    "Reorder",
    "StageGraph",
    "build",
    "contract",
    "render",
    "render_graph",
]


def render(spec: Spec, fmt: str) -> str:
    """The stage graph of `spec` as text: fmt is dot, mermaid, json or svg (svg runs Graphviz's `dot`).

    Raises RenderError for an unknown format, or for svg when `dot` is missing or fails. The graph renders
    whatever its diagnostics say; `build(spec).diagnostics` has them.
    """
    if fmt not in FORMATS:
        raise RenderError(f"unknown graph format {fmt!r}; formats: {', '.join(FORMATS)}")
    return render_graph(build(spec), fmt)
