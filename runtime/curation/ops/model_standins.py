"""Scorers the model cards name but genspec has not ported, with smoke-scale stand-ins.

- technical_quality / "dover": DOVER (Wu et al. 2023, "Exploring Video Quality Assessment on User
  Generated Contents from Aesthetic and Technical Perspectives"): fragment-sampled Swin-T and ConvNeXt-T
  branches. Stand-in: the CLIP technical regressor with a random tiny model.
- motion_score / "unimatch": UniMatch optical flow (Xu et al. 2023, "Unifying Flow, Stereo and Depth
  Estimation"). Stand-in: OpenCV Farneback flow, a different (classical) estimator of the same quantity.

Allegro and Sora name these because their model cards do. So that those specs still run at smoke scale,
the stand-in runs there and says so in the run's notes. At full scale the op refuses before reading a
sample, and the compiler lists it in the bundle's assumptions report as an op that runs at smoke scale
only. Each class sets `smoke_only`.
"""

from __future__ import annotations

from typing import ClassVar

from runtime.curation.api import OpConfigError
from runtime.curation.ops.model_scorers import ClipTechnicalRegressor
from runtime.curation.ops.motion import MotionScore
from runtime.curation.registry import register


def _refuse_at_full_scale(spec, ctx, scorer: str, what: str, alternative: str) -> None:
    if ctx.scale != "smoke":
        raise OpConfigError(
            f"op {spec.name!r}: scorer {scorer!r} has no implementation in genspec ({what} not ported). Set "
            f"{spec.name}.scorer={alternative}, or run at --scale smoke, where a stand-in runs and is reported."
        )


@register("technical_quality", scorer="dover")
class DoverSmokeStandIn(ClipTechnicalRegressor):
    """DOVER's place at smoke scale only; see the module docstring."""

    smoke_only: ClassVar[bool] = True

    def __init__(self, spec, ctx) -> None:
        _refuse_at_full_scale(spec, ctx, "dover", "DOVER's Swin/ConvNeXt branches are",
                              "clip-technical-regressor (with its weights in the model directory)")
        super().__init__(spec, ctx)

    def notes(self) -> list[str]:
        return [f"{self.spec.name}: DOVER is not implemented; a random CLIP-regressor stand-in scored at smoke scale",
                *super().notes()]


@register("motion_score", scorer="unimatch")
class UniMatchSmokeStandIn(MotionScore):
    """UniMatch's place at smoke scale only: Farneback flow measures the motion; see the module docstring."""

    smoke_only: ClassVar[bool] = True

    def __init__(self, spec, ctx) -> None:
        _refuse_at_full_scale(spec, ctx, "unimatch", "the UniMatch flow network is", "farneback")
        super().__init__(spec, ctx)

    def notes(self) -> list[str]:
        return [f"{self.spec.name}: UniMatch is not implemented; OpenCV Farneback flow measured motion at smoke scale"]
