"""Column contracts: every op kind has one, and they say what the curation lessons say."""

from typing import get_args

import pytest

from compiler.graph import Contract, DecodeNeed, contract
from compiler.graph.contracts import CONTRACTS, TIER_RANK, satisfied, source_columns
from compiler.schema import (
    Aesthetic,
    CurationOp,
    DefectMask,
    HumanReview,
    MotionScore,
    Probe,
    ResolutionFilter,
    Safety,
    ScoreConditioning,
    Source,
)

# The fields each op kind requires; a new union member without an entry here fails the test below.
REQUIRED = {
    "aspect_ratio": {"min_ratio": 0.5, "max_ratio": 2.0},
    "trim": {"head": 10, "tail": 10},
    "blur": {"min_laplacian_var": 100.0},
    "safety": {"categories": ["nsfw"]},
    "human_review": {"score_of": "aesthetic", "band": (4.0, 5.0)},
    "active_learning": {"scorer": "uncertainty-model"},
    "recaption": {"model": "qwen2.5-vl-7b"},
    "score_conditioning": {"scores": ["aesthetic"]},
}
MEMBERS = get_args(get_args(CurationOp)[0])


def make(cls):
    kind = cls.model_fields["kind"].default
    return cls(**REQUIRED.get(kind, {}))


def test_every_op_kind_of_the_union_has_a_contract():
    kinds = {cls.model_fields["kind"].default for cls in MEMBERS}
    assert kinds == set(CONTRACTS)


@pytest.mark.parametrize("cls", MEMBERS, ids=lambda cls: cls.model_fields["kind"].default)
def test_contract_is_well_formed(cls):
    op = make(cls)
    terms = contract(op)
    assert isinstance(terms, Contract)
    assert terms.cost_tier in TIER_RANK and terms.resource in ("cpu", "gpu")
    assert (terms.cost_tier == "global") == (op.shape == "barrier")
    assert (terms.gpu_memory_gib > 0) == (terms.resource == "gpu"), "GPU ops declare their memory, CPU ops none"
    needs_pixels = bool(terms.needs & {"pixels", "frames"})
    assert needs_pixels == (terms.decode is not None) or op.kind in ("probe", "corruption")
    for column in terms.produces:
        if column.startswith(("score:", "mask:")):
            assert column.split(":", 1)[1] == op.name, "scores and masks are named after their op"


def test_unknown_op_kind_names_the_file_to_extend():
    class Custom:
        kind = "sharpen"

    with pytest.raises(KeyError, match="compiler/graph/contracts.py"):
        contract(Custom())


def test_header_checks_decode_nothing_and_model_scorers_run_on_gpu():
    assert contract(ResolutionFilter(min_short_side_px=256)).decode is None
    assert contract(Probe(check="header")).cost_tier == "header"
    assert contract(Probe(check="full")).decode == DecodeNeed(0, every_frame=True)
    safety = contract(Safety(categories=["nsfw"]))
    assert (safety.cost_tier, safety.resource) == ("model", "gpu")


def test_scoring_is_separate_from_deciding():
    """A scorer keeps its score as a column whether it filters or not; only `filters` differs."""
    filtering = contract(Aesthetic(min_score=6.5))
    scoring = contract(Aesthetic(use="score_only"))
    assert filtering.produces == scoring.produces == {"score:aesthetic"}
    assert filtering.filters and not scoring.filters
    assert "embedding:clip-vit-l14" in filtering.needs  # the LAION head reads a CLIP ViT-L/14 embedding


def test_consumers_name_the_columns_of_other_ops():
    assert contract(HumanReview(score_of="aesthetic", band=(4, 5))).needs == {"score:aesthetic"}
    assert contract(ScoreConditioning(scores=["aesthetic", "clip"])).needs == {"score:aesthetic", "score:clip"}
    assert contract(DefectMask(name="defects")).produces == {"score:defects", "mask:defects"}
    assert contract(DefectMask(emit_mask=False)).produces == {"score:defect_mask"}


def test_motion_score_decodes_at_its_rate_and_farneback_stays_on_cpu():
    farneback = contract(MotionScore(fps=2, analysis_short_side_px=256))
    assert farneback.decode == DecodeNeed(256, fps=2)
    assert (farneback.resource, farneback.cost_tier) == ("cpu", "decode")
    assert contract(MotionScore(scorer="unimatch")).resource == "gpu"


def test_sources_carry_captions_only_for_text_modalities_and_frames_only_for_video():
    image = source_columns(Source(name="web", modality="image"))
    video_text = source_columns(Source(name="stock", modality="video_text"))
    assert "caption:original" not in image and "frames" not in image
    assert {"caption:original", "frames"} <= video_text
    assert satisfied("caption", video_text) and not satisfied("caption", image)
    assert satisfied("embedding:clip-vit-l14", image), "embeddings derive from pixels where first needed"
