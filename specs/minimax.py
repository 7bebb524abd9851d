"""Allegro and Hailuo 02: the video models of the survey's MiniMax / Hailuo section.

Allegro is an open 2.8B cross-attention DiT (PixArt-style adaLN-single, 3D RoPE) over a 175M VAE that
compresses video 4x in time and 8x in space, conditioned on T5 and trained with a DDPM noise-prediction
objective. Its seven-step curation turns 412M raw images and a video corpus into 107M images, 48M clips
at 360p, 18M at 720p and 2M high-quality clips; training runs text-to-image, then text-to-video at 360p
and 720p, then a fine-tune on the high-quality clips. It samples 88 frames at 720x1280 and 15 fps.
Hailuo 02 is a closed DiT with Noise-aware Compute Redistribution (NCR), 3x the parameters and 4x the
data of Hailuo 01, native 1080p up to 10 s.

Sources: the survey's §6 and its overview rows; rhymes-ai/Allegro (README, train.py) and diffusers'
Allegro transformer and pipeline for Allegro's configuration. The survey files Allegro under MiniMax and
calls its parameter count undisclosed and its loss "diffusion"; the public release gives 2.8B (DiT) and
175M (VAE) and a DDPM objective, the values stated here. Hailuo 02 has no public configuration: its
network, data and schedule are assumptions with reasons.
"""

from functools import partial

from compiler.schema import (
    AdamW,
    Aesthetic,
    ArchitectureSpec,
    CfgDropout,
    ClipSimilarity,
    Dataset,
    DatasetUse,
    DataSpec,
    DiT,
    DurationFilter,
    FlowMatching,
    FrameConsistency,
    InferenceSpec,
    LatentSpace,
    LogitNormal,
    LrSchedule,
    MotionScore,
    NoiseAwareCompute,
    NoisePrediction,
    OcrTextArea,
    Pipeline,
    PreferenceLoss,
    Recaption,
    ResolutionFilter,
    Range,
    ResolutionShift,
    Rope,
    Safety,
    Scale,
    SceneSplit,
    ScheduleSpec,
    SemanticDedup,
    Size,
    Source,
    Spec,
    Stage,
    Subset,
    TechnicalQuality,
    TextEncoder,
    Trim,
    Watermark,
    assumed,
    documented,
    undisclosed,
)
from specs.sources import (
    ALLEGRO_README,
    CURATION_TOOLS,
    DIFFUSERS_ALLEGRO,
    DIFFUSERS_ALLEGRO_VAE,
    SD3_PAPER,
    WAN_CONFIG_14B,
    WAN_SHARED_CONFIG,
    WAN_VAE,
    survey,
)

OVERVIEW_ALLEGRO = survey("Overview Comparison, MiniMax Allegro row")
PIPELINE = survey("§6 MiniMax / Hailuo (Allegro), Allegro Data Pipeline")
RECIPE = survey("§6 MiniMax / Hailuo (Allegro), Training Recipe (Allegro)")
ALLEGRO_TRAIN = "rhymes-ai/Allegro train.py (argparse defaults of the released training script)"
# The text-to-video script the README runs (EulerAncestralDiscreteScheduler, 88 frames at 720 x 1280).
ALLEGRO_INFERENCE = "rhymes-ai/Allegro single_inference.py"
# AllegroTransformer3DModel's defaults, the released transformer's sizes (README: DiT 2.8B).
ALLEGRO_DIT = f"{DIFFUSERS_ALLEGRO} (AllegroTransformer3DModel defaults)"
ALLEGRO_VAE = f"{DIFFUSERS_ALLEGRO_VAE} (AutoencoderKLAllegro defaults)"

threshold = partial(assumed, reason=f"the survey names the filter, not its threshold; {CURATION_TOOLS}")
UNPUBLISHED = "Allegro's batch and step counts per stage are unpublished; sized for a 2.8B video DiT"
VIDEO_720P = Size(height=720, width=1280)
# 360p cropped to a multiple of 16 (VAE 8x times patch 2): 352 of the clips' >= 360 rows.
VIDEO_360P = Size(height=352, width=640)

# Allegro -------------------------------------------------------------------------------------------

