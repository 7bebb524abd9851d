"""Imagen 1, 2 and 3 (Google): from a pixel-space U-Net cascade to a latent diffusion transformer.

Imagen 1 conditions a cascade of three pixel U-Nets (a 2B base at 64x64, then 600M and 400M Efficient
U-Nets up to 256 and 1024) on a frozen 4.6B T5-XXL, trained with noise prediction, sampled with classifier-
free guidance and dynamic thresholding; the super-resolution stages use noise conditioning augmentation.
Imagen 2 adds aesthetic-score conditioning; the rest of it is undisclosed. Imagen 3 is a latent diffusion
transformer trained on billions of dual-captioned pairs (original + Gemini synthetic) with AI-generated
images removed, and upsampled 2x, 4x or 8x.

Sources: the survey's §2 and its overview rows (architecture evolution, Imagen 3's data pipeline, Imagen 1's
training table and key techniques, Imagen 2's key innovation); the Imagen paper for what objectives.md
takes from it (EMA, dynamic-thresholding percentile, cosine schedule); NVIDIA NeMo's Imagen configs for
the U-Net dimensions. What none of them states is an assumption with its reason.
"""

from math import sqrt

from compiler.document import Insert, derive, from_document, to_document
from compiler.schema import (
    Adafactor,
    Adam,
    AdamW,
    Aesthetic,
    AiGenerated,
    ArchitectureSpec,
    CaptionPii,
    Cascade,
    CfgDropout,
    Dataset,
    DatasetUse,
    DataSpec,
    DiT,
    DynamicThresholding,
    ExactDedup,
    FlowMatching,
    InferenceSpec,
    LatentSpace,
    LogitNormal,
    LrSchedule,
    Node,
    NoisePrediction,
    PerceptualDedup,
    Pipeline,
    PixelSpace,
    Provenance,
    Recaption,
    ResolutionShift,
    Rope,
    Safety,
    Scale,
    ScheduleSpec,
    ScoreConditioning,
    Source,
    Spec,
    Stage,
    Subset,
    TextEncoder,
    UNetStage,
    assumed,
    documented,
    likely,
    undisclosed,
)
from compiler.schema.common import square
from specs.sources import (
    CURATION_TOOLS,
    IMAGEN_NEMO_BASE,
    IMAGEN_NEMO_SR256,
    IMAGEN_NEMO_SR1024,
    IMAGEN_PAPER,
    survey,
)

OVERVIEW_1 = survey("Overview Comparison, Imagen 1 row")
OVERVIEW_3 = survey("Overview Comparison, Imagen 3 row")
EVOLUTION = survey("§2 Google Imagen, Architecture Evolution")
PIPELINE_3 = survey("§2 Google Imagen, Data Pipeline (Imagen 3)")
TRAINING = survey("§2 Google Imagen, Training Details (Imagen 1)")
TECHNIQUES = survey("§2 Google Imagen, Key Techniques (Imagen 1)")
INNOVATION_2 = survey("§2 Google Imagen, Key Innovation (Imagen 2)")

T5_XXL = "google/t5-v1_1-xxl"
T5_CHECKPOINT = "the survey names T5-XXL, not a checkpoint; the public T5 v1.1 XXL encoder (width 4096) stands in"
ADAM_LR = "the survey gives the optimizers, not their rates; 1e-4 with a 10k-step warm-up is assumed for all three"
SEPARATE_UNET = "each U-Net of the cascade is its own network, trained from scratch on its own TPU-v4 pod"

# Imagen 1 ------------------------------------------------------------------------------------------

