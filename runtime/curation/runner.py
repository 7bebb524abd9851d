"""Run ops over records: the score cache, verdicts, quarantine, and one shard through one stage.

`BoundOp` runs one op over a batch (cache lookups, one score() call, verdicts); `StageRunner` runs a
stage's ops over a batch (both executors use it); `ShardSink` writes one shard's outputs and manifest.
The local executor (and the Slurm task) run `process_shard`: read a shard, run the stage batch by batch
(decoding ahead in threads when the stage has a model op), write the kept, review and quarantine shards
atomically and the shard's manifest last. The manifest is the done-marker: a rerun skips a shard whose
manifest matches the job, and redoes (overwrites) any other, so no sample is ever written twice.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from runtime.curation.api import (
    FULL,
    MapOp,
    OpImpl,
    Score,
    SplitOp,
    UnreadableSample,
    Verdict,
)
from runtime.curation.layout import Layout
from runtime.curation.records import Fate, Record
from runtime.curation.registry import build
from runtime.curation.scorecache import ScoreCache, score_id
from runtime.curation.shards import (
    ShardWriter,
    Unreadable,
    read_shard,
    remove_stale_temporaries,
)
from runtime.curation.stages import ShardJob, op_from_json

_UNSCORED = object()  # process(): a record the op does not apply to
DECODE_THREADS = 2  # per worker process: enough to keep one model op fed on a GPU without oversubscribing the CPUs
PREFETCH_BATCHES = 2  # decoded batches held ahead of the model ops: bounds the pixels in memory


class BoundOp:
    """An op implementation with its score id, run on batches of records."""

    def __init__(self, impl: OpImpl, plan_side: int, color: bool = True) -> None:
        self.impl = impl
        self.name = impl.name
        self.decode_side = impl.decode_side()
        self.grey = not impl.needs_color  # the op reads luma: from a luma-only decode if the stage has one
        self.dtype = impl.planned_resources()[0].dtype
        params = impl.scoring_params()
        if params is not None and self.dtype != "auto":  # a score in another precision is another score
            params = {**params, "dtype": self.dtype}
        decode: int | str | None = plan_side if self.decode_side is not None else None
        if decode is not None and self.grey and not color:
            decode = f"{plan_side} luma"  # JPEG's Y channel, not luma(RGB): equal up to rounding, not bit-exact
        self.score_id = None if params is None else score_id(impl.spec.kind, impl.version, params, decode)

    def process(self, records: list[Record], cache: ScoreCache | None, ended: list[Record]) -> list[Record]:
        """Score and decide `records`; returns the survivors (and children), appends the others to `ended`."""
        with self._exclusive():
            return self._process(records, cache, ended)

    def _exclusive(self):
        """A model op's instance is shared by the shard threads of a GPU stage (executors/local.py): one batch
        at a time goes through its model and its limits (a stand-in's limits learn from the scores seen)."""
        return _model_lock(self.impl) if self.impl.stateful else nullcontext()

    def _process(self, records: list[Record], cache: ScoreCache | None, ended: list[Record]) -> list[Record]:
        started = time.perf_counter()
        targets = [r for r in records if self.impl.applies(r)]
        scores = self._scores(targets, cache, ended)
        per_record = (time.perf_counter() - started) / max(1, len(targets))
        survivors: list[Record] = []
        name, clock, apply = self.name, time.perf_counter, self._apply
        for record in records:
            if record.fate is not None:  # quarantined while scoring
                record.trace[name] = per_record
                continue
            score = scores.get(record, _UNSCORED)
            if score is _UNSCORED:  # not for this op
                record.trace[name] = 0.0
                survivors.append(record)
                continue
            tick = clock()
            try:
                survivors.extend(apply(record, score, ended))
            except UnreadableSample as error:
                quarantine(record, name, str(error))
                ended.append(record)
            record.trace[name] = per_record + clock() - tick
        return survivors

    def score_only(self, records: list[Record], cache: ScoreCache | None, ended: list[Record]) -> list[Record]:
        """A barrier's scoring pass at the end of a stage: store the score, keep every readable record."""
        started = time.perf_counter()
        with self._exclusive():
            scores = self._scores(records, cache, ended)
        per_record = (time.perf_counter() - started) / max(1, len(records))
        for record in records:
            record.trace[self.name] = per_record
            if record in scores and scores[record] is not None:
                record.scores[self.name] = scores[record]
        return [r for r in records if r.fate is None]

    def _scores(
        self, records: list[Record], cache: ScoreCache | None, ended: list[Record]
    ) -> dict[Record, Score | None]:
        """Scores from the cache, the rest from one score() call; unreadable records are quarantined."""
        found: dict[Record, Score | None] = {}
        misses = records
        if self.score_id is not None and cache is not None and records:
            cached = cache.get(self.score_id, [(r.key, r.digest) for r in records])
            found = {r: cached[r.key] for r in records if r.key in cached}
            misses = [r for r in records if r.key not in cached]
        if self.score_id is not None and self.decode_side is not None:
            misses = self._decodable(misses, ended)
        for record, score in self._score_isolating(misses, ended):
            found[record] = score
        if self.score_id is not None and cache is not None:
            cache.put(self.score_id, [(r.key, r.digest, found[r]) for r in misses if found.get(r) is not None])
        return found

    def _decodable(self, records: list[Record], ended: list[Record]) -> list[Record]:
        """Decode each record before scoring, so an undecodable one is quarantined alone and the batch
        scorer never sees it (the decode is cached: score() reads the same pixels)."""
        readable = []
        side, grey = self.decode_side, self.grey
        for record in records:
            try:
                record.pixels.load(side, grey)
                readable.append(record)
            except UnreadableSample as error:
                quarantine(record, self.name, str(error))
                ended.append(record)
        return readable

    def _score_isolating(self, records: list[Record], ended: list[Record]) -> Iterator[tuple[Record, Score | None]]:
        """score() on the batch; if one sample is unreadable, score one by one to quarantine only it."""
        if not records:
            return
        try:
            yield from zip(records, self._checked_score(records))
            return
        except UnreadableSample:
            pass
        for record in records:
            try:
                yield record, self._checked_score([record])[0]
            except UnreadableSample as error:
                quarantine(record, self.name, str(error))
                ended.append(record)

    def _checked_score(self, records: list[Record]) -> list[Score | None]:
        from runtime.curation.modelzoo.weights import precision

        with precision(self.dtype):
            scores = self.impl.score(records)
        if len(scores) != len(records):
            raise RuntimeError(
                f"{type(self.impl).__name__}.score returned {len(scores)} scores for {len(records)} records"
            )
        return scores

    def _apply(self, record: Record, score: Score | None, ended: list[Record]) -> list[Record]:
        if score is not None:
            record.scores[self.name] = score
        if isinstance(self.impl, SplitOp):
            result = self.impl.split(record, score)
            if isinstance(result, list):
                return self._replace(record, result, ended)
            verdict = result
        elif isinstance(self.impl, MapOp):
            verdict = self.impl.decide(record, score)
        else:
            raise TypeError(f"{type(self.impl).__name__} is a {self.impl.shape} op; process() runs map and split ops")
        if apply_verdict(record, verdict, self.name):
            return [record]
        ended.append(record)
        return []

    def _replace(self, record: Record, result: list[Record], ended: list[Record]) -> list[Record]:
        children = [r for r in result if r is not record]
        plan, color = record.pixels.plan_side, record.pixels.color
        for index, child in enumerate(children):
            child.origin, child.seq = self.name, (*record.seq, index)
            child.attach_decoder(plan, color=color)
        if any(r is record for r in result):
            return result
        if not children:
            apply_verdict(record, Verdict.drop("no output records"), self.name)
        else:
            record.fate = Fate("split", self.name, children=tuple(c.key for c in children))
        ended.append(record)
        return children


def apply_verdict(record: Record, verdict: Verdict, op: str) -> bool:
    """Set the record's fate from a verdict; True if it stays in the pipeline."""
    if verdict.fate == "keep":
        record.metadata.update(verdict.metadata)
        return True
    kind = "dropped" if verdict.fate == "drop" else "review"
    record.fate = Fate(kind, op, verdict.reason, verdict.detail)
    return False


def quarantine(record: Record, op: str, error: str) -> None:
    record.fate = Fate("quarantined", op, "unreadable", error)


_MODEL_LOCKS: dict[int, threading.Lock] = {}


def _model_lock(impl: OpImpl) -> threading.Lock:
    return _MODEL_LOCKS.setdefault(id(impl), threading.Lock())  # setdefault is atomic: one lock per instance


# One shard through one stage ------------------------------------------------------------------------

_BUILT: dict[tuple[Any, ...], tuple[list[OpImpl], OpImpl | None]] = {}


def stage_ops(job: ShardJob) -> tuple[list[OpImpl], OpImpl | None]:
    """Op instances of a stage, built once per process (model weights load once per worker) for each context."""
    slot = (job.stage.config_hash(), job.model_dir, job.scale, job.architecture, job.encode_size, job.encode_clip)
    if slot not in _BUILT:
        ctx = job.context()
        ops = [build(op_from_json(op), ctx) for op in job.stage.ops]
        barrier = build(op_from_json(job.stage.barrier_out), ctx) if job.stage.barrier_out else None
        _BUILT[slot] = (ops, barrier)
    return _BUILT[slot]


def plan_side(impls: Iterable[OpImpl]) -> int:
    """The one decode size of a stage: the largest any op reads (the smallest size all of them accept)."""
    return max((s for s in (i.decode_side() for i in impls) if s is not None), default=FULL)


def plan_color(impls: Iterable[OpImpl]) -> bool:
    """Whether the stage decodes colour: some op that reads pixels needs it (else luma only, faster)."""
    return any(i.needs_color for i in impls if i.decode_side() is not None)


class StageRunner:
    """The ops of one stage bound for execution; `run` takes a batch of read items to their fates.

    `ops` selects a slice of the stage's map/split ops (the Ray executor runs model ops on their own
    actors); by default all of them. `first` applies the incoming barrier's verdicts (`verdicts`:
    shard -> key -> verdict, default the job's shard); `last` scores the outgoing barrier and sets the
    final fate.
    """

    def __init__(
        self,
        job: ShardJob,
        ops: slice = slice(None),
        first: bool = True,
        last: bool = True,
        verdicts: dict[str, dict[str, dict[str, Any]]] | None = None,
    ) -> None:
        impls, barrier = stage_ops(job)
        every = [*impls, *([barrier] if barrier else [])]
        side, color = plan_side(every), plan_color(every)
        self.side, self.color, self.first, self.last, self.final = side, color, first, last, job.stage.final
        self.bound = [BoundOp(op, side, color) for op in impls[ops]]
        self.barrier = BoundOp(barrier, side, color) if barrier is not None and last else None
        self.barrier_in = op_from_json(job.stage.barrier_in).name if job.stage.barrier_in else ""
        self.verdicts = {job.stem: job.verdicts} if verdicts is None else verdicts  # shard -> key -> verdict
        self.cache = ScoreCache(Path(job.cache_dir))
        self.batch_size = max([op.batch_size for op in impls] + [barrier.batch_size if barrier else 1])

    def run(self, items: list[Record | Unreadable]) -> list[Record | Unreadable]:
        """Every item with its fate set (or, when not `last`, live records still without one), in seq order."""
        ended: list[Record | Unreadable] = [i for i in items if isinstance(i, Unreadable) or i.fate is not None]
        live = []
        for record in (i for i in items if isinstance(i, Record) and i.fate is None):
            pixels = record._pixels  # an earlier segment of this stage (Ray) already decoded: keep its pixels
            if pixels is None or (pixels.plan_side, pixels.color) != (self.side, self.color):
                record.attach_decoder(self.side, color=self.color)
            verdict = self.verdicts.get(record.shard, {}).get(record.key) if self.first else None
            if verdict is not None and not apply_verdict(record, Verdict(**verdict), self.barrier_in):
                ended.append(record)
            else:
                live.append(record)
        for op in self.bound:
            live = op.process(live, self.cache, ended)
        if self.barrier is not None:
            live = self.barrier.score_only(live, self.cache, ended)
        if self.last:
            for record in live:
                record.fate = Fate("kept" if self.final else "pass")
        for record in [*ended, *(live if self.last else [])]:  # live records carry their pixels to the next ops
            if isinstance(record, Record):
                record.release()
        return sorted([*ended, *live], key=lambda item: item.seq)

    def prefetch_target(self) -> tuple[int, bool] | None:
        """(side, grey) of the decode the stage's first model op reads, or None when the stage has no model
        op (then nothing is decoded ahead: a header-only op may drop a record that would never be decoded)."""
        first = next((op for op in self.bound if op.impl.stateful and op.decode_side is not None), None)
        return None if first is None else (first.decode_side, first.grey)

    def predecode(self, batch: list[Record | Unreadable]) -> list[Record | Unreadable]:
        """Decode `batch` as the first model op will read it (in a decode thread, while the model scores the
        batch before); a failure is left for that op to meet again and quarantine."""
        side, grey = self.prefetch_target()
        for record in batch:
            if isinstance(record, Record) and record.fate is None:
                record.attach_decoder(self.side, color=self.color)  # what run() attaches: it keeps this one
                try:
                    record.pixels.load(side, grey)
                except Exception:  # noqa: BLE001 - the op's own decode raises it again, in order, and quarantines
                    pass
        return batch

    def close(self) -> None:
        self.cache.close()


class ShardSink:
    """Where one shard's records go in one stage: kept/pass, review and quarantine shards, the ledger.

    `close` renames the shards into place and writes the manifest last: the manifest is the done-marker.
    """

    def __init__(self, job: ShardJob) -> None:
        layout = Layout(Path(job.output))
        stage = job.stage
        self.job = job
        self.barrier = op_from_json(stage.barrier_out).name if stage.barrier_out else None
        self.writers = {
            "kept": ShardWriter(layout.kept(job.stem) if stage.final else layout.intermediate(stage.index, job.stem)),
            "review": ShardWriter(layout.review(job.stem, stage.index)),
            "quarantined": ShardWriter(layout.quarantine(job.stem, stage.index)),
        }
        self.manifest_path = layout.manifest(stage.index, job.stem)
        self.embeddings_path = layout.embeddings(stage.index, job.stem)
        remove_stale_temporaries([w.path for w in self.writers.values()] + [self.manifest_path, self.embeddings_path])
        self.ledger: list[dict[str, Any]] = []
        self.vectors: list[np.ndarray] = []  # the barrier's embeddings, stored beside the manifest

    def add(self, item: Record | Unreadable) -> None:
        if isinstance(item, Unreadable):
            error = json.dumps({"op": item.op, "error": item.error, "shard": item.shard}).encode()
            self.writers["quarantined"].write(item.key, {**item.members, "error.json": error})
            self.ledger.append({
                "key": item.key, "fate": "quarantined", "op": item.op, "reason": "unreadable",
                "detail": item.error, "trace": {},
            })
            return
        fate = item.fate
        if fate.kind in ("kept", "pass"):
            self.writers["kept"].write(item.key, item.to_members())
        elif fate.kind == "review":
            self.writers["review"].write(item.key, item.to_members())
        elif fate.kind == "quarantined":
            error = json.dumps({"op": fate.op, "error": fate.detail, "shard": item.shard}).encode()
            self.writers["quarantined"].write(item.key, {**item.to_members(), "error.json": error})
        entry = _entry(item, self.barrier)
        score = entry.get("barrier_score")
        if isinstance(score, dict) and isinstance(score.get("embedding"), str):
            from runtime.curation.modelzoo.embedders import decode_vector

            self.vectors.append(decode_vector(score["embedding"]).astype("<f2"))
            entry["barrier_score"] = {**{k: v for k, v in score.items() if k != "embedding"},
                                      "embedding_row": len(self.vectors) - 1}
        self.ledger.append(entry)

    def close(self) -> dict[str, Any]:
        for writer in self.writers.values():
            writer.close()
        if self.vectors:
            self.embeddings_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.embeddings_path.with_name(f"{self.embeddings_path.name}.tmp-{os.getpid()}")
            with open(tmp, "wb") as file:
                np.save(file, np.stack(self.vectors))
            os.replace(tmp, self.embeddings_path)
        manifest = {
            "stage": self.job.stage.index,
            "shard": self.job.stem,
            "source": self.job.source,
            "job_hash": self.job.job_hash(),
            "written": {kind: writer.count for kind, writer in self.writers.items()},
            "records": self.ledger,
        }
        _write_json_atomic(self.manifest_path, manifest)
        return manifest

    def abort(self) -> None:
        for writer in self.writers.values():
            writer.abort()


def read_items(source: str, limit: int | None = None) -> Iterator[Record | Unreadable]:
    """The shard's samples (its first `limit`, if given) with their position (seq) set."""
    for index, item in enumerate(read_shard(source)):
        if limit is not None and index >= limit:
            return
        item.seq = (index,)
        yield item


def process_shard(job: ShardJob) -> dict[str, Any]:
    """Run one stage over one shard; returns the manifest (also written, last, as the done-marker)."""
    sink = ShardSink(job)
    runner = StageRunner(job)
    try:
        batches = _batches(read_items(job.source, job.limit), runner.batch_size)
        if runner.prefetch_target() is not None:
            batches = _prefetched(batches, runner.predecode)
        for batch in batches:
            for item in runner.run(batch):
                sink.add(item)
        return sink.close()
    except BaseException:
        sink.abort()
        raise
    finally:
        runner.close()


def _prefetched(batches: Iterator[list[Any]], decode: Callable[[list[Any]], list[Any]]) -> Iterator[list[Any]]:
    """`batches`, each decoded by `decode` in one of DECODE_THREADS threads, up to PREFETCH_BATCHES ahead of
    the batch being scored. The shard is read in this thread, in order; decoders (libjpeg, libavcodec,
    OpenCV) and torch release the GIL, so decoding overlaps model inference."""
    with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="decode") as pool:
        pending: deque[Future] = deque()
        for batch in batches:
            pending.append(pool.submit(decode, batch))
            if len(pending) > PREFETCH_BATCHES:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _entry(record: Record, barrier: str | None) -> dict[str, Any]:
    """The ledger entry of a record: fate, op and reason, seconds per op, numeric score values."""
    fate = record.fate
    entry: dict[str, Any] = {"key": record.key, "fate": fate.kind, "trace": record.trace}
    if fate.op:
        entry.update(op=fate.op, reason=fate.reason, detail=fate.detail)
    if fate.children:
        entry["children"] = list(fate.children)
    if record.origin:
        entry["origin"] = record.origin
    values = {op: s["value"] for op, s in record.scores.items() if isinstance(s, dict) and _is_number(s.get("value"))}
    if values:
        entry["values"] = values
    if fate.kind == "pass" and barrier is not None and barrier in record.scores:
        entry["barrier_score"] = record.scores[barrier]
    return entry


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _write_json_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, sort_keys=True))
    os.replace(tmp, path)
