"""The objective section: what the network is trained to predict, at which noise levels, with which weights.

Continuous-time objectives (flow matching, score matching) sample t in [0, 1] (or sigma); discrete DDPM
objectives (noise prediction, v-prediction) sample an integer step of a beta schedule. Formulas are in
`runtime/objectives/` with their sources; the fields here are their parameters.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from compiler.schema.provenance import Node

# Timestep samplers ---------------------------------------------------------------------------------


class LogitNormal(Node):
    """t = sigmoid(N(mean, std)) (SD3 paper; FLUX uses m=0, s=1)."""

    kind: Literal["logit_normal"] = "logit_normal"
    mean: float = 0.0
    std: float = Field(1.0, gt=0)


class UniformTimesteps(Node):
    """t ~ U(0, 1)."""

    kind: Literal["uniform"] = "uniform"


class ModeTimesteps(Node):
    """Mode sampling with heavy tails: t = 1 - u - scale * (cos^2(pi u / 2) - 1 + u) (SD3 paper)."""

    kind: Literal["mode"] = "mode"
    scale: float = 1.29


TimestepSampler = Annotated[Union[LogitNormal, UniformTimesteps, ModeTimesteps], Field(discriminator="kind")]

# Timestep shifts: t' = a t / (1 + (a - 1) t) -------------------------------------------------------

ShiftPhase = Literal["training", "sampling", "both"]


class NoShift(Node):
    """No shift."""

    kind: Literal["none"] = "none"


class ConstantShift(Node):
    """A fixed shift a (Wan samples with 5.0)."""

    kind: Literal["constant"] = "constant"
    shift: float = Field(gt=0)
    applies: ShiftPhase = "both"


class ResolutionShift(Node):
    """The source document's rule: a = sqrt(m / n), m pixels now vs n pixels at the base resolution."""

    kind: Literal["resolution"] = "resolution"
    base_pixels: int = Field(256 * 256, gt=0, description="n: pixels at the resolution the schedule was tuned for")
    applies: ShiftPhase = "both"


class MuLinearShift(Node):
    """FLUX: a = exp(mu), mu linear in image tokens from (base_tokens, base_shift) to (max_tokens, max_shift)."""

    kind: Literal["mu_linear"] = "mu_linear"
    base_tokens: int = 256
    max_tokens: int = 4096
    base_shift: float = 0.5
    max_shift: float = 1.15
    applies: ShiftPhase = "sampling"


class ExponentialShift(MuLinearShift):
    """Qwen-Image: mu-linear exponential shift, then sigmas stretched so the last one equals `terminal`."""

    kind: Literal["exponential"] = "exponential"  # type: ignore[assignment]
    max_tokens: int = 8192
    max_shift: float = 0.9
    terminal: float = Field(0.02, gt=0, lt=1)


TimestepShift = Annotated[
    Union[NoShift, ConstantShift, ResolutionShift, MuLinearShift, ExponentialShift], Field(discriminator="kind")
]

# Conditioning dropout and loss extras ---------------------------------------------------------------


class CfgDropout(Node):
    """Drop text conditioning so the model learns the unconditional branch for CFG.

    With k encoders dropped independently, each is dropped with p^(1/k) so all are dropped at rate p.
    """

    joint_rate: float = Field(ge=0, lt=1, description="probability that every encoder is dropped together")
    per_encoder: dict[str, float] = Field(default_factory=dict, description="encoder name -> own drop rate")


class MaskedLoss(Node):
    """Exclude masked pixels (defect regions) from the loss; the mask comes from a curation op's column."""

    mask_from: str = Field(description="name of the curation op that emits the mask")


class NoiseAwareCompute(Node):
    """Hailuo 02's Noise-aware Compute Redistribution: spend more on high-error timesteps.

    Implemented as timestep sampling re-weighted by the running loss per timestep bin.
    """

    bins: int = Field(16, gt=1)
    ema: float = Field(0.99, gt=0, lt=1, description="decay of the running loss per bin")
    floor: float = Field(0.25, gt=0, le=1, description="minimum relative sampling weight of a bin")


