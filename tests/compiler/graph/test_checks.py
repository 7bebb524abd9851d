"""Every graph check fires on a broken spec with its rule and the path of the value to change, and all of
them are reported at once. Diagnostics come from every check (compiler.validate.validate), so a problem the
graph and a semantic rule both saw would show twice: each problem has exactly one rule."""

from compiler.document import REMOVE, Insert, derive
from compiler.graph import build
from compiler.validate import validate
from compiler.schema import (
    ActiveLearning,
    Aesthetic,
    Balance,
    ClipSimilarity,
    Corruption,
    Dataset,
    DefectMask,
    ExactDedup,
    FlowMatching,
    HumanReview,
    MaskedLoss,
    MotionScore,
    Pipeline,
    Recaption,
    ScoreConditioning,
    Source,
)


# The graph's rules, and the rules that took over problems the graph used to report too. (The fixtures are
# graph-clean, not clean under every semantic rule.)
RULES = {"graph.no-producer", "graph.duplicate-producer", "graph.fps-mismatch", "graph.barrier-placement",
         "graph.cycle", "objective.masked-loss-source", "data.dataset-unused", "data.subset-parent-known",
         "schedule.references-earlier-stage", "data.video-op-on-images", "data.unique-names"}


def found(spec, rule=None):
    """(rule, path, severity) of every diagnostic of RULES, or those of one rule."""
    return [(d.rule, d.path, d.severity) for d in validate(spec) if d.rule in RULES and rule in (None, d.rule)]


def messages(spec, rule):
    return [d.message for d in validate(spec) if d.rule == rule]


def test_fixtures_are_clean(image_spec, video_spec, cascade_spec):
    for spec in (image_spec, video_spec, cascade_spec):
        assert found(spec) == []


# graph.no-producer ----------------------------------------------------------------------------------


def test_human_review_of_an_absent_op(image_spec):
    spec = derive(image_spec, {"data.pipelines[main].ops[review]": Insert(
        HumanReview(name="review", score_of="watermark", band=(0.4, 0.6)), after="safety")}, name="x")
    assert found(spec) == [("graph.no-producer", "data.pipelines[main].ops[review].score_of", "error")]
    assert "no op is named 'watermark'" in messages(spec, "graph.no-producer")[0]


def test_human_review_before_the_op_it_reviews(image_spec):
    spec = derive(image_spec, {"data.pipelines[main].ops[review]": Insert(
        HumanReview(name="review", score_of="safety", band=(0.4, 0.6)), after="resolution")}, name="x")
    assert found(spec) == [("graph.no-producer", "data.pipelines[main].ops[review].score_of", "error")]
    [message] = messages(spec, "graph.no-producer")
    assert "score:safety" in message and "later (position 5)" in message


def test_score_conditioning_on_a_later_op_and_on_an_op_without_a_score(image_spec):
    spec = derive(image_spec, {"data.pipelines[main].ops[cond]": Insert(
        ScoreConditioning(name="cond", scores=["safety", "resolution"]), after="aesthetic")}, name="x")
    assert found(spec) == [("graph.no-producer", "data.pipelines[main].ops[cond].scores", "error")] * 2
    not_scoring, later = messages(spec, "graph.no-producer")  # columns are checked in sorted order
    assert "score:resolution" in not_scoring and "produces no score" in not_scoring
    assert "score:safety" in later and "later" in later


def test_motion_tiers_without_motion_score(video_spec):
    spec = derive(video_spec, {"data.pipelines[main].ops[motion_score]": REMOVE}, name="x")
    assert found(spec) == [("graph.no-producer", "data.pipelines[main].ops[motion_tiers]", "error")]
    assert "column flow" in messages(spec, "graph.no-producer")[0]


def test_a_video_op_in_an_image_pipeline_is_reported_once(image_spec):
    spec = derive(image_spec, {"data.pipelines[main].ops[motion_score]": Insert(MotionScore())}, name="x")
    assert found(spec) == [("data.video-op-on-images", "data.pipelines[main].ops[motion_score]", "error")]
    assert "whose sources ['web'] are all images" in messages(spec, "data.video-op-on-images")[0]