ALLEGRO_DATA = DataSpec(
    sources=[
        Source(
            name="raw_images",
            modality=documented("image", PIPELINE),
            count=documented(412e6, PIPELINE),
            unit=documented("images", PIPELINE),
        ),
        Source(
            name="video_corpus",
            modality=documented("video", PIPELINE),
            count=undisclosed("the survey says 'video corpus', no count"),
            unit=documented("videos", PIPELINE),
        ),
    ],
    pipelines=[
        Pipeline(
            name="allegro",
            sources=documented(["raw_images", "video_corpus"], PIPELINE),
            # One pipeline, as the flowchart draws it: the ops that need time (duration, scenes, trim,
            # consistency, motion) pass images through.
            ops=documented(
                [
                    # 1. Duration / resolution: >= 360p, >= 2 s, >= 23 fps.
                    ResolutionFilter(min_short_side_px=360),
                    DurationFilter(min_seconds=2.0, min_fps=23.0),
                    # 2. Scene segmentation into single-scene clips, first and last 10 frames trimmed.
                    SceneSplit(
                        detector=assumed("content", f"the survey names no detector; {CURATION_TOOLS}"),
                        threshold=threshold(27.0),
                        min_scene_frames=threshold(15),
                    ),
                    Trim(head=10, tail=10, unit="frames"),
                    # 3. Low-level metrics: DOVER (brightness / clarity), LPIPS (consistency), UniMatch (motion).
                    # genspec has not ported DOVER or UniMatch (compiler/schema/support.py says why; the
                    # compiler refuses them at full scale): a CLIP technical regressor and RAFT score instead.
                    TechnicalQuality(
                        scorer=assumed("clip-technical-regressor", "the card's DOVER is not ported to genspec; a "
                                       "regression head on CLIP features trained on the lab's own ratings"),
                        scale=assumed(Scale(low=0, high=1, unit="technical quality rating regressed on CLIP features"),
                                      "the ratings the regression head is trained on, scaled to 0-1"),
                        min_score=threshold(0.5),
                    ),
                    FrameConsistency(scorer="lpips", min_score=threshold(0.001), max_score=threshold(0.3)),
                    MotionScore(
                        scorer=assumed("raft", "the card's UniMatch is not ported to genspec; torchvision's RAFT "
                                       "measures the same optical flow in pixels per frame"),
                        fps=threshold(2.0),
                        min_score=threshold(0.25),
                        note="the fine-tune keeps moderate motion; the schema's subsets select on minimum scores only",
                    ),
                    # 4. Aesthetics: the LAION aesthetics predictor.
                    Aesthetic(
                        scorer="laion-aesthetic-v2",
                        min_score=threshold(4.5),
                        frames=assumed(3, "frames scored per clip; undisclosed"),
                        reduce=assumed("min", "a clip is as good as its worst sampled frame"),
                        use="filter",
                    ),
                    # 5. Artifact removal: CRAFT text detection, watermark detection.
                    OcrTextArea(scorer="craft", max_area_ratio=threshold(0.2), frames=threshold(3)),
                    Watermark(
                        scorer=assumed("watermark-classifier", "the survey names no watermark detector"),
                        max_score=threshold(0.8),
                        frames=threshold(3),
                    ),
                    # 6. Coarse captioning.
                    Recaption(
                        name="coarse_captioning",
                        model=assumed("vlm-captioner", "the survey names no captioner"),
                        styles=["coarse"],
                        languages=assumed(["en"], "T5 is an English encoder"),
                        captions_per_sample=assumed(1, "one coarse caption, checked by CLIP next"),
                        keep_original=assumed(False, "images and clips arrive without usable text"),
                        fps=assumed(2.0, f"frames shown to the captioner; {CURATION_TOOLS}"),
                    ),
                    # 7. CLIP similarity between the clip and its caption.
                    ClipSimilarity(
                        scorer=assumed("clip-vit-b32", f"the survey names no CLIP model; {CURATION_TOOLS}"),
                        min_score=threshold(0.1),
                    ),
                ],
                PIPELINE,
            ),
            output=documented("allegro_training_set", PIPELINE),
        )
    ],
    datasets=[
        Dataset(name="allegro_training_set", unit=documented("pairs", PIPELINE)),
        Dataset(
            name="allegro_images",
            subset_of=documented("allegro_training_set", PIPELINE),
            where=documented(Subset(modality="image"), PIPELINE),
            count=documented(107e6, PIPELINE),
            unit=documented("images", PIPELINE),
        ),
        Dataset(
            name="allegro_video_360p",
            subset_of=documented("allegro_training_set", PIPELINE),
            where=documented(Subset(modality="video", min_short_side_px=360), PIPELINE),
            count=documented(48e6, PIPELINE),
            unit=documented("clips", PIPELINE),
        ),
        Dataset(
            name="allegro_video_720p",
            subset_of=documented("allegro_training_set", PIPELINE),
            where=documented(Subset(modality="video", min_short_side_px=720), PIPELINE),
            count=documented(18e6, PIPELINE),
            unit=documented("clips", PIPELINE),
        ),
        Dataset(
            name="allegro_video_hq",
            subset_of=documented("allegro_video_720p", PIPELINE),
            where=Subset(
                min_seconds=documented(6.0, RECIPE),
                max_seconds=documented(16.0, RECIPE),
                min_score=assumed({"aesthetic": 5.5}, "'high-quality' is not quantified; a stricter aesthetic cut"),
            ),
            count=documented(2e6, PIPELINE),
            unit=documented("clips", PIPELINE),
        ),
    ],
)

