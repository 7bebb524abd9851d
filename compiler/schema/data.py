"""The data section: raw sources, curation pipelines of named ops, and the datasets training consumes.

The op catalog covers every curation step the source document names. Ops have three shapes: 1->1
(filters, scorers, mappers), 1->N (scene split) and N->M barriers (dedup, balancing, active learning).
Every threshold carries its scale or unit, so a score can be checked against the scorer's range.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Field, model_validator

from compiler.schema.common import (
    AREA_FRACTION,
    KNOWN_SCALES,
    PROBABILITY,
    FrameUnit,
    Modality,
    Reduce,
    Scale,
)
from compiler.schema.provenance import Node

Shape = Literal["map", "split", "barrier"]


class Source(Node):
    """A raw data source: what it holds, how much, and where it comes from."""

    name: str
    modality: Modality
    count: float | None = Field(None, ge=0, description="number of items in `unit`s")
    unit: Literal["pairs", "images", "videos", "clips", "triplets"] = "pairs"
    origin: list[str] = Field(default_factory=list, description="e.g. web, licensed stock, commissioned")
    languages: dict[str, float] = Field(default_factory=dict, description="language -> fraction of items")
    content_mix: dict[str, float] = Field(default_factory=dict, description="category -> fraction of items")


class OpResources(Node):
    """What one running copy of an op gets on a cluster; each field unset keeps the op kind's default
    (runtime/curation: `resources()` and `batch_size` of its implementation)."""

    cpus: float | None = Field(None, gt=0, description="CPUs per copy (fractions allowed)")
    gpus: float | None = Field(None, ge=0, description="GPUs per copy; a fraction shares one GPU between copies")
    batch_size: int | None = Field(None, ge=1, description="records per score() call")
    concurrency: int | None = Field(None, ge=1, description="copies of the op (Ray actors) running at once")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = Field(
        None, description="inference precision of the op's model; auto: bf16 on a GPU (fp16 where bf16 is "
        "missing), fp32 on CPU")


class Op(Node):
    """Fields every curation op has. `name` identifies it within its pipeline (defaults to its kind)."""

    name: str = Field("", description="unique within the pipeline; defaults to the kind")
    note: str | None = None
    resources: OpResources | None = Field(None, description="per-op cluster resources; None: the kind's defaults")

    shape: ClassVar[Shape] = "map"

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name"):
            kind = data.get("kind") or cls.model_fields["kind"].default
            data = {**data, "name": kind}
        return data


class ScoredOp(Op):
    """An op that scores samples with a scorer whose scale bounds its thresholds."""

    scorer: str
    scale: Scale | None = Field(None, description="defaults to the known scale of `scorer`")

    @property
    def score_scale(self) -> Scale | None:
        return self.scale or KNOWN_SCALES.get(self.scorer)


# Header-only checks -------------------------------------------------------------------------------


class Probe(Op):
    """Decode check: header only, first and last frame, or full decode. Unreadable samples are quarantined."""

    kind: Literal["probe"] = "probe"
    check: Literal["header", "first_last", "full"] = "header"


class ResolutionFilter(Op):
    """Keep samples at least (and at most) this large, in pixels."""

    kind: Literal["resolution"] = "resolution"
    min_short_side_px: int | None = Field(None, gt=0)
    min_width_px: int | None = Field(None, gt=0)
    min_height_px: int | None = Field(None, gt=0)
    max_long_side_px: int | None = Field(None, gt=0)


class AspectRatioFilter(Op):
    """Keep width/height inside [min_ratio, max_ratio]."""

    kind: Literal["aspect_ratio"] = "aspect_ratio"
    min_ratio: float = Field(gt=0, description="width / height")
    max_ratio: float = Field(gt=0, description="width / height")


class DurationFilter(Op):
    """Keep video samples by duration (seconds) and frame rate (frames per second)."""

    kind: Literal["duration"] = "duration"
    min_seconds: float | None = Field(None, ge=0)
    max_seconds: float | None = Field(None, gt=0)
    min_fps: float | None = Field(None, gt=0)


# Decode-based ops ----------------------------------------------------------------------------------


class SceneSplit(Op):
    """Cut videos at scene changes into single-scene clips (1 -> N)."""

    kind: Literal["scene_split"] = "scene_split"
    shape: ClassVar[Shape] = "split"
    detector: Literal["content", "adaptive"] = "content"
    threshold: float = Field(27.0, gt=0, description="content detector: mean HSV frame difference (0-255)")
    min_scene_frames: int = Field(15, gt=0)
    clip_min_seconds: float | None = Field(None, ge=0)
    clip_max_seconds: float | None = Field(None, gt=0)


class Trim(Op):
    """Drop the head and tail of each clip (transition frames around cuts)."""

    kind: Literal["trim"] = "trim"
    head: float = Field(ge=0)
    tail: float = Field(ge=0)
    unit: FrameUnit = "frames"


class Corruption(Op):
    """Full decode; samples that fail are quarantined with the error."""

    kind: Literal["corruption"] = "corruption"


class Blur(Op):
    """Drop blurry samples by the variance of the Laplacian of the grey image."""

    kind: Literal["blur"] = "blur"
    min_laplacian_var: float = Field(ge=0, description="variance of the Laplacian at the analysis size")
    analysis_short_side_px: int = Field(256, gt=0, description="decode size the variance is measured at")


class Exposure(Op):
    """Drop too dark, too bright, or clipped samples by mean luma (0-255)."""

    kind: Literal["exposure"] = "exposure"
    min_mean_luma: float = Field(0, ge=0, le=255)
    max_mean_luma: float = Field(255, ge=0, le=255)
    max_clipped_fraction: float = Field(1.0, ge=0, le=1, description="fraction of pixels at 0 or 255")


class MotionScore(ScoredOp):
    """Mean dense optical-flow magnitude between frames sampled at `fps`."""

    kind: Literal["motion_score"] = "motion_score"
    scorer: str = "farneback"
    fps: float = Field(2.0, gt=0, description="frames per second sampled for flow")
    analysis_short_side_px: int = Field(256, gt=0)
    min_score: float | None = None
    max_score: float | None = None


MotionTier = Literal["optimal", "medium", "static", "camera_driven", "low_quality", "shaky"]
MOTION_TIERS: tuple[str, ...] = ("optimal", "medium", "static", "camera_driven", "low_quality", "shaky")


class MotionTiers(Op):
    """Classify clips into Wan's six motion tiers from global vs local flow and direction variance."""

    kind: Literal["motion_tiers"] = "motion_tiers"
    static_below: float = Field(0.5, ge=0, description="mean flow magnitude (px/frame) under which a clip is static")
    medium_below: float = Field(4.0, gt=0, description="flow magnitude separating medium from optimal motion")
    chaotic_above: float = Field(20.0, gt=0, description="flow magnitude above which motion is low quality")
    camera_global_fraction: float = Field(
        0.8, gt=0, le=1, description="share of flow explained by a global translation for camera-driven"
    )
    shaky_direction_variance: float = Field(
        1.0, gt=0, description="circular variance of global motion direction over time above which a clip is shaky"
    )
    keep: list[MotionTier] = Field(default_factory=lambda: ["optimal", "medium", "camera_driven"])


