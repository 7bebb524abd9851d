"""Qwen-Image (Alibaba): a 20B double-stream MMDiT conditioned on a frozen Qwen2.5-VL-7B.

Trained with flow matching and an exponential timestep shift on 5.6B image-text pairs (55% nature, 27%
design, 13% people, 5% synthetic text) curated in five stages, with a text-rendering curriculum from
non-text images to simple text to paragraph- and slide-level compositions. Positions use MSRoPE.

Sources: the survey's §5 and its overview table (the model card: data pipeline flowchart, architecture,
loss and curriculum); huggingface/diffusers transformer_qwenimage.py and pipeline_qwenimage.py for the
dimensions and sampling defaults. The training schedule is unpublished in the survey: its resolutions,
batches, steps and optimizer are assumptions with reasons.
"""

from compiler.schema import (
    AdamW,
    Aesthetic,
    ArchitectureSpec,
    Blur,
    CfgDropout,
    Corruption,
    DataSpec,
    Dataset,
    DatasetUse,
    ExponentialShift,
    Exposure,
    FlowMatching,
    InferenceSpec,
    LatentSpace,
    LogitNormal,
    LrSchedule,
    MMDiT,
    MSRope,
    PerceptualDedup,
    Pipeline,
    Recaption,
    ResolutionFilter,
    Safety,
    ScheduleSpec,
    Source,
    Spec,
    Stage,
    Subset,
    SyntheticText,
    TextEncoder,
    assumed,
    documented,
)
from compiler.schema.common import square
from specs.sources import (
    DIFFUSERS_QWEN,
    DIFFUSERS_QWEN_VAE,
    QWEN_PIPELINE,
    WAN_LATENTS_MEAN,
    WAN_LATENTS_STD,
    survey,
)

OVERVIEW = survey("Overview Comparison, Qwen-Image row")
PIPELINE = survey("§5 Qwen-Image & Wan, Qwen-Image Data Pipeline")
ARCHITECTURE = survey("§5 Qwen-Image & Wan, Qwen-Image Architecture")
QWEN_SCHEDULER = "Qwen/Qwen-Image scheduler/scheduler_config.json (FlowMatchEulerDiscreteScheduler)"
QWEN_MODEL_CARD = "Qwen/Qwen-Image model card (license: apache-2.0)"

ADAMW = "the survey publishes no optimizer; AdamW at 1e-4 is the common rectified-flow MMDiT choice (SD3 paper)"
SCHEDULE_UNPUBLISHED = "the survey gives the curriculum's order, not its sizes; sized for a 20B model"

