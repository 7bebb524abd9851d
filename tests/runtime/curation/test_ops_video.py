"""Video ops: duration and fps, scene split, trim (frames vs seconds), motion score and tiers, frame consistency."""

import pytest

from compiler.schema import Scale
from compiler.schema.data import (
    DurationFilter,
    FrameConsistency,
    MotionScore,
    MotionTiers,
    SceneSplit,
    Trim,
)
from runtime.curation.api import OpConfigError
from runtime.curation.decode import Decoded
from runtime.curation.registry import implementation_for

VIDEOS = ["video_static", "video_moving_object", "video_pan", "video_shaky", "video_scene_cut"]
DSSIM = Scale(low=0, high=1, unit="structural dissimilarity (1 - SSIM) / 2 between frames at 2 fps")


def frame_count(media: bytes) -> int:
    return Decoded(media, "mp4").header().frame_count


def test_duration_and_fps(apply_op):
    cases = VIDEOS + ["video_short", "video_low_fps", "video_no_frames", "sharp0"]
    out = apply_op(DurationFilter(min_seconds=1, max_seconds=10, min_fps=12), cases)
    assert out.kept() == VIDEOS + ["sharp0"]  # images pass through
    assert out.fates["video_short"].reason == "shorter than min_seconds"
    assert "0.50 s" in out.fates["video_short"].detail
    assert out.fates["video_low_fps"].reason == "frame rate below min_fps"
    assert out.kind("video_no_frames") == "quarantined"
    assert apply_op(DurationFilter(max_seconds=2), ["video_pan"]).fates["video_pan"].reason == "longer than max_seconds"


def test_scene_split_cuts_at_the_scene_change(apply_op):
    out = apply_op(SceneSplit(), ["video_scene_cut", "video_static", "sharp0"])
    assert out.kind("video_scene_cut") == "split"
    children = out.fates["video_scene_cut"].children
    assert children == ("video_scene_cut_scene000", "video_scene_cut_scene001")
    assert [frame_count(out.records[c].media) for c in children] == [36, 36]
    second = out.records[children[1]].metadata
    assert (second["parent"], second["start_frame"], second["end_frame"]) == ("video_scene_cut", 36, 72)
    assert (second["frame_count"], second["duration_s"]) == (36, 1.5)  # the clip's, for duration subsets
    assert out.kind("video_static") == "kept"  # one scene: passed on with its original bytes


def test_scene_split_clip_lengths(apply_op):
    too_short = apply_op(SceneSplit(clip_min_seconds=2), ["video_scene_cut"])  # two 1.5 s scenes
    assert too_short.fates["video_scene_cut"].reason == "no scene long enough"
    pieces = apply_op(SceneSplit(clip_max_seconds=1), ["video_static"])  # one 3 s scene
    assert len(pieces.fates["video_static"].children) == 3
    low = apply_op(SceneSplit(threshold=100), ["video_scene_cut"])  # the cut scores about 46
    assert low.kind("video_scene_cut") == "kept"


def test_adaptive_detector_finds_the_cut(apply_op):
    out = apply_op(SceneSplit(detector="adaptive"), ["video_scene_cut", "video_moving_object"])
    assert len(out.fates["video_scene_cut"].children) == 2
    assert out.kind("video_moving_object") == "kept"


def test_trim_in_frames_and_seconds(apply_op):
    frames = apply_op(Trim(head=10, tail=10, unit="frames"), ["video_moving_object", "sharp0"])
    assert frame_count(frames.records["video_moving_object"].media) == 52
    metadata = frames.records["video_moving_object"].metadata
    assert metadata["frame_count"] == 52 and metadata["duration_s"] == pytest.approx(52 / 24)
    seconds = apply_op(Trim(head=0.5, tail=0.25, unit="seconds"), ["video_moving_object"])
    assert frame_count(seconds.records["video_moving_object"].media) == 72 - 12 - 6


def test_trim_refuses_a_frames_seconds_mix_up(apply_op):
    with pytest.raises(OpConfigError, match="not a whole number of frames.*unit = 'seconds'"):
        implementation_for(Trim(head=0.5, tail=0))(Trim(head=0.5, tail=0), None)
    whole = apply_op(Trim(head=2, tail=2, unit="seconds"), ["video_pan"])  # 4 s of a 3 s clip: meant frames?
    assert whole.fates["video_pan"].reason == "trim removes the whole clip"
    assert "set unit = 'frames'" in whole.fates["video_pan"].detail


def test_motion_score_orders_and_filters(apply_op):
    out = apply_op(MotionScore(min_score=0.25), VIDEOS + ["sharp0"])
    value = {k: out.records[k].scores["motion_score"]["value"] for k in VIDEOS}
    assert value["video_static"] < 0.25 < value["video_moving_object"] < value["video_pan"]
    assert out.kept() == VIDEOS[1:] + ["sharp0"]
    assert out.fates["video_static"].reason == "too little motion"


def test_motion_tiers(apply_op):
    out = apply_op(MotionTiers(keep=["optimal", "medium", "camera_driven"]), VIDEOS[:4])
    tiers = {k: out.records[k].metadata["motion_tier"] for k in VIDEOS[:4]}
    assert tiers == {
        "video_static": "static", "video_moving_object": "medium", "video_pan": "camera_driven", "video_shaky": "shaky",
    }
    assert out.kept() == ["video_moving_object", "video_pan"]
    assert out.fates["video_shaky"].reason == "motion tier shaky"


def test_frame_consistency_by_structural_dissimilarity(apply_op):
    op = FrameConsistency(scorer="dssim", scale=DSSIM, min_score=0.001, max_score=0.3)
    out = apply_op(op, ["video_static", "video_moving_object", "video_shaky"])
    assert out.kept() == ["video_moving_object"]
    assert out.fates["video_static"].reason == "static frames" and out.fates["video_shaky"].reason == "jittery frames"


def test_video_ops_pass_images_through(apply_op):
    for op in (SceneSplit(), Trim(head=1, tail=1), MotionScore(min_score=1), MotionTiers()):
        out = apply_op(op, ["sharp0"])
        assert out.kept() == ["sharp0"] and out.records["sharp0"].scores == {}
