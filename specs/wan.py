"""Wan 2.1 text-to-video, 14B and 1.3B (Alibaba): cross-attention DiTs over the 3D causal Wan-VAE.

Flow-matching DiTs whose blocks self-attend over video latents (4x temporal, 8x spatial compression) and
cross-attend to UMT5-XXL, trained with a resolution-progressive curriculum of joint image and video
training on ~1.5B videos and ~10B images. The data go through a 4-step filter (fundamental, visual
quality, motion quality, dedup) and are densely recaptioned in Chinese and English by Qwen2-VL. The
1.3B model states only what differs from the 14B one.

Sources: the survey's §5 and its overview table (the model card: data pipeline flowchart, architecture);
Wan-Video/Wan2.1 (configs, modules, generate.py) for dimensions and sampling defaults. The survey does
not publish the training schedule: its resolutions, batches, steps and optimizer are assumptions.
"""

from compiler.document import REMOVE, derive
from compiler.schema import (
    AdamW,
    Aesthetic,
    ArchitectureSpec,
    Blur,
    CfgDropout,
    ConstantShift,
    DataSpec,
    Dataset,
    DatasetUse,
    DiT,
    DurationFilter,
    FlowMatching,
    InferenceSpec,
    LatentSpace,
    LogitNormal,
    LrSchedule,
    MotionScore,
    MotionTiers,
    OcrTextArea,
    PerceptualDedup,
    Pipeline,
    Recaption,
    ResolutionFilter,
    Rope,
    Safety,
    ScheduleSpec,
    Size,
    Source,
    Sourced,
    Spec,
    Stage,
    Subset,
    TextEncoder,
    VisualQuality,
    Watermark,
    assumed,
    documented,
    undisclosed,
)
from specs.sources import (
    CURATION_TOOLS,
    DIFFUSERS_WAN_VAE,
    WAN_CONFIG_1_3B,
    WAN_CONFIG_14B,
    WAN_GENERATE,
    WAN_SHARED_CONFIG,
    WAN_SIZES,
    WAN_LATENTS_MEAN,
    WAN_LATENTS_STD,
    WAN_VAE,
    survey,
)

OVERVIEW = survey("Overview Comparison, Wan 2.1 row")
PIPELINE = survey("§5 Qwen-Image & Wan, Wan 2.1 Data Pipeline")
ARCHITECTURE = survey("§5 Qwen-Image & Wan, Wan 2.1 Architecture")
WAN_MODEL = "Wan-Video/Wan2.1 wan/modules/model.py"
WAN_LICENSE = "Wan-Video/Wan2.1 LICENSE.txt"

ADAMW = "the survey publishes no optimizer; AdamW at 1e-4 is the common flow-matching DiT choice"
MIX = assumed(0.5, "the image:video ratio is undisclosed")
KEPT_UNDISCLOSED = "the survey gives raw counts only; step 1 alone removes ~50%"
SCHEDULE_UNPUBLISHED = "the survey names the curriculum, not its sizes; the batch shrinks as tokens per sample grow"

