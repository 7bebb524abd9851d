"""Seedream 2.0, 3.0 and 4.0 (ByteDance): bilingual MMDiTs with glyph-aware text rendering.

Seedream 2.0 is a 3.9B MMDiT conditioned on a custom bilingual (Chinese/English) LLM and a Glyph-Aligned
ByT5 for character-level text rendering, with 2D RoPE on image tokens. It trains with score matching on
~250M pairs (70% Chinese) that pass multi-stage cleaning, hierarchical-clustering balance, active learning
and two-tier captioning, then SFT and RLHF. Seedream 3.0 moves to flow matching, reclaims 21.7% more data by
masking defects out of the loss, adds cross-modality RoPE for text, fine-tunes up to 2048 px and post-trains
with CT + SFT + RLHF (a >20B VLM reward model) + PE. Seedream 4.0 trains adaptive flow matching on billions
of pairs up to 4096 px, post-training text-to-image and editing jointly.

Sources: the survey's §4 and its overview rows (architecture, data-pipeline, defect-aware training and
training-stage flowcharts, version comparison). ByteDance publishes no configuration: dimensions are sized
to the documented 3.9B, and the schedule's numbers are assumptions with reasons.
"""

from functools import partial

from compiler.document import REMOVE, Insert, derive
from compiler.schema import (
    ActiveLearning,
    AdamW,
    Aesthetic,
    ArchitectureSpec,
    Balance,
    CfgDropout,
    Dataset,
    DatasetUse,
    DataSpec,
    DefectMask,
    FlowMatching,
    InferenceSpec,
    LatentSpace,
    LogitNormal,
    LrSchedule,
    MaskedLoss,
    MMDiT,
    NoiseAwareCompute,
    Pipeline,
    PreferenceLoss,
    Recaption,
    ResolutionShift,
    Rope,
    Scale,
    ScheduleSpec,
    ScoreMatching,
    Source,
    Spec,
    Stage,
    Subset,
    TaskShare,
    TextEncoder,
    VisualQuality,
    Watermark,
    assumed,
    documented,
    likely,
    undisclosed,
)
from compiler.schema.common import square
from specs.sources import CURATION_TOOLS, EDM_PAPER, SD3_PAPER, survey

OVERVIEW_2 = survey("Overview Comparison, Seedream 2.0 row")
OVERVIEW_3 = survey("Overview Comparison, Seedream 3.0 row")
ARCHITECTURE = survey("§4 ByteDance Seedream, Architecture")
PIPELINE = survey("§4 ByteDance Seedream, Data Pipeline")
DEFECT = survey("§4 ByteDance Seedream, Defect-Aware Training (Seedream 3.0)")
RECIPE = survey("§4 ByteDance Seedream, Training Stages")
VERSIONS = survey("§4 ByteDance Seedream, Version Comparison")

# 16 double blocks (36 d^2 each) + 24 single blocks (15 d^2 each) at d = 2048: 936 d^2 = 3.93B.
sized = partial(assumed, reason="ByteDance publishes no config; FLUX-style blocks sized to the documented 3.9B")
no_vae = partial(assumed, reason="the VAE is undisclosed; a FLUX-like 16-channel 8x latent is assumed")
threshold = partial(assumed, reason=f"ByteDance's threshold is undisclosed; {CURATION_TOOLS}")
UNPUBLISHED = "the survey gives the stage order and goals, not sizes; sized for a 4B MMDiT"
BUCKETS = "the survey states 'various aspect ratios' for pre-training only; later stages are assumed to keep them"
# ">20B params": the survey gives only a lower bound, which is the value stated.
REWARD_MODEL_SIZE = "the survey says the VLM reward model has '>20B params': 20B is a lower bound, the size undisclosed"
ADAMW = f"the optimizer is undisclosed; AdamW as in the SD3 recipe ({SD3_PAPER})"


