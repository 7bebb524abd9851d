"""Column contracts: what each curation op reads from a sample record, what it adds, and what it costs.

A record starts with the columns its source carries (`source_columns`) and gains one group per op.
Columns:

  bytes               the stored media
  header              container/image header: size, duration, frame rate (no decode)
  pixels              decoded pixels (a still, or frames sampled from a video); derived from bytes
  frames              a decoded frame sequence; only video sources have one
  embedding:<model>   an image embedding; derived from pixels by running <model> where first needed
  caption:original    the source's own text (the *_text and edit-triplet modalities)
  caption:synthetic   VLM captions (recaption)
  caption             any caption column (a need satisfied by caption:original or caption:synthetic)
  score:<op>          the score of a scoring op, kept apart from the decision so thresholds re-tune
  mask:<op>           a loss mask (defect_mask)
  flow                dense optical-flow statistics (motion_score), read by motion_tiers
  clips               scene-split clip boundaries
  motion_tier         one of Wan's six motion tiers
  conditioning        scores turned into model inputs (score_conditioning)
  latents, text_embeddings   precomputed VAE latents and frozen text-encoder outputs

Cost tiers order the work an op does per sample: header (metadata only) < decode (pixels on the CPU)
< model (a network, usually on a GPU) < global (a barrier over the whole dataset).
GPU memory defaults are assumptions per op kind (the schema has no field for them); the planner sums
them for ops fused into one job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from compiler.schema.data import Op, Pipeline, Source

CostTier = Literal["header", "decode", "model", "global"]
Resource = Literal["cpu", "gpu"]

TIER_RANK: dict[str, int] = {"header": 0, "decode": 1, "model": 2, "global": 3}
ANY_SIZE = 0  # a decode need of any size: a reduced decode still parses every packet
VIDEO_MODALITIES = frozenset({"video", "video_text"})
CAPTIONED_MODALITIES = frozenset({"image_text", "video_text", "image_edit_triplet"})

# Scorers that are a head on a public embedding: the embedding is their input.
SCORER_EMBEDDERS = {"laion-aesthetic-v2": "clip-vit-l14"}  # LAION-AI/aesthetic-predictor: ViT-L/14 + MLP
CLIP_INPUT_PX = 224  # CLIP ViT-B/32 and ViT-L/14 take 224x224 crops


@dataclass(frozen=True)
class DecodeNeed:
    """The decoded pixels an op needs: the smallest short side it accepts and how many frames."""

    short_side_px: int | None  # ANY_SIZE (0): any size; None: the stored size (it measures native pixels)
    fps: float | None = None  # frames per second it must see; None: a few sampled frames, or a still
    every_frame: bool = False  # it reads every frame (cut detection, full-stream checks)


@dataclass(frozen=True)
class Contract:
    """What an op reads, adds and costs. `filters`: it drops samples; `rewrites`: columns it changes in place."""

    needs: frozenset[str]
    produces: frozenset[str]
    cost_tier: CostTier
    resource: Resource
    decode: DecodeNeed | None = None
    filters: bool = False
    rewrites: frozenset[str] = frozenset()  # "samples": it adds samples, so no filter may move across it
    gpu_memory_gib: float = 0.0
    cpu_cores: int = 1


def _contract(
    needs: Iterable[str],
    produces: Iterable[str],
    tier: CostTier,
    resource: Resource,
    decode: DecodeNeed | None = None,
    **rest: Any,
) -> Contract:
    # Decoding and feeding a GPU both want a few cores; header checks and barriers state their own.
    cores = rest.pop("cpu_cores", 4 if tier in ("decode", "model") else 1)
    return Contract(frozenset(needs), frozenset(produces), tier, resource, decode, cpu_cores=cores, **rest)


def _model_scorer(op: Any, short_side_px: int | None, gib: float, extra: Iterable[str] = ()) -> Contract:
    """A network scoring pixels on a GPU; the score is kept as a column, the threshold filters."""
    return _contract(
        {"pixels", *extra}, {f"score:{op.name}"}, "model", "gpu", DecodeNeed(short_side_px),
        filters=True, gpu_memory_gib=gib,
    )


def _header_filter(op: Any) -> Contract:
    return _contract({"header"}, (), "header", "cpu", filters=True)


def _probe(op: Any) -> Contract:
    if op.check == "header":
        return _contract({"bytes"}, (), "header", "cpu", filters=True)
    need = DecodeNeed(ANY_SIZE, every_frame=op.check == "full")
    return _contract({"bytes"}, (), "decode", "cpu", need, filters=True)


def _scene_split(op: Any) -> Contract:
    # PySceneDetect's content detector downscales to about 256 px wide; 144 px is that short side at 16:9.
    return _contract({"frames"}, {"clips"}, "decode", "cpu", DecodeNeed(144, every_frame=True))


def _trim(op: Any) -> Contract:
    # Trimming moves the in and out points: every later frame, pixel and duration reading changes.
    return _contract({"header"}, (), "header", "cpu", rewrites=frozenset({"frames", "pixels", "header"}))


def _motion_score(op: Any) -> Contract:
    on_gpu = op.scorer != "farneback"  # Farneback is OpenCV on the CPU; RAFT and UniMatch are networks
    return _contract(
        {"frames"}, {f"score:{op.name}", "flow"}, "model" if on_gpu else "decode", "gpu" if on_gpu else "cpu",
        DecodeNeed(op.analysis_short_side_px, fps=op.fps),
        filters=op.min_score is not None or op.max_score is not None, gpu_memory_gib=4.0 if on_gpu else 0.0,
    )


def _frame_consistency(op: Any) -> Contract:
    # LPIPS (AlexNet features) at 256 px, its training size.
    return _contract(
        {"frames"}, {f"score:{op.name}"}, "model", "gpu", DecodeNeed(256),
        filters=op.min_score is not None or op.max_score is not None, gpu_memory_gib=2.0,
    )


def _technical_quality(op: Any) -> Contract:
    # DOVER's technical branch cuts fragments at the stored resolution: downscaling would hide the artefacts.
    return _contract(
        {"frames"}, {f"score:{op.name}"}, "model", "gpu", DecodeNeed(None), filters=True, gpu_memory_gib=6.0
    )


def _aesthetic(op: Any) -> Contract:
    embedder = SCORER_EMBEDDERS.get(op.scorer)
    contract = _model_scorer(op, CLIP_INPUT_PX, 4.0, [f"embedding:{embedder}"] if embedder else [])
    return replace(contract, filters=op.use in ("filter", "filter_and_condition"))


def _clip_similarity(op: Any) -> Contract:
    return _model_scorer(op, CLIP_INPUT_PX, 2.0, ["caption", f"embedding:{op.scorer}"])


def _defect_mask(op: Any) -> Contract:
    contract = _model_scorer(op, 512, 8.0)
    masks = {f"mask:{op.name}"} if op.emit_mask else set()
    return replace(contract, produces=contract.produces | masks)


def _human_review(op: Any) -> Contract:
    # A human reviewer is the slowest scorer of all: rank it with the models, so cheaper filters go first.
    return _contract({f"score:{op.score_of}"}, (), "model", "cpu", filters=True, cpu_cores=1)


def _barrier(needs: Iterable[str], resource: Resource, decode: DecodeNeed | None, gib: float = 0.0) -> Contract:
    return _contract(needs, (), "global", resource, decode, filters=True, gpu_memory_gib=gib, cpu_cores=8)


def _embedding_barrier(embedder: str) -> Contract:
    # k-means over embeddings it computes itself: the embedder's pixels at its input size, on a GPU.
    return _barrier({"pixels", f"embedding:{embedder}"}, "gpu", DecodeNeed(CLIP_INPUT_PX), 4.0)


def _recaption(op: Any) -> Contract:
    # A 7B VLM in bf16 (about 15 GiB) plus the KV cache of max_new_tokens per sample.
    return _contract(
        {"pixels"}, {"caption:synthetic"}, "model", "gpu", DecodeNeed(448, fps=op.fps), gpu_memory_gib=24.0
    )


def _caption_pii(op: Any) -> Contract:
    return _contract({"caption"}, (), "header", "cpu", rewrites=frozenset({"caption"}))


def _score_conditioning(op: Any) -> Contract:
    return _contract({f"score:{name}" for name in op.scores}, {"conditioning"}, "header", "cpu")


def _precompute_embeddings(op: Any) -> Contract:
    produces = ({"latents"} if op.vae_latents else set()) | ({"text_embeddings"} if op.text_encoders else set())
    needs = {"pixels"} | ({"caption"} if op.text_encoders else set())
    # Latents are encoded from every frame at the stored size; buckets crop and resize at training time.
    # T5-XXL's encoder in bf16 is about 9 GiB, a video VAE encoding 1080p frames needs the rest.
    return _contract(needs, produces, "model", "gpu", DecodeNeed(None, every_frame=True), gpu_memory_gib=24.0)


def _synthetic_text(op: Any) -> Contract:
    # Rendering text images is CPU work; the rendered samples join the stream, so no filter moves across it.
    return _contract((), (), "decode", "cpu", rewrites=frozenset({"samples"}))


CONTRACTS: dict[str, Callable[[Any], Contract]] = {
    "probe": _probe,
    "resolution": _header_filter,
    "aspect_ratio": _header_filter,
    "duration": _header_filter,
    "scene_split": _scene_split,
    "trim": _trim,
    "corruption": lambda op: _contract(
        {"bytes"}, (), "decode", "cpu", DecodeNeed(ANY_SIZE, every_frame=True), filters=True
    ),
    "blur": lambda op: _contract(
        {"pixels"}, (), "decode", "cpu", DecodeNeed(op.analysis_short_side_px), filters=True
    ),
    # Mean luma and the clipped fraction barely change with size: 64 px is plenty.
    "exposure": lambda op: _contract({"pixels"}, (), "decode", "cpu", DecodeNeed(64), filters=True),
    "motion_score": _motion_score,
    "motion_tiers": lambda op: _contract({"flow"}, {"motion_tier"}, "header", "cpu", filters=True),
    "frame_consistency": _frame_consistency,
    "technical_quality": _technical_quality,
    "aesthetic": _aesthetic,
    "safety": lambda op: _model_scorer(op, CLIP_INPUT_PX, 4.0),
    "watermark": lambda op: _model_scorer(op, 256, 2.0),
    # CRAFT needs small text legible; the area ratio is measured at this size.
    "ocr_text_area": lambda op: _model_scorer(op, 512, 4.0),
    "clip_similarity": _clip_similarity,
    "ai_generated": lambda op: _model_scorer(op, CLIP_INPUT_PX, 4.0),
    "visual_quality": lambda op: _model_scorer(op, 448, 8.0),
    "defect_mask": _defect_mask,
    "human_review": _human_review,
    "exact_dedup": lambda op: _barrier({"bytes"}, "cpu", None),
    # pHash resizes to 32x32; a 64 px draft decode gives the same bits (0.1 ms vs 1.8 ms at full size).
    "perceptual_dedup": lambda op: _barrier({"pixels"}, "cpu", DecodeNeed(64)),
    "semantic_dedup": lambda op: _embedding_barrier(op.embedder),
    "balance": lambda op: _embedding_barrier(op.embedder),
    "active_learning": lambda op: _barrier({"pixels"}, "gpu", DecodeNeed(CLIP_INPUT_PX), 8.0),
    "recaption": _recaption,
    "caption_pii": _caption_pii,
    "score_conditioning": _score_conditioning,
    "precompute_embeddings": _precompute_embeddings,
    "synthetic_text": _synthetic_text,
}


def contract(op: Op) -> Contract:
    """The column contract of one curation op."""
    kind = getattr(op, "kind", type(op).__name__)
    if kind not in CONTRACTS:
        raise KeyError(
            f"no column contract for op kind {kind!r}; add one to CONTRACTS in compiler/graph/contracts.py"
        )
    return CONTRACTS[kind](op)


# Columns --------------------------------------------------------------------------------------------


def source_columns(source: Source) -> frozenset[str]:
    """The columns a source's records carry, or can derive without a model."""
    columns = {"bytes", "header", "pixels"}
    if source.modality in VIDEO_MODALITIES:
        columns.add("frames")
    if source.modality in CAPTIONED_MODALITIES:
        columns.add("caption:original")
    return frozenset(columns)


def family(column: str) -> str | None:
    """The family a column belongs to: `caption` for caption:original and caption:synthetic."""
    return "caption" if column.startswith("caption:") else None


def provides(columns: Iterable[str]) -> frozenset[str]:
    """The columns and the families they satisfy."""
    found = set(columns)
    return frozenset(found | {f for f in map(family, found) if f is not None})


def satisfied(column: str, available: frozenset[str]) -> bool:
    """Whether a need is met: directly, through its family, or (embeddings) derivable from pixels."""
    if column.startswith("embedding:"):
        return "pixels" in available
    return column in provides(available)


def pipeline_inputs(pipeline: Pipeline, sources: dict[str, Source]) -> frozenset[str]:
    """Columns available before the first op: the union over the pipeline's known sources.

    A union, because ops apply to the samples they can: a motion op in a mixed pipeline scores the videos.
    """
    found: set[str] = set()
    for name in pipeline.sources:
        if name in sources:
            found |= source_columns(sources[name])
    return frozenset(found)