# Step 1, fundamental filtering (removes ~50%). Header-only checks go first; the survey lists them last.
DURATION = documented(
    DurationFilter(
        name="s1_duration",
        min_seconds=assumed(5.0, "a training sample is 81 frames at 16 fps, about 5 s"),
        min_fps=assumed(16.0, "Wan samples at 16 fps; lower rates would be upsampled"),
    ),
    PIPELINE,
)
RESOLUTION = documented(
    ResolutionFilter(name="s1_resolution", min_short_side_px=assumed(256, "the lowest curriculum tier is 256p")),
    PIPELINE,
)
OCR = documented(
    OcrTextArea(
        name="s1_ocr",
        scorer=assumed("craft", "the survey says 'OCR text coverage'; CRAFT is the open detector"),
        max_area_ratio=assumed(0.2, CURATION_TOOLS),
        frames=assumed(3, CURATION_TOOLS),
    ),
    PIPELINE,
)
AESTHETIC = documented(
    Aesthetic(
        name="s1_aesthetic",
        scorer="laion-aesthetic-v2",
        min_score=assumed(4.5, "video curation tools cut at 4.5-5.0 on the 0-10 scale; Wan's cut is undisclosed"),
        frames=assumed(3, CURATION_TOOLS),
        use="filter",
    ),
    PIPELINE,
)
NSFW = documented(
    Safety(
        name="s1_nsfw",
        categories=["nsfw"],
        scorer=assumed("nsfw-classifier", "the classifier is not named"),
        max_score=assumed(0.5, CURATION_TOOLS),
        frames=assumed(3, "as the other frame-sampling scorers"),
    ),
    PIPELINE,
)
WATERMARK = documented(
    Watermark(
        name="s1_watermark",
        scorer=assumed("watermark-classifier", "the classifier is not named"),
        max_score=assumed(0.8, CURATION_TOOLS),
        frames=assumed(3, CURATION_TOOLS),
    ),
    PIPELINE,
)
BLUR = documented(
    Blur(name="s1_blur", min_laplacian_var=assumed(100.0, "the common OpenCV variance-of-Laplacian blur cut-off")),
    PIPELINE,
)
# Step 2, visual quality: 100 clusters -> balanced sampling -> manual scoring -> expert assessment model.
VISUAL_QUALITY = documented(
    VisualQuality(
        name="s2_visual_quality",
        scorer="expert-quality-model",
        clusters=100,
        min_score=assumed(0.5, "the expert model's cut is undisclosed; keep what it judges more likely good"),
    ),
    PIPELINE,
)
# Step 3, motion quality: the six tiers need an optical-flow measure first.
MOTION_SCORE = assumed(
    MotionScore(name="s3_motion_score", scorer="farneback", fps=2.0),
    "the tiers need flow magnitudes; Farneback at 2 fps is the open tools' default",
)
MOTION_TIERS = documented(
    MotionTiers(
        name="s3_motion_tiers",
        static_below=assumed(0.5, "Open-Sora's score-to-label cut points; Wan's are undisclosed"),
        medium_below=assumed(4.0, "Open-Sora's score-to-label cut points; Wan's are undisclosed"),
        chaotic_above=assumed(20.0, "Open-Sora's score-to-label cut points; Wan's are undisclosed"),
        keep=assumed(["optimal", "medium", "camera_driven"], "the survey names the tiers, not which are kept"),
    ),
    PIPELINE,
)
DEDUP = documented(
    PerceptualDedup(
        name="s4_dedup",
        hash=assumed("phash", "the survey says 'deduplication' without a method"),
        max_hamming=assumed(4, "near-duplicate cut-off of open curation tools (4 of 64 bits)"),
        action=assumed("drop", "the survey says 'deduplication', not down-weighting"),
    ),
    PIPELINE,
)


def dense_captions(**video: Sourced) -> Sourced:
    """Dense bilingual Qwen2-VL captions; videos also say the frame rate shown to the VLM."""
    return documented(
        Recaption(
            name="dense_captions",
            model=assumed("Qwen/Qwen2-VL-7B-Instruct", "the survey names Qwen2-VL, not its size"),
            styles=["dense"],
            languages=["zh", "en"],
            note="dense captioning with Qwen2-VL, bilingual CN/EN",
            **video,
        ),
        PIPELINE,
    )


VIDEO_CAPTIONS = dense_captions(fps=assumed(2.0, "Qwen2-VL video input at 2 fps, the open tools' default"))
VIDEO_OPS = [DURATION, RESOLUTION, OCR, AESTHETIC, NSFW, WATERMARK, BLUR, VISUAL_QUALITY, MOTION_SCORE, MOTION_TIERS,
             DEDUP, VIDEO_CAPTIONS]
IMAGE_OPS = [RESOLUTION, OCR, AESTHETIC, NSFW, WATERMARK, BLUR, VISUAL_QUALITY, DEDUP, dense_captions()]


def tier(parent: str, short_side: int, unit: str) -> Dataset:
    """A resolution tier of a curated set, for the curriculum stage at that resolution."""
    return Dataset(
        name=f"{parent}_{short_side}p",
        subset_of=documented(parent, ARCHITECTURE),
        where=assumed(Subset(min_short_side_px=short_side), "each curriculum tier trains on data at least that large"),
        unit=documented(unit, OVERVIEW),
    )


DATA = DataSpec(
    sources=[
        Source(name="videos", modality=documented("video", OVERVIEW), count=documented(1.5e9, OVERVIEW),
               unit=documented("videos", OVERVIEW)),
        Source(name="images", modality=documented("image", OVERVIEW), count=documented(10e9, OVERVIEW),
               unit=documented("images", OVERVIEW)),
    ],
    # One flowchart, two pipelines: duration and motion apply to videos only.
    pipelines=[
        Pipeline(name="wan_videos", sources=documented(["videos"], PIPELINE), ops=VIDEO_OPS,
                 output=documented("wan_videos", PIPELINE)),
        Pipeline(name="wan_images", sources=documented(["images"], PIPELINE), ops=IMAGE_OPS,
                 output=documented("wan_images", PIPELINE)),
    ],
    datasets=[
        Dataset(name="wan_videos", count=undisclosed(KEPT_UNDISCLOSED), unit=documented("videos", OVERVIEW)),
        Dataset(name="wan_images", count=undisclosed(KEPT_UNDISCLOSED), unit=documented("images", OVERVIEW)),
        tier("wan_videos", 480, "videos"),
        tier("wan_images", 480, "images"),
        tier("wan_videos", 720, "videos"),
        tier("wan_images", 720, "images"),
    ],
)

