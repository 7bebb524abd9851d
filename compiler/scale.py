"""The scale pass. `smoke` shrinks a spec so it compiles for `local-cpu` and runs in minutes, keeping its
structure: the same families, block kinds, stages, datasets and ops, with small widths and sizes.

Every shrunk value is recorded as an assumption whose reason starts with "smoke scale", so the bundle's
assumptions report lists them. Curation thresholds are untouched (the curation runtime handles smoke
models and thresholds itself), except durations: clip lengths in seconds shrink by TIME (at least MIN_CLIP
seconds), so smoke curation decodes short clips. Scaling runs before `--set` overrides (compiler/pipeline.py),
so an override always wins over a smoke value.
"""

from __future__ import annotations

from typing import Any

from compiler.document import apply_changes, from_document, to_document
from compiler.schema.architecture import Cascade, DiT, LatentSpace, MMDiT
from compiler.schema.common import Size
from compiler.schema.provenance import Provenance
from compiler.schema.spec import Spec

SCALES = ("full", "smoke")
HEADS, HEAD_DIM = 2, 16  # 32 wide: the smallest width with room for 3 even RoPE axes
TEXT_DIM, TEXT_TOKENS = 32, 16
DEPTH = 2
BATCH, STEPS = 2, 3
LONG_SIDE = 64  # the largest training resolution becomes 64 px; others keep their ratio to it
FRAMES = 9  # 1 + 4 x 2 fits a causal 4x VAE; non-causal VAEs get a multiple of their stride
TIME, MIN_CLIP = 0.25, 1.0  # clip durations a quarter as long, at least a second (FRAMES at 16 fps is 0.56 s)


def _even_split(dims: list[int], total: int) -> list[int]:
    """Split `total` over the axes in proportion to `dims`, each even (RoPE rotates pairs)."""
    scaled = [max(2, round(d * total / sum(dims) / 2) * 2) for d in dims]
    scaled[scaled.index(max(scaled))] += total - sum(scaled)
    return scaled