DATA_1 = DataSpec(
    sources=[
        Source(
            name="internal",
            modality=documented("image_text", OVERVIEW_1),
            count=documented(460e6, IMAGEN_PAPER),
            unit=documented("pairs", OVERVIEW_1),
            origin=documented(["internal datasets"], IMAGEN_PAPER),
        ),
        Source(
            name="laion_400m",
            modality=documented("image_text", OVERVIEW_1),
            count=documented(400e6, IMAGEN_PAPER),
            unit=documented("pairs", OVERVIEW_1),
            origin=documented(["LAION-400M (public)"], IMAGEN_PAPER),
        ),
    ],
    pipelines=[
        Pipeline(
            name="imagen",
            sources=documented(["internal", "laion_400m"], IMAGEN_PAPER),
            ops=[
                documented(
                    Safety(
                        categories=["nsfw"],
                        scorer=assumed("nsfw-classifier", "the paper does not name its filter"),
                        max_score=assumed(0.5, f"the paper gives no threshold; {CURATION_TOOLS}"),
                        note="the paper filters noise and undesirable content such as pornographic imagery and "
                        "toxic language",
                    ),
                    IMAGEN_PAPER,
                )
            ],
            output=documented("imagen_training_set", OVERVIEW_1),
        )
    ],
    datasets=[
        Dataset(name="imagen_training_set", count=documented(860e6, OVERVIEW_1), unit=documented("pairs", OVERVIEW_1)),
        # The super-resolution U-Nets need images at least as large as their outputs.
        Dataset(
            name="imagen_256",
            subset_of=documented("imagen_training_set", OVERVIEW_1),
            where=assumed(Subset(min_short_side_px=256), "the 256 px super-resolution target needs 256 px images"),
            unit=documented("pairs", OVERVIEW_1),
        ),
        Dataset(
            name="imagen_1024",
            subset_of=documented("imagen_training_set", OVERVIEW_1),
            where=assumed(Subset(min_short_side_px=1024), "256 px crops of 1024 px targets need 1024 px images"),
            unit=documented("pairs", OVERVIEW_1),
        ),
    ],
)

ARCH_1 = ArchitectureSpec(
    backbone=Cascade(
        kind=documented("cascade", OVERVIEW_1),
        stages=[
            documented(
                UNetStage(
                    name="base64",
                    resolution=documented(64, EVOLUTION),
                    channels=512,
                    channel_mult=[1, 2, 3, 4],
                    res_blocks=[3, 3, 3, 3],
                    attention_resolutions=[32, 16, 8],
                    cross_attention=True,
                    num_heads=4,
                    head_dim=64,
                    efficient=False,
                    skip_scale=1.0,
                    noise_conditioning_augmentation=False,  # the base has no low-resolution input
                    params_documented=documented(2e9, EVOLUTION),
                ),
                IMAGEN_NEMO_BASE,
            ),
            documented(
                UNetStage(
                    name="sr256",
                    resolution=documented(256, EVOLUTION),
                    input_resolution=documented(64, EVOLUTION),
                    channels=128,
                    channel_mult=[1, 2, 4, 8, 8],
                    res_blocks=[2, 4, 8, 8, 8],
                    # atnn_enabled_at [0, 0, 0, 1, 1]: the two deepest levels, which both run at 16 px in the
                    # Efficient U-Net (every level but the deepest downsamples first).
                    attention_resolutions=[16],
                    cross_attention=True,  # attention_type fused: self- and cross-attention together
                    num_heads=8,  # num_attn_heads; per_head_channels 64 sets the heads per level's width
                    head_dim=64,
                    efficient=documented(True, TECHNIQUES),
                    skip_scale=documented(1 / sqrt(2), TECHNIQUES),
                    noise_conditioning_augmentation=documented(True, TECHNIQUES),
                    params_documented=documented(600e6, EVOLUTION),
                ),
                IMAGEN_NEMO_SR256,
            ),
            documented(
                UNetStage(
                    name="sr1024",
                    resolution=documented(1024, EVOLUTION),
                    input_resolution=documented(256, EVOLUTION),
                    channels=128,
                    channel_mult=[1, 2, 4, 8, 8],
                    res_blocks=[2, 4, 8, 8, 8],
                    attention_resolutions=[],  # attention_type cross: cross-attention only, at the two deepest levels
                    cross_attention=True,
                    num_heads=8,
                    head_dim=64,
                    efficient=documented(True, TECHNIQUES),
                    skip_scale=documented(1 / sqrt(2), TECHNIQUES),
                    noise_conditioning_augmentation=documented(True, TECHNIQUES),
                    params_documented=documented(400e6, EVOLUTION),
                    train_crop=256,
                ),
                IMAGEN_NEMO_SR1024,
            ),
        ],
    ),
    text_encoders=[
        TextEncoder(
            name="t5_xxl",
            model=assumed(T5_XXL, T5_CHECKPOINT),
            role=documented("cross_attention", IMAGEN_PAPER),
            dim=assumed(4096, T5_CHECKPOINT),
            max_tokens=assumed(128, "undisclosed in the survey; web alt-text fits in 128 tokens"),
            params=documented(4.6e9, EVOLUTION),
            frozen=documented(True, OVERVIEW_1),
        )
    ],
    space=documented(PixelSpace(channels=3), OVERVIEW_1),  # cascaded pixel-space U-Net
    params_documented=documented(3e9, OVERVIEW_1),
    extras=documented(
        ["Efficient U-Net: parameters shifted to low-resolution blocks, reversed up/downsampling order"], TECHNIQUES
    ),
)

