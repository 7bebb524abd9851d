"""The Ray Data executor: the same stages and ops as the local executor, on a Ray cluster.

A stage without model ops runs each shard whole in one Ray task (`process_shard`, as a local worker
does). A stage with model ops streams:

    shard jobs -> flat_map(read)            one row per record (pickled), with its shard and position
               -> map_batches per segment   stateless ops as tasks; each model op on its own actor pool
               -> map_batches(write parts)  each batch's outputs to a part file under the stage's work dir
    driver     -> one write task per shard  merges its parts in position order into the same `ShardSink`
                                            as the local executor, so both write the same bytes

No shuffle moves media: rows flow forward only, and what the driver collects is (shard, part file)
pairs. A record is decoded once per stage: its pixels travel with it from segment to segment
(`Decoded.__getstate__`) and are dropped when the stage has decided its fate.

Resources (`fit_resources`): each model op asks for CPUs, GPUs (fractions share a GPU) and a pool size,
the op kind's defaults overridden by the spec's `resources`; the pools are then fitted to the cluster so
that at least one CPU stays free for the read, stateless and write tasks (with every CPU held by actors,
Ray Data waits forever for a CPU to read with). A rerun after a killed worker or driver redoes only
shards without a manifest, and parts are keyed by record position, so a retried task's outputs replace
rather than add to a first attempt's. Ray is imported only when this executor is chosen.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runtime.curation.api import CurationError, Resources
from runtime.curation.layout import Layout
from runtime.curation.runner import ShardSink, StageRunner, process_shard, read_items, stage_ops
from runtime.curation.stages import ShardJob

RESERVED_CPUS = 1.0  # kept free of actors on every cluster: read, stateless and write tasks run there
WRITE_TASK_CPUS = 0.5  # per-shard merge + write: file I/O mostly
SHARD_TASK_CPUS = 1.0  # a whole shard through a stage without model ops: decode and CPU filters


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


@dataclass(frozen=True)
class Segment:
    """Consecutive ops of a stage run by one map_batches: ops[start:stop], on an actor pool of `actors`
    copies with `resources` each when it holds a model (`resources` None: stateless, Ray tasks)."""

    start: int
    stop: int
    name: str
    batch_size: int
    resources: Resources | None = None
    actors: int | None = None  # None: the executor's worker count


def segments(job: ShardJob) -> list[Segment]:
    """The stage's ops cut into segments: runs of stateless ops as tasks, each stateful op alone, and a
    stateful barrier's scoring as its own (empty-range) segment at the end."""
    impls, barrier = stage_ops(job)
    result: list[Segment] = []
    start = 0

    def stateless(stop: int) -> None:
        batch = max([op.batch_size for op in impls[start:stop]] + [1])
        result.append(Segment(start, stop, "+".join(op.name for op in impls[start:stop]) or "read", batch))

    for index, impl in enumerate(impls):
        if impl.stateful:
            if index > start:
                stateless(index)
            resources, actors = impl.planned_resources()
            result.append(Segment(index, index + 1, impl.name, impl.batch_size, resources, actors))
            start = index + 1
    if start < len(impls) or not result:
        stateless(len(impls))
    if barrier is not None and barrier.stateful:
        resources, actors = barrier.planned_resources()
        result.append(Segment(len(impls), len(impls), barrier.name, barrier.batch_size, resources, actors))
    return result


