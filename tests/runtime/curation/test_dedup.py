"""Dedup: the multi-index Hamming search against brute force, and exact / perceptual dedup across shards."""

import io
import itertools
import json

import cv2
import imagehash
import numpy as np
import pytest
from PIL import Image

from compiler.schema.data import ExactDedup, PerceptualDedup
from runtime.curation import run
from runtime.curation.api import OpConfigError, OpContext
from runtime.curation.ops import hamming
from runtime.curation.ops.hamming import near_duplicates, pack
from runtime.curation.ops.dedup import dhash, phash
from runtime.curation.records import Record
from runtime.curation.registry import build
from runtime.curation.runner import plan_color, plan_side
from runtime.curation.shards import read_shard


def planted(count: int, bits: int, radius: int, seed: int) -> list[int]:
    """Random codes where every fifth is an earlier code with 0..radius+2 bits flipped."""
    rng = np.random.default_rng(seed)
    codes: list[int] = []
    for i in range(count):
        if i % 5 == 4:
            code = codes[int(rng.integers(0, len(codes)))]
            for bit in rng.choice(bits, int(rng.integers(0, radius + 3)), replace=False):
                code ^= 1 << int(bit)
        else:
            code = int.from_bytes(rng.bytes(bits // 8), "little")
        codes.append(code)
    return codes


def keep_first_brute_force(codes: list[int], radius: int) -> list[int | None]:
    kept: list[int] = []
    result = []
    for code in codes:
        match = next((k for k in kept if (codes[k] ^ code).bit_count() <= radius), None)
        result.append(match)
        if match is None:
            kept.append(len(result) - 1)
    return result


@pytest.mark.parametrize("bits, radius", [(64, 0), (64, 4), (64, 10), (256, 12), (144, 6)])
def test_multi_index_search_matches_brute_force(bits, radius):
    codes = planted(1500, bits, radius, seed=bits + radius)
    originals, distances = near_duplicates(pack([f"{c:0{bits // 4}x}" for c in codes], bits), radius)
    found = [None if m < 0 else m for m in originals.tolist()]
    assert found == keep_first_brute_force(codes, radius)
    assert sum(m is not None for m in found) > len(codes) // 20  # the planted duplicates were found
    for position, match in enumerate(found):
        if match is not None:
            assert distances[position] == (codes[position] ^ codes[match]).bit_count()


@pytest.mark.parametrize("bits, radius, count", [(64, 4, 1_000_000), (64, 4, 200_000), (64, 8, 100_000), (256, 10, 10**6)])
def test_multi_index_shape_is_exact_by_pigeonhole(bits, radius, count):
    shape = hamming.multi_hash_shape(bits, radius, count)
    assert sum(width for width, _ in shape) == bits
    assert sum(flips + 1 for _, flips in shape) > radius  # some chunk is within its flips for every pair
    assert max(width for width, _ in shape) <= hamming.MAX_CHUNK_BITS


def test_mixed_flip_shape_matches_brute_force(monkeypatch):
    """The shape chosen for 1M 64-bit hashes (chunks probed with one flip beside an exact chunk), forced
    onto a set small enough to check against brute force."""
    shape = hamming.multi_hash_shape(64, 4, 1_000_000)
    assert {flips for _, flips in shape} == {0, 1}
    monkeypatch.setattr(hamming, "multi_hash_shape", lambda bits, radius, count: shape)
    codes = planted(1500, 64, 4, seed=7)
    originals, _ = hamming.near_duplicates(pack([f"{c:016x}" for c in codes], 64), 4)
    assert [None if m < 0 else m for m in originals.tolist()] == keep_first_brute_force(codes, 4)


def test_candidates_that_all_fail_verification_find_nothing():
    """Codes sharing chunks but 8 bits apart: every candidate is rejected by the popcount."""
    originals, distances = near_duplicates(pack(["0000000000000000", "00000000000000ff"], 64), 1)
    assert originals.tolist() == [-1, -1] and distances.tolist() == [0, 0]


def test_search_reports_the_earliest_kept_match():
    originals, distances = near_duplicates(pack(["000000000000000f", "0000000000000007", "0000000000000003"], 64), 1)
    assert originals.tolist() == [-1, 0, -1]  # the third is 1 bit from the second, which was dropped
    assert distances.tolist() == [0, 1, 0]


def test_exact_and_perceptual_dedup_across_shards(shards, tmp_path):
    report = run([ExactDedup(), PerceptualDedup(max_hamming=4)], f"{shards}/images-*.tar", tmp_path / "out", workers=1)
    rejects = report.rejects
    (exact,) = rejects["exact_dedup: exact duplicate"]
    assert exact == {"key": "sharp0_copy", "shard": "images-001", "stage": 1, "detail": "same sha256 as sharp0", "origin": ""}
    (near,) = rejects["perceptual_dedup: near duplicate"]
    assert (near["key"], near["detail"]) == ("sharp1_resized", "0 bits from sharp1")
    kept = {r.key for r in read_shard(str(tmp_path / "out" / "shards" / "images-000.tar"))}
    assert {"sharp0", "sharp1"} <= kept


def test_perceptual_dedup_can_downweight(shards, tmp_path):
    op = PerceptualDedup(max_hamming=4, action="downweight", downweight=0.25)
    run([op], f"{shards}/images-*.tar", tmp_path / "out", workers=1)
    records = {r.key: r for r in read_shard(str(tmp_path / "out" / "shards" / "images-001.tar"))}
    assert records["sharp1_resized"].metadata["sampling_weight"] == 0.25
    assert records["sharp1_resized"].metadata["near_duplicate_of"] == "sharp1"
    assert "sampling_weight" not in records["sharp3"].metadata
    assert json.loads((tmp_path / "out" / "report.json").read_text())["dropped"] == 0


def test_dedup_parameters_that_cannot_run_are_refused():
    with pytest.raises(OpConfigError, match="square"):
        build(PerceptualDedup(hash_bits=60), None)
    with pytest.raises(OpConfigError, match="needs perceptual_dedup.downweight"):
        build(PerceptualDedup(action="downweight"), None)
    with pytest.raises(OpConfigError, match="set exact_dedup.hash = 'sha256'"):
        build(ExactDedup(hash="md5_packets"), None)


def test_phash_and_dhash_are_imagehash_on_the_square_they_hash():
    rng = np.random.default_rng(0)
    for side in (8, 6, 16):  # 64, 36 (not a whole number of bytes) and 256 bits
        for _ in range(10):
            square = rng.integers(0, 256, (4 * side, 4 * side), dtype=np.uint8)
            assert phash(square, side) == str(imagehash.phash(Image.fromarray(square), hash_size=side))
            strip = rng.integers(0, 256, (side, side + 1), dtype=np.uint8)
            assert dhash(strip, side) == str(imagehash.dhash(Image.fromarray(strip), hash_size=side))


def encode(image: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt, **options)
    return buffer.getvalue()


def perceptual_hashes(op, media: dict[str, tuple[bytes, str]]) -> dict[str, int]:
    """The op's hashes of named (bytes, ext) media, decoded as a stage of this op decodes them."""
    impl = build(op, OpContext())
    records = [Record(name, data, ext) for name, (data, ext) in media.items()]
    for record in records:
        record.attach_decoder(plan_side([impl]), color=plan_color([impl]))
    return {r.key: int(s["hash"], 16) for r, s in zip(records, impl.score(records))}


@pytest.mark.parametrize("kind", ["phash", "dhash"])
def test_near_duplicates_hash_within_the_radius_and_unrelated_images_do_not(media, kind):
    op = PerceptualDedup(hash=kind, max_hamming=4)
    copies, originals = {}, {}
    for i in range(6):
        original = np.asarray(Image.open(io.BytesIO(media[f"sharp{i}"])))
        height, width = original.shape[:2]
        originals[f"sharp{i}"] = (media[f"sharp{i}"], "jpg")
        copies[f"sharp{i}_q40"] = (encode(original, "JPEG", quality=40), "jpg")
        copies[f"sharp{i}_png"] = (encode(original, "PNG"), "png")
        half = cv2.resize(original, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        copies[f"sharp{i}_half"] = (encode(half, "JPEG", quality=75), "jpg")
        larger = cv2.resize(original, (width * 3 // 2, height * 3 // 2), interpolation=cv2.INTER_CUBIC)
        copies[f"sharp{i}_larger"] = (encode(larger, "JPEG", quality=90), "jpg")
    hashes = perceptual_hashes(op, {**originals, **copies})
    for name in copies:
        original = name.rsplit("_", 1)[0]
        assert (hashes[name] ^ hashes[original]).bit_count() <= op.max_hamming, name
    for a, b in itertools.combinations(originals, 2):
        assert (hashes[a] ^ hashes[b]).bit_count() > 3 * op.max_hamming, (a, b)


def test_embeddings_are_stored_beside_the_manifests_not_in_them(shards, tmp_path):
    from compiler.schema.data import SemanticDedup

    report = run([SemanticDedup(embedder="all-minilm-l6-v2", clusters=2, eps=0.05)], f"{shards}/images-*.tar",
                 tmp_path / "out", workers=1)
    assert report.samples_read > 0
    for manifest in sorted((tmp_path / "out" / "_work" / "stage0").glob("*.json")):
        if manifest.name == "barrier.json":
            continue
        scores = [e["barrier_score"] for e in json.loads(manifest.read_text())["records"] if "barrier_score" in e]
        assert scores and all("embedding" not in s for s in scores)
        vectors = np.load(manifest.with_suffix(".embeddings.npy"))
        assert sorted(s["embedding_row"] for s in scores) == list(range(len(vectors)))
        assert vectors.shape[1] == scores[0]["dim"] == 384
