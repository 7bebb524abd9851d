"""Rules on curation: names and references between sources, pipelines and datasets; thresholds against
their scorers' scales; op order; ops that make no sense for the pipeline's media."""

from __future__ import annotations

from collections.abc import Iterator

from compiler.diagnostic import Diagnostic
from compiler.rules.lookups import (
    by_name,
    consumers,
    item_path,
    ops,
    pipeline_modality,
    pipelines,
    producer,
    repeated,
    root_pipeline,
    scoring_ops,
)
from compiler.schema.common import KNOWN_SCALES
from compiler.schema.data import (
    ActiveLearning,
    Aesthetic,
    AspectRatioFilter,
    CaptionPii,
    DurationFilter,
    Exposure,
    FrameConsistency,
    HumanReview,
    MotionScore,
    MotionTiers,
    PerceptualDedup,
    PrecomputeEmbeddings,
    Recaption,
    Safety,
    SceneSplit,
    ScoreConditioning,
    ScoredOp,
    SyntheticText,
)
from compiler.schema.spec import Spec
from compiler.validate import rule

TOLERANCE = 1e-6
THRESHOLD_FIELDS = ("min_score", "max_score", "max_area_ratio")
VIDEO_ONLY_OPS = ("trim", "duration", "scene_split", "motion_score", "motion_tiers", "frame_consistency")
CONDITIONING_USES = ("condition", "filter_and_condition")
FILTERING_USES = ("filter", "filter_and_condition")

# (op class, low field, high field): a sample passes only if low <= value <= high.
RANGES = (
    (AspectRatioFilter, "min_ratio", "max_ratio"),
    (DurationFilter, "min_seconds", "max_seconds"),
    (SceneSplit, "clip_min_seconds", "clip_max_seconds"),
    (Exposure, "min_mean_luma", "max_mean_luma"),
    (MotionScore, "min_score", "max_score"),
    (FrameConsistency, "min_score", "max_score"),
    (MotionTiers, "static_below", "medium_below"),
    (MotionTiers, "medium_below", "chaotic_above"),
)


# Names and references -------------------------------------------------------------------------------


@rule("data.unique-names", "sources, pipelines, datasets, and the ops of each pipeline have distinct names")
def unique_names(spec: Spec) -> Iterator[Diagnostic]:
    for field in ("sources", "pipelines", "datasets"):
        for name, count in repeated(item.name for item in getattr(spec.data, field)).items():
            yield Diagnostic(
                f"data.{field}",
                "data.unique-names",
                f"name {name!r} is used by {count} {field}; paths and references select the first only",
                "rename all but one",
            )
    for path, pipeline in pipelines(spec):
        for name, count in repeated(op.name for op in pipeline.ops).items():
            yield Diagnostic(
                f"{path}.ops",
                "data.unique-names",
                f"op name {name!r} is used {count} times in pipeline {pipeline.name!r} (an op's name defaults to its kind)",
                f"give the repeated ops their own names, e.g. name='{name}_2'",
            )


@rule("data.pipeline-sources-known", "a pipeline reads declared sources")
def pipeline_sources_known(spec: Spec) -> Iterator[Diagnostic]:
    known = [source.name for source in spec.data.sources]
    for path, pipeline in pipelines(spec):
        for name in pipeline.sources:
            if name not in known:
                yield Diagnostic(
                    f"{path}.sources",
                    "data.pipeline-sources-known",
                    f"pipeline {pipeline.name!r} reads source {name!r}, which data.sources does not declare "
                    f"(declared: {known})",
                    f"declare Source(name={name!r}, ...) in data.sources, or fix the name",
                )


@rule("data.pipeline-output-declared", "a pipeline writes a declared dataset")
def pipeline_output_declared(spec: Spec) -> Iterator[Diagnostic]:
    declared = [dataset.name for dataset in spec.data.datasets]
    for path, pipeline in pipelines(spec):
        if pipeline.output not in declared:
            yield Diagnostic(
                f"{path}.output",
                "data.pipeline-output-declared",
                f"pipeline {pipeline.name!r} writes dataset {pipeline.output!r}, which data.datasets does not declare",
                f"add Dataset(name={pipeline.output!r}) to data.datasets, or fix the output name",
            )


@rule("data.dataset-produced", "a consumed dataset is a pipeline's output or a subset of another dataset")
def dataset_produced(spec: Spec) -> Iterator[Diagnostic]:
    users = consumers(spec)
    for index, dataset in enumerate(spec.data.datasets):
        if dataset.name in users and dataset.subset_of is None and producer(spec, dataset.name) is None:
            yield Diagnostic(
                item_path("data.datasets", spec.data.datasets, index),
                "data.dataset-produced",
                f"dataset {dataset.name!r} is consumed by {', '.join(users[dataset.name])}, but no pipeline writes it "
                "and it is no subset",
                f"set a pipeline's output to {dataset.name!r}, or give it subset_of and where",
            )