DATA = DataSpec(
    sources=[
        Source(
            name="image_text",
            modality=documented("image_text", PIPELINE),
            count=documented(5.6e9, OVERVIEW),
            unit=documented("pairs", OVERVIEW),
            content_mix=documented({"nature": 0.55, "design": 0.27, "people": 0.13, "synthetic_text": 0.05}, PIPELINE),
        )
    ],
    pipelines=[
        Pipeline(
            name="qwen_image",
            sources=documented(["image_text"], PIPELINE),
            ops=[
                # Stage 1: resolution / corruption, dedup, NSFW.
                documented(
                    ResolutionFilter(
                        name="s1_resolution",
                        min_short_side_px=assumed(256, "the curriculum starts at 256^2; no stage-1 threshold is given"),
                    ),
                    PIPELINE,
                ),
                documented(Corruption(name="s1_corruption"), PIPELINE),
                documented(
                    PerceptualDedup(
                        name="s1_dedup",
                        hash=assumed("phash", "the survey says 'dedup' without a method; pHash also finds near copies"),
                        max_hamming=assumed(4, "near-duplicate cut-off of open curation tools (4 of 64 bits)"),
                        action=assumed("drop", "the survey says 'dedup', not down-weighting"),
                    ),
                    PIPELINE,
                ),
                documented(
                    Safety(
                        name="s1_nsfw",
                        categories=["nsfw"],
                        scorer=assumed("nsfw-classifier", "the classifier is not named"),
                        max_score=assumed(0.5, "curation-tool default; the threshold is undisclosed"),
                    ),
                    PIPELINE,
                ),
                # Stage 2: image enhancement (blur, brightness; texture has no op, see notes).
                documented(
                    Blur(
                        name="s2_blur",
                        min_laplacian_var=assumed(100.0, "the common OpenCV variance-of-Laplacian blur cut-off"),
                    ),
                    PIPELINE,
                ),
                documented(
                    Exposure(
                        name="s2_brightness",
                        min_mean_luma=assumed(20.0, "drops near-black images; the thresholds are undisclosed"),
                        max_mean_luma=assumed(235.0, "drops washed-out images; the thresholds are undisclosed"),
                    ),
                    PIPELINE,
                ),
                # Stage 3: caption alignment; the raw caption is kept beside a recaption and a fused one.
                documented(
                    Recaption(
                        name="s3_captions",
                        model=assumed("Qwen/Qwen2.5-VL-7B-Instruct", "no captioner is named; Qwen's own VLM"),
                        styles=["long", "fused"],
                        languages=assumed(["en", "zh"], "Qwen-Image is bilingual; caption languages are not stated"),
                        captions_per_sample=2,
                        keep_original=True,
                    ),
                    PIPELINE,
                ),
                # Stage 4: synthetic text, the 5% of the content mix.
                documented(
                    SyntheticText(
                        name="s4_synthetic_text",
                        curriculum=["pure_rendering", "compositional", "complex_layout"],
                        fraction=0.05,
                        languages=assumed(["en", "zh"], "Qwen-Image renders English and Chinese text; not stated here"),
                    ),
                    PIPELINE,
                ),
                # Stage 5: high-res refinement. Scored here; the 640p+ cut is the `qwen_image_640p` subset,
                # so the 256p curriculum stages keep the smaller images.
                documented(
                    Aesthetic(
                        name="s5_aesthetic",
                        scorer=assumed("laion-aesthetic-v2", "no scorer is named; the open LAION predictor (0-10)"),
                        use=assumed("score_only", "the 640p+ threshold selects a subset for the last stage"),
                    ),
                    PIPELINE,
                ),
            ],
            output=documented("qwen_image_training_set", PIPELINE),
        )
    ],
    datasets=[
        Dataset(
            name="qwen_image_training_set",
            count=documented(5.6e9, OVERVIEW),
            unit=documented("pairs", OVERVIEW),
        ),
        Dataset(
            name="qwen_image_640p",
            subset_of=documented("qwen_image_training_set", PIPELINE),
            where=Subset(
                min_short_side_px=documented(640, PIPELINE),
                min_score=assumed({"s5_aesthetic": 5.0}, "the refinement's quality cut is undisclosed; 5.0 of 10"),
            ),
            unit=documented("pairs", OVERVIEW),
        ),
    ],
)

