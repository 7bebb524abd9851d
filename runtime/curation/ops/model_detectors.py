"""Model detectors with spatial outputs: LPIPS frame consistency, CRAFT text area, and the defect mask of
Seedream 3.0's defect-aware training.

Formats of the weights folders are in runtime/curation/modelzoo/ (lpips.py, craft.py, segmenter.py).
"""

from __future__ import annotations

import base64
import io
from functools import cached_property

import numpy as np
from PIL import Image

from runtime.curation.api import KEEP, MapOp, OpConfigError, Resources, Score, Verdict
from runtime.curation.modelzoo.classifier import folder_labels, label_columns
from runtime.curation.modelzoo.craft import CRAFT_FOLDER, WEIGHT_FILES
from runtime.curation.modelzoo.lpips import LIN_FILES, LPIPS_FOLDER, TRUNK_FILES
from runtime.curation.modelzoo.segmenter import (
    DEFECT_LABELS,
    SEGMENTER_FOLDER,
    SEGMENTER_REQUIRED,
)
from runtime.curation.modelzoo.weights import (
    Limit,
    ModelBacked,
    model_resources,
    reduce_frames,
)
from runtime.curation.records import Record
from runtime.curation.registry import register

LPIPS_SIDE = 256  # LPIPS was trained on 64 px patches; 256 px frames keep the cost low and detail enough
LPIPS_FPS = 2.0  # frames per second compared (consecutive pairs), as motion scoring samples
OCR_SIDE = 512  # CRAFT needs small text legible; the area ratio is measured at this size
DEFECT_SIDE = 512
DEFECT_THRESHOLD = 0.5  # a pixel is a defect when its defect probability reaches this
EXCLUDED_KEY = "excluded_by"  # metadata naming the filter that excluded a record earlier (applies_to)


class SpatialDetector(ModelBacked, MapOp):
    stateful = True
    batch_size = 8
    side = 256
    gpu_memory_gb = 4.0

    def decode_side(self) -> int | None:
        return self.side

    def resources(self) -> Resources:
        return model_resources(self.gpu_memory_gb)

    def marked(self, score: Score) -> Score:
        if self.weights.stand_in:
            score["stand_in"] = self.weights.model_id
        return score


@register("frame_consistency", scorer="lpips")
class LpipsFrameConsistency(SpatialDetector):
    """Mean LPIPS distance (AlexNet or VGG trunk, as the folder holds) between consecutive frames sampled at 2 fps: below min_score the clip is a
    still image, above max_score it jitters. Images pass through; a one-frame video is dropped."""

    side = LPIPS_SIDE

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self.weights = self.locate(spec.scorer, LPIPS_FOLDER, (LIN_FILES, TRUNK_FILES))
        self.min_score = Limit(f"{spec.name}.min_score", spec.min_score, "min", self.weights.stand_in)
        self.max_score = Limit(f"{spec.name}.max_score", spec.max_score, "max", self.weights.stand_in)

    def applies(self, record: Record) -> bool:
        return record.is_video

    @cached_property
    def model(self):
        from runtime.curation.modelzoo.lpips import load_lpips
        from runtime.curation.modelzoo.weights import device

        return load_lpips(self.weights).to(device())

    def scoring_params(self) -> dict:
        return {"scorer": self.spec.scorer, "weights": self.weights.fingerprint(), "fps": LPIPS_FPS, "side": LPIPS_SIDE}

    def score(self, records: list[Record]) -> list[Score | None]:
        import torch

        scores = []
        for record in records:
            frames = record.pixels.frames(LPIPS_SIDE, LPIPS_FPS)
            if len(frames) < 2:
                scores.append({"value": None, "pairs": 0})
                continue
            batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
            batch = batch.to(next(self.model.parameters()).device)
            with torch.inference_mode():
                distances = self.model(batch[:-1], batch[1:]).float().cpu().numpy()
            value = float(distances.mean())
            for limit in (self.min_score, self.max_score):
                limit.observe(record.key, value)
            scores.append(self.marked({"value": value, "max": float(distances.max()), "pairs": len(distances)}))
        return scores

    def decide(self, record: Record, score: Score | None) -> Verdict:
        if score["value"] is None:
            return Verdict.drop("single-frame video", "frame consistency needs two frames")
        if detail := self.min_score.failure(record.key, score["value"]):
            return Verdict.drop("static: frames nearly identical", detail)
        if detail := self.max_score.failure(record.key, score["value"]):
            return Verdict.drop("jitter: frames too different", detail)
        return KEEP


