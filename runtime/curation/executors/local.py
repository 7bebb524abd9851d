"""The embedded executor: a pool of workers over shards on this machine (also what each Slurm array task runs).

Each worker runs whole shards (`runner.process_shard`); a finished shard is never redone on a rerun.
Workers are processes, spawned, not forked (model-backed ops load torch, which must not be forked after
initialisation), except in a stage with a model op on a GPU (`shares_models`): there the workers are
threads of this process, so each model is loaded once and shared (W processes would hold W copies on
the one GPU), its batches scored one at a time (runner.BoundOp) while the other threads read and decode.
With one worker (or one shard) everything runs in this process, which keeps tests and debugging simple.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed

from tqdm import tqdm

from runtime.curation.runner import process_shard, stage_ops
from runtime.curation.stages import ShardJob


def shares_models(job: ShardJob) -> bool:
    """Whether the stage of `job` runs a model op on a GPU: its workers are then threads sharing one copy."""
    impls, barrier = stage_ops(job)
    return any(op.stateful and op.planned_resources()[0].gpus > 0 for op in [*impls, *([barrier] if barrier else [])])


def run_jobs(jobs: list[ShardJob], workers: int, description: str) -> None:
    """Process every job; a worker's exception stops the run (finished shards keep their manifests)."""
    if not jobs:
        return
    progress = tqdm(total=len(jobs), desc=description, unit="shard", disable=None)
    try:
        if workers <= 1 or len(jobs) == 1:
            for job in jobs:
                process_shard(job)
                progress.update()
            return
        count = min(workers, len(jobs))
        pool: Executor = (ThreadPoolExecutor(count, thread_name_prefix="shard") if shares_models(jobs[0]) else
                          ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")))
        with pool:
            futures = [pool.submit(process_shard, job) for job in jobs]
            for future in as_completed(futures):
                future.result()
                progress.update()
    finally:
        progress.close()
