"""The Ray Data executor: the same stages and ops as the local executor, on a Ray cluster.

Per stage: one row per shard job -> `flat_map` reads each shard into rows (one pickled record each, plus
an end-of-shard marker so every shard reaches the write step) -> `map_batches` per segment of ops ->
`groupby(shard).map_groups` writes each shard's outputs and manifest through the same `ShardSink` as the
local executor, so the two produce the same files. Rows are sorted by their position in the shard
before writing, so output order does not depend on scheduling.

Segments: consecutive stateless ops run in one task UDF, so a record is decoded once for all of them;
each stateful op (model weights) runs alone on an actor pool with fractional CPUs (0.5 by default),
so on a 2-core machine the actors never take every CPU and starve the read tasks (Ray Data then hangs
without an error). Ray is imported only when this executor is chosen.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from runtime.curation.api import Resources
from runtime.curation.records import Record
from runtime.curation.runner import ShardSink, StageRunner, read_items, stage_ops
from runtime.curation.shards import Unreadable
from runtime.curation.stages import ShardJob

ACTOR_CPUS = 0.5  # model-op actors: fractional, so read and write tasks always find a CPU


def _ray():
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ImportError(
            "the ray executor needs Ray Data: pip install 'ray[data]==2.60.0' (or `make setup`), "
            "or run with --executor local"
        ) from error
    return ray


def _order(seq: tuple[int, ...]) -> str:
    """A sortable string for a record's position: children sort right after their parent."""
    return ".".join(f"{i:09d}" for i in seq)


def _read_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    job: ShardJob = pickle.loads(row["job"])
    rows = [
        {"stem": job.stem, "order": _order(item.seq), "payload": pickle.dumps(item)} for item in read_items(job.source)
    ]
    rows.append({"stem": job.stem, "order": "~end", "payload": b""})  # "~" sorts after every digit
    return rows


def _run_batch(runner: StageRunner, batch: dict[str, Any]) -> dict[str, list[Any]]:
    """Unpickle the batch's records, run the segment, pickle every output row (children included)."""
    markers = [(s, o) for s, o, p in zip(batch["stem"], batch["order"], batch["payload"]) if not len(p)]
    items = [pickle.loads(p) for p in batch["payload"] if len(p)]
    out: dict[str, list[Any]] = {"stem": [], "order": [], "payload": []}
    for item in runner.run(items):
        out["stem"].append(item.shard)
        out["order"].append(_order(item.seq))
        out["payload"].append(pickle.dumps(item))
    for stem, order in markers:
        out["stem"].append(stem)
        out["order"].append(order)
        out["payload"].append(b"")
    return out


def _run_segment(
    batch: dict[str, Any], job: bytes, start: int, stop: int, first: bool, last: bool, verdicts: dict
) -> dict[str, list[Any]]:
    runner = StageRunner(pickle.loads(job), slice(start, stop), first, last, verdicts)
    try:
        return _run_batch(runner, batch)
    finally:
        runner.close()


class _SegmentActor:
    """A stateful (model) op on an actor: built once, weights loaded once per actor."""

    def __init__(self, job: bytes, start: int, stop: int, first: bool, last: bool, verdicts: dict) -> None:
        self.runner = StageRunner(pickle.loads(job), slice(start, stop), first, last, verdicts)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        return _run_batch(self.runner, batch)


def _write_group(group: dict[str, Any], jobs: dict[str, bytes]) -> dict[str, list[Any]]:
    stem = str(group["stem"][0])
    sink = ShardSink(pickle.loads(jobs[stem]))
    try:
        for order, payload in sorted(zip(group["order"], group["payload"]), key=lambda row: row[0]):
            if len(payload):
                item: Record | Unreadable = pickle.loads(payload)
                sink.add(item)
        manifest = sink.close()
    except BaseException:
        sink.abort()
        raise
    return {"stem": [stem], "records": [len(manifest["records"])]}


def segments(job: ShardJob) -> list[tuple[int, int, Resources | None]]:
    """(start, stop, resources of a stateful op or None) covering the stage's ops in order."""
    impls, barrier = stage_ops(job)
    result: list[tuple[int, int, Resources | None]] = []
    start = 0
    for index, impl in enumerate(impls):
        if impl.stateful:
            if index > start:
                result.append((start, index, None))
            result.append((index, index + 1, impl.resources()))
            start = index + 1
    if start < len(impls) or not result:
        result.append((start, len(impls), None))
    if barrier is not None and barrier.stateful:
        result.append((len(impls), len(impls), barrier.resources()))
    return result


def run_jobs(jobs: list[ShardJob], workers: int, description: str) -> None:
    """Run one stage's shard jobs as a Ray Data pipeline; returns when every manifest is written."""
    if not jobs:
        return
    ray = _ray()
    if not ray.is_initialized():
        on_cluster = bool(os.environ.get("RAY_ADDRESS"))
        ray.init(num_cpus=None if on_cluster else max(1, workers), include_dashboard=False, log_to_driver=False)
    template = jobs[0]
    verdicts = {job.stem: job.verdicts for job in jobs}
    payload = pickle.dumps(template)
    impls, barrier = stage_ops(template)
    batch_size = max([op.batch_size for op in impls] + ([barrier.batch_size] if barrier else []) + [1])
    dataset = ray.data.from_items([{"job": pickle.dumps(job)} for job in jobs]).flat_map(_read_rows)
    plan = segments(template)
    for number, (start, stop, resources) in enumerate(plan):
        args = {"job": payload, "start": start, "stop": stop, "first": number == 0,
                "last": number == len(plan) - 1, "verdicts": verdicts}
        if resources is None:
            dataset = dataset.map_batches(_run_segment, fn_kwargs=args, batch_size=batch_size)
        else:
            dataset = dataset.map_batches(
                _SegmentActor, fn_constructor_kwargs=args, batch_size=batch_size, concurrency=max(1, workers),
                num_cpus=min(resources.cpus, ACTOR_CPUS), num_gpus=resources.gpus,
            )
    jobs_by_stem = {job.stem: pickle.dumps(job) for job in jobs}
    grouped = dataset.groupby("stem", num_partitions=min(len(jobs), max(1, workers)))
    written = grouped.map_groups(_write_group, fn_kwargs={"jobs": jobs_by_stem}).take_all()
    missing = sorted(set(jobs_by_stem) - {row["stem"] for row in written})
    if missing:
        raise RuntimeError(f"{description}: Ray wrote no manifest for shards {missing}")
