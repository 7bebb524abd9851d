"""Motion from dense optical flow (motion_score, motion_tiers) and frame consistency by SSIM.

Flow is OpenCV's Farneback (G. Farneback, "Two-frame motion estimation based on polynomial expansion",
SCIA 2003) between consecutive frames sampled at the op's fps, on grey frames at the analysis size, with
the parameters of OpenCV's samples/python/opt_flow.py. Magnitudes are pixels per sampled-frame step at
the analysis size. Per step the flow is split into a global translation (the median flow vector, a
robust estimate of camera motion) and the residual around it; both motion ops read these per-step
statistics, computed once per record and stage.

LPIPS (frame_consistency's default scorer) and DOVER (technical_quality) need model weights: they are
left to model-backed implementations; the scorer here is named for what it computes.
"""

from __future__ import annotations

import math
from itertools import pairwise

import cv2
import numpy as np

from compiler.schema.data import MotionScore as MotionScoreSpec
from runtime.curation.api import KEEP, MapOp, Score, Verdict
from runtime.curation.records import Record
from runtime.curation.registry import register

# motion_tiers has no sampling fields of its own: it samples like motion_score's defaults, so the two
# share one flow computation when motion_score keeps them.
TIERS_FPS = MotionScoreSpec.model_fields["fps"].default
TIERS_SIDE = MotionScoreSpec.model_fields["analysis_short_side_px"].default
CONSISTENCY_FPS = 2.0
CONSISTENCY_SIDE = 256


def flow_steps(record: Record, fps: float, side: int) -> list[tuple[float, float, float, float]]:
    """Per sampled step: (mean flow magnitude, global dx, global dy, mean residual magnitude)."""

    def compute() -> list[tuple[float, float, float, float]]:
        grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in record.pixels.frames(side, fps)]
        return [step_statistics(cv2.calcOpticalFlowFarneback(before, after, None, 0.5, 3, 15, 3, 5, 1.2, 0))
                for before, after in pairwise(grey)]

    return record.pixels.memo(("farneback", fps, side), compute)


def step_statistics(flow: np.ndarray) -> tuple[float, float, float, float]:
    """(mean magnitude, global dx, global dy, mean residual magnitude) of one [H, W, 2] flow field."""
    vectors = flow.reshape(-1, 2)
    camera = np.median(vectors, axis=0)
    magnitude = float(np.linalg.norm(vectors, axis=1).mean())
    residual = float(np.linalg.norm(vectors - camera, axis=1).mean())
    return magnitude, float(camera[0]), float(camera[1]), residual


def motion_summary(steps: list[tuple[float, float, float, float]]) -> Score:
    """Mean magnitude, share of flow explained by the global translation, direction variance over time.

    The direction variance is -2 ln R, R the magnitude-weighted mean resultant length of the global
    motion directions: the squared circular standard deviation (Mardia & Jupp, Directional Statistics,
    2000, 2.3.4; scipy.stats.circvar before 1.8). 0 for a steady pan, growing without bound as the
    camera shakes in changing directions.
    """
    if not steps:
        return {"value": 0.0, "global_fraction": 0.0, "direction_variance": 0.0, "steps": 0}
    magnitude = np.array([s[0] for s in steps])
    camera = np.array([complex(s[1], s[2]) for s in steps])
    residual = np.array([s[3] for s in steps])
    total = magnitude.sum()
    global_fraction = float(np.clip((magnitude - residual).sum() / total, 0, 1)) if total > 0 else 0.0
    camera_total = np.abs(camera).sum()
    if camera_total > 1e-6:
        resultant = max(abs(camera.sum()) / camera_total, 1e-6)
        direction_variance = max(0.0, -2 * math.log(resultant))  # R = 1 gives -0.0
    else:
        direction_variance = 0.0
    return {
        "value": float(magnitude.mean()),
        "global_fraction": global_fraction,
        "direction_variance": float(direction_variance),
        "steps": len(steps),
    }


