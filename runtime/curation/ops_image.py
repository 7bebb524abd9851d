"""Pixel checks on one reduced decode: corruption (full decode), blur, exposure.

On videos, blur and exposure measure three keyframes (first, middle, last) and average them.
"""

from __future__ import annotations

import cv2
import numpy as np

from runtime.curation.api import FULL, KEEP, MapOp, Score, Verdict
from runtime.curation.records import Record
from runtime.curation.registry import register

EXPOSURE_SIDE = 128  # mean luma and clipping barely change with size; the smallest decode is enough


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma, Y = 0.299 R + 0.587 G + 0.114 B (OpenCV's RGB2GRAY), uint8."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def laplacian_variance(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: low means few edges, i.e. blur.

    Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a comparative study", ICPR 2000.
    """
    return float(cv2.Laplacian(luma(rgb), cv2.CV_64F).var())


@register("corruption")
class Corruption(MapOp):
    """Decodes every pixel (every frame of a video); a failure quarantines the sample."""

    def decode_side(self) -> int | None:
        return FULL

    def decide(self, record: Record, score: Score | None) -> Verdict:
        if record.is_video:
            record.pixels.verify_video()
        else:
            record.pixels.image(FULL)
        return KEEP


@register("blur")
class Blur(MapOp):
    """Drops samples whose Laplacian variance at the analysis size is below `min_laplacian_var`."""

    def decode_side(self) -> int | None:
        return self.spec.analysis_short_side_px

    def scoring_params(self) -> dict:
        return {"analysis_short_side_px": self.spec.analysis_short_side_px}

    def score(self, records: list[Record]) -> list[Score | None]:
        side = self.spec.analysis_short_side_px
        return [{"value": float(np.mean([laplacian_variance(f) for f in r.pixels.keyframes(side)]))} for r in records]

    def decide(self, record: Record, score: Score | None) -> Verdict:
        value, limit = score["value"], self.spec.min_laplacian_var
        if value < limit:
            return Verdict.drop("too blurry", f"Laplacian variance {value:.1f} < {limit:g}")
        return KEEP


@register("exposure")
class Exposure(MapOp):
    """Mean luma (0-255) inside [min_mean_luma, max_mean_luma] and the fraction of pixels at 0 or 255."""

    def decode_side(self) -> int | None:
        return EXPOSURE_SIDE

    def scoring_params(self) -> dict:
        return {"side": EXPOSURE_SIDE}

    def score(self, records: list[Record]) -> list[Score | None]:
        scores = []
        for record in records:
            lumas = [luma(f) for f in record.pixels.keyframes(EXPOSURE_SIDE)]
            mean = float(np.mean([y.mean() for y in lumas]))
            clipped = float(np.mean([np.count_nonzero((y == 0) | (y == 255)) / y.size for y in lumas]))
            scores.append({"value": mean, "clipped_fraction": clipped})
        return scores

    def decide(self, record: Record, score: Score | None) -> Verdict:
        mean, clipped, spec = score["value"], score["clipped_fraction"], self.spec
        if mean < spec.min_mean_luma:
            return Verdict.drop("too dark", f"mean luma {mean:.1f} < {spec.min_mean_luma:g}")
        if mean > spec.max_mean_luma:
            return Verdict.drop("too bright", f"mean luma {mean:.1f} > {spec.max_mean_luma:g}")
        if clipped > spec.max_clipped_fraction:
            return Verdict.drop("too many clipped pixels", f"{clipped:.3f} of pixels at 0 or 255 > {spec.max_clipped_fraction:g}")
        return KEEP
