"""Model scorers over sampled frames: aesthetic, technical quality, safety, watermark, AI-generated,
visual quality and CLIP image-text similarity.

Each op loads its model from MODEL_DIR/<scorer> on the first `score()` call (see runtime/curation/modelzoo/
for the formats), scores a batch of records in one forward pass over all their frames, reduces a video's
frame scores to one value and decides against thresholds. Scores are cached by the runner under the
scorer, its weights' fingerprint and the frame sampling, never the thresholds. At smoke scale a missing
model is a random stand-in and thresholds become quantiles (runtime/curation/modelzoo/weights.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from runtime.curation.api import KEEP, MapOp, OpConfigError, Resources, Score, Verdict
from runtime.curation.modelzoo.classifier import (
    CLASSIFIER_FOLDER,
    CLASSIFIER_REQUIRED,
    folder_labels,
    label_columns,
)
from runtime.curation.modelzoo.clip import CLIP_FOLDER, CLIP_REQUIRED
from runtime.curation.modelzoo.heads import HEAD_FILES
from runtime.curation.modelzoo.weights import (
    Limit,
    Located,
    ModelBacked,
    model_resources,
    processor_side,
    reduce_frames,
)
from runtime.curation.records import Record
from runtime.curation.registry import register

CLIP_SIDE = 224  # CLIP ViT-B/32 and ViT-L/14 resize the short side to 224 and centre-crop 224x224
CLASSIFIER_SIDE = 224  # when a classifier folder has no preprocessor size
SPEC_LESS_FRAMES = 3  # frames per video for ops whose spec has no `frames` field (first, middle, last)
TECHNICAL_FRAMES = 8  # the regressor averages more frames: compression artefacts vary along a clip
HEAD_FOLDER = f"clip/ ({CLIP_FOLDER}) and a LAION-format MLP head ({' or '.join(HEAD_FILES)})"


class FrameScorer(ModelBacked, MapOp):
    """Scores `frames` keyframes per record in one batch and reduces them with `reduce`."""

    stateful = True
    batch_size = 32
    side = CLIP_SIDE
    frames = 1
    reduce = "mean"
    gpu_memory_gb = 2.0

    def decode_side(self) -> int | None:
        return self.side

    def resources(self) -> Resources:
        return model_resources(self.gpu_memory_gb)

    def frame_batches(self, records: list[Record]) -> tuple[list[np.ndarray], list[slice]]:
        """All sampled frames of `records`, and each record's slice of them."""
        frames, slices = [], []
        for record in records:
            mine = record.pixels.keyframes(self.side, self.frames)
            slices.append(slice(len(frames), len(frames) + len(mine)))
            frames.extend(mine)
        return frames, slices

    def scored(self, value: float, per_frame: np.ndarray, **extra: Any) -> Score:
        score: Score = {"value": float(value), **extra}
        if len(per_frame) > 1:
            score["frames"] = [round(float(v), 5) for v in per_frame]
        if self.weights.stand_in:
            score["stand_in"] = self.weights.model_id
        return score


# CLIP embedding + MLP head ----------------------------------------------------------------------------