@register("motion_score", scorer="farneback")
class MotionScore(MapOp):
    """Mean Farneback flow magnitude; keeps [min_score, max_score]. Images pass through."""

    batch_size = 4

    def applies(self, record: Record) -> bool:
        return record.is_video

    def decode_side(self) -> int | None:
        return self.spec.analysis_short_side_px

    def scoring_params(self) -> dict:
        return {"fps": self.spec.fps, "side": self.spec.analysis_short_side_px}

    def score(self, records: list[Record]) -> list[Score | None]:
        return [motion_summary(flow_steps(r, self.spec.fps, self.spec.analysis_short_side_px)) for r in records]

    def decide(self, record: Record, score: Score | None) -> Verdict:
        value, spec = score["value"], self.spec
        if spec.min_score is not None and value < spec.min_score:
            return Verdict.drop("too little motion", f"mean flow {value:.3f} px < {spec.min_score:g}")
        if spec.max_score is not None and value > spec.max_score:
            return Verdict.drop("too much motion", f"mean flow {value:.3f} px > {spec.max_score:g}")
        return KEEP


@register("motion_tiers")
class MotionTiers(MapOp):
    """Wan's six motion tiers, decided in this order from the motion summary:

    static (magnitude < static_below), low_quality (> chaotic_above), then, when the global translation
    explains at least camera_global_fraction of the flow, shaky (direction variance >
    shaky_direction_variance) or camera_driven; otherwise medium (< medium_below) or optimal.
    Clips in tiers outside `keep` are dropped; the tier is written to metadata["motion_tier"].
    """

    batch_size = 4

    def applies(self, record: Record) -> bool:
        return record.is_video

    def decode_side(self) -> int | None:
        return TIERS_SIDE

    def scoring_params(self) -> dict:
        return {"fps": TIERS_FPS, "side": TIERS_SIDE}

    def score(self, records: list[Record]) -> list[Score | None]:
        return [motion_summary(flow_steps(r, TIERS_FPS, TIERS_SIDE)) for r in records]

    def tier(self, score: Score) -> str:
        spec, magnitude = self.spec, score["value"]
        if magnitude < spec.static_below:
            return "static"
        if magnitude > spec.chaotic_above:
            return "low_quality"
        if score["global_fraction"] >= spec.camera_global_fraction:
            return "shaky" if score["direction_variance"] > spec.shaky_direction_variance else "camera_driven"
        return "medium" if magnitude < spec.medium_below else "optimal"

    def decide(self, record: Record, score: Score | None) -> Verdict:
        tier = self.tier(score)
        score["tier"] = tier
        record.metadata["motion_tier"] = tier
        if tier not in self.spec.keep:
            return Verdict.drop(
                f"motion tier {tier}",
                f"flow {score['value']:.2f} px, global {score['global_fraction']:.2f}, "
                f"direction variance {score['direction_variance']:.2f}; keep {self.spec.keep}",
            )
        return KEEP


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two grey uint8 images (Wang et al., "Image quality assessment: from error visibility to
    structural similarity", IEEE TIP 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, L 255)."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(index.mean())


@register("frame_consistency", scorer="dssim")
class FrameConsistency(MapOp):
    """Structural dissimilarity DSSIM = (1 - SSIM) / 2 (0 identical, 1 opposite) between consecutive
    frames sampled at 2 fps, averaged. Below min_score: a still image; above max_score: jitter. Its
    thresholds are not LPIPS thresholds: set them for this scale."""

    batch_size = 4

    def applies(self, record: Record) -> bool:
        return record.is_video

    def decode_side(self) -> int | None:
        return CONSISTENCY_SIDE

    def scoring_params(self) -> dict:
        return {"fps": CONSISTENCY_FPS, "side": CONSISTENCY_SIDE}

    def score(self, records: list[Record]) -> list[Score | None]:
        scores = []
        for record in records:
            frames = record.pixels.frames(CONSISTENCY_SIDE, CONSISTENCY_FPS)
            grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
            distances = [(1 - ssim(a, b)) / 2 for a, b in pairwise(grey)]
            scores.append({"value": float(np.mean(distances)) if distances else 0.0, "steps": len(distances)})
        return scores

    def decide(self, record: Record, score: Score | None) -> Verdict:
        value, spec = score["value"], self.spec
        if spec.min_score is not None and value < spec.min_score:
            return Verdict.drop("static frames", f"DSSIM {value:.4f} < {spec.min_score:g}")
        if spec.max_score is not None and value > spec.max_score:
            return Verdict.drop("jittery frames", f"DSSIM {value:.4f} > {spec.max_score:g}")
        return KEEP
