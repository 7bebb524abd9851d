"""Buckets of a training stage: the shapes its samples train at, each with its own micro-batch.

A stage trains on buckets when it asks for aspect-ratio buckets (`aspect_ratio_buckets`), for clip lengths
besides `frames` (`frame_buckets`), or when it mixes image and video datasets. Each sample goes to its nearest
bucket (runtime/train/buckets.py) and a micro-batch holds one bucket.

Passes of `plan_buckets`, per stage:
  1. shapes       per resolution of the stage, one bucket per aspect ratio of ASPECT_RATIOS (and the
                  resolution's own) at the resolution's area: height sqrt(area / r), width area / height, each
                  rounded to the latent patch (spatial compression x patch size; the height to sp patches
                  under sequence parallelism, so every bucket's tokens split evenly over the group); per frame
                  count: `frames`, each of `frame_buckets`, and 1 for the images of a video stage
  2. micro-batch  each bucket's: the number of samples whose forward + backward (cost.py) takes nearest the
                  plan's micro-batch at the stage's largest size, and whose activations fit beside the plan's
                  model states (memory.py terms, as the plan counted them); so every rank's micro-step takes
                  about the same time whichever bucket it draws. A bucket that does not fit one sample is a
                  PlanError with the numbers
  3. feasibility  where a dataset states its aspect ratios (`data.datasets[*].aspect_ratios`) and its size
                  (`count`, or its pipeline's `kept_count`, which `genspec compile --data-report` takes from a
                  curation run's report.json: `report_overrides`): the share of one epoch each bucket gets on one
                  data-parallel rank must fill at least one micro-batch, else a PlanError with the numbers
                  (its samples would wait most of an epoch in the sampler, and a rank would train them rarely)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from compiler.plan.cost import PlanError, loss_passes, sample_activation_bytes, training_flops, workload
from compiler.plan.memory import GIB
from compiler.schema.architecture import Cascade, LatentSpace
from compiler.schema.bundle import root_dataset
from compiler.schema.common import Size
from compiler.schema.spec import Spec

# Width:height ratios of the buckets, portrait to landscape: the common photo and video frames (SDXL and
# Open-Sora bucket on these and neighbours of them).
ASPECT_RATIOS = ((9, 16), (2, 3), (3, 4), (1, 1), (4, 3), (3, 2), (16, 9))


@dataclass(frozen=True)
class BucketPlan:
    """One bucket of a stage: its shape, micro-batch, memory and time, and the known data in it."""

    resolution: int  # index into stage.resolutions: the bucket has that resolution's area
    height: int
    width: int
    frames: int | None  # video frames; 1: the images of a video stage; None: an image stage
    aspect: str  # the nearest named ratio, width:height
    image_tokens: int
    micro_batch: int
    memory_gib: float
    time_ratio: float  # the bucket's micro-step time over the plan's micro-step at the stage's largest size
    shares: tuple[tuple[str, float], ...] = ()  # (dataset, its fraction of that dataset) where known


def dataset_modality(spec: Spec, name: str) -> str:
    """'image', 'video' or 'mixed': the subset's modality, else the sources of the pipeline writing its root."""
    root, where = root_dataset(spec, name)
    if where is not None and where.modality:
        return where.modality
    sources = {s.name: s for s in spec.data.sources}
    kinds = {"video" if sources[n].modality.startswith("video") else "image"
             for p in spec.data.pipelines if p.output == root for n in p.sources if n in sources}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def bucketed(spec: Spec, stage) -> bool:
    """Whether the stage trains on buckets: it asks for aspect-ratio or frame buckets, or mixes images and
    videos (a video stage reading a dataset that holds images)."""
    mixes = bool(stage.frames) and any(dataset_modality(spec, use.dataset) != "video" for use in stage.datasets)
    return bool(stage.aspect_ratio_buckets or stage.frame_buckets or mixes)


def frame_counts(spec: Spec, stage) -> list[int | None]:
    """The bucket frame counts, longest first: None in an image stage; `frames`, `frame_buckets`, and 1 for
    images when a dataset of the stage holds them."""
    if not stage.frames:
        if stage.frame_buckets:
            raise PlanError(f"schedule.stages[{stage.name}].frame_buckets is {stage.frame_buckets} in an image stage "
                            "(frames unset); set frames, or remove frame_buckets")
        return [None]
    counts = sorted({stage.frames, *stage.frame_buckets}, reverse=True)
    space = spec.architecture.space
    k = space.temporal_compression if isinstance(space, LatentSpace) else 1
    causal = isinstance(space, LatentSpace) and space.causal
    for count in counts:
        if count > stage.frames or (count - (1 if causal else 0)) % k:
            rule = f"1 + {k}n" if causal else f"a multiple of {k}"
            below = min(count, stage.frames) - (1 if causal else 0)
            fix = below // k * k + (1 if causal else 0)
            raise PlanError(
                f"schedule.stages[{stage.name}].frame_buckets has {count}: bucket frame counts must be at most "
                f"frames ({stage.frames}) and what the VAE encodes ({rule} frames, architecture.space); "
                f"use {fix} instead"
            )
    if any(dataset_modality(spec, use.dataset) != "video" for use in stage.datasets):
        counts.append(1)
    return counts


