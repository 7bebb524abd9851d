"""The schedule section: ordered training stages, each with its data, resolution, batch and optimizer.

A stage starts from scratch, from the checkpoint of an earlier stage, or from released weights (a model id
in the model directory, in its published layout); distillation stages also name a teacher stage.
Stage-specific losses (distillation, preference) live on the stage; the base objective is the spec's
`objective`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from compiler.schema.common import Size
from compiler.schema.provenance import Node

StageKind = Literal[
    "pretrain",
    "progressive_resolution",
    "joint_image_video",
    "continuing_training",
    "sft",
    "rlhf",
    "guidance_distillation",
    "speed_distillation",
    "adversarial_distillation",
    "safety_alignment",
    "prompt_engineering",
]
DISTILLATION_KINDS = ("guidance_distillation", "speed_distillation", "adversarial_distillation")

# Optimizers -----------------------------------------------------------------------------------------


class AdamW(Node):
    """AdamW (decoupled weight decay)."""

    kind: Literal["adamw"] = "adamw"
    lr: float = Field(gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class Adam(AdamW):
    """Adam (L2 weight decay in the gradient)."""

    kind: Literal["adam"] = "adam"  # type: ignore[assignment]


class Adafactor(Node):
    """Adafactor: factored second moments, the memory-lean choice of Imagen's base model."""

    kind: Literal["adafactor"] = "adafactor"
    lr: float = Field(gt=0)
    weight_decay: float = Field(0.0, ge=0)


Optimizer = Annotated[Union[AdamW, Adam, Adafactor], Field(discriminator="kind")]


class LrSchedule(Node):
    """Learning-rate schedule: linear warm-up, then constant, cosine or linear decay."""

    kind: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr as a fraction of the peak (decays)")


# Stage losses ---------------------------------------------------------------------------------------


class GuidanceDistillation(Node):
    """Student learns the teacher's CFG output with the guidance scale as an input (FLUX.1 dev)."""

    kind: Literal["guidance_distillation"] = "guidance_distillation"
    guidance_range: tuple[float, float] = (1.0, 5.0)


class TimestepDistillation(Node):
    """Few-step student from a teacher (FLUX.1 schnell: 1-4 steps); method undisclosed, LADD assumed."""

    kind: Literal["timestep_distillation"] = "timestep_distillation"
    student_steps: int = Field(4, gt=0)


class AdversarialDistillation(Node):
    """Latent Adversarial Diffusion Distillation: a discriminator on teacher features judges student samples."""

    kind: Literal["ladd"] = "ladd"
    student_steps: int = Field(4, gt=0)
    adversarial_weight: float = Field(1.0, gt=0)
    distillation_weight: float = Field(1.0, ge=0)


class PreferenceLoss(Node):
    """Diffusion-DPO on (prompt, preferred, rejected) triplets scored by a reward model."""

    kind: Literal["diffusion_dpo"] = "diffusion_dpo"
    beta: float = Field(5000.0, gt=0)
    reward_model: str = Field(description="model that labels preferences, e.g. a VLM reward model")
    reward_model_params: float | None = Field(None, gt=0)
    iterations: int = Field(1, gt=0, description="rounds of sampling, labelling and training")


StageLoss = Annotated[
    Union[GuidanceDistillation, TimestepDistillation, AdversarialDistillation, PreferenceLoss],
    Field(discriminator="kind"),
]


class DatasetUse(Node):
    """A dataset a stage consumes and its share of the stage's samples."""

    dataset: str
    weight: float = Field(1.0, gt=0, le=1)


RELEASED_LAYOUTS = ("diffusers", "bfl", "wan")


