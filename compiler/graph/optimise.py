"""Plan one curation pipeline: the order its ops run in, the jobs they fuse into, and where samples decode.

Nothing here is silent: every move is a `Reorder`, every job and decode is listed.

Passes, per pipeline:
  1. reorder  A commuting filter is a map-shaped op that drops samples, rewrites nothing, and needs no
              column another op of the pipeline produces (nor its family: a recaption op provides
              `caption`), so it can never move ahead of a producer of what it reads. Walk each one
              earlier, one op at a time, while the op before it
                - is map-shaped: nothing crosses a barrier (dedup, balancing, active learning) or a split;
                - rewrites none of the columns it needs and adds no samples (trim, caption_pii and
                  synthetic_text fence the filters that read what they change);
                - costs more: a filter of a higher cost tier, or a mapper of the same or a higher tier
                  (the mapper then runs on fewer samples).
              Equal tiers keep their order. Replaying the recorded reorders in order on the spec's op
              list gives the run order.
  2. jobs     Consecutive per-sample ops fuse into one job. A barrier is a job of its own; a split ends
              its job (its clips are new samples); a CPU/GPU change starts a new job. Header-only ops
              never force a split: they join the open job (or open a CPU job). A job's GPU memory is the
              sum of its model ops' declared memory, since fused models stay resident together.
  3. decode   Consecutive per-sample jobs stream records to each other, so a sample decodes once per
              segment: the ops between barriers, up to and including a split. The first op needing
              pixels triggers the decode, at the smallest size every op after it in the segment accepts
              (the largest of their minimum short sides; the stored size if one needs it), at a frame
              rate every fixed-rate op can subsample exactly (the least common multiple of their rates),
              or every frame if one needs every frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import gcd, lcm
from typing import Literal

from compiler.graph.contracts import (
    TIER_RANK,
    Contract,
    DecodeNeed,
    Resource,
    contract,
    provides,
)
from compiler.schema.data import Op, Pipeline


@dataclass(frozen=True)
class Reorder:
    """One op moved earlier: from its index to a new one in the list as it stood at that moment."""

    pipeline: str
    op: str
    from_index: int
    to_index: int
    reason: str


@dataclass(frozen=True)
class Job:
    """Ops of one pipeline that run together, and the resources one worker of it needs."""

    name: str
    pipeline: str
    ops: tuple[str, ...]
    scope: Literal["per_sample", "global"]
    resource: Resource
    cpu_cores: int
    gpus: int
    gpu_memory_gib: float


@dataclass(frozen=True)
class DecodeStep:
    """Where samples of a pipeline decode, at what size and rate, and which ops read the result."""

    pipeline: str
    job: str
    trigger: str
    serves: tuple[str, ...]
    short_side_px: int | None  # 0: any size; None: the stored size
    fps: float | None  # None: every frame if every_frame, else a few sampled frames (or a still)
    every_frame: bool


@dataclass(frozen=True)
class PipelinePlan:
    """A pipeline's run order (op names, and indices into the spec's list), its reorders, jobs and decodes."""

    order: tuple[str, ...]
    run: tuple[int, ...]
    reorders: tuple[Reorder, ...]
    jobs: tuple[Job, ...]
    decodes: tuple[DecodeStep, ...]


def plan_pipeline(pipeline: Pipeline, video: bool = True) -> PipelinePlan:
    """Reorder, fuse and plan the decodes of one pipeline (see the module docstring for the passes).

    `video`: whether any source holds video; without, frame rates and every-frame needs are moot.
    """
    contracts = [contract(op) for op in pipeline.ops]
    order, reorders = reorder(pipeline, contracts)
    jobs, job_of = fuse(pipeline, contracts, order)
    decodes = plan_decodes(pipeline, contracts, order, job_of, video)
    names = tuple(pipeline.ops[index].name for index in order)
    return PipelinePlan(names, tuple(order), tuple(reorders), tuple(jobs), tuple(decodes))


# 1. Reorder -----------------------------------------------------------------------------------------


def commutes(terms: Contract, op: Op, contracts: list[Contract]) -> bool:
    """A filter that may change place: per-sample, it drops samples, rewrites nothing, reads no op's output."""
    produced = provides(column for other in contracts for column in other.produces)
    return op.shape == "map" and terms.filters and not terms.rewrites and not terms.needs & produced


def may_pass(terms: Contract, before: Op, before_terms: Contract) -> bool:
    """Whether a commuting filter with `terms` may move ahead of the op `before` it."""
    if before.shape != "map":
        return False
    if before_terms.rewrites & (terms.needs | {"samples"}):
        return False
    mine, theirs = TIER_RANK[terms.cost_tier], TIER_RANK[before_terms.cost_tier]
    return theirs > mine or (not before_terms.filters and theirs >= mine)