def stage(name: str, kind: str, datasets: list[DatasetUse], sides: list[int], batch: int, steps: int, lr: float,
          init_from: str, goal: str, **fields: object) -> Stage:
    """A training stage whose kind and goal the survey states and whose sizes are assumptions."""
    return Stage(
        name=name,
        kind=documented(kind, RECIPE),
        datasets=assumed(datasets, "the survey names no dataset per stage"),
        resolutions=assumed([square(side) for side in sides], UNPUBLISHED),
        aspect_ratio_buckets=assumed(True, BUCKETS),
        batch_size=assumed(batch, UNPUBLISHED),
        steps=assumed(steps, UNPUBLISHED),
        optimizer=assumed(AdamW(lr=lr, weight_decay=0.0), ADAMW if lr >= 1e-4 else f"{ADAMW}, at a fine-tuning rate"),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=1000 if steps > 20_000 else 200), ADAMW),
        init_from=documented(init_from, RECIPE),
        goal=documented(goal, RECIPE),
        **fields,
    )


# Seedream 2.0 --------------------------------------------------------------------------------------

DATA_2 = DataSpec(
    sources=[
        Source(
            name="image_text",
            modality=documented("image_text", PIPELINE),
            count=documented(250e6, PIPELINE),
            unit=documented("pairs", PIPELINE),
            languages=documented({"zh": 0.7, "en": 0.3}, PIPELINE),
        )
    ],
    pipelines=[
        Pipeline(
            name="seedream",
            sources=documented(["image_text"], PIPELINE),
            ops=documented(
                [
                    # Multi-stage cleaning: watermark removal, artifact filtering, aesthetic scoring.
                    Watermark(
                        scorer=assumed("watermark-classifier", "ByteDance does not name its detector"),
                        max_score=threshold(0.8),
                        note="Multi-Stage Cleaning: watermark removal",
                    ),
                    VisualQuality(
                        name="artifact",
                        scorer=assumed("artifact-detector", "the survey names no artifact detector"),
                        scale=assumed(
                            Scale(low=0, high=1, unit="probability that the image is free of visible artifacts"),
                            "a classifier probability",
                        ),
                        min_score=assumed(0.5, "undisclosed; an even-odds cut"),
                        note="Multi-Stage Cleaning: artifact filtering (the schema has no artifact op; an expert "
                        "quality model stands in)",
                    ),
                    Aesthetic(
                        scorer=assumed("laion-aesthetic-v2", "ByteDance's aesthetic model is undisclosed"),
                        min_score=threshold(4.5),
                        use="filter",
                        note="Multi-Stage Cleaning: aesthetic scoring",
                    ),
                    Balance(
                        embedder=assumed("clip-vit-l14", "the survey names no embedder"),
                        clusters_per_level=assumed([100, 10], "undisclosed; two levels, 1000 leaf clusters"),
                        target_per_cluster=assumed(500_000, "about twice the mean leaf cluster (250M / 1000)"),
                        note="Distribution Balancing: downsample over-represented, hierarchical clustering",
                    ),
                    ActiveLearning(
                        scorer=assumed("difficulty-classifier", "the survey names no scorer"),
                        uncertainty_band=assumed((0.4, 0.6), "undisclosed; the classifier's least certain band"),
                        rounds=assumed(3, "'iterative refinement': more than one round, count undisclosed"),
                        budget_fraction=assumed(0.1, "undisclosed"),
                        note="Active Learning: find challenging examples, iterative refinement",
                    ),
                    Recaption(
                        name="captioning",
                        model=assumed("bilingual-vlm-captioner", "ByteDance's in-house captioner is unpublished"),
                        styles=["short", "long", "multi_perspective"],
                        languages=["zh", "en"],
                        captions_per_sample=assumed(3, "one caption per style"),
                        keep_original=assumed(True, "undisclosed; originals kept beside the synthetic tiers"),
                        note="Two-Tier Captioning: generic (short + long) and multi-perspective rich captions, "
                        "Chinese + English",
                    ),
                ],
                PIPELINE,
            ),
            output=documented("seedream_training_set", PIPELINE),
        )
    ],
    datasets=[
        Dataset(
            name="seedream_training_set",
            count=documented(250e6, OVERVIEW_2),
            unit=documented("pairs", OVERVIEW_2),
        ),
        Dataset(
            name="seedream_highres",
            subset_of=documented("seedream_training_set", RECIPE),
            where=assumed(Subset(min_short_side_px=1024), "the high-resolution fine-tune needs images that large"),
            unit=documented("pairs", OVERVIEW_2),
        ),
        Dataset(
            name="seedream_sft",
            subset_of=documented("seedream_highres", RECIPE),
            where=assumed(
                Subset(min_score={"aesthetic": 6.0}),
                "the SFT set (styles, text rendering, aesthetics) is hand-picked; its top-aesthetic slice stands in",
            ),
            unit=documented("pairs", OVERVIEW_2),
        ),
    ],
)