class ClipHeadScorer(FrameScorer):
    """A LAION-format MLP head over the L2-normalised CLIP image embedding, from MODEL_DIR/<scorer>:
    clip/ (a transformers CLIPModel folder) and the head's state dict."""

    limit: Limit

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self.weights = self.locate(spec.scorer, HEAD_FOLDER, (tuple(f"clip/{n}" for n in CLIP_REQUIRED[0]), HEAD_FILES))
        self.side = processor_side(self.weights, CLIP_SIDE, "clip")

    @cached_property
    def model(self):
        from runtime.curation.modelzoo.clip import ClipEmbedder
        from runtime.curation.modelzoo.heads import (
            laion_head_state,
            load_head,
            mlp_head,
        )

        clip = ClipEmbedder.load(self.weights, "clip")
        if self.weights.stand_in:
            head = mlp_head(laion_head_state(clip.dim, self.weights.seed))
        else:
            head = load_head(self.weights.file(*HEAD_FILES))
        return clip, head.to(clip.device)

    def scoring_params(self) -> dict:
        return {"scorer": self.spec.scorer, "weights": self.weights.fingerprint(), "frames": self.frames, "reduce": self.reduce}

    def score(self, records: list[Record]) -> list[Score | None]:
        import torch

        clip, head = self.model
        frames, slices = self.frame_batches(records)
        embeddings = torch.from_numpy(clip.image_embeddings(frames)).to(clip.device)
        with torch.inference_mode():
            values = head.layers(embeddings).squeeze(-1).float().cpu().numpy()
        scores = []
        for record, part in zip(records, slices):
            value = reduce_frames(values[part], self.reduce)
            self.limit.observe(record.key, value)
            scores.append(self.scored(value, values[part]))
        return scores


@register("aesthetic")
class ClipMlpAesthetic(ClipHeadScorer):
    """Aesthetic score of the LAION predictor (laion-aesthetic-v2: CLIP ViT-L/14 + MLP, 0-10), or of any head
    in its format named by `scorer`. `use` filter / filter_and_condition drops below min_score; condition and
    score_only only store the score (for score_conditioning or subsets)."""

    gpu_memory_gb = 4.0

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        filtering = spec.use in ("filter", "filter_and_condition")
        if filtering and spec.min_score is None:
            raise OpConfigError(
                f"{spec.name}.use is {spec.use!r} but {spec.name}.min_score is unset: set the minimum score "
                f"(e.g. 6.5 on the LAION 0-10 scale) or use 'score_only' / 'condition'"
            )
        self.frames, self.reduce = spec.frames, spec.reduce
        self.limit = Limit(f"{spec.name}.min_score", spec.min_score if filtering else None, "min", self.weights.stand_in)

    def decide(self, record: Record, score: Score | None) -> Verdict:
        detail = self.limit.failure(record.key, score["value"])
        return Verdict.drop("aesthetic below min_score", detail) if detail else KEEP


@register("technical_quality", scorer="clip-technical-regressor")
class ClipTechnicalRegressor(ClipHeadScorer):
    """NOT DOVER: a regression head on CLIP image features (same folder format as the aesthetic head),
    averaged over 8 frames; drops below min_score. DOVER's fragment-sampled Swin/ConvNeXt branches have no
    faithful implementation here, so the scorer "dover" stays unregistered rather than impersonated."""

    gpu_memory_gb = 4.0
    frames = TECHNICAL_FRAMES
    reduce = "mean"

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self.limit = Limit(f"{spec.name}.min_score", spec.min_score, "min", self.weights.stand_in)

    def decide(self, record: Record, score: Score | None) -> Verdict:
        detail = self.limit.failure(record.key, score["value"])
        return Verdict.drop("technical quality below min_score", detail) if detail else KEEP


# Image classifiers -----------------------------------------------------------------------------------

SAFETY_LABELS: dict[str, tuple[str, ...]] = {
    # Labels that count towards each category. GantMan-style classifiers' "sexy" (suggestive) is not NSFW.
    "nsfw": ("nsfw", "porn", "hentai", "explicit", "sexual", "unsafe"),
    "csam": ("csam",),
    "violence": ("violence", "violent"),
    "gore": ("gore", "graphic_violence"),
    "hate": ("hate", "hateful", "hate_symbol"),
}
WATERMARK_LABELS = ("watermark", "watermarked")
AI_GENERATED_LABELS = ("ai_generated", "artificial", "fake", "ai", "generated", "synthetic")
GOOD_QUALITY_LABELS = ("good", "high_quality", "acceptable", "positive")


@dataclass(frozen=True)
class ClassifierModel:
    """One classifier folder of an op and the label columns of each category it scores."""

    weights: Located
    labels: list[str]
    columns: dict[str, list[int]]