def reorder(pipeline: Pipeline, contracts: list[Contract]) -> tuple[list[int], list[Reorder]]:
    """The run order (indices into pipeline.ops) and the moves that made it."""
    order: list[int] = []
    moves: list[Reorder] = []
    for index, op in enumerate(pipeline.ops):
        position = len(order)
        passed: list[int] = []
        if commutes(contracts[index], op, contracts):
            while position > 0 and may_pass(contracts[index], pipeline.ops[order[position - 1]],
                                            contracts[order[position - 1]]):
                position -= 1
                passed.append(order[position])
        order.insert(position, index)
        if passed:
            reason = _reason(pipeline, contracts, index, passed)
            moves.append(Reorder(pipeline.name, op.name, index, position, reason))
    return order, moves


def _reason(pipeline: Pipeline, contracts: list[Contract], index: int, passed: list[int]) -> str:
    ahead = ", ".join(
        f"{pipeline.ops[j].name} ({contracts[j].cost_tier} {'filter' if contracts[j].filters else 'op'})"
        for j in reversed(passed)
    )
    return (
        f"{contracts[index].cost_tier} filter moved ahead of {ahead}: it reads none of their output, "
        "and running it first means they see fewer samples"
    )


# 2. Jobs --------------------------------------------------------------------------------------------


def fuse(pipeline: Pipeline, contracts: list[Contract], order: list[int]) -> tuple[list[Job], dict[int, str]]:
    """The jobs of a pipeline in run order, and the job name of each op index."""
    groups: list[list[int]] = []
    current: list[int] = []
    resource: Resource = "cpu"  # of the open job: a job opened by a header-only op is a CPU job
    for index in order:
        op, terms = pipeline.ops[index], contracts[index]
        if op.shape == "barrier":
            groups += [group for group in (current, [index]) if group]
            current = []
            continue
        if terms.cost_tier == "header":
            resource = resource if current else "cpu"
        else:
            if current and terms.resource != resource:
                groups.append(current)
                current = []
            resource = terms.resource
        current.append(index)
        if op.shape == "split":
            groups.append(current)
            current = []
    if current:
        groups.append(current)

    jobs: list[Job] = []
    job_of: dict[int, str] = {}
    for number, group in enumerate(groups):
        job = _job(pipeline, contracts, group, f"{pipeline.name}-{number:02d}")
        jobs.append(job)
        job_of.update((index, job.name) for index in group)
    return jobs, job_of


def _job(pipeline: Pipeline, contracts: list[Contract], group: list[int], name: str) -> Job:
    terms = [contracts[index] for index in group]
    on_gpu = any(t.resource == "gpu" for t in terms)
    return Job(
        name=name,
        pipeline=pipeline.name,
        ops=tuple(pipeline.ops[index].name for index in group),
        scope="global" if pipeline.ops[group[0]].shape == "barrier" else "per_sample",
        resource="gpu" if on_gpu else "cpu",
        cpu_cores=max(t.cpu_cores for t in terms),
        gpus=1 if on_gpu else 0,
        gpu_memory_gib=sum(t.gpu_memory_gib for t in terms),
    )


# 3. Decode ------------------------------------------------------------------------------------------


def plan_decodes(
    pipeline: Pipeline, contracts: list[Contract], order: list[int], job_of: dict[int, str], video: bool
) -> list[DecodeStep]:
    """One decode per segment that needs pixels (see the module docstring); stills have no frame rate."""
    steps = []
    for segment in _segments(pipeline, order):
        needing = [index for index in segment if contracts[index].decode is not None]
        if not needing:
            continue
        need = merge([contracts[index].decode for index in needing])  # type: ignore[misc]
        steps.append(
            DecodeStep(
                pipeline=pipeline.name,
                job=job_of[needing[0]],
                trigger=pipeline.ops[needing[0]].name,
                serves=tuple(pipeline.ops[index].name for index in needing),
                short_side_px=need.short_side_px,
                fps=need.fps if video else None,
                every_frame=need.every_frame and video,
            )
        )
    return steps


def _segments(pipeline: Pipeline, order: list[int]) -> list[list[int]]:
    segments: list[list[int]] = [[]]
    for index in order:
        shape = pipeline.ops[index].shape
        if shape == "barrier":
            segments += [[index], []]
            continue
        segments[-1].append(index)
        if shape == "split":
            segments.append([])
    return [segment for segment in segments if segment]


def merge(needs: list[DecodeNeed]) -> DecodeNeed:
    """The one decode that serves every need: the largest minimum size, a rate each can subsample."""
    sides = [need.short_side_px for need in needs]
    side = None if None in sides else max(sides)  # type: ignore[type-var]
    every = any(need.every_frame for need in needs)
    rates = [need.fps for need in needs if need.fps]
    return DecodeNeed(side, None if every or not rates else common_rate(rates), every)


def common_rate(rates: list[float]) -> float:
    """The smallest frame rate every rate divides exactly: 2 and 3 fps share a 6 fps decode."""
    fractions = [Fraction(rate).limit_denominator(1000) for rate in rates]
    numerator = lcm(*(f.numerator for f in fractions))
    denominator = gcd(*(f.denominator for f in fractions))
    return float(Fraction(numerator, denominator))
