"""The whole spec of one model version, and its inference defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from compiler.schema.architecture import ArchitectureSpec
from compiler.schema.common import Range, Size
from compiler.schema.data import DataSpec
from compiler.schema.objective import Objective, TimestepShift
from compiler.schema.provenance import Node
from compiler.schema.schedule import ScheduleSpec


DDPM_KINDS = ("noise_prediction", "v_prediction")


class DynamicThresholding(Node):
    """Imagen's dynamic thresholding: s = quantile(|x0|, p), s = max(s, 1), x0 = clip(x0, -s, s) / s."""

    percentile: float = Field(0.995, gt=0, lt=1)


class InferenceSpec(Node):
    """Sampling defaults as published."""

    sampler: Literal["euler", "ddpm", "ddim", "dpm_solver", "heun", "unipc"]
    steps: int = Field(gt=0)
    cfg_scale: float | None = Field(None, ge=0, description="classifier-free guidance weight w")
    cfg_scale_per_stage: dict[str, float] = Field(default_factory=dict, description="cascade stage -> w")
    guidance_embedded: float | None = Field(None, gt=0, description="guidance fed to a distilled model")
    shift: TimestepShift | None = Field(
        None, description="timestep shift used when sampling, when it differs from the training objective's"
    )
    timestep_spacing: Literal["linspace", "leading", "trailing"] | None = Field(
        None, description="which steps a DDPM sampler visits, as diffusers' schedulers' timestep_spacing: linspace "
        "(evenly from T - 1 to 0), leading (k * T // steps + steps_offset), trailing (T - k * T / steps, minus 1); "
        "None: linspace; DDPM objectives only"
    )
    steps_offset: int = Field(
        0, ge=0, description="added to every leading-spaced step (diffusers' steps_offset; Stable Diffusion 1.x: 1)"
    )
    dynamic_thresholding: DynamicThresholding | None = None
    noise_augmentation_level: float | None = Field(None, ge=0, le=1, description="cascade SR conditioning noise")
    upsample_factors: list[int] = Field(default_factory=list, description="latent/pixel upsamplers after the base")
    resolution: Size | None = Field(None, description="default output size; a number means a square side")
    max_resolution: Size | None = Field(
        None, description="the largest output size the source documents, when it differs from the default "
        "(resolution); a number means a square side; the default must not have more pixels"
    )
    frames: int | None = Field(None, gt=0)
    fps: float | None = Field(None, gt=0, description="default frame rate")
    fps_range: Range | None = Field(
        None, description="the frame rates the source documents (e.g. 24-30); the default fps lies within it"
    )
    max_seconds: float | None = Field(None, gt=0)
    latency_seconds: float | None = Field(None, gt=0, description="reported generation time")

    @field_validator("resolution", "max_resolution", mode="before")
    @classmethod
    def _square_side(cls, value: object) -> object:
        # Model cards state "1024" for 1024x1024: accept a side as a square size.
        return {"height": value, "width": value} if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> InferenceSpec:
        size, largest = self.resolution, self.max_resolution
        if size is not None and largest is not None and size.pixels > largest.pixels:
            raise ValueError(
                f"inference.resolution {size} has more pixels than max_resolution {largest}; the default output "
                "size must fit the documented maximum: lower resolution or raise max_resolution"
            )
        if self.fps is not None and self.fps_range is not None and not self.fps_range.contains(self.fps):
            raise ValueError(
                f"inference.fps {self.fps:g} is outside fps_range {self.fps_range}; pick a default within the range"
            )
        return self

    @model_validator(mode="after")
    def _offset_needs_leading(self) -> InferenceSpec:
        if self.steps_offset and self.timestep_spacing != "leading":
            raise ValueError(
                f"inference.steps_offset is {self.steps_offset} with timestep_spacing {self.timestep_spacing!r}; "
                "diffusers adds the offset only to 'leading' spacing: set timestep_spacing: leading or drop it"
            )
        return self


class Spec(Node):
    """A model version: its data curation, network, objective, training schedule and sampling defaults."""

    name: str = Field(description="the shipped name, e.g. flux1-dev")
    family: str
    modality: Literal["image", "video", "image_edit"]
    organisation: str
    released: str | None = Field(None, description="year or year-month")
    license: str | None = None
    open_weights: Literal["yes", "no", "partial"] = "no"
    derived_from: str | None = Field(None, description="the spec this one states changes against")
    data: DataSpec
    architecture: ArchitectureSpec
    objective: Objective
    schedule: ScheduleSpec
    inference: InferenceSpec
    notes: list[str] = Field(default_factory=list, description="key insights from the model card")

    @model_validator(mode="after")
    def _spacing_needs_ddpm(self) -> Spec:
        if self.inference.timestep_spacing is not None and self.objective.kind not in DDPM_KINDS:
            raise ValueError(
                f"inference.timestep_spacing is {self.inference.timestep_spacing!r} with the {self.objective.kind} "
                "objective, whose samplers take a sigma schedule instead of integer steps: drop it (it applies to "
                f"{' and '.join(DDPM_KINDS)})"
            )
        return self
