"""Rules on training stages: stage order and checkpoints, distillation, dataset mixes, resolutions and
frame counts the network and its VAE accept, cascade stages, optimizer schedule."""

from __future__ import annotations

from collections.abc import Iterator

from compiler.diagnostic import Diagnostic
from compiler.rules.lookups import (
    dataset_modality,
    item_path,
    min_short_side,
    repeated,
    stage_paths,
    stage_positions,
    transformer,
    unet_divisor,
    unet_of,
    unets,
)
from compiler.schema.architecture import LatentSpace
from compiler.schema.common import Size
from compiler.schema.schedule import DISTILLATION_KINDS, Stage, dataset_task
from compiler.schema.spec import Spec
from compiler.schema.support import RELEASED_LAYOUTS, family_of
from compiler.validate import rule

TOLERANCE = 1e-6

# Stage kind -> the stage losses that implement it. Kinds not listed train the spec's objective alone.
STAGE_LOSSES = {
    "guidance_distillation": ("guidance_distillation",),
    "speed_distillation": ("timestep_distillation", "ladd"),
    "adversarial_distillation": ("ladd",),
    "rlhf": ("diffusion_dpo",),
}


# Names and checkpoints ------------------------------------------------------------------------------


@rule("schedule.unique-names", "stages have distinct names, and a stage lists each dataset once")
def unique_names(spec: Spec) -> Iterator[Diagnostic]:
    for name, count in repeated(stage.name for stage in spec.schedule.stages).items():
        yield Diagnostic(
            "schedule.stages",
            "schedule.unique-names",
            f"stage name {name!r} is used {count} times; init_from and teacher would be ambiguous",
            "give each stage its own name",
        )
    for path, _, stage in stage_paths(spec):
        for name, count in repeated(use.dataset for use in stage.datasets).items():
            yield Diagnostic(
                f"{path}.datasets",
                "schedule.unique-names",
                f"stage {stage.name!r} lists dataset {name!r} {count} times",
                "list each dataset once, with its total weight",
            )


@rule("schedule.dataset-declared", "a stage consumes declared datasets")
def dataset_declared(spec: Spec) -> Iterator[Diagnostic]:
    declared = [dataset.name for dataset in spec.data.datasets]
    for path, _, stage in stage_paths(spec):
        for index, use in enumerate(stage.datasets):
            if use.dataset not in declared:
                yield Diagnostic(
                    f"{item_path(f'{path}.datasets', stage.datasets, index)}.dataset",
                    "schedule.dataset-declared",
                    f"stage {stage.name!r} consumes dataset {use.dataset!r}, which data.datasets does not declare "
                    f"(declared: {declared})",
                    "fix the name, or declare the dataset (a pipeline's output or a subset)",
                )


@rule("schedule.references-earlier-stage", "init_from and teacher name an earlier stage")
def references_earlier_stage(spec: Spec) -> Iterator[Diagnostic]:
    positions = stage_positions(spec)
    for path, position, stage in stage_paths(spec):
        for field, named in (("init_from", stage.init_stage), ("teacher", stage.teacher)):
            if named is None:
                continue
            if named not in positions:
                problem = f"names no stage (stages: {list(positions)})"
            elif positions[named] >= position:
                problem = f"is stage {positions[named]}, not before stage {position} {stage.name!r}"
            else:
                continue
            yield Diagnostic(
                f"{path}.{field}",
                "schedule.references-earlier-stage",
                f"{field} {named!r} of stage {stage.name!r} {problem}; a checkpoint comes from a finished stage",
                f"set {field} to a stage listed before {stage.name!r}",
            )


@rule("schedule.init-from-same-model", "a stage starts from a checkpoint of the same network")
def init_from_same_model(spec: Spec) -> Iterator[Diagnostic]:
    stages = {stage.name: stage for stage in reversed(spec.schedule.stages)}
    for path, _, stage in stage_paths(spec):
        source = stages.get(stage.init_stage) if stage.init_stage else None
        if source is not None and source.model != stage.model:
            yield Diagnostic(
                f"{path}.init_from",
                "schedule.init-from-same-model",
                f"stage {stage.name!r} trains model {stage.model!r} but starts from stage {source.name!r}, "
                f"which trained model {source.model!r}",
                f"start from a stage that trained {stage.model!r}, or from scratch (init_from None)",
            )