ALLEGRO_ARCH = ArchitectureSpec(
    backbone=DiT(
        kind=documented("dit", OVERVIEW_ALLEGRO),
        hidden_size=documented(2304, ALLEGRO_DIT),  # 24 heads x 96
        num_heads=documented(24, ALLEGRO_DIT),
        head_dim=documented(96, ALLEGRO_DIT),
        patch_size=documented((1, 2, 2), ALLEGRO_DIT),  # 1 in time, 2 in space
        in_channels=documented(4, ALLEGRO_DIT),
        out_channels=documented(4, DIFFUSERS_ALLEGRO),
        mlp_ratio=documented(4.0, DIFFUSERS_ALLEGRO),  # FeedForward(dim), GELU-tanh
        qkv_bias=documented(True, DIFFUSERS_ALLEGRO),  # attention_bias
        qk_norm=documented("none", DIFFUSERS_ALLEGRO),
        norm_eps=documented(1e-6, DIFFUSERS_ALLEGRO),
        # 3D RoPE, head dim split evenly over (t, h, w) (get_3d_rotary_pos_embed_allegro).
        positions=documented(
            Rope(axes=["t", "h", "w"], axes_dims=[32, 32, 32], theta=10_000.0, text="none"), DIFFUSERS_ALLEGRO
        ),
        depth=documented(32, ALLEGRO_DIT),
        text_dim=documented(4096, ALLEGRO_DIT),
        cross_attn_norm=documented(False, DIFFUSERS_ALLEGRO),  # attn2 reads the residual stream unnormalised
        modulation=documented("adaln_single", ALLEGRO_DIT),
        text_conditioning=documented("cross_attention", ALLEGRO_DIT),
    ),
    text_encoders=[
        TextEncoder(
            name="t5_xxl",
            model=assumed("google/t5-v1_1-xxl", "train.py loads a T5EncoderModel by path; the 4096-wide T5 v1.1 XXL"),
            role=documented("cross_attention", ALLEGRO_DIT),  # attn2 attends to the caption tokens
            dim=documented(4096, ALLEGRO_DIT),  # caption_channels
            max_tokens=documented(512, ALLEGRO_TRAIN),  # model_max_length
            frozen=documented(True, ALLEGRO_TRAIN),
        )
    ],
    space=LatentSpace(
        vae=documented(
            "rhymes-ai/Allegro vae (AllegroAutoencoderKL3D)", "rhymes-ai/Allegro allegro/models/vae/vae_allegro.py"
        ),
        channels=documented(4, ALLEGRO_VAE),  # latent_channels
        spatial_compression=documented(8, ALLEGRO_VAE),  # four levels, three halvings
        temporal_compression=documented(4, ALLEGRO_VAE),  # temporal_downsample_blocks (True, True, False, False)
        # 88 frames = 22 x 4 latent frames (the transformer's sample_frames 22), no lone first frame.
        causal=documented(False, f"{ALLEGRO_VAE}; {ALLEGRO_DIT}"),
        params=documented(175e6, ALLEGRO_README),
    ),
    params_documented=documented(2.8e9, ALLEGRO_README),  # the DiT; the survey's overview says "Undisclosed"
)


