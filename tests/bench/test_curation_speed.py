"""Curation speed, each contender beside its baseline in one run (`make bench`).

Group "curation image decode": the same shard of 48 photographic-texture 1024x1024 JPEGs, read from the
tar, (a) fully decoded with PIL and nothing else, (b) through the fused image pipeline as the runtime
runs it: probe + resolution + aspect ratio on the header, one reduced decode shared by blur, exposure and
the pHash of perceptual dedup (none of them reads colour, so the stage decodes luma only: the JPEG's Y
channel, DCT-scaled to 256 px), (c) the same checks unfused, each op decoding the full image itself, as
per-op curation tools do. Scores are not cached, so every round computes them.

Groups "near-duplicate search, N hashes": keep-first deduplication of 64-bit perceptual hashes within 4
bits, where every fifth hash is a copy of an earlier one with 0-6 bits flipped. The multi-index hash
(runtime/curation/ops/hamming.py) against the all-pairs baseline (numpy XOR + popcount over the lower triangle,
in row chunks) on the same 20,000 and on the same 200,000 hashes (2e10 comparisons: one round); both must
find exactly the same duplicates. Goals: >= 20x all-pairs at 200,000; 1,000,000 hashes (index only)
within 6x of 200,000's time (its extra_info time_vs_multi_index_hash-200000). Timed by process CPU time.

Group "curation executors": the same CPU pipeline over the same shards with the local executor and with
Ray Data (one local Ray of 2 CPUs, started once); goal: Ray within 1.3x of local.
"""

from __future__ import annotations

import io
import time

import cv2
import imagehash
import numpy as np
import pytest
from PIL import Image

from compiler.schema.data import (
    AspectRatioFilter,
    Blur,
    Exposure,
    PerceptualDedup,
    Probe,
    ResolutionFilter,
)
from runtime.curation.api import OpContext
from runtime.curation.ops.hamming import near_duplicates
from runtime.curation.records import Record
from runtime.curation.registry import build
from runtime.curation.runner import BoundOp, plan_color, plan_side
from runtime.curation.shards import ShardWriter, read_shard

IMAGES = 48
SIDE = 1024
RADIUS = 4