@rule("schedule.released-layout-fits", "released weights come in a layout the spec's backbone has")
def released_layout_fits(spec: Spec) -> Iterator[Diagnostic]:
    family = family_of(spec.architecture.backbone)
    for path, _, stage in stage_paths(spec):
        released = stage.init_released
        if released is not None and family not in RELEASED_LAYOUTS[released.layout]:
            fitting = [layout for layout, families in RELEASED_LAYOUTS.items() if family in families]
            yield Diagnostic(
                f"{path}.init_from.layout",
                "schedule.released-layout-fits",
                f"stage {stage.name!r} starts from {released.released!r} in layout {released.layout!r}, whose keys "
                f"name the parameters of {', '.join(RELEASED_LAYOUTS[released.layout])}; this spec's backbone is "
                f"{family}",
                f"use a layout that fits {family} ({', '.join(fitting) or 'none: start from an earlier stage'}), "
                "as the released file is written",
            )


# Stage kinds and losses -----------------------------------------------------------------------------


@rule("schedule.distillation-teacher", "a distillation stage names its teacher")
def distillation_teacher(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, stage in stage_paths(spec):
        if stage.kind in DISTILLATION_KINDS and stage.teacher is None:
            yield Diagnostic(
                f"{path}.teacher",
                "schedule.distillation-teacher",
                f"{stage.kind} stage {stage.name!r} has no teacher",
                "set teacher to the earlier stage whose checkpoint teaches (often the same as init_from)",
            )


@rule("schedule.distillation-loss", "a distillation stage states its distillation loss")
def distillation_loss(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, stage in stage_paths(spec):
        if stage.kind in DISTILLATION_KINDS and stage.loss is None:
            options = " or ".join(STAGE_LOSSES[stage.kind])
            yield Diagnostic(
                f"{path}.loss",
                "schedule.distillation-loss",
                f"{stage.kind} stage {stage.name!r} has no loss: it would train the base objective, not distil",
                f"set loss to a {options} loss",
            )


@rule("schedule.stage-loss-fits-kind", "a stage loss implements the stage's kind (preference losses on rlhf only)")
def stage_loss_fits_kind(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, stage in stage_paths(spec):
        allowed = STAGE_LOSSES.get(stage.kind, ())
        if stage.loss is not None and stage.loss.kind not in allowed:
            expected = f"one of {list(allowed)}" if allowed else "no stage loss (the spec's objective)"
            yield Diagnostic(
                f"{path}.loss",
                "schedule.stage-loss-fits-kind",
                f"stage {stage.name!r} of kind {stage.kind!r} has a {stage.loss.kind!r} loss; it takes {expected}",
                "change the stage's kind or its loss",
            )


@rule("schedule.mixing-weights-sum-to-one", "the weights of a stage's datasets sum to 1")
def mixing_weights_sum_to_one(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, stage in stage_paths(spec):
        total = sum(use.weight for use in stage.datasets)
        if abs(total - 1) > TOLERANCE:
            shown = ", ".join(f"{use.dataset} {use.weight:g}" for use in stage.datasets)
            yield Diagnostic(
                f"{path}.datasets",
                "schedule.mixing-weights-sum-to-one",
                f"dataset weights of stage {stage.name!r} ({shown}) sum to {total:g}, not 1",
                "scale the weights to sum to 1",
            )


@rule("schedule.task-mix", "a stage's tasks each weigh what their datasets weigh, cover its datasets, and an edit "
      "task has an MMDiT that reads reference images")
def task_mix(spec: Spec) -> Iterator[Diagnostic]:
    backbone = spec.architecture.backbone
    for path, _, stage in stage_paths(spec):
        if not stage.tasks:
            continue
        for task, count in repeated(share.task for share in stage.tasks).items():
            yield Diagnostic(f"{path}.tasks", "schedule.task-mix", f"task {task!r} is listed {count} times",
                             "list each task once")
        tasks = {use.dataset: dataset_task(spec.data.datasets, use.dataset) for use in stage.datasets}
        for index, share in enumerate(stage.tasks):
            uses = [use for use in stage.datasets if tasks[use.dataset] == share.task]
            total = sum(use.weight for use in uses)
            if abs(total - share.weight) > TOLERANCE:
                shown = ", ".join(f"{use.dataset} {use.weight:g}" for use in uses) or "none"
                yield Diagnostic(
                    f"{path}.tasks[{index}].weight", "schedule.task-mix",
                    f"task {share.task!r} has weight {share.weight:g} but the stage's {share.task} datasets ({shown}) "
                    f"weigh {total:g}; the trainer draws micro-batches by dataset weight",
                    f"set the weight to {total:g}, or change the datasets' weights" if uses else
                    f"add a {share.task} dataset ({'triplets' if share.task == 'edit' else 'not triplets'}) to the "
                    "stage, or drop the task",
                )
        listed = {share.task for share in stage.tasks}
        unlisted = [name for name, task in tasks.items() if task not in listed]
        if unlisted:
            yield Diagnostic(
                f"{path}.tasks", "schedule.task-mix",
                f"datasets {unlisted} train {sorted({tasks[name] for name in unlisted})}, a task stage "
                f"{stage.name!r} does not list in tasks {sorted(listed)}",
                "add the task with its datasets' weight, or drop the datasets",
            )
        if "edit" in listed and getattr(backbone, "context_images", "none") != "sequence":
            yield Diagnostic(
                f"{path}.tasks", "schedule.task-mix",
                f"stage {stage.name!r} trains the edit task, but the backbone reads no reference image "
                f"(context_images is {getattr(backbone, 'context_images', None)!r})",
                "set architecture.backbone.context_images to 'sequence' (an MMDiT, as Flux Kontext), or drop the task",
            )


# Resolutions and frames -----------------------------------------------------------------------------


def _spatial_divisor(spec: Spec, model: str) -> tuple[int, int, str] | None:
    """(height divisor, width divisor, why) for images the network trained as `model` accepts."""
    backbone = transformer(spec)
    space = spec.architecture.space
    if backbone is not None:
        _, patch_h, patch_w = backbone.patch_size
        if isinstance(space, LatentSpace):
            compression = space.spatial_compression
            why = f"VAE spatial compression {compression} x patch {patch_h}x{patch_w}"
            return compression * patch_h, compression * patch_w, why
        return patch_h, patch_w, f"patch {patch_h}x{patch_w}"
    unet = unets(spec).get(model)
    if unet is None:
        return None
    divisor = unet_divisor(unet)
    return divisor, divisor, f"U-Net {unet.name!r} halves the side over {len(unet.channel_mult)} levels"


def _indivisible(size: Size, divisor: tuple[int, int, str]) -> str | None:
    height, width, why = divisor
    wrong = [f"height {size.height}"] if size.height % height else []
    wrong += [f"width {size.width}"] if size.width % width else []
    if not wrong:
        return None
    needed = f"{height}" if height == width else f"{height} (height) / {width} (width)"
    return f"{size}: {' and '.join(wrong)} not divisible by {needed} ({why})"


@rule("schedule.resolution-divisible", "stage and inference resolutions divide into whole latent patches")
def resolution_divisible(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, stage in stage_paths(spec):
        divisor = _spatial_divisor(spec, stage.model)
        for index, size in enumerate(stage.resolutions):
            problem = _indivisible(size, divisor) if divisor else None
            if problem:
                yield Diagnostic(
                    item_path(f"{path}.resolutions", stage.resolutions, index),
                    "schedule.resolution-divisible",
                    f"stage {stage.name!r} trains at {problem}",
                    f"round the size to a multiple of {divisor[0]}",
                )
    final_model = ([*unets(spec)] or ["main"])[-1]  # a cascade samples at its last U-Net's resolution
    divisor = _spatial_divisor(spec, final_model)
    for field in ("resolution", "max_resolution"):
        size = getattr(spec.inference, field)
        problem = _indivisible(size, divisor) if size and divisor else None
        if problem:
            yield Diagnostic(
                f"inference.{field}",
                "schedule.resolution-divisible",
                f"inference samples at {problem}",
                f"round the {field.replace('_', ' ')} to a multiple of {divisor[0]}",
            )


def _latent_frames_problem(frames: int, space: LatentSpace, patch_t: int) -> str | None:
    temporal = space.temporal_compression
    if space.causal and (frames - 1) % temporal:
        return f"{frames} frames do not fit the causal VAE: it needs 1 + k x {temporal} frames (first frame alone)"
    if not space.causal and frames % temporal:
        return f"{frames} frames are not a multiple of the VAE's temporal compression {temporal}"
    latent = 1 + (frames - 1) // temporal if space.causal else frames // temporal
    if latent % patch_t:
        return f"{frames} frames give {latent} latent frames, not a multiple of the temporal patch {patch_t}"
    return None


def _nearest_frames(frames: int, space: LatentSpace, patch_t: int) -> int:
    """The valid frame count closest to `frames` (the smaller one on a tie)."""
    period = space.temporal_compression * patch_t
    candidates = [count for count in range(max(1, frames - period), frames + period + 1)
                  if _latent_frames_problem(count, space, patch_t) is None]
    return min(candidates, key=lambda count: (abs(count - frames), count))


@rule("schedule.frames-fit-temporal-compression", "frame counts fit the video VAE (1 + k*T if causal, k*T if not)")
def frames_fit_temporal_compression(spec: Spec) -> Iterator[Diagnostic]:
    space, backbone = spec.architecture.space, transformer(spec)
    if not isinstance(space, LatentSpace) or space.temporal_compression == 1:
        return
    patch_t = backbone.patch_size[0] if backbone is not None else 1
    counted = [(f"{path}.frames", stage.frames) for path, _, stage in stage_paths(spec)]
    counted.append(("inference.frames", spec.inference.frames))
    for path, frames in counted:
        problem = _latent_frames_problem(frames, space, patch_t) if frames is not None else None
        if problem:
            yield Diagnostic(
                path,
                "schedule.frames-fit-temporal-compression",
                problem,
                f"use {_nearest_frames(frames, space, patch_t)} frames"
                + (" (Wan's causal VAE: 81 = 1 + 20 x 4)" if space.causal else ""),
            )


def _data_modalities(spec: Spec, stage: Stage) -> set[str | None]:
    return {dataset_modality(spec, use.dataset) for use in stage.datasets}


@rule("schedule.video-stage-frames", "a stage consuming video states frames and fps")
def video_stage_frames(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, stage in stage_paths(spec):
        if not _data_modalities(spec, stage) & {"video", "mixed"}:
            continue
        for field in ("frames", "fps"):
            if getattr(stage, field) is None:
                yield Diagnostic(
                    f"{path}.{field}",
                    "schedule.video-stage-frames",
                    f"stage {stage.name!r} consumes video (datasets {[use.dataset for use in stage.datasets]}) "
                    f"but {field} is None",
                    f"set {field} (frames per sample and the rate they are sampled at)",
                )


@rule("schedule.image-stage-frames", "a stage consuming only images has no frame count")
def image_stage_frames(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, stage in stage_paths(spec):
        if _data_modalities(spec, stage) == {"image"} and stage.frames is not None and stage.frames > 1:
            yield Diagnostic(
                f"{path}.frames",
                "schedule.image-stage-frames",
                f"stage {stage.name!r} consumes only image datasets {[use.dataset for use in stage.datasets]} "
                f"but has frames {stage.frames}",
                "set frames to None (images train as single frames), or add the video datasets",
            )


@rule("schedule.stage-resolution-above-data", "a stage does not train above the resolution its data is filtered to")
def stage_resolution_above_data(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, stage in stage_paths(spec):
        trained = max(min(size.height, size.width) for size in stage.resolutions)
        for use in stage.datasets:
            bound = min_short_side(spec, use.dataset)
            if bound is not None and bound < trained:
                yield Diagnostic(
                    f"{path}.resolutions",
                    "schedule.stage-resolution-above-data",
                    f"stage {stage.name!r} trains at short side {trained} on dataset {use.dataset!r}, whose samples are "
                    f"only known to have short side >= {bound}: smaller ones would be upsampled",
                    f"train on a subset with where=Subset(min_short_side_px={trained}), or raise the resolution filter",
                    "warning",
                )


# Cascades -------------------------------------------------------------------------------------------


@rule("schedule.stage-model-exists", "a stage trains 'main', or for a cascade one of its U-Nets")
def stage_model_exists(spec: Spec) -> Iterator[Diagnostic]:
    names = list(unets(spec)) or ["main"]
    for path, _, stage in stage_paths(spec):
        if stage.model not in names:
            yield Diagnostic(
                f"{path}.model",
                "schedule.stage-model-exists",
                f"stage {stage.name!r} trains model {stage.model!r}; the models are {names}",
                f"set model to one of {names}",
            )


@rule("schedule.cascade-stage-trained", "every U-Net of a cascade is trained by some stage")
def cascade_stage_trained(spec: Spec) -> Iterator[Diagnostic]:
    trained = {stage.model for stage in spec.schedule.stages}
    stages = getattr(spec.architecture.backbone, "stages", [])
    for index, unet in enumerate(stages):
        if unet.name not in trained:
            yield Diagnostic(
                item_path("architecture.backbone.stages", stages, index),
                "schedule.cascade-stage-trained",
                f"no training stage has model {unet.name!r}, so that U-Net stays untrained",
                f"add a stage with model={unet.name!r}",
                "warning",
            )


@rule("schedule.cascade-stage-resolution", "a cascade stage trains at its U-Net's resolution or training crop")
def cascade_stage_resolution(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, stage in stage_paths(spec):
        unet = unet_of(spec, stage)
        if unet is None:
            continue
        sides = {unet.resolution} | ({unet.train_crop} if unet.train_crop else set())
        for index, size in enumerate(stage.resolutions):
            if size.height not in sides or size.width not in sides:
                yield Diagnostic(
                    item_path(f"{path}.resolutions", stage.resolutions, index),
                    "schedule.cascade-stage-resolution",
                    f"stage {stage.name!r} trains U-Net {unet.name!r} at {size}, but the U-Net works at "
                    f"{' or '.join(str(side) for side in sorted(sides))} px",
                    "train at the U-Net's resolution (or set its train_crop)",
                )


# Optimisation ---------------------------------------------------------------------------------------


@rule("schedule.lr-warmup-within-steps", "learning-rate warm-up ends within the stage")
def lr_warmup_within_steps(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, stage in stage_paths(spec):
        warmup = stage.lr_schedule.warmup_steps
        if stage.steps is not None and warmup > stage.steps:
            yield Diagnostic(
                f"{path}.lr_schedule.warmup_steps",
                "schedule.lr-warmup-within-steps",
                f"warmup_steps {warmup} > steps {stage.steps} of stage {stage.name!r}: the peak rate is never reached",
                "shorten the warm-up (a few percent of the steps is usual)",
            )


@rule("schedule.ema-horizon", "the EMA averages over fewer steps than the stage trains")
def ema_horizon(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, stage in stage_paths(spec):
        if stage.ema_decay is None or stage.steps is None:
            continue
        horizon = 1 / (1 - stage.ema_decay)
        if horizon > stage.steps:
            yield Diagnostic(
                f"{path}.ema_decay",
                "schedule.ema-horizon",
                f"ema_decay {stage.ema_decay:g} averages over about {horizon:.0f} steps, more than the {stage.steps} "
                f"steps of stage {stage.name!r}: the EMA weights stay near the initial ones",
                f"lower ema_decay to at most 1 - 1/steps = {1 - 1 / stage.steps:g}, or train longer",
                "warning",
            )