OBJECTIVE_1 = NoisePrediction(
    kind=documented("noise_prediction", OVERVIEW_1),
    schedule=documented("cosine", IMAGEN_PAPER),
    train_steps=assumed(1000, "the paper trains in continuous time; 1000 discrete DDPM steps stand in"),
    loss_weighting=assumed("none", "plain eps-MSE, the DDPM simple loss"),
    cfg_dropout=documented(CfgDropout(joint_rate=0.1), TRAINING),
)


def cascade_stage(
    name: str, optimizer: Node, dataset: str, side: int, goal: str, side_source: str = EVOLUTION
) -> Stage:
    """One U-Net of the cascade: trained alone, at the batch and step count the survey gives for all three.
    `side` is the training side, stated by `side_source` (the survey's output side, unless trained on crops)."""
    return Stage(
        name=name,
        kind=documented("pretrain", TRAINING),
        model=documented(name, EVOLUTION),
        datasets=assumed([DatasetUse(dataset=dataset)], "each U-Net trains on the pairs large enough for its output"),
        resolutions=documented([square(side)], side_source),
        batch_size=documented(2048, TRAINING),
        steps=documented(2_500_000, TRAINING),  # "2.5M (all 3 stages)"
        optimizer=optimizer,
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=10_000), ADAM_LR),
        ema_decay=documented(0.9999, IMAGEN_PAPER),
        precision=assumed("bf16", "TPU-v4 trains in bfloat16"),
        init_from=assumed(None, SEPARATE_UNET),
        goal=documented(goal, TRAINING),
    )


STAGES_1 = [
    cascade_stage(
        "base64",
        Adafactor(kind=documented("adafactor", TRAINING), lr=assumed(1e-4, ADAM_LR)),
        "imagen_training_set",
        64,
        "Base U-Net 64x64 (2B), on 256 TPU-v4",
    ),
    cascade_stage(
        "sr256",
        Adam(kind=documented("adam", TRAINING), lr=assumed(1e-4, ADAM_LR)),
        "imagen_256",
        256,
        "SR stage 1, 64 -> 256 (600M), on 128 TPU-v4",
    ),
    cascade_stage(
        "sr1024",
        Adam(kind=documented("adam", TRAINING), lr=assumed(1e-4, ADAM_LR)),
        "imagen_1024",
        256,
        "SR stage 2, 256 -> 1024 (400M), on 128 TPU-v4",
        # Trained on 256 px crops of its 1024 px targets, not at the survey's 1024.
        side_source=f"{IMAGEN_NEMO_SR1024} (resize_smallest_side 1024, center_crop_h_w 256, 256)",
    ),
]

