"""Lookups the rules share: paths of list items, where a dataset comes from and what it holds, which
network a stage trains.

Every lookup tolerates a spec that other rules reject (duplicate names, unknown references, loops in
`subset_of`): the first item of a name wins, and an unresolvable reference gives None.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from compiler.document import item_key
from compiler.schema.architecture import Backbone, Cascade, UNetStage
from compiler.schema.data import Dataset, Op, Pipeline, ResolutionFilter, ScoredOp
from compiler.schema.schedule import Stage
from compiler.schema.spec import Spec

DataModality = Literal["image", "video", "mixed"]

IMAGE_SOURCES = frozenset({"image", "image_text", "image_edit_triplet"})
VIDEO_SOURCES = frozenset({"video", "video_text"})


def item_path(prefix: str, items: list[Any], index: int) -> str:
    """The document path of `items[index]` under `prefix`, e.g. `data.sources[web]`."""
    return f"{prefix}[{item_key(items[index], index)}]"


def repeated(names: Iterable[str]) -> dict[str, int]:
    """Names that occur more than once, with their counts."""
    return {name: count for name, count in Counter(names).items() if count > 1}


def by_name(items: Iterable[Any]) -> dict[str, Any]:
    """Items keyed by `name`; the first of a repeated name wins (the one its path selects)."""
    found: dict[str, Any] = {}
    for item in items:
        found.setdefault(item.name, item)
    return found


# Data -----------------------------------------------------------------------------------------------


def pipelines(spec: Spec) -> Iterator[tuple[str, Pipeline]]:
    """Every pipeline with its path."""
    for index, pipeline in enumerate(spec.data.pipelines):
        yield item_path("data.pipelines", spec.data.pipelines, index), pipeline


def ops(spec: Spec) -> Iterator[tuple[str, Pipeline, int, Op]]:
    """Every curation op as (path, its pipeline, its position in the pipeline, op)."""
    for pipeline_path, pipeline in pipelines(spec):
        for position, op in enumerate(pipeline.ops):
            yield item_path(f"{pipeline_path}.ops", pipeline.ops, position), pipeline, position, op


def scoring_ops(pipeline: Pipeline, before: int | None = None) -> dict[str, ScoredOp]:
    """The pipeline's scoring ops by name, only those before position `before` if given."""
    chosen = pipeline.ops if before is None else pipeline.ops[:before]
    return by_name(op for op in chosen if isinstance(op, ScoredOp))


def producer(spec: Spec, dataset: str) -> Pipeline | None:
    """The pipeline writing `dataset`, if any."""
    return next((p for p in spec.data.pipelines if p.output == dataset), None)


def lineage(spec: Spec, dataset: str) -> list[Dataset]:
    """`dataset`, its parent, its parent's parent... up to a root or a loop (declared datasets only)."""
    declared = by_name(spec.data.datasets)
    chain: list[Dataset] = []
    name: str | None = dataset
    while name is not None and name in declared and all(d.name != name for d in chain):
        chain.append(declared[name])
        name = declared[name].subset_of
    return chain


def root_pipeline(spec: Spec, dataset: str) -> Pipeline | None:
    """The pipeline writing `dataset` or the dataset it is a subset of, following `subset_of`."""
    for link in lineage(spec, dataset):
        found = producer(spec, link.name)
        if found is not None:
            return found
    return producer(spec, dataset)


def pipeline_modality(spec: Spec, pipeline: Pipeline) -> DataModality | None:
    """image, video or mixed, from the modalities of the pipeline's (known) sources."""
    sources = by_name(spec.data.sources)
    kinds = {
        "image" if sources[name].modality in IMAGE_SOURCES else "video"
        for name in pipeline.sources
        if name in sources
    }
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


def dataset_modality(spec: Spec, dataset: str) -> DataModality | None:
    """What a dataset holds: a subset's declared modality, else what its root pipeline reads."""
    for link in lineage(spec, dataset):
        if link.where is not None and link.where.modality is not None:
            return link.where.modality
    pipeline = root_pipeline(spec, dataset)
    return pipeline_modality(spec, pipeline) if pipeline is not None else None


def min_short_side(spec: Spec, dataset: str) -> int | None:
    """The largest known lower bound on a dataset's short side: subset conditions and resolution filters."""
    bounds = [link.where.min_short_side_px for link in lineage(spec, dataset) if link.where is not None]
    pipeline = root_pipeline(spec, dataset)
    if pipeline is not None:
        bounds += [op.min_short_side_px for op in pipeline.ops if isinstance(op, ResolutionFilter)]
    known = [bound for bound in bounds if bound is not None]
    return max(known) if known else None


# Network and stages ---------------------------------------------------------------------------------


def transformer(spec: Spec) -> Backbone | None:
    """The transformer backbone, or None for a U-Net cascade."""
    backbone = spec.architecture.backbone
    return backbone if isinstance(backbone, Backbone) else None


def unets(spec: Spec) -> dict[str, UNetStage]:
    """The cascade's U-Nets by name; empty for a transformer."""
    backbone = spec.architecture.backbone
    return by_name(backbone.stages) if isinstance(backbone, Cascade) else {}


def unet_of(spec: Spec, stage: Stage) -> UNetStage | None:
    """The U-Net a cascade stage trains, if it names one."""
    return unets(spec).get(stage.model)


def unet_divisor(unet: UNetStage) -> int:
    """Sides a U-Net accepts are multiples of this: it halves the side once per level after the first.

    Never below 8, the usual floor for pixel-space U-Nets.
    """
    return max(8, 2 ** max(len(unet.channel_mult) - 1, 0))


def stage_paths(spec: Spec) -> Iterator[tuple[str, int, Stage]]:
    """Every training stage as (path, position, stage)."""
    stages = spec.schedule.stages
    for position, stage in enumerate(stages):
        yield item_path("schedule.stages", stages, position), position, stage


def stage_positions(spec: Spec) -> dict[str, int]:
    """Stage name -> position of its first occurrence."""
    positions: dict[str, int] = {}
    for position, stage in enumerate(spec.schedule.stages):
        positions.setdefault(stage.name, position)
    return positions


def consumers(spec: Spec) -> dict[str, list[str]]:
    """Dataset name -> what consumes it: `stage <name>` or `subset <name>`."""
    found: dict[str, list[str]] = {}
    for stage in spec.schedule.stages:
        for use in stage.datasets:
            found.setdefault(use.dataset, []).append(f"stage {stage.name!r}")
    for dataset in spec.data.datasets:
        if dataset.subset_of is not None:
            found.setdefault(dataset.subset_of, []).append(f"subset {dataset.name!r}")
    return found