@rule("data.subset-parent-known", "a subset names a declared parent (graph.cycle reports loops)")
def subset_parent_known(spec: Spec) -> Iterator[Diagnostic]:
    declared = by_name(spec.data.datasets)
    for index, dataset in enumerate(spec.data.datasets):
        if dataset.subset_of is None:
            continue
        path = f"{item_path('data.datasets', spec.data.datasets, index)}.subset_of"
        if dataset.subset_of not in declared:
            yield Diagnostic(
                path,
                "data.subset-parent-known",
                f"dataset {dataset.name!r} is a subset of {dataset.subset_of!r}, which is not declared",
                f"declare {dataset.subset_of!r} in data.datasets, or fix subset_of",
            )


@rule("data.dataset-unused", "every declared dataset is consumed by a stage or a subset")
def dataset_unused(spec: Spec) -> Iterator[Diagnostic]:
    users = consumers(spec)
    for index, dataset in enumerate(spec.data.datasets):
        if dataset.name not in users:
            writers = sorted(p.name for p in spec.data.pipelines if p.output == dataset.name)
            written = f", written by pipeline {writers}," if writers else ""
            yield Diagnostic(
                item_path("data.datasets", spec.data.datasets, index),
                "data.dataset-unused",
                f"dataset {dataset.name!r}{written} is consumed by no training stage and no subset: its curation "
                "is wasted",
                "add it to a stage's datasets, or remove it (and the pipeline writing it)",
                "warning",
            )


# Thresholds and scales ------------------------------------------------------------------------------


