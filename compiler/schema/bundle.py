"""Files a bundle hands to the runtime: the contracts between the emitter (compiler/emit) and the runtime,
which reads them from here and never imports the emitter.

  StageFile      train/<stage>/stage.yaml: everything one training stage needs, resolved (read by the trainer)
  PipelineFile   curation/<slug>/pipeline.json: a curation pipeline and what its ops encode with
                 (read by `genspec curate BUNDLE` and the Slurm array task through read_bundle_pipeline)
  encode_size    the size curation precomputes latents at, the same rule for the emitter and the runtime
  encode_clip    the clip (frames, fps) curation precomputes video latents of, likewise
  slug           the directory name of a pipeline or stage inside a bundle
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from compiler.schema.architecture import ArchitectureSpec
from compiler.schema.data import Pipeline, Subset
from compiler.schema.objective import Objective
from compiler.schema.schedule import Stage, Task
from compiler.schema.spec import InferenceSpec

if TYPE_CHECKING:
    from compiler.schema.spec import Spec


class DataInput(BaseModel):
    """A dataset a stage reads, as webdataset shards."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str
    weight: float = Field(gt=0, le=1)
    shards: str = Field(description="directory, glob or brace pattern of .tar shards, relative to the run root")
    modality: Literal["image", "video", "mixed"] = "image"
    where: Subset | None = Field(None, description="keep only samples matching this subset of the shards")
    task: Task = Field("generation", description="what its micro-batches train: an edit carries a reference image")


class ParallelLayout(BaseModel):
    """The plan's parallel layout for one training stage: data parallelism, batching, ZeRO, precision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dp_size: int = Field(gt=0)
    sp_size: int = Field(
        1, gt=0, description="Ulysses sequence-parallel degree: sp consecutive ranks share one sample, each "
        "holding 1/sp of its image/video tokens (runtime.models.sequence_parallel); dp_size x sp_size = ranks",
    )
    micro_batch: int = Field(gt=0)
    grad_accumulation: int = Field(gt=0)
    zero_stage: int = Field(ge=0, le=3)
    offload: Literal["none", "optimizer", "optimizer_and_params"] = "none"
    activation_checkpointing: bool = False
    precision: Literal["bf16", "fp32"] = "bf16"
    compile: bool = Field(False, description="torch.compile each repeated block (runtime.models compile_blocks)")


class BucketEntry(BaseModel):
    """One bucket of a bucketed stage as the plan sized it; a micro-batch holds samples of one bucket
    (runtime/train/buckets.py assigns each sample its nearest)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resolution: int = Field(ge=0, description="index into stage.resolutions: the bucket has that resolution's area")
    height: int = Field(gt=0, description="pixels")
    width: int = Field(gt=0, description="pixels")
    frames: int | None = Field(None, gt=0, description="video frames; 1: the images of a video stage; None: images")
    micro_batch: int = Field(gt=0, description="samples per micro-batch of this bucket")


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
    layout: ParallelLayout
    buckets: list[BucketEntry] = Field(
        default_factory=list, description="the stage's buckets (compiler/plan/buckets.py); empty: no buckets"
    )
    data: list[DataInput] = Field(min_length=1)
    output_dir: str = Field(description="checkpoints, metrics.jsonl and samples go here")
    init_from: str | None = Field(
        None,
        description="checkpoint directory of the stage this one starts from; released weights are named by "
        "stage.init_from and read from the trainer's model directory",
    )
    teacher: str | None = Field(None, description="checkpoint directory of the teacher (distillation)")
    seed: int = 0
    validation_every: int = Field(
        1, gt=0, description="steps between validation-loss evaluations: the plan's cadence, or the stage's own"
    )
    validation_timesteps: int = Field(8, gt=0, description="stratified timesteps of the validation loss")
    # Steps between checkpoints (the last step always writes one): the plan's Young/Daly interval, or the stage's.
    checkpoint_every: int = Field(1, gt=0)