ARCH = ArchitectureSpec(
    backbone=documented(
        MMDiT(
            hidden_size=3072,
            num_heads=24,
            head_dim=128,
            patch_size=(1, 2, 2),  # 2x2 packed latents: 16 channels enter as 64, 16 leave per cell
            in_channels=64,
            out_channels=16,
            mlp_ratio=4.0,
            qkv_bias=True,
            qk_norm="rmsnorm_per_head",
            norm_eps=1e-6,
            positions=MSRope(axes=["index", "h", "w"], axes_dims=[16, 56, 56], theta=10_000.0, centred=True),
            double_blocks=60,
            single_blocks=0,
            context_dim=3584,
            pooled_dim=None,
            guidance_embed=False,
            context_images="none",
            text_input_norm=True,
            block_style="qwen_image",
        ),
        DIFFUSERS_QWEN,
    ),
    text_encoders=[
        TextEncoder(
            name="qwen2_5_vl",
            model=documented("Qwen/Qwen2.5-VL-7B-Instruct", ARCHITECTURE),
            role=documented("tokens", ARCHITECTURE),
            dim=documented(3584, DIFFUSERS_QWEN),
            max_tokens=documented(512, QWEN_PIPELINE),  # max_sequence_length default; the tokenizer allows 1024
            frozen=documented(True, ARCHITECTURE),
        )
    ],
    space=documented(
        LatentSpace(
            vae="Qwen/Qwen-Image vae (AutoencoderKLQwenImage)",
            channels=16,
            spatial_compression=8,
            # A causal 3D VAE (QwenImageCausalConv3d) halving time twice (temperal_downsample [False, True,
            # True]): 4x. An image is one frame, which a causal VAE encodes alone into one latent frame.
            temporal_compression=documented(4, DIFFUSERS_QWEN_VAE),
            causal=documented(True, DIFFUSERS_QWEN_VAE),
            # AutoencoderKLQwenImage's latents_mean / latents_std defaults: Wan 2.1's 16 pairs
            latents_mean=documented(WAN_LATENTS_MEAN, DIFFUSERS_QWEN_VAE),
            latents_std=documented(WAN_LATENTS_STD, DIFFUSERS_QWEN_VAE),
        ),
        QWEN_PIPELINE,
    ),
    params_documented=documented(20e9, OVERVIEW),
)

OBJECTIVE = FlowMatching(
    kind=documented("flow_matching", ARCHITECTURE),
    prediction=documented("velocity", ARCHITECTURE),
    timesteps=assumed(
        LogitNormal(mean=0.0, std=1.0), "undisclosed; the survey's trend table calls logit-normal sampling standard"
    ),
    shift=ExponentialShift(
        kind=documented("exponential", ARCHITECTURE),
        base_tokens=documented(256, QWEN_SCHEDULER),
        max_tokens=documented(8192, QWEN_SCHEDULER),
        base_shift=documented(0.5, QWEN_SCHEDULER),
        max_shift=documented(0.9, QWEN_SCHEDULER),
        terminal=documented(0.02, QWEN_SCHEDULER),
        applies=assumed("both", "the survey states it with the loss; the published scheduler shifts at sampling"),
    ),
    loss_weighting=assumed("none", "rectified flow weights only through its timestep sampler"),
    cfg_dropout=assumed(CfgDropout(joint_rate=0.1), "undisclosed; Imagen's 10%. Sampling uses true CFG"),
)

STAGES = [
    Stage(
        name="non_text_images",
        kind=documented("pretrain", ARCHITECTURE),
        datasets=documented([DatasetUse(dataset="qwen_image_training_set")], PIPELINE),
        resolutions=assumed([square(256)], "the stage-1 resolution floor; low resolution first, as every survey model"),
        aspect_ratio_buckets=assumed(True, "the set mixes aspect ratios"),
        batch_size=assumed(4096, SCHEDULE_UNPUBLISHED),
        steps=assumed(300_000, SCHEDULE_UNPUBLISHED),
        optimizer=assumed(AdamW(lr=1e-4, weight_decay=0.0), ADAMW),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=1000), ADAMW),
        goal=documented("Curriculum: non-text images", ARCHITECTURE),
    ),
    Stage(
        name="simple_text",
        kind=documented("continuing_training", ARCHITECTURE),
        datasets=documented([DatasetUse(dataset="qwen_image_training_set")], PIPELINE),
        # The curriculum steps by text content; the resolution only rises with the 640p+ refinement data.
        resolutions=assumed([square(256)], "the stage-1 floor: the whole set is only known to be 256p+"),
        aspect_ratio_buckets=assumed(True, "the set mixes aspect ratios"),
        batch_size=assumed(4096, SCHEDULE_UNPUBLISHED),
        steps=assumed(100_000, SCHEDULE_UNPUBLISHED),
        optimizer=assumed(AdamW(lr=1e-4, weight_decay=0.0), ADAMW),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=1000), ADAMW),
        init_from=documented("non_text_images", ARCHITECTURE),
        goal=documented("Curriculum: simple text", ARCHITECTURE),
    ),
    Stage(
        name="paragraph_text",
        kind=documented("progressive_resolution", ARCHITECTURE),
        datasets=documented([DatasetUse(dataset="qwen_image_640p")], PIPELINE),
        resolutions=assumed([square(640)], "the refinement set's 640p floor; the survey names no larger training size"),
        aspect_ratio_buckets=assumed(True, "the set mixes aspect ratios"),
        batch_size=assumed(512, SCHEDULE_UNPUBLISHED),
        steps=assumed(50_000, SCHEDULE_UNPUBLISHED),
        optimizer=assumed(AdamW(lr=5e-5, weight_decay=0.0), "halved for the high-resolution refinement"),
        lr_schedule=assumed(LrSchedule(kind="constant", warmup_steps=1000), ADAMW),
        init_from=documented("simple_text", ARCHITECTURE),
        goal=documented(
            "Curriculum: paragraph/slide-level text compositions, on the 640p+ high-res refinement set", ARCHITECTURE
        ),
    ),
]

