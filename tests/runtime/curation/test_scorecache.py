"""The score cache under concurrent workers."""

import multiprocessing
from pathlib import Path

from runtime.curation.scorecache import ScoreCache


def open_and_write(directory: str, worker: int, start) -> None:
    start.wait()  # every worker opens the fresh cache at the same moment
    cache = ScoreCache(Path(directory))
    cache.put("sid", [(f"k{worker}", "d", {"value": float(worker)})])
    cache.close()


def test_workers_opening_a_fresh_cache_together_all_get_in(tmp_path):
    context = multiprocessing.get_context("fork")  # the workers need this module, which spawn cannot import by name
    for attempt in range(10):
        directory = tmp_path / f"cache{attempt}"
        start = context.Barrier(8)
        workers = [context.Process(target=open_and_write, args=(str(directory), w, start)) for w in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert [worker.exitcode for worker in workers] == [0] * 8
        found = ScoreCache(directory).get("sid", [(f"k{w}", "d") for w in range(8)])
        assert {key: score["value"] for key, score in found.items()} == {f"k{w}": float(w) for w in range(8)}


def test_a_cache_opened_in_one_thread_serves_others(tmp_path):
    """Ray opens an actor's cache in its constructor and calls it from a thread pool."""
    from concurrent.futures import ThreadPoolExecutor

    cache = ScoreCache(tmp_path)

    def write_and_read(worker: int) -> float:
        cache.put("sid", [(f"k{worker}", "d", {"value": float(worker)})])
        return cache.get("sid", [(f"k{worker}", "d")])[f"k{worker}"]["value"]

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(write_and_read, range(8))) == [float(w) for w in range(8)]
    cache.close()
    assert len(ScoreCache(tmp_path).get("sid", [(f"k{w}", "d") for w in range(8)])) == 8