def test_clip_similarity_needs_a_caption_only_image_sources_lack(spec_factory):
    bare = [Source(name="web", modality="image")]
    assert found(spec_factory([ClipSimilarity()], sources=bare)) == [
        ("graph.no-producer", "data.pipelines[main].ops[clip_similarity]", "error")]
    assert found(spec_factory([ClipSimilarity()])) == [], "image_text sources carry their original captions"
    assert found(spec_factory([Recaption(model="vlm"), ClipSimilarity()], sources=bare)) == []


def test_masked_loss_needs_a_mask_in_the_training_data(spec_factory):
    masked = FlowMatching(masked_loss=MaskedLoss(mask_from="defects"))
    rule = "objective.masked-loss-source"
    path = (rule, "objective.masked_loss.mask_from", "error")
    assert found(spec_factory([DefectMask(name="defects")], objective=masked)) == []
    absent = spec_factory([DefectMask()], objective=masked)
    assert found(absent) == [path] and "no curation op has that name" in messages(absent, rule)[0]
    no_mask = spec_factory([DefectMask(name="defects", emit_mask=False)], objective=masked)
    assert found(no_mask) == [path] and "emits no mask" in messages(no_mask, rule)[0]
    unconsumed = spec_factory(
        [Aesthetic(min_score=5)],
        pipelines=[Pipeline(name="main", sources=["web"], ops=[Aesthetic(min_score=5)], output="pretrain"),
                   Pipeline(name="defects", sources=["web"], ops=[DefectMask(name="defects")], output="rescued")],
        datasets=[Dataset(name="pretrain"), Dataset(name="rescued")],
        objective=masked,
    )
    assert sorted(found(unconsumed)) == [("data.dataset-unused", "data.datasets[rescued]", "warning"), path]
    assert "only datasets ['rescued'] carry it" in messages(unconsumed, rule)[0]


# graph.cycle; stage loops and unused datasets are the rules' ----------------------------------------


def test_stages_initialised_in_a_loop_are_reported_once_as_a_forward_reference(image_spec):
    spec = derive(image_spec, {"schedule.stages[pretrain].init_from": "distill"}, name="x")
    assert found(spec) == [("schedule.references-earlier-stage", "schedule.stages[pretrain].init_from", "error")]
    assert build(spec).diagnostics == ()


def test_a_stage_taught_by_itself(image_spec):
    spec = derive(image_spec, {"schedule.stages[distill].teacher": "distill"}, name="x")
    assert found(spec) == [("schedule.references-earlier-stage", "schedule.stages[distill].teacher", "error")]


def test_datasets_that_are_subsets_of_each_other(image_spec):
    spec = derive(image_spec, {"data.datasets[pretrain].subset_of": "hq"}, name="x")
    assert [d for d in found(spec) if d[0] == "graph.cycle"] == [
        ("graph.cycle", "data.datasets[pretrain].subset_of", "error")]
    [message] = messages(spec, "graph.cycle")
    assert "dataset:pretrain -> dataset:hq -> dataset:pretrain" in message


def test_a_dataset_nothing_consumes_is_a_warning(image_spec):
    spec = derive(image_spec, {"data.datasets[spare]": Insert(Dataset(name="spare", subset_of="pretrain"))}, name="x")
    assert found(spec) == [("data.dataset-unused", "data.datasets[spare]", "warning")]


# graph.duplicate-producer ---------------------------------------------------------------------------


def test_two_recaption_ops_write_the_same_caption_column(image_spec):
    spec = derive(image_spec, {"data.pipelines[main].ops[recaption_2]": Insert(
        Recaption(name="recaption_2", model="other-vlm"), after="recaption")}, name="x")
    assert found(spec) == [("graph.duplicate-producer", "data.pipelines[main].ops[recaption_2]", "error")]
    assert "caption:synthetic" in messages(spec, "graph.duplicate-producer")[0]


# graph.fps-mismatch ---------------------------------------------------------------------------------


def test_motion_sampled_faster_than_the_duration_filter_guarantees(video_spec):
    spec = derive(video_spec, {"data.pipelines[main].ops[motion_score].fps": 30.0}, name="x")
    assert found(spec) == [("graph.fps-mismatch", "data.pipelines[main].ops[motion_score].fps", "error")]
    [message] = messages(spec, "graph.fps-mismatch")
    assert "30 fps" in message and "from 23 fps" in message and "static" in message


