"""Small valid specs for compiler tests: a FLUX-like image MMDiT, a Wan-like video DiT with a causal VAE,
and an Imagen-like pixel cascade. Dimensions are shrunk; every relation the rules check holds."""

from __future__ import annotations

import pytest

from compiler.schema import (
    Aesthetic,
    AspectRatioFilter,
    Cascade,
    CfgDropout,
    ClipSimilarity,
    ConstantShift,
    Dataset,
    DatasetUse,
    DataSpec,
    DiT,
    DurationFilter,
    DynamicThresholding,
    ExactDedup,
    FlowMatching,
    FrameConsistency,
    GuidanceDistillation,
    InferenceSpec,
    LatentSpace,
    LrSchedule,
    MMDiT,
    MotionScore,
    MotionTiers,
    MuLinearShift,
    NoisePrediction,
    OcrTextArea,
    PerceptualDedup,
    Pipeline,
    PixelSpace,
    PrecomputeEmbeddings,
    Probe,
    Recaption,
    ResolutionFilter,
    Rope,
    Safety,
    ScheduleSpec,
    SceneSplit,
    Source,
    Spec,
    Stage,
    Subset,
    TextEncoder,
    Trim,
    UNetStage,
    AdamW,
    ArchitectureSpec,
    square,
)


def tiny_flux() -> Spec:
    """FLUX.1-dev in miniature: packed 16-channel latents, CLIP pooled + T5 tokens, guidance distillation."""
    return Spec(
        name="tiny-flux",
        family="tiny",
        modality="image",
        organisation="tests",
        data=DataSpec(
            sources=[Source(name="web", modality="image_text", count=1e6, languages={"en": 1.0})],
            pipelines=[
                Pipeline(
                    name="main",
                    sources=["web"],
                    ops=[
                        Probe(),
                        ResolutionFilter(min_short_side_px=256),
                        AspectRatioFilter(min_ratio=1 / 3, max_ratio=3),
                        Safety(categories=["nsfw"]),
                        Aesthetic(min_score=6.5),
                        PerceptualDedup(),
                        Recaption(model="cogvlm", mix={"original": 0.5, "synthetic": 0.5}),
                        PrecomputeEmbeddings(text_encoders=["clip", "t5"]),
                    ],
                    output="curated",
                )
            ],
            datasets=[
                Dataset(name="curated"),
                Dataset(
                    name="hires",
                    subset_of="curated",
                    where=Subset(min_short_side_px=1024, min_score={"aesthetic": 7.0}),
                ),
            ],
        ),
        architecture=ArchitectureSpec(
            backbone=MMDiT(
                hidden_size=256,
                num_heads=4,
                head_dim=64,
                patch_size=(1, 2, 2),
                in_channels=64,
                out_channels=64,
                positions=Rope(axes=["index", "h", "w"], axes_dims=[8, 28, 28]),
                double_blocks=2,
                single_blocks=4,
                context_dim=64,
                pooled_dim=32,
                guidance_embed=True,
            ),
            text_encoders=[
                TextEncoder(name="clip", model="openai/clip-vit-large-patch14", role="pooled", dim=32),
                TextEncoder(name="t5", model="google/t5-v1_1-xxl", role="tokens", dim=64, max_tokens=512),
            ],
            space=LatentSpace(vae="flux-vae", channels=16, spatial_compression=8),
        ),
        objective=FlowMatching(shift=MuLinearShift(), cfg_dropout=CfgDropout(joint_rate=0.1)),
        schedule=ScheduleSpec(
            stages=[
                Stage(
                    name="pretrain",
                    kind="pretrain",
                    datasets=[DatasetUse(dataset="curated")],
                    resolutions=[square(256)],
                    batch_size=64,
                    steps=1000,
                    optimizer=AdamW(lr=1e-4),
                    lr_schedule=LrSchedule(warmup_steps=100),
                    ema_decay=0.99,
                ),
                Stage(
                    name="hires",
                    kind="progressive_resolution",
                    datasets=[DatasetUse(dataset="hires")],
                    resolutions=[square(512), square(1024)],
                    steps=500,
                    init_from="pretrain",
                ),
                Stage(
                    name="guidance",
                    kind="guidance_distillation",
                    datasets=[DatasetUse(dataset="hires")],
                    resolutions=[square(1024)],
                    init_from="hires",
                    teacher="hires",
                    loss=GuidanceDistillation(),
                ),
            ]
        ),
        inference=InferenceSpec(sampler="euler", steps=28, guidance_embedded=3.5, resolution=1024),
    )


