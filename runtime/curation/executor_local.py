"""The embedded executor: a process pool over shards on this machine.

Each worker process runs whole shards (`runner.process_shard`), so a shard's decode cache, score cache
connection and op instances stay in one process; a finished shard is never redone on a rerun. Workers
are spawned, not forked: model-backed ops load torch, which must not be forked after initialisation.
With one worker (or one shard) everything runs in this process, which keeps tests and debugging simple.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed

from tqdm import tqdm

from runtime.curation.runner import process_shard
from runtime.curation.stages import ShardJob


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
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
            futures = [pool.submit(process_shard, job) for job in jobs]
            for future in as_completed(futures):
                future.result()
                progress.update()
    finally:
        progress.close()