class FrameConsistency(ScoredOp):
    """Perceptual distance between sampled frames: too low is a still image, too high is jitter."""

    kind: Literal["frame_consistency"] = "frame_consistency"
    scorer: str = "lpips"
    min_score: float | None = Field(0.001, description="below: static")
    max_score: float | None = Field(0.3, description="above: jitter")


class TechnicalQuality(ScoredOp):
    """DOVER technical score (brightness, clarity, compression)."""

    kind: Literal["technical_quality"] = "technical_quality"
    scorer: str = "dover"
    min_score: float = 0.0


# Model-backed scorers -----------------------------------------------------------------------------


class Aesthetic(ScoredOp):
    """Aesthetic score from an image embedding and an MLP head; filter, condition on it, or both."""

    kind: Literal["aesthetic"] = "aesthetic"
    scorer: str = "laion-aesthetic-v2"
    min_score: float | None = None
    frames: int = Field(1, gt=0, description="frames sampled per video")
    reduce: Reduce = "min"
    use: Literal["filter", "condition", "filter_and_condition", "score_only"] = "filter"


SafetyCategory = Literal["nsfw", "csam", "violence", "gore", "hate"]


class Safety(ScoredOp):
    """Safety classifiers; scores over frames reduce by the maximum (one unsafe frame is enough)."""

    kind: Literal["safety"] = "safety"
    categories: list[SafetyCategory]
    scorer: str = "nsfw-classifier"
    scorers: dict[SafetyCategory, str] = Field(
        default_factory=dict,
        description="category -> model id of its own classifier (e.g. csam and violence models apart from the "
        "NSFW one); categories not named here use `scorer`",
    )
    scale: Scale | None = PROBABILITY
    max_score: float = 0.5
    frames: int = Field(1, gt=0)
    reduce: Reduce = "max"

    @model_validator(mode="after")
    def _scorers_name_listed_categories(self) -> Safety:
        extra = sorted(set(self.scorers) - set(self.categories))
        if extra:
            raise ValueError(
                f"scorers names {extra}, which are not in categories {self.categories}: add them to categories "
                "or remove them from scorers"
            )
        return self


class Watermark(ScoredOp):
    """Watermark classifier probability."""

    kind: Literal["watermark"] = "watermark"
    scorer: str = "watermark-classifier"
    scale: Scale | None = PROBABILITY
    max_score: float = 0.8
    frames: int = Field(1, gt=0)
    reduce: Reduce = "max"


