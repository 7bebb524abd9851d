"""Sora (OpenAI): a diffusion transformer over spacetime patches of video latents.

A VAE compresses video in time and space; the latent grid is cut into spacetime patches that a transformer
attends over jointly in time and space. Images are one-frame videos, so images and videos train together
at variable resolution, duration and aspect ratio. Every caption is rewritten with the DALL-E 3
recaptioning technique. The recipe runs image pre-training, low-resolution video, progressive resolution,
joint image+video training at native aspect ratios, and safety alignment.

Sources: the survey's §1 and its overview row (architecture, data-pipeline and training-recipe flowcharts,
the evolution table). OpenAI publishes no configuration: parameter count and data scale are undisclosed,
and every dimension, threshold and schedule value below is an assumption with its reason.
"""

from functools import partial

from compiler.schema import (
    AdamW,
    ArchitectureSpec,
    CfgDropout,
    Dataset,
    DatasetUse,
    DataSpec,
    FlowMatching,
    FrameConsistency,
    HumanReview,
    InferenceSpec,
    LatentSpace,
    LogitNormal,
    LrSchedule,
    Pipeline,
    Recaption,
    ResolutionShift,
    Rope,
    Safety,
    Scale,
    ScheduleSpec,
    Size,
    Source,
    SpacetimeDiT,
    Spec,
    Stage,
    Subset,
    TechnicalQuality,
    TextEncoder,
    assumed,
    documented,
    likely,
    undisclosed,
)
from compiler.schema.common import square
from specs.sources import CURATION_TOOLS, SD3_PAPER, WAN_CONFIG_14B, WAN_SHARED_CONFIG, WAN_VAE, survey

OVERVIEW = survey("Overview Comparison, Sora (Turbo/2) row")
ARCHITECTURE = survey("§1 OpenAI Sora, Architecture")
PIPELINE = survey("§1 OpenAI Sora, Data Pipeline")
RECIPE = survey("§1 OpenAI Sora, Training Recipe")
EVOLUTION = survey("§1 OpenAI Sora, Sora Evolution")
TRENDS = survey("Common Patterns & Takeaways, Key Trends")

# No public config: the network is sized like the largest open video DiT the survey covers.
sized = partial(assumed, reason=f"OpenAI publishes no Sora config; sized like Wan 2.1 14B ({WAN_CONFIG_14B})")
# Thresholds of OpenAI's filters are unpublished; open curation tools' defaults stand in.
tool_default = partial(assumed, reason=f"OpenAI's threshold is undisclosed; {CURATION_TOOLS}")
UNPUBLISHED = "OpenAI publishes nothing of the schedule beyond the stage order and goals"
MAX_FRAME = f"how OpenAI scores videos is undisclosed; the worst frame decides, the safety default of {CURATION_TOOLS}"
# A 1080p clip of 53 frames is 112K tokens, about what one 80 GB GPU holds for a 14B DiT without sequence
# parallelism; longer clips train at 720p.
SHORT_CLIPS = "2.2 s at 24 fps (4k + 1 frames): 1080p samples stay within one GPU's memory"
ADAMW = f"the optimizer is undisclosed; AdamW as in the SD3 rectified-flow recipe ({SD3_PAPER})"
# 1080p cropped to multiples of 16 (VAE 8x times patch 2): the latent grid patchifies exactly, and
# 1080p footage is cropped, never upsampled.
HD = Size(height=1072, width=1904)


