"""Cut a pipeline's op list into stages at its barriers, and describe one shard's work in a stage.

A barrier (dedup, balancing) must see every record before it decides, so the executor runs the ops in
stages: stage k runs its map and split ops per shard and scores the barrier that ends it; then the
barrier decides over all shards at once; stage k+1 applies those verdicts first and goes on. Without
barriers a pipeline is one stage and each input shard becomes one output shard in one pass.

    ops:     probe  blur  exact_dedup  caption_pii  perceptual_dedup  score_conditioning
    stages:  [0: probe, blur | score exact_dedup] [1: apply exact_dedup, caption_pii | score perceptual_dedup]
             [2: apply perceptual_dedup, score_conditioning]
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from compiler.schema.architecture import ArchitectureSpec
from compiler.schema.data import CurationOp, Op
from runtime.curation.api import OpConfigError, OpContext, OpImpl
from runtime.curation.registry import build


@cache
def _op_adapter() -> TypeAdapter:
    return TypeAdapter(CurationOp)


def op_from_json(data: dict[str, Any]) -> Op:
    """A schema op from its JSON dump (how ops travel to worker processes and Ray tasks)."""
    return _op_adapter().validate_python(data)


def op_json(op: Op) -> dict[str, Any]:
    return op.model_dump(mode="json")


@dataclass(frozen=True)
class StagePlan:
    """The ops of one stage: a barrier applied first, map/split ops, a barrier scored last."""

    index: int
    ops: tuple[dict[str, Any], ...]
    barrier_in: dict[str, Any] | None
    barrier_out: dict[str, Any] | None
    final: bool
    reads_architecture: bool = False  # an op reads the context's architecture and encode size

    def config_hash(self) -> str:
        text = json.dumps([self.ops, self.barrier_in, self.barrier_out, self.final], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def op_notes(ops: list[Op], ctx: OpContext) -> list[str]:
    """What each op says about how it runs here (a smoke-scale stand-in model, an unported scorer), for the
    run report. Constructors are cheap and locate their weights, so building them again costs little."""
    return [note for op in ops for note in getattr(build(op, ctx), "notes", list)()]


def plan_stages(ops: list[Op], ctx: OpContext) -> list[StagePlan]:
    """Stages of `ops`. Builds every op once, so a bad parameter, a missing implementation, a duplicate
    name or a score read before it is made raises OpConfigError before any sample is read."""
    impls = [build(op, ctx) for op in ops]
    _check_names(impls)
    groups: list[list[OpImpl]] = [[]]
    barriers: list[OpImpl] = []
    for impl in impls:
        if impl.shape == "barrier":
            barriers.append(impl)
            groups.append([])
        else:
            groups[-1].append(impl)
    last = len(groups) - 1
    return [
        StagePlan(
            index=i,
            ops=tuple(op_json(impl.spec) for impl in group),
            barrier_in=op_json(barriers[i - 1].spec) if i > 0 else None,
            barrier_out=op_json(barriers[i].spec) if i < last else None,
            final=i == last,
            # The barrier ending a stage scores in it; the one starting it only applies stored verdicts.
            reads_architecture=any(impl.reads_architecture for impl in [*group, *barriers[i:i + 1]]),
        )
        for i, group in enumerate(groups)
    ]


def _check_names(impls: list[OpImpl]) -> None:
    seen: set[str] = set()
    for index, impl in enumerate(impls):
        op = impl.spec
        if op.name in seen:
            raise OpConfigError(
                f"ops[{index}] ({op.kind}): name {op.name!r} is used twice in the pipeline; scores and the "
                "funnel are keyed by op name, so set a distinct `name` on one of them"
            )
        for name in impl.requires_scores():
            if name not in seen:
                raise OpConfigError(
                    f"ops[{index}] ({op.name}) reads the score of {name!r}, which is not an earlier op of the "
                    f"pipeline; move {op.name!r} after {name!r} or fix the name (earlier ops: {sorted(seen)})"
                )
        seen.add(op.name)


@dataclass(frozen=True)
class ShardJob:
    """One shard through one stage; everything a worker process or Ray task needs, as plain values."""

    stage: StagePlan
    source: str  # input shard (stage 0) or the previous stage's intermediate shard
    stem: str
    output: str
    cache_dir: str
    source_id: str  # changes when the source's content may have changed
    verdicts: dict[str, dict[str, Any]]  # barrier_in verdicts for this shard's keys: fate, reason, detail, metadata
    model_dir: str | None = None
    scale: str = "full"
    architecture: str | None = None  # the spec's ArchitectureSpec as JSON text (jobs stay plain values)
    encode_size: tuple[int, int] | None = None  # (height, width) the first consuming training stage trains at
    encode_clip: tuple[int, float | None] | None = None  # its (frames, fps) when it trains videos
    limit: int | None = None  # read only the shard's first `limit` samples (genspec curate --limit)

    def job_hash(self) -> str:
        """What a finished shard's manifest must match to be skipped on a rerun; the architecture and encode
        size count only in stages with an op that reads them, so other stages are not redone for them."""
        parts: list[Any] = [self.stage.config_hash(), self.source_id, self.verdicts]
        if self.limit is not None:
            parts.append({"limit": self.limit})
        if self.stage.reads_architecture:
            parts += [self.architecture, self.encode_size, self.encode_clip]
        text = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def context(self) -> OpContext:
        """The OpContext the job's ops are built with, in whichever process runs the job."""
        return OpContext(
            Path(self.model_dir) if self.model_dir else None,
            self.scale,  # type: ignore[arg-type]
            ArchitectureSpec.model_validate_json(self.architecture) if self.architecture else None,
            self.encode_size,
            self.encode_clip,
        )
