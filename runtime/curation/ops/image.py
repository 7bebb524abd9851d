"""Pixel checks on one reduced decode: corruption (full decode), blur, exposure.

All three read luma only (`needs_color = False`): in a stage of such ops the decode skips colour
(runtime/curation/decode.py). On videos, blur and exposure measure three keyframes (first, middle, last)
and average them.
"""

from __future__ import annotations

import cv2
import numpy as np

from runtime.curation.api import FULL, KEEP, MapOp, Score, Verdict
from runtime.curation.decode import luma
from runtime.curation.records import Record
from runtime.curation.registry import register

EXPOSURE_SIDE = 128  # mean luma and clipping barely change with size; the smallest decode is enough


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (RGB is converted to luma first): low means few edges,
    i.e. blur.

    Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a comparative study", ICPR 2000.
    """
    grey = image if image.ndim == 2 else luma(image)
    # The 3x3 Laplacian of uint8 is an integer in [-1020, 1020]: int16 holds it exactly, and the sums of it
    # and of its squares are exact in float64 (below 2**53 up to ~8e9 pixels), so this is numpy's
    # .var() of the CV_64F Laplacian to rounding, about 3x faster.
    laplacian = cv2.Laplacian(grey, cv2.CV_16S)
    count = laplacian.size
    mean = cv2.sumElems(laplacian)[0] / count
    return float(cv2.norm(laplacian, cv2.NORM_L2SQR) / count - mean * mean)


def exposure_stats(grey: np.ndarray) -> tuple[float, float]:
    """(mean luma, fraction of pixels at 0 or 255) of a grey image."""
    low, high = cv2.minMaxLoc(grey)[:2]  # most photos have neither: no counting then
    clipped = (int(np.count_nonzero(grey == 0)) if low == 0 else 0) + (
        int(np.count_nonzero(grey == 255)) if high == 255 else 0
    )
    return cv2.mean(grey)[0], clipped / grey.size


@register("corruption")
class Corruption(MapOp):
    """Decodes every pixel (every frame of a video); a failure quarantines the sample.

    A JPEG's luma-only decode still entropy-decodes every component, so it finds the same damage."""

    needs_color = False

    def decode_side(self) -> int | None:
        return FULL

    def decide(self, record: Record, score: Score | None) -> Verdict:
        if record.is_video:
            record.pixels.verify_video()
        else:
            record.pixels.load(FULL, grey=True)
        return KEEP


@register("blur")
class Blur(MapOp):
    """Drops samples whose Laplacian variance at the analysis size is below `min_laplacian_var`."""

    needs_color = False

    def decode_side(self) -> int | None:
        return self.spec.analysis_short_side_px

    def scoring_params(self) -> dict:
        return {"analysis_short_side_px": self.spec.analysis_short_side_px}

    def score(self, records: list[Record]) -> list[Score | None]:
        side = self.spec.analysis_short_side_px
        scores = []
        for record in records:
            if record.is_video:
                value = float(np.mean([laplacian_variance(f) for f in record.pixels.keyframes(side, grey=True)]))
            else:
                value = laplacian_variance(record.pixels.grey(side))
            scores.append({"value": value})
        return scores

    def decide(self, record: Record, score: Score | None) -> Verdict:
        value, limit = score["value"], self.spec.min_laplacian_var
        if value < limit:
            return Verdict.drop("too blurry", f"Laplacian variance {value:.1f} < {limit:g}")
        return KEEP


@register("exposure")
class Exposure(MapOp):
    """Mean luma (0-255) inside [min_mean_luma, max_mean_luma] and the fraction of pixels at 0 or 255."""

    needs_color = False

    def decode_side(self) -> int | None:
        return EXPOSURE_SIDE

    def scoring_params(self) -> dict:
        return {"side": EXPOSURE_SIDE}

    def score(self, records: list[Record]) -> list[Score | None]:
        scores = []
        for record in records:
            if record.is_video:
                stats = [exposure_stats(y) for y in record.pixels.keyframes(EXPOSURE_SIDE, grey=True)]
                mean, clipped = float(np.mean([m for m, _ in stats])), float(np.mean([c for _, c in stats]))
            else:
                mean, clipped = exposure_stats(record.pixels.grey(EXPOSURE_SIDE))
            scores.append({"value": mean, "clipped_fraction": clipped})
        return scores

    def decide(self, record: Record, score: Score | None) -> Verdict:
        mean, clipped, spec = score["value"], score["clipped_fraction"], self.spec
        if mean < spec.min_mean_luma:
            return Verdict.drop("too dark", f"mean luma {mean:.1f} < {spec.min_mean_luma:g}")
        if mean > spec.max_mean_luma:
            return Verdict.drop("too bright", f"mean luma {mean:.1f} > {spec.max_mean_luma:g}")
        if clipped > spec.max_clipped_fraction:
            detail = f"{clipped:.3f} of pixels at 0 or 255 > {spec.max_clipped_fraction:g}"
            return Verdict.drop("too many clipped pixels", detail)
        return KEEP