class PipelineFile(BaseModel):
    """curation/<slug>/pipeline.json: one curation pipeline, and what its ops encode with as the trainer does
    (the architecture of the bundle's stage.yaml files and the encode size)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generated_by: str
    pipeline: Pipeline
    architecture: ArchitectureSpec | None = Field(None, description="absent in bundles older than the field")
    encode_size: tuple[int, int] | None = Field(None, description="(height, width); None when no stage reads it")
    encode_clip: tuple[int, float | None] | None = Field(
        None, description="(frames, fps) of the video stage encode_size comes from; None for images"
    )


def slug(name: str) -> str:
    """A directory-safe name; an altered name gets a short hash so two names never collide."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "x"
    return clean if clean == name else f"{clean[:40]}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def root_dataset(spec: Spec, name: str) -> tuple[str, Subset | None]:
    """A dataset's root (the one a pipeline writes) and the subset filter on the way down: every ancestor's
    filter merged into one, since a subset of a subset keeps only what both keep."""
    datasets = {d.name: d for d in spec.data.datasets}
    where = None
    while name in datasets and datasets[name].subset_of:
        if datasets[name].where is not None:
            where = datasets[name].where if where is None else _both(where, datasets[name].where)
        name = datasets[name].subset_of
    return name, where


def _both(child: Subset, parent: Subset) -> Subset:
    """A filter keeping what both keep: the stricter bound of each field (a child's modality wins)."""
    def stricter(pick, a, b):
        return b if a is None else a if b is None else pick(a, b)

    scores = dict(parent.min_score)
    for name, value in child.min_score.items():
        scores[name] = max(value, scores.get(name, value))
    return Subset(
        min_short_side_px=stricter(max, child.min_short_side_px, parent.min_short_side_px),
        min_score=scores,
        modality=child.modality or parent.modality,
        min_seconds=stricter(max, child.min_seconds, parent.min_seconds),
        max_seconds=stricter(min, child.max_seconds, parent.max_seconds),
    )


def encode_size(spec: Spec, pipeline: Pipeline) -> tuple[int, int] | None:
    """(height, width) curation precomputes latents at for `pipeline`: the first resolution of the first
    training stage that reads its output dataset, directly or through a subset (data.datasets[*].subset_of);
    None when no stage reads it. Later stages at other sizes encode from the image (runtime/train/batch.py)."""
    for stage in spec.schedule.stages:
        if any(root_dataset(spec, use.dataset)[0] == pipeline.output for use in stage.datasets):
            return stage.resolutions[0].height, stage.resolutions[0].width
    return None


def encode_clip(spec: Spec, pipeline: Pipeline) -> tuple[int, float | None] | None:
    """(frames, fps) of the clips curation precomputes video latents of for `pipeline`: those of the training stage
    encode_size takes its size from; None when that stage trains images (or no stage reads the output)."""
    for stage in spec.schedule.stages:
        if any(root_dataset(spec, use.dataset)[0] == pipeline.output for use in stage.datasets):
            return (stage.frames, stage.fps) if stage.frames else None
    return None


@dataclass(frozen=True)
class BundlePipeline:
    """What `genspec curate BUNDLE` and the Slurm array task read from a bundle for one pipeline."""

    pipeline: Pipeline
    scale: str
    architecture: ArchitectureSpec | None  # None in a bundle that predates the field
    encode_size: tuple[int, int] | None
    encode_clip: tuple[int, float | None] | None = None


def read_bundle_pipeline(bundle: Path, pipeline: str | None) -> BundlePipeline:
    """The curation Pipeline a compiled bundle ships (curation/<slug>/pipeline.json), the bundle's scale, and
    the architecture and encode size written beside the pipeline. With one pipeline, `pipeline` may be None."""
    bundle = Path(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    shipped = sorted(p.parent.name for p in bundle.glob("curation/*/pipeline.json"))
    if pipeline is None and len(shipped) == 1:
        folder = shipped[0]
    elif pipeline is not None and slug(pipeline) in shipped:
        folder = slug(pipeline)
    else:
        raise ValueError(f"{bundle}: choose a pipeline with --pipeline NAME; the bundle has: {', '.join(shipped)}")
    document = PipelineFile.model_validate_json((bundle / "curation" / folder / "pipeline.json").read_text())
    return BundlePipeline(pipeline=document.pipeline, scale=manifest["scale"], architecture=document.architecture,
                          encode_size=document.encode_size, encode_clip=document.encode_clip)
