"""Files a bundle hands to the runtime. `StageFile` is the contract between the emitter (which writes
train/<stage>/stage.yaml) and the trainer (which reads it): everything one training stage needs, resolved.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from compiler.schema.architecture import ArchitectureSpec
from compiler.schema.data import Subset
from compiler.schema.objective import Objective
from compiler.schema.schedule import Stage
from compiler.schema.spec import InferenceSpec


class DataInput(BaseModel):
    """A dataset a stage reads, as webdataset shards."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str
    weight: float = Field(gt=0, le=1)
    shards: str = Field(description="directory, glob or brace pattern of .tar shards, relative to the run root")
    modality: Literal["image", "video", "mixed"] = "image"
    where: Subset | None = Field(None, description="keep only samples matching this subset of the shards")


class Layout(BaseModel):
    """The plan's parallel layout for this stage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dp_size: int = Field(gt=0)
    micro_batch: int = Field(gt=0)
    grad_accumulation: int = Field(gt=0)
    zero_stage: int = Field(ge=0, le=3)
    offload: Literal["none", "optimizer", "optimizer_and_params"] = "none"
    activation_checkpointing: bool = False
    precision: Literal["bf16", "fp32"] = "bf16"
    compile: bool = Field(False, description="torch.compile each repeated block (runtime.models compile_blocks)")


class StageFile(BaseModel):
    """train/<stage>/stage.yaml: one training stage, resolved, with paths relative to the run root."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = 1
    spec: str
    scale: Literal["full", "smoke"]
    stage: Stage
    architecture: ArchitectureSpec
    objective: Objective
    inference: InferenceSpec
    layout: Layout
    data: list[DataInput] = Field(min_length=1)
    output_dir: str = Field(description="checkpoints, metrics.jsonl and samples go here")
    init_from: str | None = Field(None, description="checkpoint directory of the stage this one starts from")
    teacher: str | None = Field(None, description="checkpoint directory of the teacher (distillation)")
    seed: int = 0
    validation_every: int = Field(
        1, gt=0, description="steps between validation-loss evaluations: the plan's cadence, or the stage's own"
    )
    validation_timesteps: int = Field(8, gt=0, description="stratified timesteps of the validation loss")
    # Steps between checkpoints (the last step always writes one): the plan's Young/Daly interval, or the stage's.
    checkpoint_every: int = Field(1, gt=0)
