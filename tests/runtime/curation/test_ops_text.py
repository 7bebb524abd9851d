"""Caption and score mappers (caption_pii, score_conditioning, human_review) and synthetic_text."""

import pytest

from compiler.schema.data import (
    Blur,
    CaptionPii,
    HumanReview,
    ScoreConditioning,
    SyntheticText,
)
from runtime.curation import run
from runtime.curation.api import OpConfigError
from runtime.curation.ops_text import redact
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
    with pytest.raises(OpConfigError, match="named-entity model"):
        build(CaptionPii(entities=["email", "person_name"]), None)


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


def test_synthetic_text_adds_its_share_deterministically(shards, tmp_path):
    op = SyntheticText(fraction=0.5)  # one rendered image per real sample
    first = run([op], f"{shards}/images-000.tar", tmp_path / "a", workers=1)
    run([op], f"{shards}/images-000.tar", tmp_path / "b", workers=1)
    assert first.created == 10 and first.kept == 20
    a, b = (tmp_path / d / "shards" / "images-000.tar" for d in "ab")
    assert a.read_bytes() == b.read_bytes()
    keys = member_keys(a)
    assert keys[:2] == ["sharp0", "sharp0_synthtext000"]  # each follows the sample that triggered it
    rendered = [r for r in read_shard(str(a)) if "synthtext" in r.key]
    assert {r.metadata["curriculum_level"] for r in rendered} <= {"pure_rendering", "compositional", "complex_layout"}
    assert all(r.metadata["text"] in r.captions["original"] for r in rendered)


def test_synthetic_text_refuses_languages_it_cannot_render():
    with pytest.raises(OpConfigError, match="only \\['en'\\]"):
        build(SyntheticText(languages=["en", "zh"]), None)