ARCH_2 = ArchitectureSpec(
    backbone=MMDiT(
        kind=documented("mmdit", ARCHITECTURE),
        hidden_size=sized(2048),
        num_heads=sized(16),
        head_dim=sized(128),
        patch_size=sized((1, 2, 2)),
        in_channels=sized(64),  # 16 latent channels packed 2x2
        out_channels=sized(64),
        qkv_bias=sized(True),
        qk_norm=sized("rmsnorm_per_head"),
        positions=Rope(
            kind=documented("rope", ARCHITECTURE),
            axes=documented(["h", "w"], ARCHITECTURE),  # 2D RoPE for image tokens
            axes_dims=sized([64, 64]),
            theta=assumed(10_000.0, "the usual RoPE base"),
            text=assumed("zeros", "before 3.0's cross-modality RoPE, text tokens sit at position 0 as in FLUX"),
        ),
        double_blocks=sized(16),
        single_blocks=sized(24),
        context_dim=sized(4096),
    ),
    text_encoders=[
        TextEncoder(
            name="bilingual_llm",
            model=assumed("bytedance/bilingual-llm", "the custom bilingual LLM is unpublished"),
            role=assumed("tokens", "an MMDiT joins the LLM's tokens with the image tokens"),
            dim=assumed(4096, "undisclosed; the width of a 7B-class LLM"),
            max_tokens=assumed(256, "undisclosed; room for the long multi-perspective captions"),
            # The planner needs its size: it stays resident on every GPU (no precomputed embeddings).
            params=assumed(7e9, "undisclosed; a 7B-class LLM, as its assumed width"),
            frozen=assumed(True, "undisclosed"),
        ),
        TextEncoder(
            name="glyph_byt5",
            model=assumed("google/byt5-small", "Glyph-ByT5 is ByT5-small fine-tuned for glyph alignment"),
            role=documented("glyph", ARCHITECTURE),  # character-level text rendering
            dim=assumed(1472, "ByT5-small's width"),
            max_tokens=assumed(256, "undisclosed; bytes of the quoted text to render"),
            frozen=assumed(True, "undisclosed"),
        ),
    ],
    space=LatentSpace(
        vae=no_vae("seedream-vae"),
        channels=no_vae(16),
        spatial_compression=no_vae(8),
        temporal_compression=no_vae(1),
        causal=no_vae(False),
    ),
    params_documented=documented(3.9e9, OVERVIEW_2),
)