class ClassifierScorer(FrameScorer):
    """Probability of one or more categories from image classifiers in MODEL_DIR (one folder per model id;
    several categories may share one); each category is reduced over frames, and `value` is the largest
    category probability."""

    limit: Limit

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        wanted, models = self.category_labels(), self.category_models()
        self.classifiers = [
            self._classifier(model_id, {c: names for c, names in wanted.items() if models[c] == model_id})
            for model_id in dict.fromkeys(models[c] for c in wanted)
        ]
        self.weights = self.classifiers[0].weights
        self.side = max(processor_side(c.weights, CLASSIFIER_SIDE) for c in self.classifiers)

    def _classifier(self, model_id: str, wanted: dict[str, tuple[str, ...]]) -> ClassifierModel:
        weights = self.locate(model_id, CLASSIFIER_FOLDER, CLASSIFIER_REQUIRED)
        labels = ["other", *(names[0] for names in wanted.values())] if weights.stand_in else folder_labels(weights.path)
        columns = {}
        for category, names in wanted.items():
            found = [0] if len(labels) == 1 else label_columns(labels, names)
            if not found:
                raise OpConfigError(
                    f"{self.spec.name}: classifier {model_id!r} ({weights.path}) has labels {labels}, none of "
                    f"which is {category!r} ({', '.join(names)}); point {self.spec.name}.scorer at a classifier "
                    f"with such a label or rename the label in its config.json id2label"
                )
            columns[category] = found
        return ClassifierModel(weights, labels, columns)

    @property
    def stand_in(self) -> bool:
        return any(c.weights.stand_in for c in self.classifiers)

    def category_labels(self) -> dict[str, tuple[str, ...]]:
        raise NotImplementedError

    def category_models(self) -> dict[str, str]:
        """Category -> model id scoring it: `scorer` for all, unless an op says otherwise."""
        return dict.fromkeys(self.category_labels(), self.spec.scorer)

    @cached_property
    def model(self):
        from runtime.curation.modelzoo.classifier import ImageClassifier

        return [ImageClassifier.load(c.weights, c.labels) for c in self.classifiers]

    def scoring_params(self) -> dict:
        params = {"scorer": self.spec.scorer, "weights": self.weights.fingerprint(), "frames": self.frames,
                  "reduce": self.reduce, "categories": sorted(c for m in self.classifiers for c in m.columns)}
        if len(self.classifiers) > 1:
            params["models"] = {m.weights.model_id: m.weights.fingerprint() for m in self.classifiers}
        return params

    def score(self, records: list[Record]) -> list[Score | None]:
        frames, slices = self.frame_batches(records)
        probabilities = {}
        for classifier, meta in zip(self.model, self.classifiers):
            probabilities.update(classifier.category_probabilities(frames, meta.columns))
        stand_ins = [c.weights.model_id for c in self.classifiers if c.weights.stand_in]
        scores = []
        for record, part in zip(records, slices):
            per_category = {name: reduce_frames(p[part], self.reduce) for name, p in probabilities.items()}
            worst = max(per_category, key=per_category.get)
            per_frame = np.max([p[part] for p in probabilities.values()], axis=0)
            self.limit.observe(record.key, per_category[worst])
            extra = {"categories": {k: round(v, 5) for k, v in per_category.items()}} if len(per_category) > 1 else {}
            score = self.scored(per_category[worst], per_frame, **extra)
            if stand_ins:
                score["stand_in"] = ", ".join(stand_ins)
            scores.append(score)
        return scores

    def failure(self, record: Record, score: Score) -> str | None:
        return self.limit.failure(record.key, score["value"])