def test_a_stage_sampling_faster_than_its_data_guarantees_is_a_warning(video_spec):
    spec = derive(video_spec, {"schedule.stages[pretrain].fps": 30.0}, name="x")
    assert found(spec) == [("graph.fps-mismatch", "schedule.stages[pretrain].fps", "warning")]


def test_a_rate_within_the_floor_or_without_a_floor_is_fine(video_spec):
    assert found(derive(video_spec, {"data.pipelines[main].ops[motion_score].fps": 23.0}, name="x")) == []
    unbounded = derive(video_spec, {"data.pipelines[main].ops[duration].min_fps": None,
                                    "data.pipelines[main].ops[motion_score].fps": 30.0}, name="x")
    assert found(unbounded) == []


# graph.barrier-placement ----------------------------------------------------------------------------


def test_a_decoding_barrier_before_the_corruption_check(image_spec):
    spec = derive(image_spec, {"data.pipelines[main].ops[corruption]": Insert(Corruption())}, name="x")
    assert found(spec) == [("graph.barrier-placement", "data.pipelines[main].ops[perceptual_dedup]", "error")]


def test_a_byte_hash_before_the_corruption_check_is_fine(spec_factory):
    assert found(spec_factory([ExactDedup(), Corruption()])) == []


def test_filters_after_balance_or_active_learning(spec_factory):
    spec = spec_factory([Balance(), ActiveLearning(scorer="uncertainty"), Aesthetic(min_score=5),
                         Recaption(model="vlm")])
    assert found(spec) == [("graph.barrier-placement", "data.pipelines[main].ops[aesthetic]", "error")]
    assert "clusters are no longer even" in messages(spec, "graph.barrier-placement")[0]


# All at once ----------------------------------------------------------------------------------------


def test_every_problem_is_reported_at_once(image_spec):
    spec = derive(
        image_spec,
        {
            "data.pipelines[main].ops[review]": Insert(
                HumanReview(name="review", score_of="watermark", band=(0.4, 0.6)), after="safety"),
            "data.pipelines[main].ops[corruption]": Insert(Corruption()),
            "data.datasets[spare]": Insert(Dataset(name="spare")),
            "schedule.stages[pretrain].init_from": "distill",
        },
        name="x",
    )
    assert sorted(rule for rule, _, _ in found(spec)) == [
        "data.dataset-unused", "graph.barrier-placement", "graph.no-producer", "schedule.references-earlier-stage"]
    assert build(spec).errors and all(d.fix for d in validate(spec))


def test_unknown_references_add_no_edges_and_no_crash(image_spec):
    spec = derive(image_spec, {
        "schedule.stages[finetune].datasets": [{"dataset": "nowhere", "weight": 1.0}],
        "schedule.stages[distill].teacher": "nobody",
        "data.pipelines[main].sources": ["web", "missing"],
    }, name="x")
    graph = build(spec).graph
    assert not graph.has_node("dataset:nowhere") and not graph.has_node("checkpoint:nobody")
    assert list(graph.predecessors("stage:finetune")) == ["checkpoint:pretrain"]


def test_a_cascade_trains_its_unets_side_by_side(cascade_spec):
    graph = build(cascade_spec).graph
    models = {data["name"]: data["model"] for _, data in graph.nodes(data=True) if data["kind"] == "checkpoint"}
    assert models == {"base64": "base64", "sr256": "sr256", "sr1024": "sr1024"}
    assert sorted(graph.successors("dataset:pretrain")) == ["stage:base64", "stage:sr1024", "stage:sr256"]


def test_a_distilled_stage_has_both_an_initialising_and_a_teaching_edge(image_spec):
    graph = build(image_spec).graph
    assert set(graph.get_edge_data("checkpoint:finetune", "stage:distill")) == {"initialises", "teaches"}
    paths = {key: data["path"] for key, data in graph.get_edge_data("checkpoint:finetune", "stage:distill").items()}
    assert paths == {"initialises": "schedule.stages[distill].init_from", "teaches": "schedule.stages[distill].teacher"}