class OcrTextArea(ScoredOp):
    """Fraction of the frame covered by detected text (CRAFT-style detector)."""

    kind: Literal["ocr_text_area"] = "ocr_text_area"
    scorer: str = "craft"
    scale: Scale | None = AREA_FRACTION
    max_area_ratio: float = 0.2
    frames: int = Field(3, gt=0)
    reduce: Reduce = "max"


class ClipSimilarity(ScoredOp):
    """Image-text cosine similarity of a CLIP model."""

    kind: Literal["clip_similarity"] = "clip_similarity"
    scorer: str = "clip-vit-b32"
    min_score: float = 0.1


class AiGenerated(ScoredOp):
    """Detector of AI-generated images (Imagen 3 removes them)."""

    kind: Literal["ai_generated"] = "ai_generated"
    scorer: str = "ai-generated-detector"
    scale: Scale | None = PROBABILITY
    max_score: float = 0.5


class VisualQuality(ScoredOp):
    """An expert quality model trained on manual scores of cluster-balanced samples (Wan step 2)."""

    kind: Literal["visual_quality"] = "visual_quality"
    scorer: str = "expert-quality-model"
    scale: Scale | None = Scale(low=0, high=1, unit="predicted probability of a good manual score")
    min_score: float = 0.5
    clusters: int = Field(100, gt=0, description="clusters balanced when choosing samples to score by hand")


class DefectMask(ScoredOp):
    """Seedream 3.0 defect-aware training: keep images whose defect area is small, mask the defect from the loss."""

    kind: Literal["defect_mask"] = "defect_mask"
    scorer: str = "defect-detector"
    scale: Scale | None = AREA_FRACTION
    max_area_ratio: float = 0.2
    emit_mask: bool = True
    applies_to: Literal["all", "previously_excluded"] = "previously_excluded"


class HumanReview(Op):
    """Route samples whose score falls in an ambiguous band to a human review queue."""

    kind: Literal["human_review"] = "human_review"
    score_of: str = Field(description="name of the op whose score decides")
    band: tuple[float, float]


# Dedup and global (barrier) ops -------------------------------------------------------------------


class ExactDedup(Op):
    """Drop byte-identical samples (sha256 of the media bytes)."""

    kind: Literal["exact_dedup"] = "exact_dedup"
    shape: ClassVar[Shape] = "barrier"
    hash: Literal["sha256", "md5_packets"] = "sha256"


class PerceptualDedup(Op):
    """Near-duplicates by perceptual hash within a Hamming distance; drop or down-weight them."""

    kind: Literal["perceptual_dedup"] = "perceptual_dedup"
    shape: ClassVar[Shape] = "barrier"
    hash: Literal["phash", "dhash"] = "phash"
    hash_bits: int = Field(64, gt=0)
    max_hamming: int = Field(4, ge=0, description="bits of `hash_bits`")
    action: Literal["drop", "downweight"] = "drop"
    downweight: float | None = Field(None, gt=0, le=1, description="sampling weight kept by duplicates")


class SemanticDedup(Op):
    """Cluster embeddings with k-means; inside a cluster, pairs with cosine >= 1 - eps are duplicates."""

    kind: Literal["semantic_dedup"] = "semantic_dedup"
    shape: ClassVar[Shape] = "barrier"
    embedder: str = "clip-vit-l14"
    clusters: int = Field(100, gt=0)
    eps: float = Field(0.05, gt=0, lt=1, description="duplicate when cosine >= 1 - eps")


class Balance(Op):
    """Distribution balancing: hierarchical k-means over embeddings, downsample over-full clusters."""

    kind: Literal["balance"] = "balance"
    shape: ClassVar[Shape] = "barrier"
    embedder: str = "clip-vit-l14"
    clusters_per_level: list[int] = Field(default_factory=lambda: [100, 10], description="top level first")
    target_per_cluster: int | None = Field(None, gt=0, description="samples kept per leaf cluster")


class ActiveLearning(Op):
    """Select challenging samples: those whose scorer confidence falls in the uncertainty band."""

    kind: Literal["active_learning"] = "active_learning"
    shape: ClassVar[Shape] = "barrier"
    scorer: str
    uncertainty_band: tuple[float, float] = (0.4, 0.6)
    rounds: int = Field(1, gt=0)
    budget_fraction: float = Field(0.1, gt=0, le=1, description="fraction of the pool selected per round")


# Mappers ------------------------------------------------------------------------------------------

CaptionStyle = Literal["short", "long", "dense", "multi_perspective", "coarse", "fused", "aesthetic"]