IMAGEN_1 = Spec(
    name="imagen-1",
    family=documented("imagen", EVOLUTION),
    modality=documented("image", OVERVIEW_1),
    organisation=documented("Google", survey("§2 Google Imagen")),
    released=documented("2022", EVOLUTION),
    license=documented("proprietary", OVERVIEW_1),  # "Open? No"
    open_weights=documented("no", OVERVIEW_1),
    data=DATA_1,
    architecture=ARCH_1,
    objective=OBJECTIVE_1,
    schedule=ScheduleSpec(stages=STAGES_1),
    inference=InferenceSpec(
        sampler=assumed("ddpm", "the survey names no sampler; ancestral DDPM matches the noise-prediction objective"),
        steps=assumed(256, "undisclosed in the survey; a few hundred ancestral steps per stage"),
        cfg_scale=documented(1.35, TRAINING),  # the base's weight; the SR weights are per stage below
        cfg_scale_per_stage=documented({"base64": 1.35, "sr256": 8.0, "sr1024": 8.0}, TRAINING),
        dynamic_thresholding=documented(DynamicThresholding(percentile=0.995), IMAGEN_PAPER),
        # Swept at inference; objectives.md gives about 0.1 to 0.3.
        noise_augmentation_level=assumed(0.2, "the middle of the 0.1-0.3 range used at sampling"),
        resolution=documented(1024, EVOLUTION),  # the SR U-Nets are the upsamplers: 64 -> 256 -> 1024
    ),
    notes=documented(
        [
            "FID (COCO zero-shot) 7.27. The schema has no evaluation field (schema gap).",
            "Hardware: 256 TPU-v4 for the base, 128 TPU-v4 for each SR stage. The schema holds no hardware per "
            "stage (schema gap); the planner places each stage on the target cluster.",
            "Dynamic thresholding: at each sampling step, s = the p-th percentile of |x0|; if s > 1, clip to "
            "[-s, s] and divide by s. It prevents pixel saturation at high guidance weights and enables much "
            "larger CFG scales than static thresholding (p = 0.995 in the paper).",
            "Noise conditioning augmentation: the SR models are conditioned on noisy low-res inputs (Gaussian noise, "
            "variance-preserving schedule); the level is sampled at random in training, fed to the model, and swept "
            "at inference. Critical against train/test mismatch in cascades.",
            "Efficient U-Net: parameters shifted from high-res to low-res blocks, skip connections scaled by "
            "1/sqrt(2), reversed up/downsampling order: 2-3x faster.",
            "Key insight: scaling the text encoder (T5-XXL) was far more impactful than scaling the U-Net.",
            "The 3B total is the three U-Nets (2B + 600M + 400M); the frozen 4.6B T5-XXL is counted apart. NeMo "
            "names its SR 1024 config 600m; the paper's 400M is the figure stated.",
            "Data: ~860M pairs, the paper's ~460M internal pairs plus ~400M of LAION-400M.",
        ],
        survey("§2 Google Imagen, and the sources named in each note"),
    ),
)

# Imagen 2 ------------------------------------------------------------------------------------------


SECTIONS = ("data", "architecture", "objective", "schedule", "inference")


def _section(path: str) -> str:
    """The top-level field a document path starts in: `data.sources[web].count` -> `data`."""
    return path.split(".")[0].split("[")[0]


def carried_over(spec: Spec, reason: str) -> dict[str, Node]:
    """`spec`'s sections with every documented or likely value re-marked assumed.

    A predecessor's published facts are only assumptions about an undisclosed successor; values that were
    already assumed, undisclosed or defaults keep their status.
    """
    data, table = to_document(spec)
    carried = Provenance(status="assumed", reason=reason)
    table = {
        path: carried if _section(path) in SECTIONS and entry.status in ("documented", "likely") else entry
        for path, entry in table.items()
    }
    restated = from_document(data, table)
    return {section: getattr(restated, section) for section in SECTIONS}