DATA = DataSpec(
    sources=[
        Source(
            name="shutterstock",
            modality=assumed("video_text", "licensed stock video with descriptions; the survey lists the source only"),
            count=undisclosed("survey overview: Sora data scale 'Undisclosed'"),
            unit=assumed("videos", "stock footage counted per video"),
            origin=documented(["licensed stock"], PIPELINE),
        ),
        Source(
            name="pond5",
            modality=documented("video", PIPELINE),  # "Pond5 stock footage"
            count=undisclosed("survey overview: Sora data scale 'Undisclosed'"),
            unit=documented("videos", PIPELINE),
            origin=documented(["stock footage"], PIPELINE),
        ),
        Source(
            name="public_datasets",
            # Stage 1 pre-trains on images: the public datasets are assumed to be where they come from.
            modality=assumed(
                "image_text", "the survey says the training data is images + videos, not which source gives images"
            ),
            count=undisclosed("survey overview: Sora data scale 'Undisclosed'"),
            unit=assumed("pairs", "public image-text datasets count pairs"),
            origin=documented(["public datasets"], PIPELINE),
        ),
        Source(
            name="commissioned",
            modality=assumed("video", "custom footage made for training; its captions come from recaptioning"),
            count=undisclosed("survey overview: Sora data scale 'Undisclosed'"),
            unit=assumed("videos", "commissioned footage counted per video"),
            origin=documented(["custom/commissioned"], PIPELINE),
        ),
    ],
    pipelines=[
        Pipeline(
            name="sora",
            sources=documented(["shutterstock", "pond5", "public_datasets", "commissioned"], PIPELINE),
            ops=documented(
                [
                    # Pre-training filters, in the flowchart's order.
                    Safety(
                        name="csam",
                        categories=["csam"],
                        scorer=assumed("csam-classifier", "OpenAI does not name its CSAM classifier"),
                        max_score=tool_default(0.5),
                        frames=assumed(8, "frames sampled per video; one flagged frame drops the clip"),
                        reduce=assumed("max", MAX_FRAME),
                    ),
                    Safety(
                        name="explicit_violent",
                        categories=["nsfw", "violence"],
                        scorer=assumed("nsfw-violence-classifier", "OpenAI does not name its classifier"),
                        max_score=tool_default(0.5),
                        frames=assumed(8, "frames sampled per video; one flagged frame drops the clip"),
                        reduce=assumed("max", MAX_FRAME),
                    ),
                    # "Quality/consistency checks" name no metric. DOVER and LPIPS are the open ones, but genspec
                    # has not ported DOVER (compiler/schema/support.py): a CLIP technical regressor scores quality.
                    TechnicalQuality(
                        name="quality",
                        scorer=assumed("clip-technical-regressor", "the survey's quality check names no metric; "
                                       "DOVER, the open one, is not ported to genspec"),
                        scale=assumed(Scale(low=0, high=1, unit="technical quality rating regressed on CLIP features"),
                                      "the ratings the regression head is trained on, scaled to 0-1"),
                        min_score=tool_default(0.5),
                        note="Quality/consistency checks",
                    ),
                    FrameConsistency(
                        name="consistency",
                        scorer=assumed("lpips", "the survey's consistency check names no metric; LPIPS is open"),
                        min_score=tool_default(0.001),
                        max_score=tool_default(0.3),
                        note="Quality/consistency checks",
                    ),
                    HumanReview(
                        name="human_review",
                        score_of="explicit_violent",
                        band=assumed((0.3, 0.5), "the survey says only 'ambiguous'; the band below the safety cut"),
                        note="Human review (ambiguous)",
                    ),
                    Recaption(
                        name="recaption",
                        model="dall-e-3-recaptioner",
                        styles=["dense"],  # "highly descriptive captions for all data"
                        languages=assumed(["en"], "the survey names no language"),
                        captions_per_sample=assumed(1, "one descriptive caption per sample"),
                        # The technique replaces weak alt-text with rich descriptions.
                        keep_original=documented(False, survey("§1 OpenAI Sora, Key insight")),
                        fps=assumed(2.0, f"frames shown to the captioner; {CURATION_TOOLS}"),
                        max_new_tokens=assumed(512, f"room for a highly descriptive caption; {CURATION_TOOLS}"),
                        note="Recaptioning (DALL-E 3 technique): highly descriptive captions for all data",
                    ),
                ],
                PIPELINE,
            ),
            output=documented("sora_training_set", PIPELINE),
        )
    ],
    datasets=[
        Dataset(
            name="sora_training_set",
            count=undisclosed("survey overview: Sora data scale 'Undisclosed'"),
            unit=documented("pairs", PIPELINE),  # every image and video carries a caption after recaptioning
        ),
        Dataset(
            name="sora_images",
            subset_of=documented("sora_training_set", PIPELINE),
            where=documented(Subset(modality="image"), RECIPE),  # stage 1: image pre-training
            unit=documented("pairs", PIPELINE),
        ),
        Dataset(
            name="sora_videos",
            subset_of=documented("sora_training_set", PIPELINE),
            where=documented(Subset(modality="video"), RECIPE),
            unit=documented("pairs", PIPELINE),
        ),
        Dataset(
            name="sora_videos_hd",
            subset_of=documented("sora_videos", RECIPE),
            where=assumed(Subset(min_short_side_px=1080), "the last resolution step reaches Sora Turbo's 1080p"),
            unit=documented("pairs", PIPELINE),
        ),
    ],
)

