"""Checks inside each curation pipeline, from the ops' column contracts, in the order the spec writes them.

Rules:
  graph.no-producer         an op needs a column nothing before it provides: a score of an op that is
                            absent or runs later (human_review.score_of, score_conditioning.scores), flow
                            without a motion_score, a caption when the sources carry none and no recaption
                            runs before. (Frames from image-only sources: data.video-op-on-images.)
  graph.duplicate-producer  two ops of different names produce the same column; the later one overwrites
                            the earlier (two of one name: data.unique-names)
  graph.fps-mismatch        an op samples frames at a fixed rate (motion_score.fps, recaption.fps) above
                            the lowest frame rate an earlier duration filter keeps (min_fps): the decoder
                            repeats frames of slower videos, and the flow between a frame and its repeat is
                            zero, so motion reads low and moving clips are dropped as static
  graph.barrier-placement   a barrier that decodes (perceptual or semantic dedup, balance, active learning)
                            runs before the pipeline's decode check (a probe beyond the header, or
                            corruption): the global job meets unreadable samples a per-sample check would
                            have quarantined; or an op drops samples after balance or active learning, whose
                            choice then no longer holds (clusters no longer even, the budget not met)
"""

from __future__ import annotations

from collections.abc import Iterator

from compiler.document import item_key
from compiler.graph.contracts import (
    Contract,
    contract,
    pipeline_inputs,
    provides,
    satisfied,
)
from compiler.schema.data import DurationFilter, Op, Pipeline, Source
from compiler.schema.spec import Spec
from compiler.diagnostic import Diagnostic

# Barriers whose choice later filters would undo.
DECIDING_BARRIERS = ("balance", "active_learning")
# What each op kind's fixed frame rate feeds, for the fps-mismatch message.
RATE_EFFECTS = {
    "motion_score": "the flow between a frame and its repeat is zero, so motion reads low and moving clips "
    "are dropped as static",
    "recaption": "the VLM sees repeated frames and describes slower motion than the video has",
}


def pipeline_diagnostics(spec: Spec) -> Iterator[Diagnostic]:
    """Every per-pipeline diagnostic, pipeline by pipeline."""
    sources: dict[str, Source] = {}
    for source in spec.data.sources:
        sources.setdefault(source.name, source)
    for index, pipeline in enumerate(spec.data.pipelines):
        path = f"data.pipelines[{item_key(pipeline, index)}]"
        contracts = [contract(op) for op in pipeline.ops]
        yield from _columns(pipeline, path, contracts, sources)
        yield from _barriers(pipeline, path, contracts)
        yield from _frame_rates(pipeline, path)


def op_path(pipeline_path: str, pipeline: Pipeline, index: int) -> str:
    """The document path of a pipeline's op, e.g. data.pipelines[main].ops[aesthetic]."""
    return f"{pipeline_path}.ops[{item_key(pipeline.ops[index], index)}]"


def duration_floor(ops: list[Op]) -> tuple[float, str] | None:
    """The lowest frame rate the duration filters among `ops` let through, and the filter that sets it."""
    floors = [(op.min_fps, op.name) for op in ops if isinstance(op, DurationFilter) and op.min_fps is not None]
    return max(floors) if floors else None


# Columns --------------------------------------------------------------------------------------------


def _columns(
    pipeline: Pipeline, path: str, contracts: list[Contract], sources: dict[str, Source]
) -> Iterator[Diagnostic]:
    available = pipeline_inputs(pipeline, sources)
    if not available:
        return  # no known source: data.pipeline-sources-known reports it, and every need would fail here
    producers: dict[str, int] = {}
    for index, (op, terms) in enumerate(zip(pipeline.ops, contracts)):
        for column in sorted(terms.needs - {"frames"}):  # frames: data.video-op-on-images
            if not satisfied(column, available):
                yield _no_producer(pipeline, path, contracts, sources, index, column)
        for column in sorted(terms.produces):
            # Two ops of one name write one score column: data.unique-names reports the name.
            if column in producers and pipeline.ops[producers[column]].name != op.name:
                first = pipeline.ops[producers[column]]
                yield Diagnostic(
                    op_path(path, pipeline, index),
                    "graph.duplicate-producer",
                    f"{op.kind} op {op.name!r} (position {index}) produces column {column}, which {first.kind} op "
                    f"{first.name!r} (position {producers[column]}) produces already: the later value "
                    "overwrites it",
                    "keep one of the two ops (one recaption op takes several styles and languages)",
                )
            producers.setdefault(column, index)
        available |= terms.produces