def tiny_wan() -> Spec:
    """Wan 2.1 in miniature: a cross-attention DiT on a causal 4x8x8 VAE, images then joint image+video."""
    return Spec(
        name="tiny-wan",
        family="tiny",
        modality="video",
        organisation="tests",
        data=DataSpec(
            sources=[
                Source(name="videos", modality="video_text", unit="videos"),
                Source(name="images", modality="image_text"),
            ],
            pipelines=[
                Pipeline(
                    name="video",
                    sources=["videos"],
                    ops=[
                        Probe(check="first_last"),
                        DurationFilter(min_seconds=2, max_seconds=15, min_fps=16),
                        SceneSplit(clip_min_seconds=2, clip_max_seconds=10),
                        Trim(head=10, tail=10),
                        Safety(categories=["nsfw", "violence"], frames=3),
                        OcrTextArea(),
                        FrameConsistency(),
                        MotionScore(fps=8),
                        MotionTiers(),
                        ExactDedup(hash="md5_packets"),
                        Recaption(model="qwen2-vl", languages=["zh", "en"], fps=2),
                    ],
                    output="clips",
                ),
                Pipeline(
                    name="image",
                    sources=["images"],
                    ops=[Probe(), Safety(categories=["nsfw"]), Aesthetic(min_score=4.5), ExactDedup()],
                    output="stills",
                ),
            ],
            datasets=[Dataset(name="clips", unit="clips"), Dataset(name="stills")],
        ),
        architecture=ArchitectureSpec(
            backbone=DiT(
                hidden_size=128,
                num_heads=2,
                head_dim=64,
                patch_size=(1, 2, 2),
                in_channels=16,
                out_channels=16,
                positions=Rope(axes=["t", "h", "w"], axes_dims=[24, 20, 20], text="none"),
                qk_norm="rmsnorm_across_heads",
                depth=2,
                text_dim=64,
            ),
            text_encoders=[TextEncoder(name="umt5", model="google/umt5-xxl", role="cross_attention", dim=64)],
            space=LatentSpace(vae="wan-vae", channels=16, spatial_compression=8, temporal_compression=4, causal=True),
        ),
        objective=FlowMatching(shift=ConstantShift(shift=5.0, applies="sampling")),
        schedule=ScheduleSpec(
            stages=[
                Stage(name="images", kind="pretrain", datasets=[DatasetUse(dataset="stills")], resolutions=[square(256)]),
                Stage(
                    name="joint",
                    kind="joint_image_video",
                    datasets=[DatasetUse(dataset="clips", weight=0.7), DatasetUse(dataset="stills", weight=0.3)],
                    resolutions=[square(256)],
                    frames=17,
                    fps=16,
                    init_from="images",
                ),
            ]
        ),
        inference=InferenceSpec(sampler="euler", steps=50, cfg_scale=5.0, frames=81, fps=16, resolution=480),
    )


def tiny_cascade() -> Spec:
    """Imagen 1 in miniature: a 64 px base U-Net and two super-resolution U-Nets in pixel space."""
    sr = {"channel_mult": [1, 2, 4, 8, 8], "res_blocks": [1, 2, 2, 2, 2], "efficient": True, "skip_scale": 0.7071}
    return Spec(
        name="tiny-cascade",
        family="tiny",
        modality="image",
        organisation="tests",
        data=DataSpec(
            sources=[Source(name="web", modality="image_text")],
            pipelines=[
                Pipeline(
                    name="main",
                    sources=["web"],
                    ops=[Probe(), Safety(categories=["nsfw", "violence"]), ClipSimilarity(), ExactDedup()],
                    output="pairs",
                )
            ],
            datasets=[Dataset(name="pairs")],
        ),
        architecture=ArchitectureSpec(
            backbone=Cascade(
                stages=[
                    UNetStage(
                        name="base",
                        resolution=64,
                        channels=64,
                        channel_mult=[1, 2, 3, 4],
                        res_blocks=[1, 1, 1, 1],
                        attention_resolutions=[32, 16, 8],
                    ),
                    UNetStage(name="sr256", resolution=256, input_resolution=64, channels=32,
                              noise_conditioning_augmentation=True, **sr),
                    UNetStage(name="sr1024", resolution=1024, input_resolution=256, channels=32, train_crop=256,
                              noise_conditioning_augmentation=True, **sr),
                ]
            ),
            text_encoders=[TextEncoder(name="t5", model="google/t5-v1_1-xxl", role="cross_attention", dim=64)],
            space=PixelSpace(),
        ),
        objective=NoisePrediction(cfg_dropout=CfgDropout(joint_rate=0.1)),
        schedule=ScheduleSpec(
            stages=[
                Stage(name=f"train_{model}", kind="pretrain", model=model, datasets=[DatasetUse(dataset="pairs")],
                      resolutions=[square(side)], steps=20_000, ema_decay=0.9999)
                for model, side in (("base", 64), ("sr256", 256), ("sr1024", 256))
            ]
        ),
        inference=InferenceSpec(
            sampler="ddpm",
            steps=256,
            cfg_scale_per_stage={"base": 1.35, "sr256": 8.0, "sr1024": 8.0},
            dynamic_thresholding=DynamicThresholding(),
            noise_augmentation_level=0.1,
            upsample_factors=[4, 4],
            resolution=1024,
        ),
    )


@pytest.fixture(scope="session")
def flux_spec() -> Spec:
    return tiny_flux()


@pytest.fixture(scope="session")
def wan_spec() -> Spec:
    return tiny_wan()


@pytest.fixture(scope="session")
def cascade_spec() -> Spec:
    return tiny_cascade()
