"""Build the stage graph of a spec: a networkx MultiDiGraph from raw sources to the checkpoints of training stages.

Nodes (attribute `kind`), with ids:
  source      source:<name>
  op          op:<pipeline>/<op>       (op:<pipeline>/<op>#<index> for a repeated op name)
  dataset     dataset:<name>
  stage       stage:<name>
  checkpoint  checkpoint:<stage>       (the stage's final weights)
              released:<model id>      (released weights a stage's init_from names; no stage produces them)
Edges (attribute `kind`, also the edge key: a distillation stage is often initialised by its teacher, two
edges between the same pair), each with the spec `path` that states it:
  feeds         source -> first op, op -> next op (in run order), source -> dataset for a pipeline without ops
  produces      last op -> the pipeline's dataset, stage -> its checkpoint
  subset        dataset -> a subset of it
  consumes      dataset -> stage (attribute `weight`: the dataset's share of the stage's samples)
  initialises   checkpoint (or released weights) -> the stage whose init_from names it
  teaches       checkpoint -> the distillation stage whose teacher names it
Cascades (Imagen) train several networks: stage and checkpoint nodes carry `model`, the U-Net trained.

Passes:
  1. plan      each pipeline's run order, jobs and decodes (compiler.graph.optimise)
  2. nodes     sources, ops (with their contracts and jobs), datasets (with the columns they carry),
               stages and checkpoints; a repeated name keeps the first item, as paths select it
  3. edges     as above; a reference to an unknown name adds no edge (compiler.rules reports it)
  4. checks    per-pipeline column checks, then whole-graph checks; all diagnostics at once
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import networkx as nx

from compiler.document import item_key
from compiler.graph.checks import graph_diagnostics
from compiler.graph.contracts import contract, pipeline_inputs
from compiler.graph.optimise import (
    DecodeStep,
    Job,
    PipelinePlan,
    Reorder,
    plan_pipeline,
)
from compiler.graph.pipeline_checks import pipeline_diagnostics
from compiler.schema.data import Pipeline, Source
from compiler.schema.spec import Spec
from compiler.diagnostic import Diagnostic


@dataclass(frozen=True)
class StageGraph:
    """A spec's stage graph, its curation plan (run order, jobs, decodes, reorders) and its diagnostics."""

    spec: str
    graph: nx.MultiDiGraph
    orders: dict[str, tuple[str, ...]]  # pipeline -> op names in run order
    jobs: tuple[Job, ...]
    decode_plan: tuple[DecodeStep, ...]
    reorders: tuple[Reorder, ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def errors(self) -> list[Diagnostic]:
        """The diagnostics of severity error."""
        return [d for d in self.diagnostics if d.severity == "error"]


def build(spec: Spec) -> StageGraph:
    """The stage graph of a spec, with its curation plan and every graph diagnostic (see the passes above)."""
    graph = nx.MultiDiGraph(spec=spec.name)
    plans: dict[str, PipelinePlan] = {}
    sources = _first_by_name(spec.data.sources)
    for source in sources.values():
        graph.add_node(f"source:{source.name}", kind="source", name=source.name, modality=source.modality,
                       path=f"data.sources[{source.name}]")
    datasets = _first_by_name(spec.data.datasets)
    for dataset in datasets.values():
        graph.add_node(f"dataset:{dataset.name}", kind="dataset", name=dataset.name,
                       path=f"data.datasets[{dataset.name}]", columns=[])
    for pipeline in _first_by_name(spec.data.pipelines).values():
        video = "frames" in pipeline_inputs(pipeline, sources)
        plans[pipeline.name] = plan_pipeline(pipeline, video)
        _add_pipeline(graph, pipeline, plans[pipeline.name], sources)
    _add_subsets(graph, spec)
    _add_stages(graph, spec)
    _fill_dataset_columns(graph, spec, sources)

    diagnostics = [*pipeline_diagnostics(spec), *graph_diagnostics(spec, graph)]
    return StageGraph(
        spec=spec.name,
        graph=graph,
        orders={name: plan.order for name, plan in plans.items()},
        jobs=tuple(job for plan in plans.values() for job in plan.jobs),
        decode_plan=tuple(step for plan in plans.values() for step in plan.decodes),
        reorders=tuple(move for plan in plans.values() for move in plan.reorders),
        diagnostics=tuple(diagnostics),
    )


def _first_by_name(items: list) -> dict:
    found: dict = {}
    for item in items:
        found.setdefault(item.name, item)
    return found


def op_ids(pipeline: Pipeline) -> list[str]:
    """The node id of each op of a pipeline, in spec order."""
    seen: set[str] = set()
    ids = []
    for index, op in enumerate(pipeline.ops):
        ids.append(f"op:{pipeline.name}/{op.name}" + (f"#{index}" if op.name in seen else ""))
        seen.add(op.name)
    return ids


def _add_pipeline(
    graph: nx.MultiDiGraph, pipeline: Pipeline, plan: PipelinePlan, sources: dict[str, Source]
) -> None:
    path = f"data.pipelines[{pipeline.name}]"
    ids = op_ids(pipeline)
    jobs = [job for job in plan.jobs for _ in job.ops]  # jobs partition the run order, in order
    for position, index in enumerate(plan.run):
        op, terms = pipeline.ops[index], contract(pipeline.ops[index])
        graph.add_node(
            ids[index], kind="op", pipeline=pipeline.name, name=op.name, op_kind=op.kind, shape=op.shape,
            position=index, order=position, job=jobs[position].name, cost_tier=terms.cost_tier,
            resource=terms.resource, filters=terms.filters, needs=sorted(terms.needs),
            produces=sorted(terms.produces), path=f"{path}.ops[{item_key(op, index)}]",
        )
    chain = [ids[index] for index in plan.run]
    output = f"dataset:{pipeline.output}"
    for name in pipeline.sources:
        first = chain[0] if chain else output  # a pipeline without ops copies its sources into its dataset
        if name in sources and graph.has_node(first):
            _edge(graph, f"source:{name}", first, "feeds", f"{path}.sources")
    for before, after in pairwise(chain):
        _edge(graph, before, after, "feeds", f"{path}.ops")
    if chain and graph.has_node(output):
        _edge(graph, chain[-1], output, "produces", f"{path}.output")


def _add_subsets(graph: nx.MultiDiGraph, spec: Spec) -> None:
    for dataset in _first_by_name(spec.data.datasets).values():
        if dataset.subset_of is not None and graph.has_node(f"dataset:{dataset.subset_of}"):
            _edge(graph, f"dataset:{dataset.subset_of}", f"dataset:{dataset.name}", "subset",
                  f"data.datasets[{dataset.name}].subset_of")


def _add_stages(graph: nx.MultiDiGraph, spec: Spec) -> None:
    stages = _first_by_name(spec.schedule.stages)
    for stage in stages.values():
        path = f"schedule.stages[{stage.name}]"
        graph.add_node(f"stage:{stage.name}", kind="stage", name=stage.name, stage_kind=stage.kind,
                       model=stage.model, path=path)
        graph.add_node(f"checkpoint:{stage.name}", kind="checkpoint", name=stage.name, model=stage.model,
                       path=path)
        _edge(graph, f"stage:{stage.name}", f"checkpoint:{stage.name}", "produces", path)
    for stage in stages.values():
        path = f"schedule.stages[{stage.name}]"
        for index, use in enumerate(stage.datasets):
            if graph.has_node(f"dataset:{use.dataset}"):
                _edge(graph, f"dataset:{use.dataset}", f"stage:{stage.name}", "consumes", f"{path}.datasets[{index}]",
                      weight=use.weight)
        references = (("init_from", "initialises", stage.init_stage), ("teacher", "teaches", stage.teacher))
        for field, kind, named in references:
            if named is not None and named in stages:
                _edge(graph, f"checkpoint:{named}", f"stage:{stage.name}", kind, f"{path}.{field}")
        released = stage.init_released
        if released is not None:
            node = f"released:{released.released}"
            graph.add_node(node, kind="checkpoint", name=f"released {released.released}", model=stage.model,
                           path=f"{path}.init_from")
            _edge(graph, node, f"stage:{stage.name}", "initialises", f"{path}.init_from")


def _edge(graph: nx.MultiDiGraph, source: str, target: str, kind: str, path: str, **attributes: float) -> None:
    """An edge keyed by its kind, so two kinds between one pair (initialises and teaches) both stay."""
    graph.add_edge(source, target, key=kind, kind=kind, path=path, **attributes)


def _fill_dataset_columns(graph: nx.MultiDiGraph, spec: Spec, sources: dict[str, Source]) -> None:
    """A pipeline's dataset carries its sources' columns and every op's output; a subset its parent's."""
    written: dict[str, set[str]] = {}
    for pipeline in _first_by_name(spec.data.pipelines).values():
        columns = set(pipeline_inputs(pipeline, sources))
        for op in pipeline.ops:
            columns |= contract(op).produces
        written.setdefault(pipeline.output, set()).update(columns)
    for node in [n for n, data in graph.nodes(data=True) if data["kind"] == "dataset"]:
        name = graph.nodes[node]["name"]
        columns = written.get(name, set())
        for ancestor in nx.ancestors(graph, node):
            if graph.nodes[ancestor]["kind"] == "dataset":
                columns = columns | written.get(graph.nodes[ancestor]["name"], set())
        graph.nodes[node]["columns"] = sorted(columns)
