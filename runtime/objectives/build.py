"""The one entry point from an objective schema to a runnable objective."""

from __future__ import annotations

from compiler.schema.objective import FlowMatching, NoisePrediction, ScoreMatching, VPrediction
from compiler.schema.schedule import Stage
from runtime.objectives.base import DiffusionObjective
from runtime.objectives.ddpm import NoisePredictionObjective, VPredictionObjective
from runtime.objectives.edm import EDMObjective
from runtime.objectives.flow import FlowMatchingObjective
from runtime.objectives.noise_aware import NoiseAwareSampler


def build_objective(
    objective, stage: Stage, image_tokens: int | None, *, pixels: int | None = None, time_scale: float = 1.0
) -> DiffusionObjective:
    """The runnable objective of `objective` (a spec's objective section) for one training stage.

    image_tokens: backbone tokens per sample at the trained resolution (FLUX's mu-linear shift);
    pixels: pixels per frame (the resolution shift's m), by default the stage's resolution when it has one;
    time_scale: what the network multiplies t in [0, 1] by before embedding it (FLUX and Qwen-Image take
    t in [0, 1]: 1; Wan takes 1000 t: 1000). Only flow matching uses it: DDPM networks take the integer
    step and EDM networks c_noise = ln(sigma) / 4.
    Resolution-dependent shifts: call `at_resolution` for other sizes; noise-aware compute state is shared.
    """
    if pixels is None and len(stage.resolutions) == 1:
        pixels = stage.resolutions[0].pixels
    noise_aware = None if objective.noise_aware_compute is None else NoiseAwareSampler(objective.noise_aware_compute)
    if isinstance(objective, FlowMatching):
        return FlowMatchingObjective(objective, image_tokens, pixels, time_scale, noise_aware)
    if isinstance(objective, NoisePrediction):
        return NoisePredictionObjective(objective, noise_aware)
    if isinstance(objective, VPrediction):
        return VPredictionObjective(objective, noise_aware)
    if isinstance(objective, ScoreMatching):
        return EDMObjective(objective, image_tokens, pixels, noise_aware)
    raise TypeError(f"objective.kind: no runtime objective for {type(objective).__name__}; add one to build_objective")