@register("safety")
class SafetyClassifier(ClassifierScorer):
    """NSFW / CSAM / violence / gore / hate probabilities; a video's frames reduce by `reduce` (max by
    default: one unsafe frame is enough). Drops when any category exceeds max_score."""

    def __init__(self, spec, ctx) -> None:
        self.frames, self.reduce = spec.frames, spec.reduce
        super().__init__(spec, ctx)
        self.limit = Limit(f"{spec.name}.max_score", spec.max_score, "max", self.stand_in)

    def category_labels(self) -> dict[str, tuple[str, ...]]:
        return {category: SAFETY_LABELS[category] for category in self.spec.categories}

    def category_models(self) -> dict[str, str]:
        return {category: self.spec.scorers.get(category, self.spec.scorer) for category in self.spec.categories}

    def decide(self, record: Record, score: Score | None) -> Verdict:
        detail = self.failure(record, score)
        if detail is None:
            return KEEP
        categories = score.get("categories") or {self.spec.categories[0]: score["value"]}
        worst = max(categories, key=categories.get)
        return Verdict.drop(f"unsafe: {worst}", detail)


@register("watermark")
class WatermarkClassifier(ClassifierScorer):
    """Watermark probability (LAION-style watermark/clear classifier); drops above max_score."""

    def __init__(self, spec, ctx) -> None:
        self.frames, self.reduce = spec.frames, spec.reduce
        super().__init__(spec, ctx)
        self.limit = Limit(f"{spec.name}.max_score", spec.max_score, "max", self.stand_in)

    def category_labels(self) -> dict[str, tuple[str, ...]]:
        return {"watermark": WATERMARK_LABELS}

    def decide(self, record: Record, score: Score | None) -> Verdict:
        detail = self.failure(record, score)
        return Verdict.drop("watermark", detail) if detail else KEEP


@register("watermark", scorer="laion-watermark")
class LaionWatermark(FrameScorer):
    """LAION's watermark detector as released (watermark_model_v1.pt: timm EfficientNet-B3 + MLP head, see
    runtime/curation/modelzoo/laion_watermark.py): P(watermark) per frame, reduced; drops above max_score."""

    side = 256  # the detector's input is 256x256

    def __init__(self, spec, ctx) -> None:
        from runtime.curation.modelzoo.laion_watermark import WATERMARK_FOLDER, WEIGHT_FILES

        super().__init__(spec, ctx)
        self.frames, self.reduce = spec.frames, spec.reduce
        self.weights = self.locate(spec.scorer, WATERMARK_FOLDER, (WEIGHT_FILES,))
        self.limit = Limit(f"{spec.name}.max_score", spec.max_score, "max", self.weights.stand_in)

    @cached_property
    def model(self):
        import torch

        from runtime.curation.modelzoo.laion_watermark import build_watermark_model, load_watermark_model
        from runtime.curation.modelzoo.weights import device, inference_dtype

        if self.weights.stand_in:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.weights.seed)
                model = build_watermark_model(stages=((1, 8, 3, 1, 1), (1, 16, 3, 2, 6)), stem=8, features=32,
                                              head=(16, 8)).eval()
        else:
            model = load_watermark_model(self.weights)
        return model.to(device(), inference_dtype(device()))

    def scoring_params(self) -> dict:
        return {"scorer": self.spec.scorer, "weights": self.weights.fingerprint(), "frames": self.frames,
                "reduce": self.reduce}

    def score(self, records: list[Record]) -> list[Score | None]:
        from runtime.curation.modelzoo.laion_watermark import watermark_probabilities

        frames, slices = self.frame_batches(records)
        probabilities = np.array(watermark_probabilities(self.model, frames))
        scores = []
        for record, part in zip(records, slices):
            value = reduce_frames(probabilities[part], self.reduce)
            self.limit.observe(record.key, value)
            scores.append(self.scored(value, probabilities[part]))
        return scores

    def decide(self, record: Record, score: Score | None) -> Verdict:
        detail = self.limit.failure(record.key, score["value"])
        return Verdict.drop("watermark", detail) if detail else KEEP