STAGES_2 = [
    Stage(
        name="pretrain",
        kind=documented("pretrain", RECIPE),
        datasets=assumed([DatasetUse(dataset="seedream_training_set")], "pre-training uses the whole curated set"),
        resolutions=documented([square(256)], RECIPE),
        aspect_ratio_buckets=documented(True, RECIPE),  # "various aspect ratios"
        batch_size=assumed(4096, UNPUBLISHED),
        steps=assumed(300_000, UNPUBLISHED),
        optimizer=assumed(AdamW(lr=1e-4, weight_decay=0.0), ADAMW),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=1000), ADAMW),
        goal=documented("Pre-train: 256x256 (various aspect ratios)", RECIPE),
    ),
    stage("highres", "progressive_resolution", [DatasetUse(dataset="seedream_highres")], [512, 1024], 1024, 100_000,
          1e-4, "pretrain", "Fine-tune: 512 px upwards (2.0's maximum is not specified; 1024 assumed)"),
    stage("sft", "sft", [DatasetUse(dataset="seedream_sft")], [1024], 512, 20_000, 1e-5, "highres",
          "Supervised Fine-Tuning (styles, text rendering, aesthetics)"),
    stage(
        "rlhf", "rlhf", [DatasetUse(dataset="seedream_sft")], [1024], 512, 10_000, 1e-5, "sft", "RLHF",
        # The family's RLHF box; the version table ties the >20B VLM reward model to no version.
        loss=PreferenceLoss(
            kind=assumed("diffusion_dpo", "the RLHF algorithm is undisclosed; Diffusion-DPO is the open one"),
            beta=assumed(5000.0, "Diffusion-DPO's published beta"),
            reward_model=likely("vlm-reward-model", RECIPE),
            reward_model_params=assumed(20e9, REWARD_MODEL_SIZE),
            iterations=assumed(3, "'multiple iterations' (family flowchart); the count is undisclosed"),
        ),
    ),
]

FAMILY_NOTES = [
    "Key insight: the bilingual LLM text encoder gives native Chinese cultural knowledge; Glyph-Aligned ByT5 "
    "renders text character by character.",
    "Two-tier captions: generic (short + long) and multi-perspective rich captions, in Chinese and English.",
    "RLHF with a >20B VLM reward model over multiple iterations is one of the largest reported for image "
    "generation; the schema states the reward model's size as its lower bound, 20B.",
]

SEEDREAM_2_0 = Spec(
    name="seedream-2.0",
    family=documented("seedream", VERSIONS),
    modality=documented("image", OVERVIEW_2),
    organisation=documented("ByteDance", survey("§4 ByteDance Seedream")),
    released=undisclosed("the survey gives no release date"),
    license=documented("proprietary", OVERVIEW_2),  # "Open? No"
    open_weights=documented("no", OVERVIEW_2),
    data=DATA_2,
    architecture=ARCH_2,
    objective=ScoreMatching(
        kind=documented("score_matching", VERSIONS),
        p_mean=assumed(-1.2, f"undisclosed; the EDM default ({EDM_PAPER})"),
        p_std=assumed(1.2, f"undisclosed; the EDM default ({EDM_PAPER})"),
        sigma_data=assumed(0.5, f"undisclosed; the EDM default ({EDM_PAPER})"),
        loss_weighting=assumed("edm", f"EDM's weighting goes with its preconditioning ({EDM_PAPER})"),
        cfg_dropout=assumed(CfgDropout(joint_rate=0.1), "undisclosed; Imagen's 10%"),
    ),
    schedule=ScheduleSpec(stages=STAGES_2),
    inference=InferenceSpec(
        sampler=assumed("heun", f"undisclosed; EDM's second-order sampler ({EDM_PAPER})"),
        steps=assumed(50, "undisclosed"),
        cfg_scale=assumed(5.0, "undisclosed"),
        resolution=assumed(1024, "the survey does not specify 2.0's maximum resolution; 1024 assumed"),
    ),
    notes=documented(
        [
            *FAMILY_NOTES,
            "Seedream 2.0: score matching, ~250M pairs (70% Chinese / 30% English), post-training SFT + RLHF; "
            "maximum resolution not specified and no inference speed given.",
        ],
        survey("§4 ByteDance Seedream"),
    ),
)

# Seedream 3.0 --------------------------------------------------------------------------------------