# Google has published only the aesthetic conditioning: every other value is Imagen 1's, now an assumption.
NO_ROW_2 = "the survey's overview has no Imagen 2 row"
IMAGEN_2 = derive(
    IMAGEN_1,
    {
        **carried_over(IMAGEN_1, "Imagen 2 is undisclosed beyond aesthetic conditioning; Imagen 1's value stands"),
        # The overview has no Imagen 2 row: its Imagen 1 citations do not carry over.
        "modality": documented("image", INNOVATION_2),  # the aesthetics model "scores each image"
        "license": assumed("proprietary", f"{NO_ROW_2}; Imagen 1 and 3 are closed ('Open? No')"),
        "open_weights": assumed("no", f"{NO_ROW_2}; Imagen 1 and 3 are closed ('Open? No')"),
        "released": undisclosed("the survey gives no date for Imagen 2"),
        "data.sources[internal].count": undisclosed("Imagen 2's data scale is undisclosed"),
        "data.sources[laion_400m].count": undisclosed("Imagen 2's data scale is undisclosed"),
        "data.datasets[imagen_training_set].count": undisclosed("Imagen 2's data scale is undisclosed"),
        # Scored by a dedicated model, then fed to the network: conditioning, not just filtering.
        "data.pipelines[imagen].ops[aesthetic]": Insert(
            documented(
                Aesthetic(
                    scorer="imagen2-aesthetics-model",
                    scale=assumed(Scale(unit="Imagen 2 aesthetics-model score"), "its output range is undisclosed"),
                    use="condition",
                    note="a dedicated aesthetics model trained on human preferences for lighting, framing, "
                    "exposure, sharpness",
                ),
                INNOVATION_2,
            ),
            after="safety",
        ),
        "data.pipelines[imagen].ops[score_conditioning]": Insert(
            documented(
                ScoreConditioning(
                    scores=["aesthetic"],
                    encoding=assumed("embedding", "undisclosed; embedded like the timestep"),
                ),
                INNOVATION_2,
            ),
            after="aesthetic",
        ),
        "architecture.params_documented": undisclosed("Imagen 2's size is undisclosed"),
        "architecture.backbone.stages[base64].params_documented": undisclosed("Imagen 2's size is undisclosed"),
        "architecture.backbone.stages[sr256].params_documented": undisclosed("Imagen 2's size is undisclosed"),
        "architecture.backbone.stages[sr1024].params_documented": undisclosed("Imagen 2's size is undisclosed"),
        "architecture.extras": documented(["aesthetic-score conditioning input"], INNOVATION_2),
        "notes": documented(
            [
                "Aesthetic score conditioning: a dedicated aesthetics model (trained on human preferences for "
                "lighting, framing, exposure, sharpness) scores each image, and the score conditions training, not "
                "just filtering, giving more weight to human-preferred qualities.",
                "Key insight: Imagen 2's aesthetic score conditioning (not just filtering) was influential.",
                "Everything else about Imagen 2 (architecture, data, objective, schedule, sampling) is undisclosed; "
                "Imagen 1's values stand in as assumptions.",
            ],
            survey("§2 Google Imagen, Key Innovation (Imagen 2) and Key insight"),
        ),
    },
    name="imagen-2",
)

# Imagen 3 ------------------------------------------------------------------------------------------
# Stated in full, not derived: it replaces the backbone, the space, the data pipeline, the captions and
# the objective family of Imagen 2, so a derivation would restate every section anyway.

PATTERN = survey("Common Patterns & Takeaways, Common Training Recipe Pattern")
TRENDS = survey("Common Patterns & Takeaways, Key Trends")
NO_CONFIG_3 = "Google publishes no Imagen 3 config; a 5B cross-attention DiT over a 16-channel 8x latent is assumed"
SCHEDULE_3 = f"Imagen 3's schedule is undisclosed; the survey's common recipe pattern ({PATTERN}) is assumed"
THRESHOLD_3 = "Google's threshold is undisclosed; " + CURATION_TOOLS

