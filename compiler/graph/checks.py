"""Checks over the whole stage graph, after it is built.

Rules:
  graph.cycle           datasets that are subsets of each other; reported once per cycle, at the spec path
                        of the reference that closes it: the one into the dataset the spec lists first.
                        (Stages that start from or are taught by each other's checkpoints always name a
                        later stage: schedule.references-earlier-stage reports them.)
  objective.masked-loss-source
                        objective.masked_loss takes mask:<op> from an op, and no dataset a training stage
                        consumes carries that column (the op is absent, emits no mask, or its pipeline's
                        dataset feeds no stage)
  graph.fps-mismatch    (warning) a stage samples video at more frames per second than the duration filter
                        of the pipeline behind one of its datasets guarantees (min_fps): slower videos are
                        trained on repeated frames
"""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx

from compiler.graph.pipeline_checks import duration_floor
from compiler.schema.spec import Spec
from compiler.diagnostic import Diagnostic

# Edges a spec states by naming another dataset: the way a cycle among datasets arises. Stage references
# (initialises, teaches) close cycles only by naming a later stage, which schedule.references-earlier-stage reports.
REFERENCES = ("subset",)


def graph_diagnostics(spec: Spec, graph: nx.MultiDiGraph) -> Iterator[Diagnostic]:
    """Every whole-graph diagnostic: subset cycles, masked-loss columns, stage frame rates."""
    yield from _cycles(graph)
    yield from _masked_loss(spec, graph)
    yield from _stage_frame_rates(spec, graph)


def _cycles(graph: nx.MultiDiGraph) -> Iterator[Diagnostic]:
    position = {node: index for index, node in enumerate(graph.nodes)}  # spec order within each kind
    found: dict[tuple[str, ...], dict] = {}
    subsets = graph.edge_subgraph([edge for edge in graph.edges(keys=True) if edge[2] in REFERENCES])
    for cycle in nx.simple_cycles(subsets):
        edges = [
            (source, target, data)
            for source, target in zip(cycle, cycle[1:] + cycle[:1])
            for data in graph.get_edge_data(source, target).values()
            if data["kind"] in REFERENCES
        ]
        # A spec reference closes the cycle; blame the one into the earliest node, the backward reference.
        _, target, closing = min(edges, key=lambda edge: (position[edge[1]], edge[2]["kind"]))
        start = cycle.index(target)
        found.setdefault(tuple(cycle[start:] + cycle[:start]), closing)
    for ordered, closing in sorted(found.items()):
        yield Diagnostic(
            closing["path"],
            "graph.cycle",
            f"the stage graph has a cycle: {' -> '.join([*ordered, ordered[0]])}; nothing on it can run first",
            "a subset's parent is never its own subset: change this subset_of to the dataset it narrows",
        )


def _consumed_columns(graph: nx.MultiDiGraph) -> dict[str, set[str]]:
    """Dataset name -> its columns, for every dataset a training stage consumes."""
    return {
        graph.nodes[source]["name"]: set(graph.nodes[source]["columns"])
        for source, _, kind in graph.edges(keys=True)
        if kind == "consumes"
    }


def _masked_loss(spec: Spec, graph: nx.MultiDiGraph) -> Iterator[Diagnostic]:
    masked = spec.objective.masked_loss
    if masked is None:
        return
    column = f"mask:{masked.mask_from}"
    consumed = _consumed_columns(graph)
    if any(column in columns for columns in consumed.values()):
        return
    ops = [data for _, data in graph.nodes(data=True) if data["kind"] == "op" and data["name"] == masked.mask_from]
    carrying = sorted(data["name"] for _, data in graph.nodes(data=True)
                      if data["kind"] == "dataset" and column in data["columns"])
    if not ops:
        problem = "no curation op has that name"
    elif not any(column in data["produces"] for data in ops):
        why = " (emit_mask=False)" if ops[0]["op_kind"] == "defect_mask" else ""
        problem = f"{ops[0]['op_kind']} op {masked.mask_from!r} in pipeline {ops[0]['pipeline']!r} emits no mask{why}"
    else:
        problem = f"only datasets {carrying} carry it, and no training stage consumes them"
    yield Diagnostic(
        "objective.masked_loss.mask_from",
        "objective.masked-loss-source",
        f"masked_loss needs column {column} in the training data, but {problem} "
        f"(consumed datasets: {sorted(consumed)})",
        "name a defect_mask op with emit_mask=True in a pipeline whose dataset a stage consumes",
    )


def _stage_frame_rates(spec: Spec, graph: nx.MultiDiGraph) -> Iterator[Diagnostic]:
    pipelines = {pipeline.name: pipeline for pipeline in reversed(spec.data.pipelines)}  # the first of a name
    for node, data in graph.nodes(data=True):
        stage = spec.schedule.stages[_position(spec, data["name"])] if data["kind"] == "stage" else None
        if stage is None or stage.fps is None:
            continue
        for dataset in sorted(graph.predecessors(node)):
            if not graph.has_edge(dataset, node, key="consumes"):
                continue
            behind = sorted({graph.nodes[a]["pipeline"] for a in nx.ancestors(graph, dataset)
                             if graph.nodes[a]["kind"] == "op"})
            for name in behind:
                floor = duration_floor(pipelines[name].ops)
                if floor is None or stage.fps <= floor[0]:
                    continue
                yield Diagnostic(
                    f"{graph.nodes[node]['path']}.fps",
                    "graph.fps-mismatch",
                    f"stage {stage.name!r} samples {stage.fps:g} fps from {dataset}, but duration filter "
                    f"{floor[1]!r} of pipeline {name!r} keeps videos from {floor[0]:g} fps: slower videos are "
                    "trained on repeated frames",
                    f"train at most {floor[0]:g} fps, or raise min_fps of {floor[1]!r} to {stage.fps:g}",
                    "warning",
                )


def _position(spec: Spec, stage: str) -> int:
    """The position of the first stage of a name: the one its graph node stands for."""
    return next(i for i, s in enumerate(spec.schedule.stages) if s.name == stage)