def allegro_stage(name: str, dataset: str, size: Size, batch: int, steps: int, goal: str, **fields: object) -> Stage:
    """One Allegro stage: the released training script's optimizer, with sizes as assumptions."""
    return Stage(
        name=name,
        kind=documented("pretrain", RECIPE),
        datasets=documented([DatasetUse(dataset=dataset)], RECIPE),
        resolutions=assumed([size], "sides are multiples of 16 (VAE 8x times patch 2)"),
        batch_size=assumed(batch, UNPUBLISHED),
        steps=assumed(steps, UNPUBLISHED),
        optimizer=documented(AdamW(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), ALLEGRO_TRAIN),
        lr_schedule=documented(LrSchedule(kind="constant", warmup_steps=0), ALLEGRO_TRAIN),
        grad_clip=documented(1.0, ALLEGRO_TRAIN),
        precision=documented("bf16", ALLEGRO_TRAIN),
        goal=documented(goal, RECIPE),
        **fields,
    )


# The survey's stage 2 trains 48M clips at 360p and 18M at 720p; a stage holds one resolution per
# dataset only through its order, so it is stated as two stages, 360p first.
ALLEGRO_STAGES = [
    allegro_stage("t2i_pretrain", "allegro_images", VIDEO_360P, 1024, 200_000,
                  "Stage 1: T2I Pre-training, 107M image-text pairs. Visual fundamentals"),
    allegro_stage("t2v_pretrain_360p", "allegro_video_360p", VIDEO_360P, 256, 100_000,
                  "Stage 2: T2V Pre-training, 48M clips at 360p. Temporal consistency",
                  frames=assumed(88, "the released clip length (88 = 22 x 4)"), fps=assumed(15.0, "the released rate"),
                  init_from=documented("t2i_pretrain", RECIPE)),
    allegro_stage("t2v_pretrain_720p", "allegro_video_720p", VIDEO_720P, 128, 50_000,
                  "Stage 2: T2V Pre-training, 18M clips at 720p. Temporal consistency",
                  frames=documented(88, ALLEGRO_TRAIN), fps=documented(15.0, ALLEGRO_README),
                  init_from=documented("t2v_pretrain_360p", RECIPE)),
    allegro_stage("t2v_finetune", "allegro_video_hq", VIDEO_720P, 64, 20_000,
                  "Stage 3: T2V Fine-tuning, 2M high-quality clips, 6-16 s medium-to-long, moderate motion",
                  frames=documented(88, ALLEGRO_TRAIN), fps=documented(15.0, ALLEGRO_README),
                  init_from=documented("t2v_pretrain_720p", RECIPE)),
]

ALLEGRO = Spec(
    name="allegro",
    family=documented("allegro", ALLEGRO_README),
    modality=documented("video", OVERVIEW_ALLEGRO),
    organisation=documented("Rhymes AI", ALLEGRO_README),  # the survey files it under MiniMax
    released=documented("2024-10", ALLEGRO_README),  # arXiv:2410.15458; merged into diffusers 2024-10-29
    license=documented("Apache 2.0", ALLEGRO_README),
    open_weights=documented("yes", OVERVIEW_ALLEGRO),
    data=ALLEGRO_DATA,
    architecture=ALLEGRO_ARCH,
    objective=NoisePrediction(
        kind=documented("noise_prediction", ALLEGRO_TRAIN),  # DDPMScheduler, epsilon target
        schedule=documented("linear", ALLEGRO_TRAIN),  # DDPMScheduler() defaults
        train_steps=documented(1000, ALLEGRO_TRAIN),
        loss_weighting=documented("min_snr", ALLEGRO_TRAIN),  # snr_gamma 5.0
        cfg_dropout=documented(CfgDropout(joint_rate=0.1), ALLEGRO_TRAIN),  # --cfg 0.1
    ),
    schedule=ScheduleSpec(stages=ALLEGRO_STAGES),
    inference=InferenceSpec(
        sampler=documented("euler", ALLEGRO_INFERENCE),  # EulerAncestralDiscreteScheduler
        steps=documented(100, ALLEGRO_INFERENCE),  # the README's command: --num_sampling_steps 100
        cfg_scale=documented(7.5, ALLEGRO_INFERENCE),  # --guidance_scale 7.5
        resolution=documented(Size(height=720, width=1280), ALLEGRO_README),
        frames=documented(88, ALLEGRO_README),
        fps=documented(15.0, ALLEGRO_README),
        max_seconds=documented(6.0, ALLEGRO_README),
        latency_seconds=documented(1200.0, ALLEGRO_README),  # 20 min on one H100 (3 min on 8)
    ),
    notes=documented(
        [
            "Corrections to the survey: Allegro is released by Rhymes AI (rhymes-ai/Allegro), its DiT has 2.8B "
            "parameters and its VAE 175M, it trains a DDPM noise-prediction objective, and its text encoder is T5 "
            "(4096 wide, by cross-attention). The survey's overview says params 'Undisclosed', loss 'Diffusion'.",
            "Data: 412M raw images + a video corpus -> 107M images, 48M clips at 360p, 18M at 720p, 2M high-quality "
            "fine-tuning clips (the overview's 107M img + 66M vid). Allegro's 7-step video filtering pipeline is one "
            "of the most detailed publicly available.",
            "The 360p and 720p clip sets are disjoint in the survey's counts; the schema's subsets bound the short "
            "side from below only, so the 360p subset also admits 720p clips (schema gap).",
            "Stage 3 keeps moderate motion; subsets cannot cap a score from above (schema gap).",
            "Training script (rhymes-ai/Allegro train.py): min-SNR loss weighting with gamma 5.0 and noise offset "
            "0.02 (the schema has fields for neither value: schema gap), optional EMA 0.999.",
            "RoPE positions are divided by interpolation scales (t 2.2, h 2.0, w 2.0) (diffusers transformer_allegro); "
            "the schema's Rope has no per-axis scale (schema gap).",
            "Sampling: 88 frames at 720x1280, 6 s at 15 fps, context length 79.2K tokens; the README recommends "
            "EMA-VFI interpolation to 30 fps.",
            "VTP (Visual Tokenizer Pre-training): MiniMax found that a lower weight on pixel reconstruction (vs. "
            "contrastive + self-supervised losses) improved downstream generation quality.",
        ],
        survey("§6 MiniMax / Hailuo (Allegro), and the sources named in each note"),
    ),
)