def photo(seed: int) -> bytes:
    """A 1024x1024 JPEG with photo-like content: smooth shading, hard edges, mild sensor noise (sigma 4).

    Noise matters: entropy decoding is not reduced by draft mode, so the noisier the image, the less a
    reduced decode saves (with sigma 12 the draft decode is only 1.25x faster than a full one here)."""
    rng = np.random.default_rng(seed)
    low = cv2.resize(rng.random((32, 32, 3)).astype(np.float32), (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)
    image = np.clip(low * 200 + rng.normal(0, 4, (SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
    for _ in range(20):
        x, y = (int(v) for v in rng.integers(0, SIDE, 2))
        cv2.circle(image, (x, y), int(rng.integers(20, 150)), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def jpeg_shard(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "photos-000.tar"
    writer = ShardWriter(path)
    for i in range(IMAGES):
        writer.write(f"photo{i:03d}", {"jpg": photo(i), "txt": b"a photo"})
    writer.close()
    return str(path)


def full_decode(shard: str) -> int:
    decoded = 0
    for record in read_shard(shard):
        with Image.open(io.BytesIO(record.media)) as image:
            image.load()
            decoded += image.size[0] > 0
    return decoded


def fused_pipeline(shard: str) -> int:
    ops = [Probe(), ResolutionFilter(min_short_side_px=512), AspectRatioFilter(min_ratio=0.5, max_ratio=2),
           Blur(min_laplacian_var=20), Exposure(min_mean_luma=10, max_mean_luma=245)]
    impls = [build(op, OpContext()) for op in ops]
    dedup = build(PerceptualDedup(max_hamming=RADIUS), OpContext())
    side, color = plan_side([*impls, dedup]), plan_color([*impls, dedup])  # as StageRunner plans the stage
    bound, hashing = [BoundOp(impl, side, color) for impl in impls], BoundOp(dedup, side, color)
    records: list[Record] = list(read_shard(shard))
    for record in records:
        record.attach_decoder(side, color=color)
    ended: list[Record] = []
    for op in bound:
        records = op.process(records, None, ended)
    records = hashing.score_only(records, None, ended)
    return len(records)


def unfused_pipeline(shard: str) -> int:
    """The same checks the way per-op tools run them: each op opens and fully decodes the image itself."""
    kept = 0
    for record in read_shard(shard):
        with Image.open(io.BytesIO(record.media)) as image:
            width, height = image.size
        if min(width, height) < 512 or not 0.5 <= width / height <= 2:
            continue
        grey = np.asarray(Image.open(io.BytesIO(record.media)).convert("L"))
        if cv2.Laplacian(grey, cv2.CV_64F).var() < 20:
            continue
        luma = np.asarray(Image.open(io.BytesIO(record.media)).convert("L"))
        if not 10 <= luma.mean() <= 245:
            continue
        imagehash.phash(Image.open(io.BytesIO(record.media)))
        kept += 1
    return kept


CONTENDERS = {"pil_full_decode": full_decode, "fused_image_pipeline": fused_pipeline, "unfused_pipeline": unfused_pipeline}


@pytest.mark.parametrize("contender", list(CONTENDERS))
def test_image_decode(benchmark, jpeg_shard, contender):
    benchmark.group = "curation image decode"
    benchmark.extra_info["baseline"] = "pil_full_decode"
    benchmark.extra_info["images"] = IMAGES
    function = CONTENDERS[contender]
    assert benchmark.pedantic(function, args=(jpeg_shard,), rounds=5, iterations=1, warmup_rounds=1) == IMAGES


def planted_hashes(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**63, count, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, count, dtype=np.uint64)
    for i in range(4, count, 5):
        source = int(rng.integers(0, i // 5 + 1)) * 5 + int(rng.integers(0, 4))  # an original, never a copy
        code = int(codes[source])
        for bit in rng.choice(64, int(rng.integers(0, RADIUS + 3)), replace=False):
            code ^= 1 << int(bit)
        codes[i] = code
    return codes


def dedup_index(codes: np.ndarray) -> np.ndarray:
    originals, _ = near_duplicates(codes.astype(">u8").view(np.uint8).reshape(-1, 8), RADIUS)
    return originals >= 0


def dedup_all_pairs(codes: np.ndarray, rows: int = 256) -> np.ndarray:
    """Keep-first against kept hashes from the full pairwise distance matrix, computed in row chunks."""
    duplicate = np.zeros(len(codes), bool)
    for start in range(0, len(codes), rows):
        stop = min(start + rows, len(codes))
        close = np.bitwise_count(codes[start:stop, None] ^ codes[None, :stop]) <= RADIUS
        for row in range(start, stop):
            duplicate[row] = (close[row - start, :row] & ~duplicate[:row]).any()
    return duplicate


SEARCHES = [("all_pairs_numpy", 20_000), ("multi_index_hash", 20_000),
            ("all_pairs_numpy", 200_000), ("multi_index_hash", 200_000), ("multi_index_hash", 1_000_000)]
_FOUND: dict[tuple[str, int], np.ndarray] = {}
_MEDIAN: dict[tuple[str, int], float] = {}


# Process CPU time: both contenders are single-threaded numpy, and on a shared machine wall time mostly
# measures the other processes (here a 0.25 s CPU search took 0.8 s of wall time under load).
@pytest.mark.benchmark(timer=time.process_time)
@pytest.mark.parametrize("contender, count", SEARCHES)
def test_near_duplicate_search(benchmark, contender, count):
    benchmark.group = f"near-duplicate search, {count:,} hashes"
    benchmark.extra_info["hashes"] = count
    if count < 1_000_000:
        benchmark.extra_info["baseline"] = "all_pairs_numpy"
    codes = planted_hashes(count)
    function = dedup_all_pairs if contender == "all_pairs_numpy" else dedup_index
    # All-pairs on 200,000 hashes is 2e10 comparisons (about a minute here): one round; 1M not at all (5e11).
    rounds = 1 if (contender, count) == ("all_pairs_numpy", 200_000) else 3
    found = benchmark.pedantic(function, args=(codes,), rounds=rounds, iterations=1)
    assert found.sum() > count // 10  # most planted copies are within the radius
    _MEDIAN[contender, count] = benchmark.stats.stats.median
    if count == 1_000_000 and (contender, 200_000) in _MEDIAN:  # goal: within 6x of 200,000's time
        benchmark.extra_info["time_vs_multi_index_hash-200000"] = _MEDIAN[contender, count] / _MEDIAN[contender, 200_000]
    _FOUND[contender, count] = found
    other = _FOUND.get(("all_pairs_numpy" if contender != "all_pairs_numpy" else "multi_index_hash", count))
    if other is not None:
        assert np.array_equal(found, other), "the index and all-pairs must find the same duplicates"


EXECUTOR_SHARDS = 4


@pytest.fixture(scope="module")
def photo_shards(tmp_path_factory, jpeg_shard):
    """EXECUTOR_SHARDS copies of the photo shard under distinct names."""
    directory = tmp_path_factory.mktemp("executor-shards")
    data = open(jpeg_shard, "rb").read()
    for i in range(EXECUTOR_SHARDS):
        (directory / f"photos-{i:03d}.tar").write_bytes(data)
    return directory


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="ray[data] is not installed: pip install -e '.[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_executor(benchmark, photo_shards, local_ray, tmp_path, executor):
    from runtime.curation import run

    benchmark.group = "curation executors"
    benchmark.extra_info["baseline"] = "local"
    ops = [Probe(), ResolutionFilter(min_short_side_px=512), Blur(min_laplacian_var=20),
           Exposure(min_mean_luma=10, max_mean_luma=245)]
    outputs = iter(range(100))

    def curate():  # a fresh output each round: a rerun into the same one would skip every finished shard
        return run(ops, photo_shards, tmp_path / f"out{next(outputs)}", executor=executor, workers=2).samples_read

    assert benchmark.pedantic(curate, rounds=3, iterations=1, warmup_rounds=1) == IMAGES * EXECUTOR_SHARDS