def _no_producer(
    pipeline: Pipeline, path: str, contracts: list[Contract], sources: dict[str, Source], index: int, column: str
) -> Diagnostic:
    op = pipeline.ops[index]
    field = {"human_review": ".score_of", "score_conditioning": ".scores"}.get(op.kind, "")
    needs = f"{op.kind} op {op.name!r} (position {index}) needs column {column}"
    later = [j for j in range(index + 1, len(pipeline.ops)) if column in provides(contracts[j].produces)]
    if later:
        producer = pipeline.ops[later[0]]
        problem = f"which only {producer.kind} op {producer.name!r} produces, later (position {later[0]})"
        fix = f"move {op.name!r} after {producer.name!r}, or {producer.name!r} before {op.name!r}"
    elif column == "caption":
        kinds = {name: sources[name].modality for name in pipeline.sources if name in sources}
        problem = f"but the pipeline's sources hold no captions ({', '.join(f'{n}: {m}' for n, m in kinds.items())})"
        fix = f"add a recaption op before {op.name!r}, or read a source with captions (an *_text modality)"
    elif column.startswith("score:"):
        named = column.removeprefix("score:")
        scorers = [o.name for o, t in zip(pipeline.ops[:index], contracts) if f"score:{o.name}" in t.produces]
        present = [o for o in pipeline.ops if o.name == named]
        problem = (
            f"but {present[0].kind} op {named!r} produces no score" if present else f"but no op is named {named!r}"
        )
        fix = f"name a scoring op placed before {op.name!r} (scorers before it: {scorers})"
    else:
        problem = "which no op before it produces"
        fix = f"add an op producing {column} before {op.name!r} (motion_score produces flow)"
    return Diagnostic(op_path(path, pipeline, index) + field, "graph.no-producer", f"{needs}, {problem}", fix)


# Barriers -------------------------------------------------------------------------------------------


def _barriers(pipeline: Pipeline, path: str, contracts: list[Contract]) -> Iterator[Diagnostic]:
    checks = [i for i, op in enumerate(pipeline.ops) if _decode_check(op)]
    for index, (op, terms) in enumerate(zip(pipeline.ops, contracts)):
        if op.shape != "barrier" or terms.decode is None:
            continue
        later = [i for i in checks if i > index]
        if later:
            check = pipeline.ops[later[-1]]
            yield Diagnostic(
                op_path(path, pipeline, index),
                "graph.barrier-placement",
                f"barrier {op.kind} {op.name!r} (position {index}) decodes every sample, but decode check "
                f"{check.kind} {check.name!r} runs later (position {later[-1]}): the global job meets unreadable "
                "samples that a per-sample check would have quarantined",
                f"move {check.name!r} before {op.name!r}",
            )
    deciding = [i for i, op in enumerate(pipeline.ops) if op.kind in DECIDING_BARRIERS]
    if not deciding:
        return
    first = deciding[0]
    barrier = pipeline.ops[first]
    for index in range(first + 1, len(pipeline.ops)):
        op = pipeline.ops[index]
        if contracts[index].filters and op.kind not in DECIDING_BARRIERS:
            undone = "its clusters are no longer even" if barrier.kind == "balance" else "it misses its budget"
            yield Diagnostic(
                op_path(path, pipeline, index),
                "graph.barrier-placement",
                f"{op.kind} op {op.name!r} (position {index}) drops samples after {barrier.kind} {barrier.name!r} "
                f"(position {first}) chose them: {undone}",
                f"move {op.name!r} before {barrier.name!r}",
            )


def _decode_check(op: Op) -> bool:
    """Corruption, or a probe that decodes beyond the header: the checks that quarantine unreadable samples."""
    return op.kind == "corruption" or (op.kind == "probe" and op.check != "header")  # type: ignore[attr-defined]


# Frame rates ----------------------------------------------------------------------------------------


def _frame_rates(pipeline: Pipeline, path: str) -> Iterator[Diagnostic]:
    for index, op in enumerate(pipeline.ops):
        rate = getattr(op, "fps", None) if op.kind in RATE_EFFECTS else None
        floor = duration_floor(pipeline.ops[:index])
        if rate is None or floor is None or rate <= floor[0]:
            continue
        yield Diagnostic(
            op_path(path, pipeline, index) + ".fps",
            "graph.fps-mismatch",
            f"{op.kind} op {op.name!r} samples {rate:g} fps, but duration filter {floor[1]!r} keeps videos from "
            f"{floor[0]:g} fps: the decoder repeats frames of slower videos, and {RATE_EFFECTS[op.kind]}",
            f"sample at most {floor[0]:g} fps, or raise min_fps of {floor[1]!r} to {rate:g}",
        )