DATA_3 = DataSpec(
    sources=[
        Source(
            name="web_licensed",
            modality=documented("image_text", PIPELINE_3),
            count=undisclosed("the survey says 'billions of image-text pairs', no number"),
            unit=documented("pairs", PIPELINE_3),
            origin=documented(["web", "licensed"], PIPELINE_3),
        )
    ],
    pipelines=[
        Pipeline(
            name="imagen",
            sources=documented(["web_licensed"], PIPELINE_3),
            ops=documented(
                [
                    Aesthetic(
                        name="quality",
                        scorer=assumed("laion-aesthetic-v2", "Google's quality model is undisclosed; LAION's instead"),
                        min_score=assumed(4.5, f"{THRESHOLD_3} (4.5-5.0 on LAION's 0-10)"),
                        use="filter",
                        note="Quality Filter",
                    ),
                    Safety(
                        categories=["violence", "nsfw"],
                        scorer=assumed("nsfw-violence-classifier", "Google does not name its classifiers"),
                        max_score=assumed(0.5, THRESHOLD_3),
                    ),
                    AiGenerated(
                        scorer=assumed("ai-generated-detector", "Google names no detector; no open tool exists"),
                        max_score=assumed(0.5, "undisclosed; an even-odds cut on the detector's probability"),
                        note="AI-Generated Content Removal",
                    ),
                    # "Deduplication + Down-weighting": exact copies dropped, near-duplicates kept at a lower weight.
                    ExactDedup(
                        name="dedup",
                        hash=assumed("sha256", f"undisclosed; {CURATION_TOOLS}"),
                        note="Deduplication",
                    ),
                    PerceptualDedup(
                        name="downweight",
                        hash=assumed("phash", "undisclosed; pHash is the common perceptual hash"),
                        max_hamming=assumed(8, "undisclosed; looser than a drop cut: similar images stay, lighter"),
                        action="downweight",
                        downweight=assumed(0.25, "undisclosed; near-duplicates together weigh about one image"),
                        note="Down-weighting",
                    ),
                    CaptionPii(
                        entities=assumed(
                            ["email", "phone", "url", "person_name", "address"], "the survey says only 'PII removal'"
                        ),
                        note="Caption Safety (PII removal)",
                    ),
                    Recaption(
                        name="dual_captioning",
                        model="gemini",
                        styles=assumed(["long"], "Gemini's captioning prompt is undisclosed"),
                        languages=assumed(["en"], "the survey names no language"),
                        captions_per_sample=assumed(1, "one synthetic caption beside the original"),
                        keep_original=True,
                        mix=assumed({"original": 0.5, "synthetic": 0.5}, "undisclosed; both captions equally likely"),
                        note="Dual Captioning: original caption + Gemini synthetic caption",
                    ),
                ],
                PIPELINE_3,
            ),
            output=documented("imagen_training_set", PIPELINE_3),
        )
    ],
    datasets=[
        Dataset(
            name="imagen_training_set",
            count=undisclosed("the survey says 'billions', no number"),
            unit=documented("pairs", PIPELINE_3),
        ),
        Dataset(
            name="imagen_1024",
            subset_of=documented("imagen_training_set", PIPELINE_3),
            where=assumed(Subset(min_short_side_px=1024), "high-resolution training needs 1024 px images"),
            unit=documented("pairs", PIPELINE_3),
        ),
        Dataset(
            name="imagen_aesthetic",
            subset_of=documented("imagen_1024", PIPELINE_3),
            where=assumed(
                Subset(min_score={"quality": 6.0}),
                f"the quality fine-tune of the survey's recipe pattern ({PATTERN}) on the top of the quality scale",
            ),
            unit=documented("pairs", PIPELINE_3),
        ),
    ],
)

ARCH_3 = ArchitectureSpec(
    backbone=assumed(
        DiT(
            hidden_size=3072,
            num_heads=24,
            head_dim=128,
            patch_size=(1, 2, 2),
            in_channels=16,
            out_channels=16,
            qkv_bias=True,
            qk_norm="rmsnorm_per_head",
            positions=Rope(axes=["h", "w"], axes_dims=[64, 64], theta=10_000.0, text="none"),
            depth=32,
            text_dim=4096,
            text_conditioning="cross_attention",  # T5 tokens by cross-attention, as in Imagen 1
        ),
        NO_CONFIG_3,
    ),
    text_encoders=[
        TextEncoder(
            name="t5_xxl",
            model=likely(T5_XXL, OVERVIEW_3),  # "T5-XXL (likely)"
            role=assumed("cross_attention", "as in Imagen 1"),
            dim=assumed(4096, T5_CHECKPOINT),
            max_tokens=assumed(512, "Gemini's synthetic captions are long; T5's usual 512-token context"),
            frozen=assumed(True, "as in Imagen 1"),
        )
    ],
    space=LatentSpace(
        kind=documented("latent", EVOLUTION),  # "Latent Diffusion Transformer"
        vae=assumed("imagen3-autoencoder", NO_CONFIG_3),
        channels=assumed(16, NO_CONFIG_3),
        spatial_compression=assumed(8, NO_CONFIG_3),
        temporal_compression=assumed(1, "an image autoencoder"),
        causal=assumed(False, "an image autoencoder"),
    ),
    params_documented=undisclosed("survey overview: Imagen 3 params 'Undisclosed'"),
)

