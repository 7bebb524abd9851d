"""Dedup barriers: exact (sha256 of the media bytes) and perceptual (pHash / dHash within a Hamming radius).

Both keep the first sample by key order and decide every later one against the samples already kept.
The perceptual hash is computed in the workers on the reduced luma decode (pHash resizes to 4x the hash
side anyway; the reference measures 0.2 of 64 bits between a 256 px and a full-size hash) and cached; the
search runs once per stage through a vectorised multi-index hash (runtime/curation/ops/hamming.py), not all pairs.

The hashes are imagehash's algorithms (`imagehash.phash`, `imagehash.dhash`) computed with OpenCV on the
grey image, about 10x faster than imagehash's PIL + scipy round trip (see `phash`). Individual bits may
differ from imagehash's, so hashes are only compared with each other, never with imagehash's.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from runtime.curation.api import (
    KEEP,
    BarrierItem,
    BarrierOp,
    OpConfigError,
    Score,
    Verdict,
)
from runtime.curation.ops.hamming import near_duplicates, pack
from runtime.curation.records import Record
from runtime.curation.registry import register

HASH_SIDE = 128  # decode size for perceptual hashes: 4x the 32 px pHash works on, with margin
PHASH_FACTOR = 4  # imagehash's highfreq_factor: the DCT runs on a (4 x hash side) square image


def phash(grey: np.ndarray, hash_side: int = 8) -> str:
    """imagehash.phash of a grey image, with OpenCV and numpy: hex of hash_side**2 bits, first bit most
    significant (imagehash's string).

    imagehash's algorithm: squash the image to a (4 * hash_side) square, take its 2-D DCT-II (scipy's,
    unnormalised), keep the top-left hash_side x hash_side block of low frequencies (DC included), and
    set a bit where a coefficient is above the block's median. Here the square is an OpenCV INTER_AREA
    (box) reduction (uint8, as imagehash's), where imagehash resizes with PIL's LANCZOS, and the low block
    of the DCT is computed directly as B @ square @ B.T with the hash_side lowest rows B of scipy's
    DCT-II matrix (cheaper than a full 32x32 transform; OpenCV's cv2.dct gives the same block up to
    scaling row and column 0 by sqrt(2)). On the same 32 px square the bits equal imagehash's; from a
    larger image the different resize can flip a few bits, so hashes are compared only with each other
    within genspec. Near-duplicates hash alike (tests/runtime/curation/test_dedup.py).
    """
    basis = _dct_rows(hash_side, hash_side * PHASH_FACTOR)
    size = basis.shape[1]
    square = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)  # uint8, as PIL's
    low = basis @ square @ basis.T
    ordered = np.sort(low, axis=None)  # np.median, without its microseconds of overhead
    middle = ordered.size // 2
    median = ordered[middle] if ordered.size % 2 else (ordered[middle - 1] + ordered[middle]) * np.float32(0.5)
    return _hex(low > median)


def dhash(grey: np.ndarray, hash_side: int = 8) -> str:
    """imagehash.dhash of a grey image, with OpenCV: a bit per horizontal neighbour pair of a
    (hash_side + 1) x hash_side reduction (INTER_AREA, uint8 as imagehash's) where the right pixel is
    brighter."""
    small = cv2.resize(grey, (hash_side + 1, hash_side), interpolation=cv2.INTER_AREA)
    return _hex(small[:, 1:] > small[:, :-1])


@functools.cache
def _dct_rows(rows: int, size: int) -> np.ndarray:
    """The first `rows` rows of scipy's unnormalised DCT-II matrix of order `size`:
    M[k, n] = 2 cos(pi k (2n + 1) / (2 size)), float32."""
    k, n = np.arange(rows)[:, None], np.arange(size)[None, :]
    return (2 * np.cos(np.pi * k * (2 * n + 1) / (2 * size))).astype(np.float32)


def _hex(bits: np.ndarray) -> str:
    """imagehash's hex of a bit array: row-major, first bit most significant, ceil(bits / 4) digits."""
    flat = bits.ravel()
    if flat.size % 8 == 0:
        return np.packbits(flat).tobytes().hex()
    flat = np.concatenate([np.zeros(-flat.size % 8, bool), flat])
    return f"{int.from_bytes(np.packbits(flat).tobytes(), 'big'):0{-(-bits.size // 4)}x}"


@register("exact_dedup")
class ExactDedup(BarrierOp):
    """Drops samples whose media bytes equal an earlier sample's."""

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        if spec.hash != "sha256":
            raise OpConfigError(
                f"{spec.name}.hash = {spec.hash!r} needs video packet demuxing (PyAV), which this runtime does "
                f"not include; set {spec.name}.hash = 'sha256' (hashes the whole file)"
            )

    def score(self, records: list[Record]) -> list[Score | None]:
        return [{"sha256": r.digest} for r in records]

    def decide_all(self, items: list[BarrierItem]) -> list[Verdict]:
        first: dict[str, str] = {}
        verdicts = []
        for item in items:
            digest = item.score["sha256"]
            if digest in first:
                verdicts.append(Verdict.drop("exact duplicate", f"same sha256 as {first[digest]}"))
            else:
                first[digest] = item.key
                verdicts.append(KEEP)
        return verdicts


@register("perceptual_dedup")
class PerceptualDedup(BarrierOp):
    """Drops (or down-weights) samples within `max_hamming` bits of an earlier kept sample's hash."""

    version = "2"  # 2: hashes computed with OpenCV on the luma decode (1: imagehash on RGB)
    batch_size = 32
    needs_color = False

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        side = math.isqrt(spec.hash_bits)
        if side * side != spec.hash_bits:
            raise OpConfigError(
                f"{spec.name}.hash_bits = {spec.hash_bits}: {spec.hash} hashes are square bit grids; "
                f"use a square such as 64 or 256"
            )
        if spec.action == "downweight" and spec.downweight is None:
            raise OpConfigError(f"{spec.name}.action = 'downweight' needs {spec.name}.downweight (e.g. 0.1)")
        self.hash_side = side

    def decode_side(self) -> int | None:
        return HASH_SIDE

    def scoring_params(self) -> dict:
        return {"hash": self.spec.hash, "bits": self.spec.hash_bits, "side": HASH_SIDE}

    def score(self, records: list[Record]) -> list[Score | None]:
        function, side = phash if self.spec.hash == "phash" else dhash, self.hash_side
        scores = []
        for record in records:
            if record.is_video:
                frames = record.pixels.keyframes(HASH_SIDE, grey=True)
                grey = frames[len(frames) // 2]  # a video is hashed by its middle keyframe
            else:
                grey = record.pixels.grey(HASH_SIDE)
            scores.append({"hash": function(grey, side)})
        return scores

    def decide_all(self, items: list[BarrierItem]) -> list[Verdict]:
        codes = pack([item.score["hash"] for item in items], self.spec.hash_bits)
        originals, distances = near_duplicates(codes, self.spec.max_hamming)
        verdicts = []
        for item, match, distance in zip(items, originals.tolist(), distances.tolist()):
            if match < 0:
                verdicts.append(KEEP)
                continue
            original = items[match].key
            if self.spec.action == "drop":
                verdicts.append(Verdict.drop("near duplicate", f"{distance} bits from {original}"))
            else:
                verdicts.append(Verdict.keep(sampling_weight=self.spec.downweight, near_duplicate_of=original))
        return verdicts
