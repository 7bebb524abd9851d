"""Small specs built in place, so graph tests do not depend on the shipped library's contents.

`make_spec(ops=..., ...)` returns a valid Spec around one curation pipeline `main` over the given sources;
`image_spec`, `video_spec` and `cascade_spec` are the three shapes the graph must handle: a FLUX-like image
model with distillation, an Allegro/Wan-like video pipeline with scene split, an Imagen-like cascade.
"""

from __future__ import annotations

import pytest

from compiler.schema import (
    AdamW,
    Aesthetic,
    AiGenerated,
    ArchitectureSpec,
    AspectRatioFilter,
    Blur,
    Cascade,
    ClipSimilarity,
    Corruption,
    Dataset,
    DatasetUse,
    DataSpec,
    DefectMask,
    DiT,
    DurationFilter,
    ExactDedup,
    FlowMatching,
    FrameConsistency,
    InferenceSpec,
    LatentSpace,
    MMDiT,
    MotionScore,
    MotionTiers,
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
    SceneSplit,
    ScheduleSpec,
    Source,
    Spec,
    Stage,
    Subset,
    TextEncoder,
    Trim,
    UNetStage,
    Watermark,
    square,
)

MMDIT = MMDiT(
    hidden_size=256, num_heads=4, head_dim=64, in_channels=64, out_channels=64, double_blocks=2,
    single_blocks=2, context_dim=512, positions=Rope(axes=["index", "h", "w"], axes_dims=[16, 24, 24]),
)
DIT = DiT(
    hidden_size=256, num_heads=4, head_dim=64, patch_size=(1, 2, 2), in_channels=16, out_channels=16, depth=2,
    text_dim=512, positions=Rope(axes=["t", "h", "w"], axes_dims=[16, 24, 24]),
)
T5 = TextEncoder(name="t5", model="google/t5-v1_1-xxl", role="tokens", dim=512)


def stage(name: str, dataset: str = "pretrain", **fields) -> Stage:
    """A training stage with the fields every stage needs filled."""
    return Stage(
        name=name, kind=fields.pop("kind", "pretrain"), datasets=[DatasetUse(dataset=dataset)],
        resolutions=fields.pop("resolutions", [square(256)]), batch_size=8, steps=10,
        optimizer=AdamW(lr=1e-4), **fields,
    )


def make_spec(
    ops,
    sources=None,
    datasets=None,
    stages=None,
    backbone=None,
    space=None,
    objective=None,
    pipelines=None,
    modality="image",
) -> Spec:
    """A valid spec around the given ops (pipeline `main` from source `web` into dataset `pretrain`)."""
    sources = sources or [Source(name="web", modality="image_text")]
    return Spec(
        name="graph-test",
        family="test",
        modality=modality,
        organisation="genspec tests",
        data=DataSpec(
            sources=sources,
            pipelines=pipelines
            or [Pipeline(name="main", sources=[s.name for s in sources], ops=ops, output="pretrain")],
            datasets=datasets or [Dataset(name="pretrain")],
        ),
        architecture=ArchitectureSpec(
            backbone=backbone or MMDIT,
            text_encoders=[T5],
            space=space or LatentSpace(vae="test-vae", channels=16, spatial_compression=8),
        ),
        objective=objective or FlowMatching(),
        schedule=ScheduleSpec(stages=stages or [stage("pretrain")]),
        inference=InferenceSpec(sampler="euler", steps=4),
    )


@pytest.fixture
def spec_factory():
    return make_spec


@pytest.fixture
def image_spec() -> Spec:
    """FLUX-like: filters written model-first, dedup, recaption, precompute; a guidance-distilled student."""
    return make_spec(
        ops=[
            Aesthetic(min_score=6.5),
            ResolutionFilter(min_short_side_px=256),
            Probe(check="full"),
            Blur(min_laplacian_var=100.0),
            Safety(categories=["nsfw"]),
            AspectRatioFilter(min_ratio=0.33, max_ratio=3.0),
            PerceptualDedup(max_hamming=4),
            Recaption(model="cogvlm", mix={"original": 0.5, "synthetic": 0.5}),
            PrecomputeEmbeddings(text_encoders=["t5"]),
        ],
        datasets=[
            Dataset(name="pretrain"),
            Dataset(name="hq", subset_of="pretrain", where=Subset(min_score={"aesthetic": 7.0})),
        ],
        stages=[
            stage("pretrain"),
            stage("finetune", dataset="hq", kind="sft", init_from="pretrain"),
            stage("distill", dataset="hq", kind="guidance_distillation", init_from="finetune", teacher="finetune"),
        ],
    )


@pytest.fixture
def video_spec() -> Spec:
    """Allegro/Wan-like: duration gate, scene split, trim, model scorers, motion tiers, captioning."""
    return make_spec(
        sources=[Source(name="stock", modality="video_text")],
        ops=[
            DurationFilter(min_seconds=2, min_fps=23),
            ResolutionFilter(min_short_side_px=360),
            Corruption(),
            ExactDedup(),
            SceneSplit(),
            Trim(head=10, tail=10),
            OcrTextArea(),
            FrameConsistency(),
            MotionScore(fps=2, min_score=0.25),
            MotionTiers(),
            Watermark(),
            Recaption(model="qwen2-vl", fps=2),
            ClipSimilarity(),
        ],
        backbone=DIT,
        modality="video",
        stages=[stage("pretrain", frames=17, fps=16)],
    )


@pytest.fixture
def cascade_spec() -> Spec:
    """Imagen-like: one pipeline, a base and two super-resolution U-Nets trained side by side."""
    unets = [
        UNetStage(name="base64", resolution=64, channels=64, channel_mult=[1, 2], res_blocks=[1, 1]),
        UNetStage(name="sr256", resolution=256, input_resolution=64, channels=32, channel_mult=[1, 2],
                  res_blocks=[1, 1]),
        UNetStage(name="sr1024", resolution=1024, input_resolution=256, channels=32, channel_mult=[1, 2],
                  res_blocks=[1, 1]),
    ]
    return make_spec(
        ops=[ResolutionFilter(min_short_side_px=64), Safety(categories=["nsfw", "violence"]), ExactDedup(),
             DefectMask(), AiGenerated()],
        backbone=Cascade(stages=unets),
        space=PixelSpace(),
        objective=NoisePrediction(),
        stages=[
            stage("base64", model="base64", resolutions=[square(64)]),
            stage("sr256", model="sr256", resolutions=[square(256)]),
            stage("sr1024", model="sr1024", resolutions=[square(1024)]),
        ],
    )