@rule("data.scorer-scale-known", "every scorer has a scale, known or stated")
def scorer_scale_known(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, _, op in ops(spec):
        if isinstance(op, ScoredOp) and op.score_scale is None:
            yield Diagnostic(
                f"{path}.scorer",
                "data.scorer-scale-known",
                f"scorer {op.scorer!r} of op {op.name!r} has no known scale (known: {', '.join(KNOWN_SCALES)}), "
                "so its thresholds cannot be checked",
                "set scale=Scale(low=..., high=..., unit=...) on the op",
            )


@rule("data.threshold-within-scale", "thresholds, review bands and subset minimums lie on their scorer's scale")
def threshold_within_scale(spec: Spec) -> Iterator[Diagnostic]:
    for path, pipeline, position, op in ops(spec):
        if isinstance(op, ScoredOp) and op.score_scale is not None:
            for field in THRESHOLD_FIELDS:
                value = getattr(op, field, None)
                if value is not None and not op.score_scale.contains(value):
                    yield _off_scale(f"{path}.{field}", f"{field} {value:g}", op)
        if isinstance(op, HumanReview):
            scored = scoring_ops(pipeline, position).get(op.score_of)
            if scored is not None and scored.score_scale is not None:
                outside = [bound for bound in op.band if not scored.score_scale.contains(bound)]
                if outside:
                    yield _off_scale(f"{path}.band", f"band {list(op.band)}", scored)
    for index, dataset in enumerate(spec.data.datasets):
        pipeline = root_pipeline(spec, dataset.name)
        if dataset.where is None or pipeline is None:
            continue
        scored_ops = scoring_ops(pipeline)
        for op_name, value in dataset.where.min_score.items():
            scored = scored_ops.get(op_name)
            if scored is not None and scored.score_scale is not None and not scored.score_scale.contains(value):
                path = f"{item_path('data.datasets', spec.data.datasets, index)}.where.min_score"
                yield _off_scale(path, f"min_score[{op_name!r}] {value:g}", scored)


def _off_scale(path: str, shown: str, op: ScoredOp) -> Diagnostic:
    return Diagnostic(
        path,
        "data.threshold-within-scale",
        f"{shown} is outside the scale of {op.name!r} (scorer {op.scorer!r}): {op.score_scale}",
        "restate the threshold on that scale (LAION aesthetic 0-10, probabilities 0-1), or set the op's scale "
        "if its scorer differs",
    )


@rule("data.range-ordered", "every min/max pair of an op leaves a non-empty range")
def range_ordered(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, _, op in ops(spec):
        for kind, low_field, high_field in RANGES:
            if not isinstance(op, kind):
                continue
            low, high = getattr(op, low_field), getattr(op, high_field)
            if low is not None and high is not None and low > high:
                yield _empty_range(f"{path}.{low_field}", f"{low_field} {low:g} > {high_field} {high:g}", op.name)
        if isinstance(op, (HumanReview, ActiveLearning)):
            field = "band" if isinstance(op, HumanReview) else "uncertainty_band"
            low, high = getattr(op, field)
            if low > high:
                yield _empty_range(f"{path}.{field}", f"{field} ({low:g}, {high:g}) runs backwards", op.name)
    for index, dataset in enumerate(spec.data.datasets):
        where = dataset.where
        if where is None or where.min_seconds is None or where.max_seconds is None:
            continue
        if where.min_seconds > where.max_seconds:
            yield _empty_range(
                f"{item_path('data.datasets', spec.data.datasets, index)}.where.min_seconds",
                f"min_seconds {where.min_seconds:g} > max_seconds {where.max_seconds:g}",
                dataset.name,
            )


def _empty_range(path: str, shown: str, name: str) -> Diagnostic:
    return Diagnostic(
        path,
        "data.range-ordered",
        f"{name!r}: {shown}, so no sample passes",
        "swap the bounds, or correct the one that is wrong",
    )


@rule("data.safety-reduce-max", "safety scores over frames reduce by the maximum")
def safety_reduce_max(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, _, op in ops(spec):
        if isinstance(op, Safety) and op.reduce != "max":
            yield Diagnostic(
                f"{path}.reduce",
                "data.safety-reduce-max",
                f"safety op {op.name!r} reduces {op.frames} frame score(s) by {op.reduce!r}: one unsafe frame "
                "would be averaged away",
                "set reduce='max'",
            )


# Op placement ---------------------------------------------------------------------------------------


@rule("data.video-op-on-images", "trimming, duration, scene and motion ops need video sources")
def video_op_on_images(spec: Spec) -> Iterator[Diagnostic]:
    for path, pipeline, _, op in ops(spec):
        if op.kind in VIDEO_ONLY_OPS and pipeline_modality(spec, pipeline) == "image":
            yield Diagnostic(
                path,
                "data.video-op-on-images",
                f"{op.kind} op {op.name!r} in pipeline {pipeline.name!r}, whose sources {pipeline.sources} are all images",
                "remove the op, or add the video sources this pipeline was meant to read",
            )


@rule("data.precompute-after-captions", "embeddings are precomputed after every op that changes captions or adds samples")
def precompute_after_captions(spec: Spec) -> Iterator[Diagnostic]:
    for path, pipeline, position, op in ops(spec):
        if not isinstance(op, PrecomputeEmbeddings):
            continue
        changing = (SyntheticText,) + ((Recaption, CaptionPii) if op.text_encoders else ())
        for index, other in enumerate(pipeline.ops[position + 1 :], start=position + 1):
            if not isinstance(other, changing):
                continue
            yield Diagnostic(
                path,
                "data.precompute-after-captions",
                f"{op.name!r} (position {position}) runs before {other.kind} op {other.name!r} (position {index}): "
                "the stored embeddings would not match the final captions and samples",
                "move precompute_embeddings to the end of the pipeline",
            )


# Op references --------------------------------------------------------------------------------------


@rule("data.conditioning-score-wired", "an aesthetic score used as conditioning reaches a score_conditioning op")
def conditioning_score_wired(spec: Spec) -> Iterator[Diagnostic]:
    for path, pipeline, position, op in ops(spec):
        if not isinstance(op, Aesthetic) or op.use not in CONDITIONING_USES:
            continue
        wired = any(
            isinstance(later, ScoreConditioning) and op.name in later.scores for later in pipeline.ops[position + 1 :]
        )
        if not wired:
            yield Diagnostic(
                f"{path}.use",
                "data.conditioning-score-wired",
                f"{op.name!r} has use={op.use!r}, but no later score_conditioning op in pipeline {pipeline.name!r} "
                "lists it, so the score never reaches the model",
                f"add ScoreConditioning(scores=[{op.name!r}]) after it, or set use='filter'",
                "warning",
            )


@rule("data.aesthetic-use-threshold", "an aesthetic filter has a threshold; a score-only op has none")
def aesthetic_use_threshold(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, _, op in ops(spec):
        if not isinstance(op, Aesthetic):
            continue
        if op.use in FILTERING_USES and op.min_score is None:
            yield Diagnostic(
                f"{path}.min_score",
                "data.aesthetic-use-threshold",
                f"{op.name!r} has use={op.use!r} but min_score None: the filter keeps every sample",
                "set min_score on the scorer's scale (FLUX: 6.5 on LAION's 0-10), or set use='score_only'",
            )
        elif op.use not in FILTERING_USES and op.min_score is not None:
            yield Diagnostic(
                f"{path}.min_score",
                "data.aesthetic-use-threshold",
                f"{op.name!r} has use={op.use!r}, so min_score {op.min_score:g} filters nothing",
                "set use='filter_and_condition' to filter as well, or drop min_score",
                "warning",
            )


@rule("data.precompute-encoders-known", "precomputed embeddings name the architecture's text encoders")
def precompute_encoders_known(spec: Spec) -> Iterator[Diagnostic]:
    known = [encoder.name for encoder in spec.architecture.text_encoders]
    for path, _, _, op in ops(spec):
        if isinstance(op, PrecomputeEmbeddings):
            for name in op.text_encoders:
                if name not in known:
                    yield Diagnostic(
                        f"{path}.text_encoders",
                        "data.precompute-encoders-known",
                        f"{op.name!r} precomputes text encoder {name!r}, which the architecture lacks (encoders: {known})",
                        "name encoders from architecture.text_encoders",
                    )


@rule("data.subset-score-ops", "a subset's min_score names scoring ops of the pipeline that writes its root dataset")
def subset_score_ops(spec: Spec) -> Iterator[Diagnostic]:
    for index, dataset in enumerate(spec.data.datasets):
        pipeline = root_pipeline(spec, dataset.name)
        if dataset.where is None or pipeline is None:
            continue
        known = scoring_ops(pipeline)
        for name in dataset.where.min_score:
            if name not in known:
                yield Diagnostic(
                    f"{item_path('data.datasets', spec.data.datasets, index)}.where.min_score",
                    "data.subset-score-ops",
                    f"subset {dataset.name!r} selects on score {name!r}, which no scoring op of pipeline "
                    f"{pipeline.name!r} produces (scorers: {list(known)})",
                    "name a scoring op of that pipeline",
                )


# Op parameters --------------------------------------------------------------------------------------


@rule("data.recaption-mix-sums-to-one", "a recaption op's caption mix is a probability distribution")
def recaption_mix_sums_to_one(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, _, op in ops(spec):
        if isinstance(op, Recaption) and op.mix and abs(sum(op.mix.values()) - 1) > TOLERANCE:
            yield Diagnostic(
                f"{path}.mix",
                "data.recaption-mix-sums-to-one",
                f"caption mix {op.mix} of {op.name!r} sums to {sum(op.mix.values()):g}, not 1",
                "scale the probabilities to sum to 1 (FLUX: original 0.5, synthetic 0.5)",
            )


@rule("data.recaption-mix-original-kept", "a caption mix samples original captions only if they are kept")
def recaption_mix_original_kept(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, _, op in ops(spec):
        if isinstance(op, Recaption) and not op.keep_original and op.mix.get("original", 0) > 0:
            yield Diagnostic(
                f"{path}.keep_original",
                "data.recaption-mix-original-kept",
                f"{op.name!r} samples original captions with probability {op.mix['original']:g} but keep_original is False",
                "set keep_original=True, or remove 'original' from mix",
            )


@rule("data.dedup-hamming-within-bits", "a perceptual-hash distance far below the distance of unrelated images")
def dedup_hamming_within_bits(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, _, op in ops(spec):
        if isinstance(op, PerceptualDedup) and 2 * op.max_hamming >= op.hash_bits:
            yield Diagnostic(
                f"{path}.max_hamming",
                "data.dedup-hamming-within-bits",
                f"max_hamming {op.max_hamming} of {op.hash_bits} hash bits: unrelated images differ by about "
                f"{op.hash_bits // 2} bits, so most of the dataset would count as duplicates",
                f"use a small distance (about {op.hash_bits // 16} of {op.hash_bits} bits)",
            )


@rule("data.dedup-downweight-value", "down-weighting duplicates needs a weight; dropping them takes none")
def dedup_downweight_value(spec: Spec) -> Iterator[Diagnostic]:
    for path, _, _, op in ops(spec):
        if not isinstance(op, PerceptualDedup):
            continue
        if op.action == "downweight" and op.downweight is None:
            yield Diagnostic(
                f"{path}.downweight",
                "data.dedup-downweight-value",
                f"{op.name!r} has action 'downweight' but downweight None: the sampling weight of duplicates is unknown",
                "set downweight to the weight duplicates keep (0 < w <= 1)",
            )
        elif op.action == "drop" and op.downweight is not None:
            yield Diagnostic(
                f"{path}.downweight",
                "data.dedup-downweight-value",
                f"{op.name!r} drops duplicates, so downweight {op.downweight:g} is ignored",
                "set action='downweight', or remove downweight",
                "warning",
            )


@rule("data.source-fractions-at-most-one", "a source's language and content fractions add up to at most 1")
def source_fractions_at_most_one(spec: Spec) -> Iterator[Diagnostic]:
    for index, source in enumerate(spec.data.sources):
        for field in ("languages", "content_mix"):
            shares = getattr(source, field)
            if sum(shares.values()) > 1 + TOLERANCE:
                yield Diagnostic(
                    f"{item_path('data.sources', spec.data.sources, index)}.{field}",
                    "data.source-fractions-at-most-one",
                    f"{field} {shares} of source {source.name!r} sums to {sum(shares.values()):g}, more than 1",
                    "give fractions of items (0.55, not 55) that sum to at most 1",
                )