# Previously excluded images whose defects cover under 20% of the area are kept, the defect masked out of
# the loss: +21.7% data (250M -> ~300M).
DEFECT_MASK = documented(
    DefectMask(
        scorer="defect-detector",
        max_area_ratio=0.2,
        emit_mask=True,
        applies_to="previously_excluded",
        note="defect detector trained on 15K annotated samples; retained images get a spatial attention mask "
        "that excludes the defect from the loss (+21.7% training data)",
    ),
    DEFECT,
)

SEEDREAM_3_0 = derive(
    SEEDREAM_2_0,
    {
        "modality": documented("image", OVERVIEW_3),
        "license": documented("proprietary", OVERVIEW_3),  # "Open? No"
        "open_weights": documented("no", OVERVIEW_3),
        # The overview's expanded data scale; reclaimed images come from this pool, so it bounds it from below.
        "data.sources[image_text].count": documented(300e6, OVERVIEW_3),
        "data.pipelines[seedream].ops[defect_mask]": Insert(DEFECT_MASK, after="aesthetic"),
        # Continuing training uses "diversified aesthetic captions".
        "data.pipelines[seedream].ops[captioning].styles": documented(
            ["short", "long", "multi_perspective", "aesthetic"], RECIPE
        ),
        "data.datasets[seedream_training_set].count": documented(300e6, OVERVIEW_3),
        "data.datasets[seedream_highres].where.min_short_side_px": assumed(2048, "the fine-tune now reaches 2048 px"),
        "architecture.backbone.positions.text": documented("cross_modality", ARCHITECTURE),
        "architecture.params_documented": documented(3.9e9, OVERVIEW_3),  # "~3.9B"
        "objective": FlowMatching(
            kind=documented("flow_matching", VERSIONS),
            prediction=documented("velocity", survey("Common Patterns & Takeaways, Key Trends")),
            timesteps=assumed(LogitNormal(mean=0.0, std=1.0), f"undisclosed; the SD3 default ({SD3_PAPER})"),
            # 512 -> 2048 px needs more noise at more pixels: the survey's rule a = sqrt(m / n).
            shift=assumed(ResolutionShift(base_pixels=256 * 256, applies="both"), "undisclosed; the survey's rule"),
            loss_weighting=assumed("none", "undisclosed; logit-normal sampling carries the weighting, as in SD3"),
            cfg_dropout=assumed(CfgDropout(joint_rate=0.1), "undisclosed; Imagen's 10%"),
        ),
        "objective.masked_loss": documented(MaskedLoss(mask_from="defect_mask"), DEFECT),
        "schedule.stages[highres].resolutions": documented([square(512), square(1024), square(2048)], RECIPE),
        "schedule.stages[highres].goal": documented("Fine-tune: 512 -> 2048 px (Seedream 3.0)", RECIPE),
        "schedule.stages[ct]": Insert(
            stage("ct", "continuing_training", [DatasetUse(dataset="seedream_highres")], [2048], 512, 50_000, 5e-5,
                  "highres", "Continuing Training (CT): diversified aesthetic captions"),
            after="highres",
        ),
        "schedule.stages[sft]": stage("sft", "sft", [DatasetUse(dataset="seedream_sft")], [2048], 512, 20_000, 1e-5,
                                      "ct", "Supervised Fine-Tuning (styles, text rendering, aesthetics)"),
        "schedule.stages[rlhf].resolutions": assumed([square(2048)], UNPUBLISHED),
        "schedule.stages[rlhf].loss": PreferenceLoss(
            kind=assumed("diffusion_dpo", "the RLHF algorithm is undisclosed; Diffusion-DPO is the open one"),
            beta=assumed(5000.0, "Diffusion-DPO's published beta"),
            reward_model=documented("vlm-reward-model", RECIPE),
            reward_model_params=assumed(20e9, REWARD_MODEL_SIZE),
            iterations=assumed(3, "'multiple iterations'; the count is undisclosed"),
        ),
        "schedule.stages[rlhf].goal": documented("RLHF: VLM reward model (>20B params), multiple iterations", RECIPE),
        "schedule.stages[pe]": Insert(
            # What PE trains is undisclosed; the schema's stages train the backbone, so it is stated as one.
            stage("pe", "prompt_engineering", [DatasetUse(dataset="seedream_sft")], [2048], 512, 2_000, 1e-5,
                  "rlhf", "Prompt Engineering (PE): final alignment"),
            after="rlhf",
        ),
        "inference": InferenceSpec(
            sampler=assumed("euler", "undisclosed; the Euler step of flow matching"),
            steps=assumed(25, "undisclosed; few enough for the reported 3 s at 1K"),
            cfg_scale=assumed(5.0, "undisclosed"),
            resolution=documented(1024, VERSIONS),  # the 1K the speed is quoted at; up to 2048x2048
            latency_seconds=documented(3.0, VERSIONS),
        ),
        "notes": documented(
            [
                *FAMILY_NOTES,
                "Defect-aware training: previously excluded images go through a defect detector trained on 15K "
                "annotated samples; if the defect area is < 20% the image is kept with a spatial attention mask "
                "that excludes the defect from the loss, else discarded: +21.7% more training data. The model "
                "learns from imperfect data without absorbing watermarks and artifacts.",
                "Seedream 3.0: flow matching, ~300M pairs, cross-modality RoPE for text tokens, fine-tune 512 -> "
                "2048 px, post-training CT + SFT + RLHF + PE; maximum resolution 2048x2048 (the schema's inference "
                "holds one default side, not a maximum: schema gap); 3 s per image at 1K.",
                "What the PE stage trains is undisclosed (a prompt rewriter, most likely); a stage can only train "
                "the backbone or a cascade U-Net (schema gap).",
            ],
            survey("§4 ByteDance Seedream"),
        ),
    },
    name="seedream-3.0",
)