class ReleasedWeights(Node):
    """Published weights a stage starts from instead of an earlier stage's checkpoint.

    `released` is a model id looked up in the model directory as the text encoders are (org/name, org--name
    or the Hugging Face hub cache); the runtime maps the file's keys onto the network's (runtime/models/released.py)
    and checks them key by key against the architecture.
    """

    released: str = Field(
        min_length=1, description="model id in the model directory, e.g. black-forest-labs/FLUX.1-dev"
    )
    layout: Literal["diffusers", "bfl", "wan"] = Field(
        "diffusers",
        description="key names of the file: 'diffusers' (the model's diffusers class), 'bfl' (Black Forest Labs' "
        "single file, e.g. flux1-dev.safetensors), 'wan' (the Wan2.1 repository's own checkpoints)",
    )
    subfolder: str | None = Field(
        None, description="folder inside the model's folder, e.g. 'transformer' of a diffusers pipeline repository"
    )
    file: str | None = Field(
        None,
        description="weights file inside the (sub)folder, a .safetensors file or a sharded checkpoint's "
        ".safetensors.index.json; unset: diffusion_pytorch_model.safetensors or its index",
    )

    @field_validator("subfolder", "file")
    @classmethod
    def _relative(cls, value: str | None, info) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError(
                f"init_from.{info.field_name} is {value!r}; give a path inside the model's folder (relative, no '..')"
            )
        return value

    @field_validator("file")
    @classmethod
    def _safetensors(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith((".safetensors", ".safetensors.index.json")):
            raise ValueError(
                f"init_from.file is {value!r}; the runtime reads safetensors only: name a .safetensors file or a "
                "sharded checkpoint's .safetensors.index.json"
            )
        return value


Task = Literal["generation", "edit"]


class TaskShare(Node):
    """A task a stage trains and its share of the stage's micro-batches."""

    task: Task = Field(
        description="generation: an image or clip from its caption (plain datasets); edit: a target image from "
        "an instruction and a reference image (datasets of triplets, an MMDiT with context_images 'sequence')"
    )
    weight: float = Field(gt=0, le=1, description="share of the stage's micro-batches; a stage's shares sum to 1")


class Stage(Node):
    """One training stage."""

    name: str
    kind: StageKind
    model: str = Field("main", description="the model trained; a cascade stage name for cascades")
    datasets: list[DatasetUse] = Field(min_length=1)
    tasks: list[TaskShare] = Field(
        default_factory=list,
        description="tasks trained jointly and each one's share of the micro-batches (Seedream 4.0: text-to-image "
        "and editing), stated and checked: a dataset of triplets trains edit, any other generation, and a task's "
        "weight is the sum of its datasets' weights; the trainer draws each micro-batch's dataset by weight and "
        "checks its task (an edit carries a reference image); empty: not stated",
    )
    resolutions: list[Size] = Field(min_length=1, description="sizes trained, in order (progressive within the stage)")
    aspect_ratio_buckets: bool = Field(
        False,
        description="train at native aspect ratios: each sample goes to the bucket of nearest aspect ratio at the "
        "area of the stage's resolution, and a micro-batch holds one bucket with a micro-batch of its own "
        "(compiler/plan/buckets.py, runtime/train/buckets.py)",
    )
    frames: int | None = Field(None, gt=0, description="frames per video sample; None for images")
    frame_buckets: list[int] = Field(
        default_factory=list,
        description="shorter clip lengths trained besides `frames` (duration buckets): a clip shorter than "
        "`frames` trains at the longest of these it covers, instead of being passed over; each a frame count "
        "the VAE encodes (1 + 4k for a causal 4x VAE)",
    )
    fps: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0, description="global batch, samples")
    steps: int | None = Field(None, gt=0)
    optimizer: Optimizer | None = None
    lr_schedule: LrSchedule = Field(default_factory=LrSchedule)
    ema_decay: float | None = Field(None, gt=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)
    precision: Literal["bf16", "fp32"] = "bf16"
    conditioning: Literal["precomputed", "on_the_fly"] | None = Field(
        None,
        description="where text embeddings and latents come from: 'precomputed' (shard members written by "
        "precompute_embeddings; the trainer loads no encoders), 'on_the_fly' (the trainer runs the text encoders "
        "and VAE on the accelerator); unset: precomputed when every pipeline feeding the stage precomputes latents "
        "at its size and every text encoder's output (compiler/plan/conditioning.py)",
    )
    init_from: str | ReleasedWeights | None = Field(
        None,
        description="where the weights start: the name of an earlier stage (its final checkpoint), or released "
        "weights {released: MODEL_ID, layout, subfolder, file}; unset: from scratch",
    )
    teacher: str | None = Field(None, description="stage whose checkpoint teaches (distillation)")
    loss: StageLoss | None = None
    goal: str | None = Field(None, description="what the stage is for, in the model card's words")
    checkpoint_every: int | None = Field(
        None, gt=0, description="steps between checkpoints; unset: the planner's Young/Daly interval"
    )
    validation_every: int | None = Field(
        None, gt=0, description="steps between validation-loss evaluations; unset: the planner's interval"
    )

    @property
    def init_stage(self) -> str | None:
        """The earlier stage init_from names; None from scratch or from released weights."""
        return self.init_from if isinstance(self.init_from, str) else None

    @property
    def init_released(self) -> ReleasedWeights | None:
        """The released weights init_from names, if it names any."""
        return self.init_from if isinstance(self.init_from, ReleasedWeights) else None

    @model_validator(mode="after")
    def _cadence_within_steps(self) -> Stage:
        for field in ("checkpoint_every", "validation_every"):
            every = getattr(self, field)
            if every is not None and self.steps is not None and every > self.steps:
                raise ValueError(
                    f"schedule.stages[{self.name}].{field} is {every} but the stage has {self.steps} steps; "
                    f"set {field} to at most {self.steps} (the last step always writes a checkpoint), or leave "
                    "it unset for the planner's interval"
                )
        return self


class ScheduleSpec(Node):
    """The ordered training stages."""

    stages: list[Stage] = Field(min_length=1)


def dataset_task(datasets: list, name: str) -> Task:
    """The task a dataset trains: edit when it or a dataset it is a subset of holds triplets, else generation.
    `datasets` is the spec's data.datasets."""
    declared = {dataset.name: dataset for dataset in reversed(datasets)}  # the first of a repeated name wins
    seen: set[str] = set()
    while name in declared and name not in seen:
        seen.add(name)
        if declared[name].unit == "triplets":
            return "edit"
        name = declared[name].subset_of
    return "generation"


def edit_share(stage: Stage, datasets: list) -> float:
    """The share of the stage's micro-batches that are edits: its triplet datasets' weights over all."""
    total = sum(use.weight for use in stage.datasets)
    edits = sum(use.weight for use in stage.datasets if dataset_task(datasets, use.dataset) == "edit")
    return edits / total if total else 0.0