IMAGEN_3 = Spec(
    name="imagen-3",
    family=documented("imagen", EVOLUTION),
    modality=documented("image", OVERVIEW_3),
    organisation=documented("Google", survey("§2 Google Imagen")),
    released=documented("2024", EVOLUTION),
    license=documented("proprietary", OVERVIEW_3),  # "Open? No"
    open_weights=documented("no", OVERVIEW_3),
    data=DATA_3,
    architecture=ARCH_3,
    objective=assumed(
        FlowMatching(
            timesteps=LogitNormal(mean=0.0, std=1.0),
            shift=ResolutionShift(base_pixels=256 * 256, applies="both"),
            loss_weighting="none",
            cfg_dropout=CfgDropout(joint_rate=0.1),  # Imagen 1's rate
        ),
        f"survey overview: Imagen 3 loss 'Undisclosed'; flow matching is the field's convergence point ({TRENDS})",
    ),
    schedule=ScheduleSpec(
        stages=[
            assumed(
                Stage(
                    name="pretrain",
                    kind="pretrain",
                    datasets=[DatasetUse(dataset="imagen_training_set")],
                    resolutions=[square(256)],
                    batch_size=4096,
                    steps=500_000,
                    optimizer=AdamW(lr=1e-4, weight_decay=0.0),
                    lr_schedule=LrSchedule(kind="constant", warmup_steps=1000),
                    goal="Low-resolution pre-training: large batch, many steps",
                ),
                SCHEDULE_3,
            ),
            assumed(
                Stage(
                    name="progressive_resolution",
                    kind="progressive_resolution",
                    datasets=[DatasetUse(dataset="imagen_1024")],
                    resolutions=[square(512), square(1024)],
                    aspect_ratio_buckets=True,
                    batch_size=1024,
                    steps=100_000,
                    optimizer=AdamW(lr=1e-4, weight_decay=0.0),
                    lr_schedule=LrSchedule(kind="constant", warmup_steps=1000),
                    init_from="pretrain",
                    goal="Progressive resolution up to the 1024 px base output",
                ),
                SCHEDULE_3,
            ),
            assumed(
                Stage(
                    name="quality_finetune",
                    kind="sft",
                    datasets=[DatasetUse(dataset="imagen_aesthetic")],
                    resolutions=[square(1024)],
                    aspect_ratio_buckets=True,
                    batch_size=512,
                    steps=20_000,
                    optimizer=AdamW(lr=1e-5, weight_decay=0.0),
                    lr_schedule=LrSchedule(kind="constant", warmup_steps=500),
                    init_from="progressive_resolution",
                    goal="Quality fine-tuning on a high-quality subset",
                ),
                SCHEDULE_3,
            ),
        ]
    ),
    inference=InferenceSpec(
        sampler=assumed("euler", "undisclosed; the Euler step of the assumed flow-matching objective"),
        steps=assumed(50, "undisclosed; the usual flow-matching step count"),
        cfg_scale=assumed(5.0, "undisclosed; a common CFG weight for T5-conditioned latent models"),
        resolution=assumed(1024, "the base output the upsamplers start from; the survey gives only their factors"),
        upsample_factors=documented([2, 4, 8], EVOLUTION),
    ),
    notes=documented(
        [
            "Architecture evolution: T5-XXL + Gemini synthetic captions -> latent diffusion transformer -> "
            "upsampling 2x / 4x / 8x. The factors are alternatives, not a chain; the upsamplers' networks are "
            "undisclosed and have no place beside a single transformer backbone (schema gap).",
            "Data: billions of image-text pairs (web + licensed).",
            "Imagen 3's removal of AI-generated images from training data is a distinctive curation step.",
            "Key trend: recaptioning with VLMs (Gemini here) is the single highest-impact data processing step.",
            "Parameters, loss and schedule are undisclosed (survey overview).",
        ],
        survey("§2 Google Imagen, and the overview table"),
    ),
)