def fit_resources(plan: list[Segment], cpus: float, gpus: float, workers: int) -> list[Segment]:
    """Actor pools sized to fit a cluster of `cpus` and `gpus`, leaving RESERVED_CPUS for tasks.

    Each pool gets its asked size (default `workers`); while the pools' CPUs exceed the budget, the
    largest pool shrinks by one actor; if one actor per pool is still too much, every actor's CPUs are
    scaled down by the same factor (Ray accepts fractions: the actors then share cores). So are GPUs when
    the pools together ask for more than the cluster has; one actor asking for more GPUs than the cluster
    has is an error naming the op and the fix.
    """
    budget = max(cpus - RESERVED_CPUS, cpus / 2)
    pools = [s for s in plan if s.resources is not None]
    for segment in pools:
        if segment.resources.gpus > gpus:
            raise CurationError(
                f"op {segment.name!r} asks for {segment.resources.gpus:g} GPUs per actor, the Ray cluster has "
                f"{gpus:g}; set {segment.name}.resources.gpus to 0 (CPU) or a fraction, or add GPU nodes"
            )
    sizes = {s.name: max(1, s.actors or workers) for s in pools}
    for segment in pools:  # an actor pool may not hold more GPUs than there are
        if segment.resources.gpus:
            sizes[segment.name] = max(1, min(sizes[segment.name], int(gpus // segment.resources.gpus)))

    def used() -> float:
        return sum(sizes[s.name] * s.resources.cpus for s in pools)

    while used() > budget and max(sizes.values(), default=1) > 1:
        largest = max(pools, key=lambda s: (sizes[s.name] * s.resources.cpus, s.name))
        sizes[largest.name] -= 1
    scale = min(1.0, budget / used()) if pools and used() > 0 else 1.0
    # Pools of several model ops that together ask for more GPUs than there are (two ops of one GPU each on
    # a one-GPU machine) would wait forever for the last one: they share the GPUs by fractions instead.
    gpus_used = sum(sizes[s.name] * s.resources.gpus for s in pools)
    gpu_scale = min(1.0, gpus / gpus_used) if gpus_used > 0 else 1.0
    fitted = []
    for segment in plan:
        if segment.resources is None:
            fitted.append(segment)
            continue
        asked = segment.resources
        resources = replace(asked, cpus=round(asked.cpus * scale, 4), gpus=round(asked.gpus * gpu_scale, 4))
        if (sizes[segment.name], resources.cpus, resources.gpus) != (segment.actors or workers, asked.cpus, asked.gpus):
            print(f"ray: op {segment.name!r} runs on {sizes[segment.name]} actor(s) x {resources.cpus:g} CPU, "
                  f"{resources.gpus:g} GPU (asked {segment.actors or workers} x {asked.cpus:g} CPU, {asked.gpus:g} "
                  f"GPU; the cluster has {cpus:g} CPUs, {RESERVED_CPUS:g} kept for tasks, and {gpus:g} GPUs)",
                  file=sys.stderr)
        fitted.append(replace(segment, resources=resources, actors=sizes[segment.name]))
    return fitted


def _order(seq: tuple[int, ...]) -> str:
    """A sortable string for a record's position: children sort right after their parent."""
    return ".".join(f"{i:09d}" for i in seq)


def _read_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    job: ShardJob = pickle.loads(row["job"])
    return [{"stem": job.stem, "order": _order(item.seq), "payload": pickle.dumps(item)}
            for item in read_items(job.source, job.limit)]


def _run_batch(runner: StageRunner, batch: dict[str, Any]) -> dict[str, list[Any]]:
    """Unpickle the batch's records, run the segment, pickle every output row (children included)."""
    out: dict[str, list[Any]] = {"stem": [], "order": [], "payload": []}
    for item in runner.run([pickle.loads(p) for p in batch["payload"]]):
        out["stem"].append(item.shard)
        out["order"].append(_order(item.seq))
        out["payload"].append(pickle.dumps(item))
    return out


def _run_segment(batch: dict[str, Any], **kwargs: Any) -> dict[str, list[Any]]:
    runner = _runner(**kwargs)
    try:
        return _run_batch(runner, batch)
    finally:
        runner.close()


def _runner(job: bytes, start: int, stop: int, first: bool, last: bool, verdicts: dict) -> StageRunner:
    return StageRunner(pickle.loads(job), slice(start, stop), first, last, verdicts)


class _SegmentActor:
    """A model op on an actor: built once, weights loaded once per actor. Ray calls it from a thread
    pool, which the score cache allows (one sqlite connection per thread)."""

    def __init__(self, **kwargs: Any) -> None:
        self.runner = _runner(**kwargs)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        return _run_batch(self.runner, batch)


def _write_parts(batch: dict[str, Any], directory: str) -> dict[str, list[Any]]:
    """Each shard's rows of the batch to one part file (named by its first position, written atomically);
    returns (shard, part) rows: all the driver collects."""
    by_stem: dict[str, list[tuple[str, bytes]]] = {}
    for stem, order, payload in zip(batch["stem"], batch["order"], batch["payload"]):
        by_stem.setdefault(str(stem), []).append((str(order), bytes(payload)))
    out: dict[str, list[Any]] = {"stem": [], "part": []}
    for stem, rows in by_stem.items():
        rows.sort()
        folder = Path(directory) / stem
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{rows[0][0]}-{rows[-1][0]}.pkl"
        tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
        tmp.write_bytes(pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)
        out["stem"].append(stem)
        out["part"].append(str(path))
    return out


def write_shard(job: ShardJob, parts: list[str]) -> int:
    """Merge a shard's parts in position order (a position seen twice, from a retried task, counts once)
    and write the shard and its manifest; returns the number of ledger entries."""
    rows: dict[str, bytes] = {}
    for part in parts:
        rows.update(pickle.loads(Path(part).read_bytes()))
    sink = ShardSink(job)
    try:
        for order in sorted(rows):
            sink.add(pickle.loads(rows[order]))
        return len(sink.close()["records"])
    except BaseException:
        sink.abort()
        raise


def ensure_ray(workers: int):
    """Ray, connected: to RAY_ADDRESS's cluster, an already initialised one, or a local one of `workers` CPUs."""
    ray = _ray()
    if not ray.is_initialized():
        on_cluster = bool(os.environ.get("RAY_ADDRESS"))
        ray.init(num_cpus=None if on_cluster else max(1, workers), include_dashboard=False, log_to_driver=False)
    return ray


def run_jobs(jobs: list[ShardJob], workers: int, description: str) -> None:
    """Run one stage's shard jobs as a Ray Data pipeline; returns when every manifest is written."""
    if not jobs:
        return
    ray = ensure_ray(workers)
    template = jobs[0]
    cluster = ray.cluster_resources()
    plan = fit_resources(segments(template), float(cluster.get("CPU", 1)), float(cluster.get("GPU", 0)), workers)
    if all(segment.resources is None for segment in plan):
        # No model op: each shard runs whole in one task, as a local worker runs it. Streamed through Ray
        # Data, every sample would be pickled into the object store and out again (2.6x local's time here).
        task = ray.remote(process_shard).options(num_cpus=SHARD_TASK_CPUS)
        ray.get([task.remote(job) for job in jobs])
        return
    parts = Layout(Path(template.output)).root / "_work" / f"stage{template.stage.index}" / "ray-parts"
    shutil.rmtree(parts, ignore_errors=True)  # a killed run's parts: their shards are redone from the start
    payload = pickle.dumps(template)
    verdicts = {job.stem: job.verdicts for job in jobs}
    # One block per shard job: each shard is read by its own task, in parallel (one block would read all).
    rows = [{"job": pickle.dumps(job)} for job in jobs]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).flat_map(_read_rows)
    for number, segment in enumerate(plan):
        args = {"job": payload, "start": segment.start, "stop": segment.stop, "first": number == 0,
                "last": number == len(plan) - 1, "verdicts": verdicts}
        if segment.resources is None:
            dataset = dataset.map_batches(_run_segment, fn_kwargs=args, batch_size=segment.batch_size)
        else:
            dataset = dataset.map_batches(
                _SegmentActor, fn_constructor_kwargs=args, batch_size=segment.batch_size,
                compute=ray.data.ActorPoolStrategy(size=segment.actors),
                num_cpus=segment.resources.cpus, num_gpus=segment.resources.gpus or None,
            )
    dataset = dataset.map_batches(_write_parts, fn_kwargs={"directory": str(parts)}, batch_size=None)
    written: dict[str, list[str]] = {job.stem: [] for job in jobs}
    for row in dataset.take_all():
        written[row["stem"]].append(row["part"])
    task = ray.remote(write_shard).options(num_cpus=WRITE_TASK_CPUS)
    counts = ray.get([task.remote(job, written[job.stem]) for job in jobs])
    if len(counts) != len(jobs):
        raise CurationError(f"{description}: Ray wrote {len(counts)} of {len(jobs)} shards")
    shutil.rmtree(parts, ignore_errors=True)