def _wan_split(head_dim: int) -> list[int]:
    """Wan's RoPE split over (t, h, w): d - 4 (d // 6), 2 (d // 6), 2 (d // 6) (runtime/models/rope.py wan_axes_dims,
    the split diffusers' WanTransformer3DModel builds in)."""
    row = 2 * (head_dim // 6)
    return [head_dim - 2 * row, row, row]


def _smoke_axes(backbone) -> tuple[list[int], str]:
    """The RoPE axes at the smoke head dim: a split that follows Wan's rule keeps following it (so a smoke Wan
    still has a diffusers class to export to); any other is rescaled in proportion."""
    positions = backbone.positions
    if positions.axes == ["t", "h", "w"] and list(positions.axes_dims) == _wan_split(backbone.head_dim):
        return _wan_split(HEAD_DIM), "Wan's RoPE split at the smoke head dim"
    return _even_split(positions.axes_dims, HEAD_DIM), "RoPE axes rescaled to the smoke head dim"


def _multiple(value: float, step: int) -> int:
    return max(step, int(round(value / step)) * step)


def smoke(spec: Spec) -> Spec:
    """The spec shrunk to smoke scale."""
    changes: dict[str, tuple[Any, str]] = {}
    arch = spec.architecture
    backbone = arch.backbone
    step = 16
    if isinstance(backbone, (MMDiT, DiT)):
        width = HEADS * HEAD_DIM
        changes.update({
            "architecture.backbone.hidden_size": (width, "2 heads x 16"),
            "architecture.backbone.num_heads": (HEADS, "2 heads x 16"),
            "architecture.backbone.head_dim": (HEAD_DIM, "2 heads x 16"),
        })
        if hasattr(backbone.positions, "axes_dims"):
            changes["architecture.backbone.positions.axes_dims"] = _smoke_axes(backbone)
        if isinstance(backbone, MMDiT):
            changes["architecture.backbone.double_blocks"] = (min(backbone.double_blocks, DEPTH), "2 blocks per kind")
            changes["architecture.backbone.single_blocks"] = (min(backbone.single_blocks, DEPTH), "2 blocks per kind")
            # Joint token lists are as wide as their widest list's encoders together; pooled vectors concatenate.
            joined = max((len(group) for group in arch.token_groups()), default=1)
            changes["architecture.backbone.context_dim"] = (joined * TEXT_DIM, "tiny text encoders")
            if backbone.pooled_dim:
                pooled = max(1, sum("pooled" in encoder.inputs for encoder in arch.text_encoders))
                changes["architecture.backbone.pooled_dim"] = (pooled * TEXT_DIM, "tiny text encoders")
        else:
            changes["architecture.backbone.depth"] = (DEPTH, "2 blocks")
            changes["architecture.backbone.text_dim"] = (TEXT_DIM, "tiny text encoders")
            if backbone.ffn_dim:
                changes["architecture.backbone.ffn_dim"] = (2 * width, "MLP twice the smoke width")
            if backbone.freq_dim == backbone.hidden_size:  # CogVideoX: the timestep sinusoid as wide as the model
                changes["architecture.backbone.freq_dim"] = (width, "timestep sinusoid as wide as the model")
        compression = arch.space.spatial_compression if isinstance(arch.space, LatentSpace) else 1
        step = compression * max(backbone.patch_size[1:])
    elif isinstance(backbone, Cascade):
        for unet in backbone.stages:
            base = f"architecture.backbone.stages[{unet.name}]"
            changes[f"{base}.channels"] = (16, "16 base channels")
            changes[f"{base}.channel_mult"] = ([1, 2], "two levels")
            changes[f"{base}.res_blocks"] = ([1, 1], "one block per level")
        step = 8
    for encoder in arch.text_encoders:
        base = f"architecture.text_encoders[{encoder.name}]"
        changes[f"{base}.dim"] = (TEXT_DIM, "tiny randomly initialised text encoders")
        changes[f"{base}.max_tokens"] = (TEXT_TOKENS, "short prompts")
    _shrink_cascade_sides(spec, changes)
    _shrink_stages(spec, changes, step)
    _shorten_durations(spec, changes)
    changes["inference.steps"] = (4, "a few sampling steps")
    if spec.inference.resolution:
        changes["inference.resolution"] = (Size(height=LONG_SIDE, width=LONG_SIDE), "smoke resolution")
    if spec.inference.max_resolution:
        changes["inference.max_resolution"] = (Size(height=LONG_SIDE, width=LONG_SIDE), "smoke resolution")
    if spec.inference.frames:
        changes["inference.frames"] = (_frames(spec), "smoke frame count")
    data, table = to_document(spec)
    for path, (value, why) in changes.items():
        data, table = apply_changes(data, table, {path: value}, Provenance(status="assumed", reason=f"smoke scale: {why}"))
    return from_document(data, table)


def _frames(spec: Spec) -> int:
    space = spec.architecture.space
    if isinstance(space, LatentSpace) and space.temporal_compression > 1 and not space.causal:
        return 2 * space.temporal_compression
    return FRAMES


def _shrink_cascade_sides(spec: Spec, changes: dict[str, tuple[Any, str]]) -> None:
    backbone = spec.architecture.backbone
    if not isinstance(backbone, Cascade):
        return
    if spec.inference.upsample_factors:
        changes["inference.upsample_factors"] = ([2] * (len(backbone.stages) - 1), "cascade sides 16/32/64")
    for index, unet in enumerate(backbone.stages):
        side = 16 * 2**index  # 16, 32, 64: each SR stage doubles (the full cascade quadruples)
        changes[f"architecture.backbone.stages[{unet.name}].resolution"] = (side, "cascade sides 16/32/64")
        if unet.input_resolution:
            changes[f"architecture.backbone.stages[{unet.name}].input_resolution"] = (side // 2, "cascade sides 16/32/64")
        if unet.train_crop:
            changes[f"architecture.backbone.stages[{unet.name}].train_crop"] = (side // 2, "half-size crops")
        changes[f"architecture.backbone.stages[{unet.name}].attention_resolutions"] = ([side // 2], "attention at the lower level")


def _shorten_durations(spec: Spec, changes: dict[str, tuple[Any, str]]) -> None:
    """Every duration in seconds (curation filters, scene clip bounds, trims in seconds, subsets) times TIME."""
    why = f"clip durations x {TIME}, at least {MIN_CLIP} s"
    fields = {"duration": ("min_seconds", "max_seconds"), "scene_split": ("clip_min_seconds", "clip_max_seconds")}
    for pipeline in spec.data.pipelines:
        for op in pipeline.ops:
            names = fields.get(op.kind, ("head", "tail") if op.kind == "trim" and op.unit == "seconds" else ())
            for name in names:
                value = getattr(op, name)
                if value:
                    floor = 0.0 if op.kind == "trim" else MIN_CLIP
                    changes[f"data.pipelines[{pipeline.name}].ops[{op.name}].{name}"] = (max(floor, value * TIME), why)
    for dataset in spec.data.datasets:
        for name in ("min_seconds", "max_seconds"):
            value = dataset.where and getattr(dataset.where, name)
            if value:
                changes[f"data.datasets[{dataset.name}].where.{name}"] = (max(MIN_CLIP, value * TIME), why)


def _shrink_subsets(spec: Spec, changes: dict[str, tuple[Any, str]], largest: int) -> None:
    """Resolution tiers shrink with the training sizes, so a high-resolution subset keeps some samples; score
    tiers go, because smoke curation scores with random stand-in models whose scores mean nothing."""
    for dataset in spec.data.datasets:
        if dataset.where is not None and dataset.where.min_short_side_px:
            side = max(8, int(dataset.where.min_short_side_px * LONG_SIDE / largest))
            changes[f"data.datasets[{dataset.name}].where.min_short_side_px"] = (
                side, "resolution tier scaled like the training sizes")
        if dataset.where is not None and dataset.where.min_score:
            changes[f"data.datasets[{dataset.name}].where.min_score"] = (
                {}, "score tiers dropped: stand-in scorers' scores carry no meaning")


def _shrink_stages(spec: Spec, changes: dict[str, tuple[Any, str]], step: int) -> None:
    largest = max(max(s.height, s.width) for stage in spec.schedule.stages for s in stage.resolutions)
    cascade = spec.architecture.backbone if isinstance(spec.architecture.backbone, Cascade) else None
    # A cascade's largest output side can exceed its training crops: its subsets scale against the output.
    _shrink_subsets(spec, changes, max(u.resolution for u in cascade.stages) if cascade else largest)
    for stage in spec.schedule.stages:
        base = f"schedule.stages[{stage.name}]"
        if cascade is not None:
            side = next((16 * 2**i for i, u in enumerate(cascade.stages) if u.name == stage.model), 16)
            sizes = [Size(height=side, width=side)]
        else:
            # At least two patches a side, so attention has more than one token to look at.
            sizes = [Size(height=max(2 * step, _multiple(s.height * LONG_SIDE / largest, step)),
                          width=max(2 * step, _multiple(s.width * LONG_SIDE / largest, step)))
                     for s in stage.resolutions]
        # Size nodes, not dicts, so each height and width carries the smoke assumption (a leaf of its own).
        changes[f"{base}.resolutions"] = (sizes, f"largest side {LONG_SIDE} px, ratios kept")
        changes[f"{base}.batch_size"] = (BATCH, "2 samples per step")
        changes[f"{base}.steps"] = (STEPS, "3 steps")
        if stage.frames:
            changes[f"{base}.frames"] = (_frames(spec), "smoke frame count")
        if stage.lr_schedule.warmup_steps:
            changes[f"{base}.lr_schedule.warmup_steps"] = (1, "warm-up shorter than the 3 steps")
        if stage.ema_decay:
            changes[f"{base}.ema_decay"] = (0.5, "an EMA horizon (1 / (1 - decay) = 2 steps) inside 3 steps")
        if stage.init_released is not None:
            changes[f"{base}.init_from"] = (
                None, f"{stage.init_released.released}'s weights do not fit the smoke widths: the stage starts "
                "from scratch")
        for field in ("checkpoint_every", "validation_every"):
            if (getattr(stage, field) or 0) > STEPS:
                changes[f"{base}.{field}"] = (STEPS, "once, at the last of the 3 steps")


def scaled(spec: Spec, scale: str) -> Spec:
    """The spec at a named scale profile."""
    if scale not in SCALES:
        raise ValueError(f"--scale {scale!r}: choose one of {', '.join(SCALES)}")
    return spec if scale == "full" else smoke(spec)
