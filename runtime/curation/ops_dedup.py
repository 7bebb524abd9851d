"""Dedup barriers: exact (sha256 of the media bytes) and perceptual (pHash / dHash within a Hamming radius).

Both keep the first sample by key order and decide every later one against the samples already kept.
The perceptual hash is computed in the workers on the reduced decode (pHash resizes to 4x the hash side
anyway; the reference measures 0.2 of 64 bits between a 256 px and a full-size hash) and cached; the
search runs in one process through a multi-index hash (runtime/curation/hamming.py), not all pairs.
"""

from __future__ import annotations

import math

import imagehash
from PIL import Image

from runtime.curation.api import (
    KEEP,
    BarrierItem,
    BarrierOp,
    OpConfigError,
    Score,
    Verdict,
)
from runtime.curation.hamming import HammingIndex
from runtime.curation.records import Record
from runtime.curation.registry import register

HASH_SIDE = 128  # decode size for perceptual hashes: 4x the 32 px pHash works on, with margin


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

    batch_size = 32

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
        function = imagehash.phash if self.spec.hash == "phash" else imagehash.dhash
        scores = []
        for record in records:
            frames = record.pixels.keyframes(HASH_SIDE)
            image = Image.fromarray(frames[len(frames) // 2])  # a video is hashed by its middle keyframe
            scores.append({"hash": str(function(image, hash_size=self.hash_side))})
        return scores

    def decide_all(self, items: list[BarrierItem]) -> list[Verdict]:
        index = HammingIndex(self.spec.hash_bits, self.spec.max_hamming)
        kept_keys: list[str] = []
        verdicts = []
        for item in items:
            code = int(item.score["hash"], 16)
            match = index.find(code)
            if match is None:
                index.add(code)
                kept_keys.append(item.key)
                verdicts.append(KEEP)
                continue
            original, distance = kept_keys[match[0]], match[1]
            if self.spec.action == "drop":
                verdicts.append(Verdict.drop("near duplicate", f"{distance} bits from {original}"))
            else:
                verdicts.append(Verdict.keep(sampling_weight=self.spec.downweight, near_duplicate_of=original))
        return verdicts