# Seedream 4.0 --------------------------------------------------------------------------------------

EDITING = "4.0's editing inputs are undisclosed; references join the sequence with an index axis, as in Flux Kontext"
# Defect-aware training is a Seedream 3.0 fact; the survey does not say whether 4.0 keeps it.
KEPT_FROM_3 = (
    "Seedream 3.0's defect-aware training (survey, Defect-Aware Training (Seedream 3.0)); 4.0 is assumed to keep it"
)
NO_ROW_4 = "the survey's overview has no Seedream 4.0 row"
ADAPTIVE = "adaptive flow matching is undisclosed; read as loss-adaptive timestep sampling (noise-aware bins)"

SEEDREAM_4_0 = derive(
    SEEDREAM_3_0,
    {
        "modality": documented("image", f"{VERSIONS} ('joint T2I+editing')"),
        "license": assumed("proprietary", f"{NO_ROW_4}; 2.0 and 3.0 are closed ('Open? No')"),
        "open_weights": assumed("no", f"{NO_ROW_4}; 2.0 and 3.0 are closed ('Open? No')"),
        "data.sources[image_text].count": undisclosed("the survey says 'Billions' (version table), no number"),
        "data.pipelines[seedream].ops[defect_mask]": assumed(DEFECT_MASK.value, KEPT_FROM_3),
        "objective.masked_loss": assumed(MaskedLoss(mask_from="defect_mask"), KEPT_FROM_3),
        **{
            f"data.datasets[{name}].unit": assumed("pairs", f"{NO_ROW_4}; 2.0's and 3.0's data are image-text pairs")
            for name in ("seedream_training_set", "seedream_highres", "seedream_sft")
        },
        "data.sources[image_text].languages": assumed({"zh": 0.7, "en": 0.3}, "4.0's mix is undisclosed; 2.0's"),
        "data.sources[edit_pairs]": Insert(
            Source(
                name="edit_pairs",
                modality=documented("image_edit_triplet", VERSIONS),  # "joint T2I+editing"
                count=undisclosed("the survey gives no count of editing data"),
                unit=documented("triplets", VERSIONS),
            )
        ),
        "data.pipelines[seedream_edit]": Insert(
            Pipeline(
                name="seedream_edit",
                sources=documented(["edit_pairs"], VERSIONS),
                ops=assumed([], "the curation of editing data is undisclosed; triplets pass through as given"),
                output=documented("seedream_edit", VERSIONS),
            )
        ),
        "data.datasets[seedream_training_set].count": undisclosed("the survey says 'Billions', no number"),
        "data.datasets[seedream_highres].where.min_short_side_px": assumed(4096, "the fine-tune now reaches 4096 px"),
        "data.datasets[seedream_edit]": Insert(
            Dataset(
                name="seedream_edit",
                count=undisclosed("the survey gives no count of editing data"),
                unit=documented("triplets", VERSIONS),
            )
        ),
        "architecture.backbone.context_images": assumed("sequence", EDITING),
        "architecture.backbone.positions.axes": assumed(["index", "h", "w"], EDITING),
        "architecture.backbone.positions.axes_dims": assumed([16, 56, 56], f"{EDITING}; FLUX's split"),
        "architecture.params_documented": undisclosed("the survey gives no parameter count for 4.0"),
        "objective.adaptive": documented(True, VERSIONS),  # "adaptive flow matching"
        # 'Adaptive flow matching' is undisclosed; genspec reads it as timestep sampling that adapts to the
        # running loss per timestep bin (Hailuo 02's noise-aware redistribution), at that schema's defaults.
        "objective.noise_aware_compute": NoiseAwareCompute(
            bins=assumed(16, ADAPTIVE), ema=assumed(0.99, ADAPTIVE), floor=assumed(0.25, ADAPTIVE)
        ),
        "schedule.stages[highres].resolutions": documented(
            [square(512), square(1024), square(2048), square(4096)], RECIPE
        ),
        "schedule.stages[highres].goal": documented("Fine-tune: 512 -> 4096 px (4.0)", RECIPE),
        # Post-training is CT + SFT + RLHF over text-to-image and editing together; PE is gone.
        **{
            f"schedule.stages[{name}].datasets": documented(
                [
                    DatasetUse(dataset=dataset, weight=assumed(0.7, "undisclosed; text-to-image stays the majority")),
                    DatasetUse(dataset="seedream_edit", weight=assumed(0.3, "undisclosed; editing the minority")),
                ],
                VERSIONS,
            )
            for name, dataset in (("ct", "seedream_highres"), ("sft", "seedream_sft"), ("rlhf", "seedream_sft"))
        },
        # The survey's "joint T2I+editing": both tasks in each post-training stage, at the datasets' shares.
        **{
            f"schedule.stages[{name}].tasks": documented(
                [
                    TaskShare(task="generation", weight=assumed(0.7, "undisclosed; the text-to-image datasets' share")),
                    TaskShare(task="edit", weight=assumed(0.3, "undisclosed; the editing dataset's share")),
                ],
                VERSIONS,
            )
            for name in ("ct", "sft", "rlhf")
        },
        "schedule.stages[pe]": REMOVE,
        "inference": InferenceSpec(
            sampler=assumed("euler", "undisclosed; the Euler step of flow matching"),
            steps=assumed(25, "undisclosed; few enough for the reported 1.8 s at 2K"),
            cfg_scale=assumed(5.0, "undisclosed"),
            resolution=documented(2048, VERSIONS),  # the 2K the speed is quoted at; up to 4096x4096
            latency_seconds=documented(1.8, VERSIONS),
        ),
        "notes": documented(
            [
                *FAMILY_NOTES,
                "Seedream 4.0: adaptive flow matching (details undisclosed), billions of pairs, fine-tune 512 -> "
                "4096 px, post-training CT + SFT + RLHF over joint text-to-image and editing; maximum resolution "
                "4096x4096; 1.8 s per image at 2K.",
                "4.0 both generates and edits; the spec's modality stays 'image' as the schema takes one modality "
                "per spec (schema gap).",
            ],
            survey("§4 ByteDance Seedream"),
        ),
    },
    name="seedream-4.0",
)