def _unit(spec: Spec) -> int:
    """Pixels per latent patch side: bucket sides are multiples of it."""
    space, backbone = spec.architecture.space, spec.architecture.backbone
    compression = space.spatial_compression if isinstance(space, LatentSpace) else 1
    patch = 1 if isinstance(backbone, Cascade) else max(backbone.patch_size[1:])
    return compression * patch


def aspect_label(height: int, width: int) -> str:
    """The named ratio nearest to width / height."""
    w, h = min(ASPECT_RATIOS, key=lambda r: abs(math.log(width / height) - math.log(r[0] / r[1])))
    return f"{w}:{h}"


def bucket_sizes(spec: Spec, size: Size, aspect_ratio_buckets: bool, sp: int = 1) -> list[tuple[int, int]]:
    """(height, width) of the buckets at `size`'s area, portrait to landscape; the size itself is one of them
    (the only one without aspect-ratio buckets). Under sequence parallelism sp, a bucket's latent patches per
    frame are a multiple of sp (the group splits them evenly): the nearest such size to the ratio and area."""
    if not aspect_ratio_buckets:
        return [(size.height, size.width)]
    unit = _unit(spec)
    area = size.height * size.width
    sizes = {(size.height, size.width)} if (size.height // unit) * (size.width // unit) % sp == 0 else set()

    def columns(rows: int) -> int:  # patches across at `rows` patches down, keeping the area
        return max(1, round(area / (rows * unit * unit)))

    for w, h in ASPECT_RATIOS:
        target = round(math.sqrt(area * h / w) / unit)  # patches down at the exact ratio and area
        legal = [r for r in range(max(1, target - 2 * sp), target + 2 * sp + 1) if r * columns(r) % sp == 0]
        best = min(legal, key=lambda r: abs(math.log(columns(r) / r * h / w))
                   + abs(math.log(r * columns(r) * unit * unit / area)))
        sizes.add((best * unit, columns(best) * unit))
    return sorted(sizes, key=lambda s: s[1] / s[0])


def plan_buckets(spec: Spec, stage, cluster, stage_plan) -> tuple[BucketPlan, ...]:
    """The stage's buckets with their micro-batches (see the module docstring); () for a stage without."""
    if not bucketed(spec, stage):
        return ()
    checkpointing, sp = stage_plan.activation_checkpointing, stage_plan.sp_size
    passes = loss_passes(stage)
    reference = stage_plan.micro_batch * training_flops(workload(spec, stage), checkpointing, passes)
    fixed = stage_plan.memory_gib.total - stage_plan.memory_gib.activations
    capacity = stage_plan.memory_gib.capacity
    buckets = []
    for index, size in enumerate(stage.resolutions):
        for frames in frame_counts(spec, stage):
            for height, width in bucket_sizes(spec, size, stage.aspect_ratio_buckets, sp):
                shape = stage.model_copy(update={"resolutions": [Size(height=height, width=width)], "frames": frames})
                work = workload(spec, shape)
                flops = training_flops(work, checkpointing, passes)
                per_sample = sample_activation_bytes(work, passes, checkpointing, sp, stage_plan.precision) / GIB
                if fixed + per_sample > capacity:
                    raise PlanError(
                        f"schedule.stages[{stage.name}]: bucket {height}x{width}"
                        f"{'' if frames is None else f' x {frames} frames'} ({work.image_tokens} image tokens) needs "
                        f"{fixed + per_sample:.1f} GiB for one sample ({fixed:.1f} GiB model states and frozen copies "
                        f"+ {per_sample:.1f} GiB activations) in the plan's layout, above the {capacity:.1f} GiB "
                        f"usable on {cluster.name}; lower the stage's resolution or frames, or turn "
                        "aspect_ratio_buckets off"
                    )
                micro = max(1, min(round(reference / flops), int((capacity - fixed) // per_sample)))
                buckets.append(BucketPlan(
                    resolution=index, height=height, width=width, frames=frames,
                    aspect=aspect_label(height, width), image_tokens=work.image_tokens, micro_batch=micro,
                    memory_gib=fixed + per_sample * micro, time_ratio=micro * flops / reference,
                ))
    buckets = _with_shares(spec, stage, buckets)
    _check_feasible(spec, stage, stage_plan.dp_size, buckets)
    return tuple(buckets)


def parse_ratio(text: str, field: str) -> float:
    """'16:9' -> 16 / 9 (width / height)."""
    parts = text.split(":")
    try:
        width, height = (float(part) for part in parts)
        if width <= 0 or height <= 0:
            raise ValueError
    except ValueError:
        raise PlanError(f"{field} has the key {text!r}; write aspect ratios as 'width:height', e.g. '16:9'") from None
    return width / height


def _known_mix(spec: Spec, name: str) -> tuple[str, dict[str, float], float | None]:
    """(field path, aspect ratios, item count) of a dataset: the aspect ratios its own or its nearest ancestor's
    (a subset is assumed to keep its parent's mix), the count its own (a root dataset: else its pipeline's
    kept_count); None when not stated."""
    datasets = {d.name: (i, d) for i, d in enumerate(spec.data.datasets)}
    own = datasets.get(name, (None, None))[1]
    count = own.count if own is not None else None
    if count is None and (own is None or own.subset_of is None):
        count = next((p.kept_count for p in spec.data.pipelines if p.output == name), None)
    current = name
    while current in datasets:
        index, dataset = datasets[current]
        if dataset.aspect_ratios:
            return f"data.datasets[{index}].aspect_ratios", dataset.aspect_ratios, count
        current = dataset.subset_of
    return "", {}, count


def _with_shares(spec: Spec, stage, buckets: list[BucketPlan]) -> list[BucketPlan]:
    """Each bucket of the largest resolution with the share of every dataset whose aspect ratios are known."""
    shares: dict[tuple[int, int, int | None], list[tuple[str, float]]] = {}
    last = len(stage.resolutions) - 1
    for use in stage.datasets:
        field, mix, _ = _known_mix(spec, use.dataset)
        modality = dataset_modality(spec, use.dataset)
        if not mix or modality == "mixed":
            continue
        frames = None if not stage.frames else (stage.frames if modality == "video" else 1)
        candidates = [b for b in buckets if b.resolution == last and b.frames == frames]
        total = sum(mix.values())
        found: dict[tuple, float] = {}
        for ratio, fraction in mix.items():
            target = math.log(parse_ratio(ratio, field))
            nearest = min(candidates, key=lambda b: abs(math.log(b.width / b.height) - target))
            key = (nearest.height, nearest.width, nearest.frames)
            found[key] = found.get(key, 0.0) + fraction / total
        for key, share in found.items():
            shares.setdefault(key, []).append((use.dataset, share))
    return [replace(b, shares=tuple(shares.get((b.height, b.width, b.frames), ()))) if b.resolution == last else b
            for b in buckets]


def _check_feasible(spec: Spec, stage, dp: int, buckets: list[BucketPlan]) -> None:
    """Every bucket with known data gets at least one micro-batch per data-parallel rank per epoch."""
    problems = []
    for bucket in buckets:
        for dataset, share in bucket.shares:
            field, _, count = _known_mix(spec, dataset)
            if count is None:
                continue
            per_rank = count * share / dp
            if per_rank < bucket.micro_batch:
                problems.append(
                    f"bucket {bucket.height}x{bucket.width}{'' if bucket.frames is None else f' x {bucket.frames}'} "
                    f"({bucket.aspect}) holds {share:.2%} of dataset {dataset!r} ({count:.0f} items, {field}): "
                    f"{per_rank:.1f} samples per data-parallel rank per epoch over {dp} ranks, fewer than its "
                    f"micro-batch of {bucket.micro_batch}"
                )
    if problems:
        raise PlanError(
            f"schedule.stages[{stage.name}]: buckets cannot fill their micro-batches:\n  " + "\n  ".join(problems)
            + "\nFix: curate more data at these aspect ratios, drop them in curation (aspect_ratio_filter), train "
            "on fewer data-parallel ranks, or turn aspect_ratio_buckets off"
        )


def report_overrides(paths: list[str]) -> list[str]:
    """`--set` overrides giving each curated pipeline its measured kept count, from curation reports
    (OUTPUT/report.json, runtime/curation/report.py: "pipeline" and "kept"). The report holds no image sizes
    or durations, so aspect ratios still come from the spec."""
    found = []
    for path in paths:
        try:
            report = json.loads(Path(path).read_text())
            found.append(f"data.pipelines[{report['pipeline']}].kept_count={int(report['kept'])}")
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"--data-report {path}: not a curation report.json with 'pipeline' and 'kept' "
                             f"({error}); pass OUTPUT/report.json of a finished `genspec curate`") from None
    return found
