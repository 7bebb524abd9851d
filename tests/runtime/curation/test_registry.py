"""The op registry: which kinds run, refusals with a fix, and adding an implementation with one decorator."""

import json
import typing

import pytest

from compiler.schema.data import (
    Blur,
    CurationOp,
    FrameConsistency,
    HumanReview,
    MotionScore,
    TechnicalQuality,
    Watermark,
)
from runtime.curation import missing_implementations, missing_kinds, registry, run
from runtime.curation.api import KEEP, MapOp, OpConfigError, Verdict
from runtime.curation.registry import implementation_for, register
from runtime.curation.shards import read_shard

# Kinds that need model weights: implemented (or not yet) by model-backed modules, not by the core.
MODEL_KINDS = {
    "technical_quality", "aesthetic", "safety", "watermark", "ocr_text_area", "clip_similarity", "ai_generated",
    "visual_quality", "defect_mask", "semantic_dedup", "balance", "active_learning", "recaption",
    "precompute_embeddings",
}


CORE_MODULES = {f"runtime.curation.ops.{name}" for name in
                ("header", "image", "video", "motion", "dedup", "text", "synthetic")}


@pytest.fixture
def core_only(monkeypatch):
    """The registry as the core runtime fills it, without model-backed modules."""
    registry._discover()
    table = {slot: cls for slot, cls in registry._IMPLEMENTATIONS.items() if cls.__module__ in CORE_MODULES}
    monkeypatch.setattr(registry, "_IMPLEMENTATIONS", table)


def schema_kinds() -> list[str]:
    union = typing.get_args(typing.get_args(CurationOp)[0])
    return [cls.model_fields["kind"].default for cls in union]


def test_the_core_implements_every_kind_that_needs_no_model(core_only):
    assert set(missing_kinds(schema_kinds())) == MODEL_KINDS
    assert missing_kinds(["blur", "no_such_kind", "no_such_kind"]) == ["no_such_kind"]


def test_scorers_without_weights_are_refused_with_the_alternative(core_only):
    with pytest.raises(OpConfigError, match="scorer 'lpips' has no implementation; implemented scorers: dssim"):
        implementation_for(FrameConsistency())
    assert implementation_for(MotionScore()).__name__ == "MotionScore"
    raft = MotionScore(scorer="raft", scale={"low": 0, "unit": "px"})
    (message,) = missing_implementations([raft, Blur(min_laplacian_var=1)])
    assert "farneback" in message


def test_unimplemented_kind_stops_before_reading(tmp_path, core_only):
    assert missing_kinds(["technical_quality"]) == ["technical_quality"]
    with pytest.raises(OpConfigError, match="kind 'technical_quality' has no runtime implementation"):
        run([TechnicalQuality()], tmp_path / "no-such-input", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_score_read_before_it_is_made_and_duplicate_names_are_refused(shards, tmp_path):
    with pytest.raises(OpConfigError, match="reads the score of 'blur'"):
        run([HumanReview(score_of="blur", band=(0, 10)), Blur(min_laplacian_var=1)], shards, tmp_path / "o")
    with pytest.raises(OpConfigError, match="name 'blur' is used twice"):
        run([Blur(min_laplacian_var=1), Blur(min_laplacian_var=2)], shards, tmp_path / "o")


def test_registering_twice_for_one_slot_is_an_error(core_only):
    class Another(MapOp):
        pass

    with pytest.raises(ValueError, match="already implemented"):
        register("blur")(Another)


def test_one_decorator_adds_a_model_op(shards, tmp_path, core_only):
    """What a model-backed module does: register a scorer for a kind, and the whole runtime uses it."""

    @register("watermark", scorer="red-pixel-share")
    class RedShare(MapOp):
        def decode_side(self):
            return 64

        def scoring_params(self):
            return {}

        def score(self, records):
            return [{"value": float((r.pixels.image(64)[..., 0] > 200).mean())} for r in records]

        def decide(self, record, score):
            if score["value"] > self.spec.max_score:
                return Verdict.drop("watermark", f"{score['value']:.2f}")
            return KEEP

    assert missing_kinds(["watermark"]) == []
    op = Watermark(scorer="red-pixel-share", max_score=0.05)
    report = run([op], f"{shards}/images-000.tar", tmp_path / "out", workers=1)
    assert report.ops[0].seen == 10 and report.kept + sum(report.ops[0].dropped.values()) == 10
    kept = [r for r in read_shard(str(tmp_path / "out" / "shards" / "images-000.tar"))]
    assert all("watermark" in r.scores for r in kept)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["ops"][0]["kind"] == "watermark"
