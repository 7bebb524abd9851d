"""Optimisation: cheapest filters first, never across a barrier, split or fence; one decode per segment at
the smallest size every op accepts; jobs split at barriers and CPU/GPU changes. Every move is recorded."""

from compiler.document import Insert, derive
from compiler.graph import DecodeNeed, build
from compiler.graph.optimise import common_rate, merge, plan_pipeline
from compiler.schema import (
    Aesthetic,
    AspectRatioFilter,
    Blur,
    CaptionPii,
    ClipSimilarity,
    ExactDedup,
    Exposure,
    HumanReview,
    MotionScore,
    OcrTextArea,
    PerceptualDedup,
    Pipeline,
    Recaption,
    ResolutionFilter,
    Safety,
    SceneSplit,
    SyntheticText,
    TechnicalQuality,
    Trim,
    Watermark,
)


def plan(*ops, video=True):
    return plan_pipeline(Pipeline(name="main", sources=["web"], ops=list(ops), output="pretrain"), video)


def replay(ops, reorders):
    names = [op.name for op in ops]
    for move in reorders:
        assert names[move.from_index] == move.op
        names.insert(move.to_index, names.pop(move.from_index))
    return names


def test_resolution_written_after_aesthetic_runs_first_and_the_move_is_recorded(image_spec, spec_factory):
    spec = spec_factory([Aesthetic(min_score=6.5), ResolutionFilter(min_short_side_px=512)])
    graph = build(spec)
    assert graph.orders["main"] == ("resolution", "aesthetic")
    [move] = graph.reorders
    assert (move.pipeline, move.op, move.from_index, move.to_index) == ("main", "resolution", 1, 0)
    assert "aesthetic (model filter)" in move.reason and move.reason.startswith("header filter")


def test_filters_sort_header_then_decode_then_model_and_equal_tiers_keep_their_order():
    ops = [Safety(categories=["nsfw"]), Blur(min_laplacian_var=50), Aesthetic(min_score=5),
           AspectRatioFilter(min_ratio=0.3, max_ratio=3), Exposure(), ResolutionFilter(min_short_side_px=256)]
    result = plan(*ops)
    assert result.order == ("aspect_ratio", "resolution", "blur", "exposure", "safety", "aesthetic")
    assert replay(ops, result.reorders) == list(result.order)


def test_nothing_crosses_a_barrier_or_a_split():
    ops = [Aesthetic(min_score=5), PerceptualDedup(), ResolutionFilter(min_short_side_px=256),
           SceneSplit(), AspectRatioFilter(min_ratio=0.3, max_ratio=3)]
    result = plan(*ops)
    assert result.order == tuple(op.name for op in ops)
    assert result.reorders == ()


def test_filters_stop_at_fences_that_change_what_they_read():
    """Trim changes frames and duration, caption_pii the captions, synthetic_text adds samples."""
    assert plan(Trim(head=10, tail=10), Blur(min_laplacian_var=50)).order == ("trim", "blur")
    assert plan(Recaption(model="vlm"), CaptionPii(), ClipSimilarity()).reorders == ()
    assert plan(Watermark(), SyntheticText(), ResolutionFilter(min_short_side_px=64)).reorders == ()


def test_a_filter_reading_another_ops_output_keeps_its_place():
    ops = [Aesthetic(min_score=5), OcrTextArea(), HumanReview(score_of="aesthetic", band=(4.5, 5.5))]
    assert plan(*ops).order == ("aesthetic", "ocr_text_area", "human_review")


def test_filters_move_ahead_of_costly_mappers_but_not_cheaper_ones():
    assert plan(Recaption(model="vlm"), Safety(categories=["nsfw"])).order == ("safety", "recaption")
    assert plan(CaptionPii(), Safety(categories=["nsfw"])).order == ("caption_pii", "safety")


def test_decode_plan_takes_the_smallest_size_every_op_accepts():
    result = plan(ResolutionFilter(min_short_side_px=256), Exposure(), Blur(min_laplacian_var=50),
                  Aesthetic(min_score=5), video=False)
    [decode] = result.decodes
    assert decode.trigger == "exposure", "the header check before it needs no pixels"
    assert decode.short_side_px == 256, "blur measures at 256 px, exposure and aesthetic accept less"
    assert decode.serves == ("exposure", "blur", "aesthetic")
    assert decode.job == result.jobs[0].name