LossWeighting = Literal["none", "sigma_sqrt", "cosmap", "min_snr", "edm"]


class ObjectiveBase(Node):
    """Fields every objective shares. A timestep shift only makes sense in continuous time; the
    `objective.shift-needs-continuous-time` rule says so for DDPM objectives."""

    shift: TimestepShift = Field(default_factory=NoShift)
    loss_weighting: LossWeighting = "none"
    cfg_dropout: CfgDropout | None = None
    masked_loss: MaskedLoss | None = None
    noise_aware_compute: NoiseAwareCompute | None = None


class FlowMatching(ObjectiveBase):
    """Rectified flow: x_t = (1 - t) x0 + t eps, target v = eps - x0."""

    kind: Literal["flow_matching"] = "flow_matching"
    prediction: Literal["velocity"] = "velocity"
    timesteps: TimestepSampler = Field(default_factory=LogitNormal)
    adaptive: bool = Field(False, description="Seedream 4.0's 'adaptive flow matching' (details undisclosed)")


BetaSchedule = Literal["linear", "cosine", "scaled_linear"]


class DiscreteTimeObjective(ObjectiveBase):
    """Fields of the DDPM objectives: the beta schedule, its range, an SNR shift and zero terminal SNR."""

    schedule: BetaSchedule = "cosine"
    train_steps: int = Field(1000, gt=0)
    beta_start: float | None = Field(
        None, gt=0, lt=1, description="first beta of a linear or scaled_linear schedule; None: the schedule's "
        "default (linear 1e-4, scaled_linear 0.00085)"
    )
    beta_end: float | None = Field(
        None, gt=0, lt=1, description="last beta of a linear or scaled_linear schedule; None: the schedule's "
        "default (linear 0.02, scaled_linear 0.012)"
    )
    snr_shift: float = Field(
        1.0, gt=0, description="SNR divided by this factor at every step, abar / (s + (1 - s) abar) (CogVideoX's "
        "snr_shift_scale); 1: none"
    )
    zero_terminal_snr: bool = Field(
        False, description="betas rescaled so the last step is pure noise (Lin et al. 2024, arXiv:2305.08891, "
        "Algorithm 1); needs v-prediction"
    )

    @model_validator(mode="after")
    def _beta_range(self) -> DiscreteTimeObjective:
        if (self.beta_start is not None or self.beta_end is not None) and self.schedule == "cosine":
            raise ValueError(
                "beta_start / beta_end are set but schedule is 'cosine', which has no beta range: drop them or use "
                "'linear' / 'scaled_linear'"
            )
        if self.beta_start is not None and self.beta_end is not None and self.beta_start >= self.beta_end:
            raise ValueError(f"beta_start {self.beta_start} must be below beta_end {self.beta_end}")
        return self


class NoisePrediction(DiscreteTimeObjective):
    """DDPM: predict the added noise eps from x_t at an integer step of a beta schedule."""

    kind: Literal["noise_prediction"] = "noise_prediction"


class VPrediction(DiscreteTimeObjective):
    """DDPM with the v = alpha eps - sigma x0 target."""

    kind: Literal["v_prediction"] = "v_prediction"


class ScoreMatching(ObjectiveBase):
    """Denoising score matching with EDM preconditioning (Karras et al. 2022)."""

    kind: Literal["score_matching"] = "score_matching"
    p_mean: float = -1.2
    p_std: float = Field(1.2, gt=0)
    sigma_data: float = Field(0.5, gt=0)


Objective = Annotated[
    Union[FlowMatching, NoisePrediction, VPrediction, ScoreMatching], Field(discriminator="kind")
]
CONTINUOUS_OBJECTIVES = ("flow_matching", "score_matching")