@register("ai_generated")
class AiGeneratedClassifier(ClassifierScorer):
    """Probability that an image (any of 3 frames of a video: max) is AI-generated; drops above max_score."""

    frames, reduce = SPEC_LESS_FRAMES, "max"

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self.limit = Limit(f"{spec.name}.max_score", spec.max_score, "max", self.stand_in)

    def category_labels(self) -> dict[str, tuple[str, ...]]:
        return {"ai_generated": AI_GENERATED_LABELS}

    def decide(self, record: Record, score: Score | None) -> Verdict:
        detail = self.failure(record, score)
        return Verdict.drop("AI-generated", detail) if detail else KEEP


@register("visual_quality")
class ExpertQualityClassifier(ClassifierScorer):
    """Wan's expert quality model: the predicted probability of a good manual score (label good /
    high_quality, or a single sigmoid logit), mean over 3 frames of a video; drops below min_score.
    `clusters` describes how the model's training samples were chosen; scoring does not use it."""

    frames, reduce = SPEC_LESS_FRAMES, "mean"
    gpu_memory_gb = 8.0

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self.limit = Limit(f"{spec.name}.min_score", spec.min_score, "min", self.stand_in)

    def category_labels(self) -> dict[str, tuple[str, ...]]:
        return {"good": GOOD_QUALITY_LABELS}

    def decide(self, record: Record, score: Score | None) -> Verdict:
        detail = self.failure(record, score)
        return Verdict.drop("visual quality below min_score", detail) if detail else KEEP


# CLIP image-text similarity -----------------------------------------------------------------------------


@register("clip_similarity")
class ClipImageTextSimilarity(FrameScorer):
    """Cosine between the CLIP embeddings of the image (mean of 3 frames of a video, renormalised) and of
    its caption: the original, else the first synthetic one. A record without any caption is dropped with
    the reason "no caption" (there is nothing to compare)."""

    frames = SPEC_LESS_FRAMES

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self.weights = self.locate(spec.scorer, CLIP_FOLDER, CLIP_REQUIRED)
        self.side = processor_side(self.weights, CLIP_SIDE)
        self.limit = Limit(f"{spec.name}.min_score", spec.min_score, "min", self.weights.stand_in)

    @cached_property
    def model(self):
        from runtime.curation.modelzoo.clip import ClipEmbedder

        return ClipEmbedder.load(self.weights)

    def scoring_params(self) -> dict:
        return {"scorer": self.spec.scorer, "weights": self.weights.fingerprint(), "frames": self.frames}

    def score(self, records: list[Record]) -> list[Score | None]:
        captioned = [(r, *caption_of(r)) for r in records]
        with_text = [(r, text, source) for r, text, source in captioned if text]
        scores: dict[str, Score] = {r.key: {"value": None, "caption": None} for r, text, _ in captioned if not text}
        if with_text:
            frames, slices = self.frame_batches([r for r, _, _ in with_text])
            images = self.model.image_embeddings(frames)
            texts = self.model.text_embeddings([text for _, text, _ in with_text])
            for (record, _, source), part, text in zip(with_text, slices, texts):
                image = images[part].mean(axis=0)
                image /= max(np.linalg.norm(image), 1e-12)
                value = float(image @ text)
                self.limit.observe(record.key, value)
                scores[record.key] = self.scored(value, images[part] @ text, caption=source)
        return [scores[r.key] for r in records]

    def decide(self, record: Record, score: Score | None) -> Verdict:
        if score["value"] is None:
            return Verdict.drop("no caption", "clip_similarity compares the image with a caption; the record has none")
        detail = self.limit.failure(record.key, score["value"])
        return Verdict.drop("low image-text similarity", detail) if detail else KEEP


def caption_of(record: Record) -> tuple[str | None, str | None]:
    """(text, source) of the caption image-text ops compare with: the original, else the first synthetic."""
    original = record.captions.get("original")
    if original:
        return str(original), "original"
    for caption in record.captions.get("synthetic") or []:
        if caption.get("text"):
            return str(caption["text"]), f"synthetic:{caption.get('style', '')}"
    return None, None