def test_each_segment_between_barriers_decodes_once():
    result = plan(Exposure(), ExactDedup(), Aesthetic(min_score=5), PerceptualDedup(), video=False)
    assert [(d.trigger, d.short_side_px) for d in result.decodes] == [
        ("exposure", 64), ("aesthetic", 224), ("perceptual_dedup", 64)]


def test_merged_decode_uses_stored_size_if_any_op_needs_it_and_a_shared_frame_rate():
    assert merge([DecodeNeed(224), DecodeNeed(None)]).short_side_px is None
    assert merge([DecodeNeed(0), DecodeNeed(64)]).short_side_px == 64
    assert merge([DecodeNeed(256, fps=2), DecodeNeed(448, fps=3)]) == DecodeNeed(448, fps=6.0)
    assert merge([DecodeNeed(256, fps=2), DecodeNeed(144, every_frame=True)]) == DecodeNeed(256, None, True)
    assert common_rate([2.5, 2]) == 10.0


def test_video_decode_serves_motion_at_its_rate():
    result = plan(MotionScore(fps=2, analysis_short_side_px=256), TechnicalQuality())
    [decode] = result.decodes
    assert (decode.short_side_px, decode.fps, decode.every_frame) == (None, 2.0, False)


def test_jobs_split_at_a_barrier_and_at_a_cpu_to_gpu_change():
    result = plan(ResolutionFilter(min_short_side_px=256), Blur(min_laplacian_var=50), Aesthetic(min_score=5),
                  Safety(categories=["nsfw"]), ExactDedup(), Recaption(model="vlm"))
    assert [(job.ops, job.resource, job.scope) for job in result.jobs] == [
        (("resolution", "blur"), "cpu", "per_sample"),
        (("aesthetic", "safety"), "gpu", "per_sample"),
        (("exact_dedup",), "cpu", "global"),
        (("recaption",), "gpu", "per_sample"),
    ]
    gpu = result.jobs[1]
    assert (gpu.gpus, gpu.gpu_memory_gib) == (1, 8.0), "fused models stay resident together: memory adds up"
    assert result.jobs[0].gpus == 0 and result.jobs[0].cpu_cores == 4


def test_a_header_only_op_joins_the_open_job_and_a_split_ends_its_job():
    result = plan(Aesthetic(min_score=5), Trim(head=1, tail=1), SceneSplit(), Trim(name="trim_clips", head=1, tail=1))
    assert [job.ops for job in result.jobs] == [("aesthetic", "trim"), ("scene_split",), ("trim_clips",)]
    assert [job.resource for job in result.jobs] == ["gpu", "cpu", "cpu"]


def test_reorders_and_jobs_show_in_the_built_graph(image_spec):
    graph = build(image_spec)
    nodes = graph.graph.nodes
    assert nodes["op:main/resolution"]["order"] == 0 and nodes["op:main/resolution"]["position"] == 1
    chain = [target for _, target, kind in graph.graph.edges(data="kind") if kind == "feeds"]
    assert "op:main/aesthetic" in chain
    jobs_in_order = [op for job in graph.jobs for op in job.ops]
    assert tuple(jobs_in_order) == graph.orders["main"]
    after_safety = derive(image_spec, {"data.pipelines[main].ops[exposure]": Insert(Exposure(), after="safety")}, name="x")
    assert build(after_safety).orders["main"][:6] == (
        "resolution", "aspect_ratio", "probe", "blur", "exposure", "aesthetic"), "up to the last decode filter"
    at_end = derive(image_spec, {"data.pipelines[main].ops[exposure]": Insert(Exposure())}, name="x")
    assert build(at_end).orders["main"][-4:] == ("perceptual_dedup", "exposure", "recaption", "precompute_embeddings"), (
        "it moves ahead of the model mappers, and the dedup barrier stops it"
    )
