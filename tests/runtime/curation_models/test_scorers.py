"""Frame scorers loaded from tiny saved models: scores, thresholds, the score cache, reduce over frames."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.schema.data import (
    Aesthetic,
    AiGenerated,
    ClipSimilarity,
    Safety,
    TechnicalQuality,
    VisualQuality,
    Watermark,
)
from runtime.curation.api import OpConfigError
from runtime.curation.registry import build


def test_aesthetic_scores_with_the_laion_head_and_rethresholds_from_the_cache(kit, full, cache):
    from runtime.curation.modelzoo.clip import ClipEmbedder
    from runtime.curation.modelzoo.heads import HEAD_FILES, load_head

    records = [kit.image_record(f"a{i}", seed=i) for i in range(4)]
    first = kit.run_op(Aesthetic(min_score=-100.0), records, full, cache)
    assert len(first.kept) == 4 and sorted(first.scored) == ["a0", "a1", "a2", "a3"]
    values = {r.key: r.scores["aesthetic"]["value"] for r in first.kept}

    # The score is the head over the unit CLIP image embedding, computed here independently.
    impl = build(Aesthetic(min_score=0.0), full)
    clip = ClipEmbedder.load(impl.weights, "clip")
    head = load_head(impl.weights.file(*HEAD_FILES))
    import torch

    image = records[0].pixels.image(impl.decode_side())
    expected = head.layers(torch.from_numpy(clip.image_embeddings([image]))).item()
    assert values["a0"] == pytest.approx(expected, rel=1e-4)

    # Only the threshold changes: nothing is scored again, and the median splits the records.
    median = float(np.median(list(values.values())))
    again = kit.run_op(Aesthetic(min_score=median), [kit.image_record(f"a{i}", seed=i) for i in range(4)], full, cache)
    assert again.scored == []
    assert {r.key for r in again.kept} == {k for k, v in values.items() if v >= median}
    assert set(again.dropped.values()) == {"aesthetic below min_score"}


def test_aesthetic_filter_without_min_score_is_a_config_error(kit, full):
    with pytest.raises(OpConfigError, match="min_score is unset"):
        build(Aesthetic(use="filter"), full)
    assert build(Aesthetic(use="score_only"), full) is not None


def test_technical_quality_is_an_honestly_named_clip_regressor(kit, full):
    with pytest.raises(OpConfigError, match="clip-technical-regressor"):
        build(TechnicalQuality(), full)  # scorer "dover" has no faithful implementation
    run = kit.run_op(TechnicalQuality(scorer="clip-technical-regressor", min_score=0.3), [kit.image_record("t", 1)], full)
    assert run.ended[0].scores["technical_quality"]["value"] == pytest.approx(0.25)
    assert run.dropped == {"t": "technical quality below min_score"}


def test_safety_reduces_frames_by_max_so_one_unsafe_frame_drops_the_clip(kit, full):
    frames = [np.full((64, 96, 3), 20, np.uint8)] * 5 + [np.full((64, 96, 3), 235, np.uint8)] + [np.full((64, 96, 3), 20, np.uint8)] * 5
    impl = build(Safety(categories=["nsfw", "violence"], frames=11, max_score=0.5), full)

    def brightness_classifier(images):  # stands in for the network: bright frames are "nsfw"
        bright = np.array([image.mean() / 255 for image in images])
        return np.stack([1 - bright, bright, np.zeros_like(bright)], axis=1)

    impl.model[0].probabilities = brightness_classifier
    run = kit.run_op(None, [kit.video_record("clip", frames)], full, impl=impl)
    score = run.ended[0].scores["safety"]
    assert score["value"] > 0.8 and score["categories"]["violence"] == 0.0
    assert run.dropped == {"clip": "unsafe: nsfw"}

    mean_impl = build(Safety(categories=["nsfw"], frames=11, reduce="mean", max_score=0.5), full)
    mean_impl.model[0].probabilities = brightness_classifier
    assert kit.run_op(None, [kit.video_record("clip", frames)], full, impl=mean_impl).dropped == {}


def test_safety_needs_a_label_for_each_category(kit, model_dir, full):
    with pytest.raises(OpConfigError, match="none of which is 'nsfw'"):
        build(Safety(categories=["nsfw"], scorer="labels-without-nsfw"), full)
    with pytest.raises(OpConfigError, match="'csam'"):
        build(Safety(categories=["csam"]), full)


def _classifier_folder(folder, labels: list[str], bias: list[float]) -> None:
    """A tiny ViT classifier whose head outputs softmax(bias) for every image, saved as released."""
    import torch

    from runtime.curation.modelzoo.classifier import tiny_classifier

    model, processor = tiny_classifier(labels, seed=1)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def test_safety_scores_each_category_with_its_own_model_folder(kit, tmp_path):
    from runtime.curation.api import OpContext

    _classifier_folder(tmp_path / "org" / "nsfw-detector", ["normal", "nsfw"], [2.0, 0.0])  # nsfw 0.119
    _classifier_folder(tmp_path / "org--csam-detector", ["safe", "csam"], [2.0, 0.0])  # csam 0.119
    _classifier_folder(tmp_path / "violence-detector", ["calm", "violence"], [0.0, 2.0])  # violence 0.881
    op = Safety(categories=["nsfw", "csam", "violence"], scorer="org/nsfw-detector",
                scorers={"csam": "org/csam-detector", "violence": "violence-detector"}, max_score=0.5)
    ctx = OpContext(tmp_path, "full")
    impl = build(op, ctx)
    assert [c.weights.model_id for c in impl.classifiers] == ["org/nsfw-detector", "org/csam-detector", "violence-detector"]
    run = kit.run_op(None, [kit.image_record("x", 3)], ctx, impl=impl)
    categories = run.ended[0].scores["safety"]["categories"]
    assert categories == pytest.approx({"nsfw": 0.119, "csam": 0.119, "violence": 0.881}, abs=1e-3)
    assert run.dropped == {"x": "unsafe: violence"}


def test_safety_scorers_must_name_listed_categories():
    with pytest.raises(ValueError, match=r"scorers names \['csam'\], which are not in categories"):
        Safety(categories=["nsfw"], scorers={"csam": "org/csam-detector"})


@pytest.mark.parametrize(
    ("op", "probability", "reason"),
    [
        (Watermark(max_score=0.8), 0.881, "watermark"),
        (AiGenerated(max_score=0.1), 0.119, "AI-generated"),
        (VisualQuality(min_score=0.75), 0.731, "visual quality below min_score"),
    ],
)
def test_classifier_probabilities_decide_against_their_thresholds(kit, full, op, probability, reason):
    run = kit.run_op(op, [kit.image_record("x", 3)], full)
    assert run.ended[0].scores[op.name]["value"] == pytest.approx(probability, abs=1e-3)
    assert run.dropped == {"x": reason}
    lenient = op.model_copy(update={"max_score": 1.0} if hasattr(op, "max_score") else {"min_score": 0.0})
    assert kit.run_op(lenient, [kit.image_record("x", 3)], full).dropped == {}


def test_clip_similarity_is_the_cosine_of_clip_embeddings(kit, full):
    op = ClipSimilarity(min_score=-1.0)
    records = [kit.image_record("cap", 4, caption="a red square"), kit.image_record("bare", 5)]
    run = kit.run_op(op, records, full)
    impl = build(op, full)
    image = impl.model.image_embeddings([records[0].pixels.image(impl.decode_side())])[0]
    text = impl.model.text_embeddings(["a red square"])[0]
    assert run.kept[0].scores["clip_similarity"]["value"] == pytest.approx(float(image @ text), abs=1e-5)
    assert run.dropped == {"bare": "no caption"}


def test_video_frames_are_scored_and_reduced(kit, full):
    frames = [kit.texture(seed) for seed in range(9)]
    run = kit.run_op(Aesthetic(use="score_only", frames=3, reduce="min"), [kit.video_record("v", frames)], full)
    score = run.kept[0].scores["aesthetic"]
    assert len(score["frames"]) == 3 and score["value"] == pytest.approx(min(score["frames"]), abs=1e-4)


def test_an_op_runs_its_model_in_the_precision_its_resources_name(kit, full):
    """resources.dtype: the CLIP tower and the head load and infer in bf16 (here on CPU), the scores stay
    within bf16's rounding of the fp32 ones, and a bf16 score is cached apart from an fp32 one."""
    import torch

    from compiler.schema.data import OpResources
    from runtime.curation.runner import BoundOp

    records = [kit.image_record(f"p{i}", seed=i) for i in range(3)]
    fp32 = build(Aesthetic(min_score=-100.0), full)
    bf16 = build(Aesthetic(min_score=-100.0, resources=OpResources(dtype="bfloat16")), full)
    exact = {r.key: r.scores["aesthetic"]["value"] for r in kit.run_op(None, records, full, impl=fp32).kept}
    for record in records:
        record.scores.clear()
    half = {r.key: r.scores["aesthetic"]["value"] for r in kit.run_op(None, records, full, impl=bf16).kept}
    clip, _ = bf16.model
    assert clip.model.dtype == torch.bfloat16 and fp32.model[0].model.dtype == torch.float32
    assert half.keys() == exact.keys() and half != exact
    for key, value in exact.items():
        assert half[key] == pytest.approx(value, rel=0.05, abs=0.05)
    assert BoundOp(bf16, 224).score_id != BoundOp(fp32, 224).score_id