ARCH = ArchitectureSpec(
    backbone=SpacetimeDiT(
        kind=documented("spacetime_dit", ARCHITECTURE),
        hidden_size=sized(5120),
        num_heads=sized(40),
        head_dim=sized(128),
        patch_size=sized((1, 2, 2)),
        in_channels=sized(16),
        out_channels=sized(16),
        qkv_bias=sized(True),
        qk_norm=sized("rmsnorm_across_heads"),
        # Self-attention across both time and space, factorised rotary positions over (t, h, w).
        positions=assumed(
            Rope(axes=["t", "h", "w"], axes_dims=[44, 42, 42], theta=10_000.0, text="none"),
            f"undisclosed; 3D RoPE split as in Wan 2.1 ({WAN_CONFIG_14B}), the survey's trend for video DiTs",
        ),
        depth=sized(40),
        ffn_dim=sized(13_824),
        text_dim=sized(4096),
        text_conditioning=sized("cross_attention"),
    ),
    text_encoders=[
        assumed(
            TextEncoder(name="umt5_xxl", model="google/umt5-xxl", role="cross_attention", dim=4096, max_tokens=512),
            "the survey's text-encoder column names only the DALL-E 3 recaptioner; the conditioning encoder is "
            f"undisclosed, so Wan 2.1's UMT5-XXL ({WAN_SHARED_CONFIG}) stands in",
        )
    ],
    space=LatentSpace(
        kind=documented("latent", ARCHITECTURE),  # "a VAE compresses raw video temporally and spatially"
        vae=assumed("sora-video-vae", "OpenAI's video VAE is unpublished"),
        channels=assumed(16, f"undisclosed; Wan-VAE's 16 channels ({WAN_VAE})"),
        spatial_compression=assumed(8, f"undisclosed; Wan-VAE's 8x ({WAN_VAE})"),
        temporal_compression=assumed(4, f"undisclosed; Wan-VAE's 4x ({WAN_VAE})"),
        causal=assumed(True, "images are one-frame videos: a causal VAE encodes the first frame alone"),
    ),
    params_documented=undisclosed("survey overview: Sora params 'Undisclosed'"),
    extras=documented(["images trained as single-frame videos"], ARCHITECTURE),
)

OBJECTIVE = FlowMatching(
    kind=likely("flow_matching", OVERVIEW),  # "Diffusion (likely flow matching)"
    prediction=likely("velocity", OVERVIEW),
    timesteps=assumed(LogitNormal(mean=0.0, std=1.0), f"undisclosed; the SD3 default ({SD3_PAPER})"),
    # Progressive resolution needs more noise at more pixels: the survey's rule a = sqrt(m / n), n the
    # 256^2 of the first stages.
    shift=assumed(ResolutionShift(base_pixels=256 * 256, applies="both"), f"undisclosed; the survey's rule ({TRENDS})"),
    loss_weighting=assumed("none", "undisclosed; logit-normal sampling carries the weighting, as in SD3"),
    cfg_dropout=assumed(CfgDropout(joint_rate=0.1), "undisclosed; Imagen's 10%, the documented figure closest to hand"),
)

STAGES = [
    Stage(
        name="image_pretrain",
        kind=documented("pretrain", RECIPE),
        datasets=documented([DatasetUse(dataset="sora_images")], RECIPE),
        resolutions=assumed([square(256)], "low-resolution first, as every recipe the survey covers"),
        batch_size=assumed(4096, UNPUBLISHED),
        steps=assumed(300_000, UNPUBLISHED),
        optimizer=assumed(AdamW(lr=1e-4, weight_decay=0.0), ADAMW),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=1000), ADAMW),
        goal=documented("Stage 1: Image Pretraining. Spatial understanding", RECIPE),
    ),
    Stage(
        name="lowres_video",
        kind=documented("pretrain", RECIPE),
        datasets=documented([DatasetUse(dataset="sora_videos")], RECIPE),
        resolutions=assumed([square(256)], "the image stage's size, now with time"),
        frames=assumed(65, "2.7 s at 24 fps; 4k + 1 frames for the causal VAE"),
        fps=assumed(24.0, "film rate; Sora's training frame rate is undisclosed"),
        batch_size=assumed(1024, UNPUBLISHED),
        steps=assumed(100_000, UNPUBLISHED),
        optimizer=assumed(AdamW(lr=1e-4, weight_decay=0.0), ADAMW),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=1000), ADAMW),
        init_from=documented("image_pretrain", RECIPE),
        goal=documented("Stage 2: Low-Res Video. Temporal dynamics", RECIPE),
    ),
    Stage(
        name="progressive_resolution",
        kind=documented("progressive_resolution", RECIPE),
        datasets=documented([DatasetUse(dataset="sora_videos_hd")], RECIPE),
        resolutions=assumed(
            [Size(height=480, width=848), Size(height=720, width=1280), HD],
            "480p, 720p, then Sora Turbo's 1080p (cropped to 1072x1904); sides are multiples of 16",
        ),
        frames=assumed(53, SHORT_CLIPS),
        fps=assumed(24.0, "film rate; Sora's training frame rate is undisclosed"),
        batch_size=assumed(512, UNPUBLISHED),
        steps=assumed(50_000, UNPUBLISHED),
        optimizer=assumed(AdamW(lr=5e-5, weight_decay=0.0), ADAMW),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=500), ADAMW),
        init_from=documented("lowres_video", RECIPE),
        goal=documented("Stage 3: Progressive Resolution Scaling", RECIPE),
    ),
    Stage(
        name="joint_image_video",
        kind=documented("joint_image_video", RECIPE),
        datasets=documented(
            [
                DatasetUse(dataset="sora_images", weight=assumed(0.2, "undisclosed; video-heavy mix")),
                DatasetUse(dataset="sora_videos_hd", weight=assumed(0.8, "undisclosed; video-heavy mix")),
            ],
            RECIPE,
        ),
        resolutions=assumed([Size(height=720, width=1280)], "720p-area buckets, where 5 s clips fit one GPU"),
        aspect_ratio_buckets=documented(True, RECIPE),  # "native aspect ratios"
        frames=assumed(121, "5 s at 24 fps; 4k + 1 frames for the causal VAE"),
        fps=assumed(24.0, "film rate; Sora's training frame rate is undisclosed"),
        batch_size=assumed(512, UNPUBLISHED),
        steps=assumed(50_000, UNPUBLISHED),
        optimizer=assumed(AdamW(lr=5e-5, weight_decay=0.0), ADAMW),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=500), ADAMW),
        init_from=documented("progressive_resolution", RECIPE),
        goal=documented("Stage 4: Joint Image+Video. Native aspect ratios", RECIPE),
    ),
    Stage(
        name="safety_alignment",
        kind=documented("safety_alignment", RECIPE),
        datasets=assumed([DatasetUse(dataset="sora_training_set")], "the safety fine-tuning data is undisclosed"),
        resolutions=assumed([Size(height=720, width=1280)], "a short fine-tune at 720p"),
        aspect_ratio_buckets=assumed(True, "as stage 4"),
        frames=assumed(121, "5 s at 24 fps; 4k + 1 frames for the causal VAE"),
        fps=assumed(24.0, "film rate; Sora's training frame rate is undisclosed"),
        batch_size=assumed(512, UNPUBLISHED),
        steps=assumed(5_000, UNPUBLISHED),
        optimizer=assumed(AdamW(lr=1e-5, weight_decay=0.0), "a fine-tune of a converged model moves slowly"),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=100), "short warm-up for a fine-tune"),
        init_from=documented("joint_image_video", RECIPE),
        goal=documented("Stage 5: Safety Alignment. Classifiers + fine-tuning", RECIPE),
    ),
]