# Hailuo 02 -----------------------------------------------------------------------------------------

OVERVIEW_HAILUO = survey("Overview Comparison, Hailuo 02 row")
HAILUO = survey("§6 MiniMax / Hailuo (Allegro), Hailuo 02 (Commercial)")
PATTERN = survey("Common Patterns & Takeaways, Universal Data Curation Pipeline")
RECIPE_PATTERN = survey("Common Patterns & Takeaways, Common Training Recipe Pattern")

# "3x the parameters of Hailuo 01", whose size is itself undisclosed: a 40-layer DiT of about 11B.
sized = partial(
    assumed, reason="MiniMax publishes no size (only 3x Hailuo 01's, also undisclosed); an ~11B cross-attention DiT"
)
no_vae = partial(assumed, reason=f"the VAE is undisclosed; Wan-VAE's causal 4x8x8, 16 channels ({WAN_VAE})")
SCHEDULE = f"Hailuo 02's schedule is undisclosed; the survey's common recipe pattern ({RECIPE_PATTERN}) is assumed"
# Native 1080p cropped to multiples of 16 (VAE 8x times patch 2), so 1080p footage is never upsampled.
VIDEO_1080P = Size(height=1072, width=1904)
SAMPLED_1080P = "sampled at 1088 rows, the next multiple of the assumed 16 px latent patch, then cropped to 1080"


def hailuo_stage(name: str, kind: str, dataset: str, sizes: list[Size], frames: int, batch: int, steps: int,
                 lr: float, init_from: str | None, goal: str, **fields: object) -> Stage:
    """A Hailuo 02 stage: every value an assumption, as MiniMax publishes no schedule."""
    return assumed(
        Stage(
            name=name,
            kind=kind,
            datasets=[DatasetUse(dataset=dataset)],
            resolutions=sizes,
            aspect_ratio_buckets=True,
            frames=frames,  # 1 + 4k for the causal VAE
            fps=24.0,  # the low end of the documented 24-30 fps
            batch_size=batch,
            steps=steps,
            optimizer=AdamW(lr=lr, weight_decay=0.0),
            lr_schedule=LrSchedule(kind="constant", warmup_steps=1000 if steps > 10_000 else 100),
            init_from=init_from,
            goal=goal,
            **fields,
        ),
        SCHEDULE,
    )


