"""Frozen conditioning of a training stage: precomputed by curation or encoded by the trainer, and what
precomputing stores per sample.

precompute_embeddings (runtime/curation/ops/precompute.py) writes, per sample, bf16 arrays: the latents of the
image or of the stage's clip, the caption's real tokens of the token encoder (unpadded: at most max_tokens),
the pooled vector, glyph tokens padded to max_tokens, and an edit's reference latents. It encodes at the size
(and clip) of the first training stage reading the pipeline's output; a stage at another size encodes its
latents from the media (runtime/train/batch.py).
"""

from __future__ import annotations

from typing import Literal

from compiler.schema.data import PrecomputeEmbeddings
from compiler.schema.schedule import Stage
from compiler.schema.spec import Spec

BF16_BYTES = 2
Conditioning = Literal["precomputed", "on_the_fly"]


def root_dataset(spec: Spec, name: str) -> str:
    """The dataset a pipeline writes that `name` is (a subset of)."""
    datasets = {d.name: d for d in spec.data.datasets}
    while name in datasets and datasets[name].subset_of:
        name = datasets[name].subset_of
    return name


def first_reader(spec: Spec, dataset: str) -> Stage | None:
    """The first training stage reading `dataset` (a pipeline's output), directly or through a subset: the stage
    whose size curation precomputes latents at (compiler.emit.bundle.encode_size)."""
    return next((stage for stage in spec.schedule.stages
                 if any(root_dataset(spec, use.dataset) == dataset for use in stage.datasets)), None)


def precompute_op(spec: Spec, dataset: str) -> PrecomputeEmbeddings | None:
    """The precompute_embeddings op of the pipeline writing `dataset`, None when it has none."""
    ops = [op for pipeline in spec.data.pipelines if pipeline.output == dataset
           for op in pipeline.ops if isinstance(op, PrecomputeEmbeddings)]
    return ops[-1] if ops else None


def precomputes_everything(spec: Spec, stage: Stage, dataset: str) -> bool:
    """Whether the pipeline writing `dataset` stores every input `stage` needs at the stage's geometry: latents
    (pixel-space stages need none) at its only resolution and frames, and every text encoder's output."""
    op = precompute_op(spec, dataset)
    if op is None:
        return False
    if set(op.text_encoders) != {encoder.name for encoder in spec.architecture.text_encoders}:
        return False
    if spec.architecture.space.kind != "latent":
        return True
    encoded = first_reader(spec, dataset)
    return (op.vae_latents and encoded is not None and len(stage.resolutions) == 1
            and stage.resolutions[0] == encoded.resolutions[0] and stage.frames == encoded.frames
            and stage.fps == encoded.fps)


def stage_conditioning(spec: Spec, stage: Stage) -> Conditioning:
    """stage.conditioning when the spec sets it, else 'precomputed' when every dataset the stage reads comes with
    all of its conditioning precomputed at the stage's geometry, else 'on_the_fly'."""
    if stage.conditioning is not None:
        return stage.conditioning
    roots = {root_dataset(spec, use.dataset) for use in stage.datasets}
    return "precomputed" if all(precomputes_everything(spec, stage, root) for root in roots) else "on_the_fly"


def stored_bytes_per_sample(spec: Spec, dataset: str) -> int | None:
    """Bytes per sample of the conditioning precompute_embeddings stores for `dataset` (bf16), at most: text
    counts max_tokens although only a caption's real tokens are kept; a dataset of triplets (edits) stores the
    reference image's latents too. None when nothing is precomputed."""
    op = precompute_op(spec, dataset)
    if op is None:
        return None
    elements = 0
    space = spec.architecture.space
    encoded = first_reader(spec, dataset)
    if op.vae_latents and space.kind == "latent" and encoded is not None:
        size = encoded.resolutions[0]
        grid = (size.height // space.spatial_compression) * (size.width // space.spatial_compression)
        frames = 1
        if encoded.frames:
            lead = 1 if space.causal else 0  # a causal VAE encodes the first frame alone
            frames = lead + (encoded.frames - lead) // space.temporal_compression
        edits = any(d.name == dataset and d.unit == "triplets" for d in spec.data.datasets)
        elements += space.channels * frames * grid * (2 if edits else 1)  # an edit's reference latents too
    architecture = spec.architecture
    named = {encoder.name for encoder in architecture.text_encoders if encoder.name in op.text_encoders}
    if any(encoder.name in named for group in architecture.token_groups() for encoder in group):
        elements += architecture.text_width() * architecture.text_tokens()  # joint lists padded to the widest
    elements += sum(encoder.dim or 0 for encoder in architecture.text_encoders
                    if encoder.name in named and "pooled" in encoder.inputs)
    elements += sum((encoder.dim or 0) * (encoder.max_tokens or 0) for encoder in architecture.text_encoders
                    if encoder.name in named and encoder.role == "glyph")
    return elements * BF16_BYTES