QWEN_IMAGE = Spec(
    name="qwen-image",
    family=documented("qwen-image", OVERVIEW),
    modality=documented("image", OVERVIEW),
    organisation=documented("Alibaba", survey("§5 Qwen-Image & Wan (Alibaba)")),
    license=documented("Apache 2.0", QWEN_MODEL_CARD),
    open_weights=documented("yes", OVERVIEW),
    data=DATA,
    architecture=ARCH,
    objective=OBJECTIVE,
    schedule=ScheduleSpec(stages=STAGES),
    inference=InferenceSpec(
        sampler=documented("euler", QWEN_PIPELINE),
        steps=documented(50, QWEN_PIPELINE),
        cfg_scale=documented(4.0, QWEN_PIPELINE),  # `true_cfg_scale`: two passes, with a negative prompt
        resolution=documented(1024, QWEN_PIPELINE),  # default_sample_size 128 x vae_scale_factor 8
    ),
    notes=documented(
        [
            "Text encoder: a frozen multimodal LLM (Qwen2.5-VL-7B-Instruct), not CLIP/T5; the survey calls a VLM "
            "text encoder for image generation a novel departure from CLIP/T5.",
            "Data pipeline: Stage 1 resolution/corruption, dedup, NSFW; Stage 2 image enhancement (blur, "
            "brightness, texture); Stage 3 caption alignment (raw + recaption + fused); Stage 4 synthetic text "
            "(pure rendering, compositional, complex layouts); Stage 5 high-res refinement (640p+, quality/aesthetic).",
            "Stage 2's texture filter has no curation op in the schema (schema gap); blur and brightness do.",
            "Stage 5 is modelled as the `qwen_image_640p` subset feeding the last curriculum stage, not as a filter "
            "over the whole set, so the 256p stages keep the smaller images.",
            "Curriculum: non-text images -> simple text -> paragraph/slide-level text compositions. The schema's "
            "Subset cannot select by text content (schema gap), so the stages state it in their goals only.",
            "MSRoPE: image positions centred (scale_rope), text positions start at max(h/2, w/2) on the diagonal "
            "(huggingface/diffusers transformer_qwenimage.py).",
            "The VAE normalises latents per channel (16 means and standard deviations, diffusers "
            "AutoencoderKLQwenImage latents_mean/latents_std), stated in space.latents_mean / latents_std.",
            "The published sampler defaults to 1024^2 (diffusers pipeline_qwenimage.py), above the 640p floor of "
            "the refinement data; the survey states no training size above 640p, so the last stage trains at 640^2.",
            "Counted from the public config (diffusers transformer_qwenimage.py): 20.43B parameters.",
        ],
        survey("§5 Qwen-Image & Wan, and the sources named in each note"),
    ),
)