HAILUO_DATA = DataSpec(
    sources=[
        Source(
            name="video_corpus",
            modality=assumed("video_text", "undisclosed; captioned video"),
            count=undisclosed("'4x the data of Hailuo 01', whose data scale is undisclosed"),
            unit=assumed("videos", "undisclosed"),
        ),
        Source(
            name="hailuo01_user_feedback",
            modality=assumed("video_text", "the survey says only 'user feedback data from Hailuo 01'; read as prompts "
                             "with the videos generated for them"),
            count=undisclosed("the survey gives no count"),
            unit=assumed("pairs", "feedback read as preference pairs"),
            origin=documented(["user feedback from Hailuo 01"], HAILUO),
        ),
    ],
    pipelines=[
        Pipeline(
            name="hailuo",
            sources=documented(["video_corpus"], OVERVIEW_HAILUO),
            # The survey's universal curation pipeline: basic filters, safety, quality, dedup, recaptioning.
            ops=assumed(
                [
                    ResolutionFilter(min_short_side_px=720),
                    DurationFilter(min_seconds=2.0, min_fps=24.0),
                    SceneSplit(detector="content", threshold=27.0, min_scene_frames=15, clip_max_seconds=10.0),
                    Safety(categories=["nsfw", "csam", "violence"], max_score=0.5, frames=8, reduce="max"),
                    Aesthetic(scorer="laion-aesthetic-v2", min_score=4.5, frames=3, reduce="min", use="filter"),
                    MotionScore(scorer="farneback", fps=2.0, min_score=0.25),
                    SemanticDedup(embedder="clip-vit-l14", clusters=100, eps=0.02),
                    Recaption(model="vlm-captioner", styles=["dense"], languages=["en", "zh"], fps=2.0),
                ],
                f"MiniMax publishes no curation; the survey's universal pipeline ({PATTERN}) with {CURATION_TOOLS}",
            ),
            output=documented("hailuo_training_set", OVERVIEW_HAILUO),
        ),
        Pipeline(
            name="user_feedback",
            sources=documented(["hailuo01_user_feedback"], HAILUO),
            ops=assumed(
                [Safety(categories=["nsfw", "csam", "violence"], max_score=0.5, frames=8, reduce="max")],
                "user-submitted prompts and videos pass the same safety screen as the corpus",
            ),
            output=documented("user_feedback", HAILUO),
        ),
    ],
    datasets=[
        Dataset(
            name="hailuo_training_set",
            count=undisclosed("4x Hailuo 01's, undisclosed"),
            unit=assumed("clips", "scene clips"),
        ),
        Dataset(
            name="hailuo_1080p",
            subset_of=documented("hailuo_training_set", HAILUO),
            where=assumed(Subset(min_short_side_px=1080), "native 1080p training needs 1080p clips"),
            unit=assumed("clips", "scene clips"),
        ),
        Dataset(
            name="user_feedback",
            count=undisclosed("the survey gives no count"),
            unit=assumed("pairs", "preference pairs"),
        ),
    ],
)