ARCH = ArchitectureSpec(
    backbone=documented(
        DiT(
            hidden_size=5120,
            num_heads=40,
            head_dim=128,
            patch_size=(1, 2, 2),
            in_channels=documented(16, WAN_MODEL),
            out_channels=documented(16, WAN_MODEL),
            qkv_bias=documented(True, WAN_MODEL),
            qk_norm="rmsnorm_across_heads",
            norm_eps=1e-6,
            # Head dim 128 split 44 / 42 / 42 over (t, h, w); text is cross-attended, unrotated.
            positions=documented(
                Rope(axes=["t", "h", "w"], axes_dims=[44, 42, 42], theta=10_000.0, text="none"), WAN_MODEL
            ),
            depth=40,
            ffn_dim=13824,
            text_dim=4096,
            freq_dim=256,
            cross_attn_norm=True,
            modulation=documented("adaln_single", WAN_MODEL),  # one time projection + a table per block
            text_conditioning=documented("cross_attention", ARCHITECTURE),
        ),
        WAN_CONFIG_14B,
    ),
    text_encoders=[
        TextEncoder(
            name="umt5_xxl",
            model=documented("google/umt5-xxl", ARCHITECTURE),
            role=documented("cross_attention", ARCHITECTURE),
            dim=documented(4096, WAN_SHARED_CONFIG),
            max_tokens=documented(512, WAN_SHARED_CONFIG),
            frozen=assumed(True, "the released encoder is used as-is; Wan's training code is unpublished"),
        )
    ],
    space=documented(
        LatentSpace(
            vae="Wan-VAE",
            channels=documented(16, WAN_VAE),
            spatial_compression=8,
            temporal_compression=4,
            causal=True,  # the first frame is encoded alone: frame counts are 1 + 4k (81)
            latents_mean=documented(WAN_LATENTS_MEAN, DIFFUSERS_WAN_VAE),
            latents_std=documented(WAN_LATENTS_STD, DIFFUSERS_WAN_VAE),
        ),
        ARCHITECTURE,
    ),
    params_documented=documented(14e9, OVERVIEW),
    extras=documented(["Wan-VAE encodes unlimited-length 1080p video (3D causal)"], ARCHITECTURE),
)

OBJECTIVE = FlowMatching(
    kind=documented("flow_matching", ARCHITECTURE),
    prediction=documented("velocity", ARCHITECTURE),
    timesteps=assumed(
        LogitNormal(mean=0.0, std=1.0), "undisclosed; the survey's trend table calls logit-normal sampling standard"
    ),
    shift=ConstantShift(
        kind=documented("constant", WAN_GENERATE),
        shift=documented(5.0, WAN_GENERATE),
        applies=documented("sampling", WAN_GENERATE),
    ),
    loss_weighting=assumed("none", "rectified flow weights only through its timestep sampler"),
    cfg_dropout=assumed(CfgDropout(joint_rate=0.1), "undisclosed; Imagen's 10%. Sampling uses CFG 5.0"),
)


def joint_stage(
    name: str, size: Size, videos: str, images: str, batch: int, steps: int, init_from: str | None
) -> Stage:
    """One resolution tier of the joint image+video curriculum: 81-frame clips and images in one batch."""
    return Stage(
        name=name,
        kind=documented("joint_image_video", ARCHITECTURE),
        datasets=[
            documented(DatasetUse(dataset=videos, weight=MIX), ARCHITECTURE),
            documented(DatasetUse(dataset=images, weight=MIX), ARCHITECTURE),
        ],
        resolutions=assumed([size], "16:9 tiers up to the released 480p and 720p; sides divisible by 16"),
        aspect_ratio_buckets=assumed(True, "native aspect ratios in buckets of equal area"),
        frames=assumed(81, "the sampling length (Wan generate.py); 1 + 4k for the causal VAE"),
        fps=assumed(16.0, "the sampling frame rate (Wan shared_config.py)"),
        batch_size=assumed(batch, SCHEDULE_UNPUBLISHED),
        steps=assumed(steps, SCHEDULE_UNPUBLISHED),
        optimizer=assumed(AdamW(lr=1e-4, weight_decay=0.0), ADAMW),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=1000), ADAMW),
        goal=documented("Resolution-progressive curriculum with joint image+video training", ARCHITECTURE),
        **({"init_from": documented(init_from, ARCHITECTURE)} if init_from else {}),
    )