@register("ocr_text_area", scorer="craft")
class CraftTextArea(SpatialDetector):
    """Fraction of the frame covered by CRAFT's text boxes, over `frames` keyframes reduced by `reduce`
    (max by default); drops above max_area_ratio."""

    side = OCR_SIDE

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self.weights = self.locate(spec.scorer, CRAFT_FOLDER, (WEIGHT_FILES,))
        self.limit = Limit(f"{spec.name}.max_area_ratio", spec.max_area_ratio, "max", self.weights.stand_in)

    @cached_property
    def model(self):
        from runtime.curation.modelzoo.craft import load_craft
        from runtime.curation.modelzoo.weights import device

        return load_craft(self.weights).to(device())

    def scoring_params(self) -> dict:
        return {"scorer": self.spec.scorer, "weights": self.weights.fingerprint(), "frames": self.spec.frames,
                "reduce": self.spec.reduce, "side": OCR_SIDE}

    def score(self, records: list[Record]) -> list[Score | None]:
        from runtime.curation.modelzoo.craft import text_area_ratio

        scores = []
        for record in records:
            ratios = text_area_ratio(self.model, record.pixels.keyframes(OCR_SIDE, self.spec.frames))
            value = reduce_frames(ratios, self.spec.reduce)
            self.limit.observe(record.key, value)
            score = {"value": value, **({"frames": [round(r, 5) for r in ratios]} if len(ratios) > 1 else {})}
            scores.append(self.marked(score))
        return scores

    def decide(self, record: Record, score: Score | None) -> Verdict:
        detail = self.limit.failure(record.key, score["value"])
        return Verdict.drop("too much text", detail) if detail else KEEP


@register("defect_mask")
class DefectAwareMask(SpatialDetector):
    """Seedream 3.0's defect-aware training: a segmentation model finds defects (watermarks, logos,
    subtitles, mosaics); images whose defect area reaches max_area_ratio are dropped, the others are kept
    and, with emit_mask, get the loss mask KEY.<op name>.mask.png at the image's size: 255 where the loss
    counts, 0 on defect pixels (runtime/objectives/masked.py's convention).

    applies_to "previously_excluded" examines only records whose metadata has `excluded_by` (set for data
    an earlier filter excluded and that is fed back to be reclaimed); others pass through. Images only:
    videos pass through (a per-frame loss mask has no consumer yet). The analysis-size mask is part of
    the cached score, so re-deciding with another threshold does not run the model again."""

    side = DEFECT_SIDE
    gpu_memory_gb = 8.0

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        self.weights = self.locate(spec.scorer, SEGMENTER_FOLDER, SEGMENTER_REQUIRED)
        if self.weights.stand_in:
            self.columns = [1]
        else:
            labels = folder_labels(self.weights.path)
            self.columns = [0] if len(labels) == 1 else label_columns(labels, DEFECT_LABELS)
            if not self.columns:
                raise OpConfigError(
                    f"{spec.name}: segmenter {spec.scorer!r} ({self.weights.path}) has labels {labels}, none of which is "
                    f"a defect class ({', '.join(DEFECT_LABELS)}); rename the defect label in its config.json id2label"
                )
        self.limit = Limit(f"{spec.name}.max_area_ratio", spec.max_area_ratio, "max", self.weights.stand_in)

    def applies(self, record: Record) -> bool:
        if record.is_video:
            return False
        return self.spec.applies_to == "all" or bool(record.metadata.get(EXCLUDED_KEY))

    @cached_property
    def model(self):
        from runtime.curation.modelzoo.segmenter import DefectSegmenter

        return DefectSegmenter.load(self.weights, self.columns)

    def scoring_params(self) -> dict:
        return {"scorer": self.spec.scorer, "weights": self.weights.fingerprint(), "side": DEFECT_SIDE,
                "threshold": DEFECT_THRESHOLD}

    def score(self, records: list[Record]) -> list[Score | None]:
        images = [r.pixels.image(DEFECT_SIDE) for r in records]
        scores = []
        for record, probability in zip(records, self.model.defect_probability(images)):
            defect = probability >= DEFECT_THRESHOLD
            value = float(defect.mean())
            self.limit.observe(record.key, value)
            scores.append(self.marked({"value": value, "mask_png": _png_base64(defect)}))
        return scores

    def decide(self, record: Record, score: Score | None) -> Verdict:
        if detail := self.limit.failure(record.key, score["value"]):
            return Verdict.drop("defect area too large", detail)
        if self.spec.emit_mask:
            header = record.pixels.header()
            record.masks[self.spec.name] = loss_mask_png(score["mask_png"], (header.width, header.height))
        return KEEP


def _png_base64(defect: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(defect.astype(np.uint8) * 255).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def loss_mask_png(defect_png_base64: str, size: tuple[int, int]) -> bytes:
    """The defect mask (255 = defect) at analysis size -> the loss mask (255 = counts) at `size` (w, h)."""
    defect = Image.open(io.BytesIO(base64.b64decode(defect_png_base64)))
    keep = Image.fromarray(255 - np.asarray(defect.resize(size, Image.Resampling.NEAREST)))
    buffer = io.BytesIO()
    keep.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
