"""Caption and score mappers: caption_pii, score_conditioning, human_review."""

import json

import numpy as np
import pytest

from compiler.schema.data import (
    Blur,
    CaptionPii,
    HumanReview,
    ScoreConditioning,
)
from runtime.curation import run
from runtime.curation.api import OpConfigError
from runtime.curation.ops.pii import ENTITIES, redact
from runtime.curation.records import Record
from runtime.curation.registry import build
from runtime.curation.shards import member_keys, read_shard

ALL = ["email", "url", "phone"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mail jane.doe@example.co.uk now", "mail <EMAIL> now"),
        ("see https://example.com/a?b=1.", "see <URL>."),
        ("visit www.example.org today", "visit <URL> today"),
        ("call +1 (555) 123-4567 or 0171 234 5678", "call <PHONE> or <PHONE>"),
        ("shot in 1999 at 1920 x 1080 on 2024-05-01", "shot in 1999 at 1920 x 1080 on 2024-05-01"),
    ],
)
def test_redaction(text, expected):
    assert redact(text, ALL)[0] == expected


def test_caption_pii_redacts_original_and_synthetic_captions():
    op = build(CaptionPii(), None)
    record = Record("k", b"", "jpg")
    record.captions = {"original": "by a@b.io, +44 20 7946 0958", "synthetic": [{"text": "from https://x.org/p"}]}
    assert op.decide(record, None).fate == "keep"
    assert record.captions == {"original": "by <EMAIL>, <PHONE>", "synthetic": [{"text": "from <URL>"}]}
    assert record.metadata["pii_redacted"] == {"email": 1, "phone": 1, "url": 1}
    assert op.notes() == []  # no gazetteer or address patterns at work


@pytest.mark.parametrize(
    "text, expected, found",
    [
        ("John Smith at the beach", "<PERSON_NAME> at the beach", 1),
        ("portrait of Dr. Patel", "portrait of <PERSON_NAME>", 1),
        ("Dr Jane Smith-Jones and Mrs McDonald", "<PERSON_NAME> and <PERSON_NAME>", 2),
        ("Mary J. Blige on stage", "<PERSON_NAME> on stage", 1),
        ("Mr. O'Brien waves", "<PERSON_NAME> waves", 1),
        # a given name followed by a place word is a place, not a person
        ("James Park in spring, Madison Square Garden", "James Park in spring, Madison Square Garden", 0),
        # a given name alone, a surname alone, lower-case names: missed (no NER model)
        ("Smith with John, john smith", "Smith with John, john smith", 0),
    ],
)
def test_person_names(text, expected, found):
    assert redact(text, ["person_name"]) == (expected, {"person_name": found} if found else {})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("221B Baker Street, London NW1 6XE", "<ADDRESS>, London <ADDRESS>"),
        ("1600 Pennsylvania Avenue NW, Washington, DC 20500-0003", "<ADDRESS>, Washington, <ADDRESS>"),
        ("shop at 350 5th Avenue at night", "shop at <ADDRESS> at night"),
        ("write to P.O. Box 1234, Ottawa ON K1A 0B1", "write to <ADDRESS>, Ottawa ON <ADDRESS>"),
        ("12 Oak Dr. in the snow", "<ADDRESS> in the snow"),
        # shaped like an address, so redacted: a pattern cannot tell
        ("Top 10 Best Street Food", "Top <ADDRESS> Food"),
        # no house number, or a bare number: not an address
        ("Baker Street station, 20500 visitors", "Baker Street station, 20500 visitors"),
    ],
)
def test_addresses(text, expected):
    assert redact(text, ["address", "phone"])[0] == expected


@pytest.mark.parametrize(
    "text",
    ["a red circle on a blue background", "Apple pie recipe", "Washington Monument at dusk", "Victoria Station",
     "shot in 1999 at 1920 x 1080 on 2024-05-01", "Rose Garden in June"],
)
def test_ordinary_captions_are_kept(text):
    assert redact(text, list(ENTITIES)) == (text, {})


def test_the_demo_captions_are_all_kept():
    from runtime.demo import PROMPTS
    from runtime.synthetic_data import random_scene

    rng = np.random.default_rng(0)
    captions = {random_scene(rng, shapes).caption() for shapes in (1, 2) for _ in range(300)} | set(PROMPTS)
    assert len(captions) > 100
    for caption in captions:
        assert redact(caption, list(ENTITIES)) == (caption, {})


def test_caption_pii_with_names_and_addresses_reports_how_it_finds_them(shards, tmp_path):
    op = CaptionPii(entities=list(ENTITIES))
    notes = build(op, None).notes()
    assert any("gazetteer" in note and "NOT a named-entity model" in note for note in notes)
    assert any("addresses are found by regular expressions" in note for note in notes)
    record = Record("k", b"", "jpg")
    record.captions = {"original": "Dr. Patel at 10 Downing Street", "synthetic": [{"text": "John Smith, a@b.io"}]}
    assert build(op, None).decide(record, None).fate == "keep"
    assert record.captions["original"] == "<PERSON_NAME> at <ADDRESS>"
    assert record.metadata["pii_redacted"] == {"person_name": 2, "address": 1, "email": 1}
    report = run([op], f"{shards}/images-000.tar", tmp_path / "out", workers=1)
    assert report.dropped == 0 and report.kept == report.samples_read
    assert json.loads((tmp_path / "out" / "report.json").read_text())["notes"] == notes


def test_score_conditioning_copies_values(shards, tmp_path):
    ops = [Blur(min_laplacian_var=20), ScoreConditioning(scores=["blur"], encoding="caption_suffix")]
    run(ops, f"{shards}/images-000.tar", tmp_path / "out", workers=1)
    record = next(r for r in read_shard(str(tmp_path / "out" / "shards" / "images-000.tar")) if r.key == "sharp0")
    value = record.scores["blur"]["value"]
    assert record.metadata["conditioning"] == {"blur": value}
    assert record.captions["original"] == f"sharp0 sample (blur score: {value:.2f})"
    with pytest.raises(OpConfigError, match="reads the score of 'aesthetic'"):
        run([ScoreConditioning(scores=["aesthetic"])], shards, tmp_path / "o2")


def test_human_review_routes_the_band_to_review_shards(shards, tmp_path):
    ops = [Blur(min_laplacian_var=0), HumanReview(score_of="blur", band=(100, 150))]
    report = run(ops, f"{shards}/images-000.tar", tmp_path / "out", workers=1)
    routed = member_keys(tmp_path / "out" / "review" / "images-000.stage0.tar")
    kept = member_keys(tmp_path / "out" / "shards" / "images-000.tar")
    assert routed and report.review == len(routed) and not set(routed) & set(kept)
    for record in read_shard(str(tmp_path / "out" / "review" / "images-000.stage0.tar")):
        assert 100 <= record.scores["blur"]["value"] <= 150


def test_human_review_keeps_samples_scored_by_a_stand_in():
    review = build(HumanReview(score_of="aesthetic", band=(0.0, 1.0)), None)
    scored = Record(key="a", media=b"", media_ext="jpg", shard="s",
                    scores={"aesthetic": {"value": 0.5, "stand_in": "laion-aesthetic-v2"}})
    assert review.decide(scored, None).fate == "keep"
    scored.scores["aesthetic"].pop("stand_in")
    assert review.decide(scored, None).fate == "review"