class Recaption(Op):
    """Synthetic captions from a VLM; originals are kept, and `mix` sets original:synthetic at training."""

    kind: Literal["recaption"] = "recaption"
    model: str
    styles: list[CaptionStyle] = Field(default_factory=lambda: ["long"])
    languages: list[str] = Field(default_factory=lambda: ["en"])
    captions_per_sample: int = Field(1, gt=0)
    keep_original: bool = True
    mix: dict[str, float] = Field(
        default_factory=dict, description="caption source -> sampling probability at training time"
    )
    fps: float | None = Field(None, gt=0, description="frames per second shown to the VLM (video)")
    max_new_tokens: int = Field(512, gt=0)
    trust_remote_code: bool = Field(
        False,
        description="run the Python modelling code the model folder ships (config.json auto_map, e.g. CogVLM); "
        "without it such a folder is refused",
    )


class CaptionPii(Op):
    """Remove personal information (names, e-mail, phone numbers) from captions."""

    kind: Literal["caption_pii"] = "caption_pii"
    entities: list[Literal["email", "phone", "url", "person_name", "address"]] = Field(
        default_factory=lambda: ["email", "phone", "url"]
    )


class ScoreConditioning(Op):
    """Feed scores to the model as conditioning inputs (Imagen 2's aesthetic conditioning)."""

    kind: Literal["score_conditioning"] = "score_conditioning"
    scores: list[str] = Field(description="names of scoring ops whose scores become inputs")
    encoding: Literal["embedding", "caption_suffix"] = "embedding"


class PrecomputeEmbeddings(Op):
    """Write frozen text-encoder outputs and VAE latents into the shards (FLUX)."""

    kind: Literal["precompute_embeddings"] = "precompute_embeddings"
    text_encoders: list[str] = Field(default_factory=list, description="names of the architecture's text encoders")
    vae_latents: bool = True


class SyntheticText(Op):
    """Add rendered-text images with a curriculum from pure rendering to complex layouts (Qwen-Image)."""

    kind: Literal["synthetic_text"] = "synthetic_text"
    shape: ClassVar[Shape] = "split"  # adds records beside the ones it passes through
    curriculum: list[Literal["pure_rendering", "compositional", "complex_layout"]] = Field(
        default_factory=lambda: ["pure_rendering", "compositional", "complex_layout"]
    )
    fraction: float = Field(0.05, gt=0, lt=1, description="share of the output that is synthetic")
    languages: list[str] = Field(default_factory=lambda: ["en"])


CurationOp = Annotated[
    Union[
        Probe,
        ResolutionFilter,
        AspectRatioFilter,
        DurationFilter,
        SceneSplit,
        Trim,
        Corruption,
        Blur,
        Exposure,
        MotionScore,
        MotionTiers,
        FrameConsistency,
        TechnicalQuality,
        Aesthetic,
        Safety,
        Watermark,
        OcrTextArea,
        ClipSimilarity,
        AiGenerated,
        VisualQuality,
        DefectMask,
        HumanReview,
        ExactDedup,
        PerceptualDedup,
        SemanticDedup,
        Balance,
        ActiveLearning,
        Recaption,
        CaptionPii,
        ScoreConditioning,
        PrecomputeEmbeddings,
        SyntheticText,
    ],
    Field(discriminator="kind"),
]


class Pipeline(Node):
    """An ordered list of ops over some sources, producing one named dataset."""

    name: str
    sources: list[str] = Field(min_length=1, description="names of data.sources")
    ops: list[CurationOp]
    output: str = Field(description="name of the dataset this pipeline writes")
    kept_count: float | None = Field(None, ge=0, description="items the pipeline is reported to keep")


class Subset(Node):
    """A named slice of a dataset: a resolution tier, a quality tier, a modality."""

    min_short_side_px: int | None = Field(None, gt=0)
    min_score: dict[str, float] = Field(default_factory=dict, description="op name -> minimum score")
    modality: Literal["image", "video"] | None = None
    min_seconds: float | None = Field(None, ge=0)
    max_seconds: float | None = Field(None, gt=0)


class Dataset(Node):
    """A named dataset that training stages consume: a pipeline's output, or a subset of another dataset."""

    name: str
    subset_of: str | None = Field(None, description="name of the parent dataset")
    where: Subset | None = None
    count: float | None = Field(None, ge=0, description="items, as reported")
    unit: Literal["pairs", "images", "videos", "clips", "triplets"] = "pairs"
    aspect_ratios: dict[str, float] = Field(
        default_factory=dict,
        description="'width:height' -> fraction of items (as curation measured them); with `count` the "
        "compiler checks that every aspect-ratio bucket of a stage reading the dataset fills its micro-batches",
    )


class DataSpec(Node):
    """Everything between raw data and the training sets."""

    sources: list[Source]
    pipelines: list[Pipeline]
    datasets: list[Dataset]