SORA = Spec(
    name="sora",
    family=documented("sora", EVOLUTION),
    modality=documented("video", OVERVIEW),
    organisation=documented("OpenAI", survey("§1 OpenAI Sora")),
    released=documented("2024-12", EVOLUTION),  # Sora Turbo, whose 1080p / 20 s the sampling defaults state
    license=documented("proprietary", OVERVIEW),  # "Open? No"
    open_weights=documented("no", OVERVIEW),
    data=DATA,
    architecture=ARCH,
    objective=OBJECTIVE,
    schedule=ScheduleSpec(stages=STAGES),
    inference=InferenceSpec(
        sampler=assumed("euler", "undisclosed; the Euler step of flow matching"),
        steps=assumed(50, "undisclosed; the usual flow-matching step count"),
        cfg_scale=assumed(7.0, "undisclosed; a common CFG weight for text-to-video"),
        # Sora Turbo's 1080p (1920 x 1080), sampled at the next multiple of 16 rows and cropped.
        resolution=assumed(
            Size(height=1088, width=1920),
            f"Sora Turbo's 1080p ({EVOLUTION}) is 1920 x 1080; sampled at 1088 rows, the next multiple of the "
            "assumed 16 px latent patch, then cropped to 1080",
        ),
        fps=assumed(24.0, "undisclosed; film rate"),
        max_seconds=documented(20.0, EVOLUTION),
    ),
    notes=documented(
        [
            "Key insight: quality emerges from scale. 3D consistency, object permanence and basic physics "
            "simulation appear without explicit inductive biases.",
            "The DALL-E 3 recaptioning technique (replacing weak alt-text with rich descriptions) is critical for "
            "prompt-following fidelity. The survey's overview lists it in the text-encoder column; the encoder "
            "that conditions the network is undisclosed.",
            "Training data: images + videos at variable resolution, duration and aspect ratio.",
            "Safety alignment pairs classifiers with fine-tuning; the classifiers are not modelled as a stage "
            "(schema gap: no inference-time safety classifiers).",
            "Sora Preview (Feb 2024): up to 60 s, text-to-video only, no audio.",
            "Sora Turbo (Dec 2024): 1080p, 20 s, T2V / I2V / V2V, storyboard tool. Image- and video-conditioned "
            "generation and the storyboard have no schema fields (schema gap).",
            "Sora 2 (2025): native audio, multi-shot consistency (LCT), improved physics. Audio has no schema "
            "field (schema gap).",
            "Parameter count and data scale are undisclosed (survey overview).",
        ],
        survey("§1 OpenAI Sora and the overview table"),
    ),
)