HAILUO_02 = Spec(
    name="hailuo-02",
    family=documented("hailuo", HAILUO),
    modality=documented("video", OVERVIEW_HAILUO),
    organisation=documented("MiniMax", HAILUO),
    released=undisclosed("the survey gives no release date"),
    license=documented("proprietary", OVERVIEW_HAILUO),  # "Commercial", "Open? No"
    open_weights=documented("no", OVERVIEW_HAILUO),
    data=HAILUO_DATA,
    architecture=ArchitectureSpec(
        backbone=DiT(
            kind=documented("dit", OVERVIEW_HAILUO),
            hidden_size=sized(4096),
            num_heads=sized(32),
            head_dim=sized(128),
            patch_size=sized((1, 2, 2)),
            in_channels=sized(16),
            out_channels=sized(16),
            qkv_bias=sized(True),
            qk_norm=sized("rmsnorm_across_heads"),
            positions=assumed(
                Rope(axes=["t", "h", "w"], axes_dims=[44, 42, 42], theta=10_000.0, text="none"),
                f"undisclosed; 3D RoPE split as in Wan 2.1 ({WAN_CONFIG_14B})",
            ),
            depth=sized(40),
            ffn_dim=sized(16_384),
            text_dim=sized(4096),
            text_conditioning=sized("cross_attention"),
        ),
        text_encoders=[
            assumed(
                TextEncoder(name="umt5_xxl", model="google/umt5-xxl", role="cross_attention", dim=4096, max_tokens=512),
                f"survey overview: text encoder 'Undisclosed'; Wan 2.1's UMT5-XXL ({WAN_SHARED_CONFIG}) stands in",
            )
        ],
        space=LatentSpace(
            vae=no_vae("hailuo-video-vae"),
            channels=no_vae(16),
            spatial_compression=no_vae(8),
            temporal_compression=no_vae(4),
            causal=no_vae(True),
        ),
        params_documented=undisclosed("survey overview: '3x Hailuo 01', whose size is undisclosed"),
        extras=documented(["Noise-aware Compute Redistribution (NCR)"], OVERVIEW_HAILUO),  # "DiT + NCR"
    ),
    objective=FlowMatching(
        kind=assumed("flow_matching", "survey overview: loss 'Undisclosed'; flow matching is the field's default"),
        timesteps=assumed(LogitNormal(mean=0.0, std=1.0), f"undisclosed; the SD3 default ({SD3_PAPER})"),
        shift=assumed(
            ResolutionShift(base_pixels=256 * 448, applies="both"), "undisclosed; the survey's rule from stage 1's size"
        ),
        loss_weighting=assumed("none", "undisclosed; NCR does the re-weighting"),
        cfg_dropout=assumed(CfgDropout(joint_rate=0.1), "undisclosed; Imagen's 10%"),
        # NCR spends more compute on high-error timesteps; how is undisclosed, the schema's re-weighted
        # timestep sampling stands in.
        noise_aware_compute=NoiseAwareCompute(
            bins=assumed(16, "undisclosed; timestep bins whose running loss sets their sampling weight"),
            ema=assumed(0.99, "undisclosed; running-loss decay"),
            floor=assumed(0.25, "undisclosed; no bin starves"),
        ),
    ),
    # 1080p clips are 53 frames (112K tokens), what one 80 GB GPU holds for an 11B DiT without sequence
    # parallelism; 10 s at 1080p (487K tokens) would need it.
    schedule=ScheduleSpec(
        stages=[
            hailuo_stage("pretrain", "pretrain", "hailuo_training_set", [Size(height=256, width=448)], 121, 1024,
                         200_000, 1e-4, None, "Low-resolution pre-training: large batch, many steps"),
            hailuo_stage("progressive_resolution", "progressive_resolution", "hailuo_1080p",
                         [Size(height=480, width=848), Size(height=720, width=1280), VIDEO_1080P], 53, 512, 60_000,
                         1e-4, "pretrain", "Progressive resolution up to native 1080p"),
            hailuo_stage("quality_finetune", "sft", "hailuo_1080p", [VIDEO_1080P], 53, 512, 10_000, 2e-5,
                         "progressive_resolution", "Quality fine-tuning at native 1080p"),
            hailuo_stage("user_feedback_alignment", "rlhf", "user_feedback", [Size(height=720, width=1280)], 121, 512,
                         2_000, 1e-5, "quality_finetune", "Alignment on user feedback data from Hailuo 01",
                         loss=PreferenceLoss(reward_model="hailuo01-user-preferences", beta=5000.0, iterations=1)),
        ]
    ),
    inference=InferenceSpec(
        sampler=assumed("euler", "undisclosed; the Euler step of the assumed flow-matching objective"),
        steps=assumed(50, "undisclosed"),
        cfg_scale=assumed(5.0, "undisclosed"),
        resolution=assumed(Size(height=1088, width=1920), f"native 1080p ({HAILUO}) is 1920 x 1080; {SAMPLED_1080P}"),
        frames=assumed(241, "10 s at 24 fps, 1 + 4k for the causal VAE"),
        fps=assumed(24.0, "the survey gives 24-30 fps; the low end"),
        fps_range=documented(Range(low=24.0, high=30.0), HAILUO),
        max_seconds=documented(10.0, HAILUO),
    ),
    notes=documented(
        [
            "Architecture: DiT + Noise-aware Compute Redistribution (NCR), which dynamically allocates more compute "
            "to high-error timesteps; NCR gives a 2.5x training/inference efficiency improvement.",
            "Scale: 3x more parameters and 4x more data than Hailuo 01, whose own size and data are undisclosed, so "
            "neither has a number here (schema gap: no relative size field).",
            "Native 1080p, up to 10 s, 24-30 fps (inference.fps_range; fps the low end). 1080p is 1920 x "
            "1080; the default size is 1920 x 1088, 16 px latent patches, cropped to 1080 rows.",
            "Incorporates user feedback data from Hailuo 01; how it is used is undisclosed (a preference stage "
            "is assumed).",
        ],
        survey("§6 MiniMax / Hailuo (Allegro), Hailuo 02 (Commercial), and the overview table"),
    ),
)