WAN21_T2V_14B = Spec(
    name="wan2.1-t2v-14b",
    family=documented("wan", OVERVIEW),
    modality=documented("video", OVERVIEW),
    organisation=documented("Alibaba", survey("§5 Qwen-Image & Wan (Alibaba)")),
    license=documented("Apache 2.0", WAN_LICENSE),
    open_weights=documented("yes", OVERVIEW),
    data=DATA,
    architecture=ARCH,
    objective=OBJECTIVE,
    schedule=ScheduleSpec(
        stages=[
            joint_stage("joint_256p", Size(height=256, width=448), "wan_videos", "wan_images", 1024, 100_000, None),
            joint_stage("joint_480p", Size(height=480, width=832), "wan_videos_480p", "wan_images_480p", 512, 50_000,
                        "joint_256p"),
            joint_stage("joint_720p", Size(height=720, width=1280), "wan_videos_720p", "wan_images_720p", 512, 30_000,
                        "joint_480p"),
        ]
    ),
    inference=InferenceSpec(
        sampler=documented("unipc", WAN_GENERATE),
        steps=documented(50, WAN_GENERATE),
        cfg_scale=documented(5.0, WAN_GENERATE),
        # generate.py's --size default "1280*720" is width*height (WanT2V.generate takes (width, height)).
        resolution=documented(Size(height=720, width=1280), WAN_GENERATE),
        frames=documented(81, WAN_GENERATE),
        fps=documented(16.0, WAN_SHARED_CONFIG),
    ),
    notes=documented(
        [
            "Wan's 4-step filtering (fundamental -> visual quality -> motion quality -> dedup) is one of the most "
            "detailed public descriptions of video data curation; step 1 alone removes ~50% of the raw data. The "
            "schema has no field for a step's expected drop rate (schema gap).",
            "Step 1 checks OCR text coverage, LAION aesthetic score, NSFW, watermarks, blur, duration and "
            "resolution. Step 2 clusters the data into 100 clusters, samples them evenly for manual scoring and "
            "trains an expert assessment model on the scores.",
            "Step 3 sorts clips into 6 motion tiers: optimal, medium, static, camera-driven, low-quality, shaky; "
            "the survey calls this classification uniquely granular.",
            "Captions are dense and bilingual (Chinese/English), written by Qwen2-VL.",
            "The survey places the joint image+video curriculum in the architecture section without tiers; the "
            "256p/480p/720p tiers and their data subsets are assumptions.",
            "Wan-VAE normalises latents per channel (16 means and standard deviations, wan/modules/vae.py; "
            "diffusers AutoencoderKLWan latents_mean/latents_std), stated in space.latents_mean / latents_std.",
            "The sampling shift of 5.0 is the only published one; the training-time shift is undisclosed. At "
            "720x1280, 81 frames are 21 latent frames and 75,600 tokens (Wan generate.py). The default size is "
            "1280 x 720 (width x height).",
            "Counted from the public configs (wan/configs): 14.29B parameters (14B) and 1.42B (1.3B).",
        ],
        survey("§5 Qwen-Image & Wan, and the sources named in each note"),
    ),
)

# The 1.3B model: a narrower, shallower DiT, released for 480p only.
WAN21_T2V_1_3B = derive(
    WAN21_T2V_14B,
    {
        "architecture.backbone.hidden_size": documented(1536, WAN_CONFIG_1_3B),
        "architecture.backbone.num_heads": documented(12, WAN_CONFIG_1_3B),
        "architecture.backbone.depth": documented(30, WAN_CONFIG_1_3B),
        "architecture.backbone.ffn_dim": documented(8960, WAN_CONFIG_1_3B),
        "architecture.params_documented": documented(1.3e9, OVERVIEW),
        # Released for 480p only (Wan-Video/Wan2.1 README.md): no 720p tier. generate.py refuses its own
        # 1280*720 default for t2v-1.3B: SUPPORTED_SIZES allows 480*832 and 832*480 only.
        "inference.resolution": documented(
            Size(height=480, width=832), f"{WAN_SIZES} SUPPORTED_SIZES['t2v-1.3B'], landscape as generate.py's default"
        ),
        "schedule.stages[joint_720p]": REMOVE,
        "data.datasets[wan_videos_720p]": REMOVE,
        "data.datasets[wan_images_720p]": REMOVE,
        "notes": documented(
            [
                *WAN21_T2V_14B.notes,
                "The 1.3B model is released for 480p only (Wan-Video/Wan2.1 README.md), so its curriculum ends at "
                "the 480p tier; generate.py refuses its 1280 x 720 default for t2v-1.3B (wan/configs/__init__.py "
                "SUPPORTED_SIZES: 480*832 and 832*480), so the 1.3B default size is 832 x 480 (width x height).",
            ],
            survey("§5 Qwen-Image & Wan, and the sources named in each note"),
        ),
    },
    name="wan2.1-t2v-1.3b",
)
