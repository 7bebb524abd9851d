"""inference.max_resolution (the documented largest output beside the default size) and inference.fps_range
(a documented frame-rate range around the default fps): their validation, a sourced spec, smoke scale."""

import pytest
from pydantic import ValidationError

import specs
from compiler.scale import scaled
from compiler.schema import Range
from compiler.schema.spec import InferenceSpec


def test_max_resolution_is_separate_from_the_default_size():
    inference = InferenceSpec(sampler="euler", steps=4, resolution=720, max_resolution={"height": 1088, "width": 1920})
    assert (str(inference.resolution), str(inference.max_resolution)) == ("720x720", "1088x1920")


def test_a_default_size_above_the_maximum_is_refused():
    with pytest.raises(ValidationError, match="resolution 1024x1024 has more pixels than max_resolution 512x512"):
        InferenceSpec(sampler="euler", steps=4, resolution=1024, max_resolution=512)


@pytest.mark.parametrize("fps", [24.0, 27.5, 30.0])
def test_a_default_fps_within_the_range_is_accepted(fps):
    assert InferenceSpec(sampler="euler", steps=4, fps=fps, fps_range=Range(low=24, high=30)).fps == fps


@pytest.mark.parametrize("fps", [23.9, 30.5])
def test_a_default_fps_outside_the_range_is_refused(fps):
    with pytest.raises(ValidationError, match=f"inference.fps {fps:g} is outside fps_range 24-30"):
        InferenceSpec(sampler="euler", steps=4, fps=fps, fps_range=Range(low=24, high=30))


def test_a_reversed_range_is_refused():
    with pytest.raises(ValidationError, match="range low 30 must not be above high 24"):
        Range(low=30, high=24)


def test_hailuo_02_states_its_documented_frame_rates():
    spec = specs.load("hailuo-02")
    assert (spec.inference.fps_range.low, spec.inference.fps_range.high) == (24.0, 30.0)
    assert spec.inference.fps_range.contains(spec.inference.fps)


def test_smoke_scale_shrinks_the_maximum_with_the_default():
    spec = specs.load("hailuo-02")
    inference = spec.inference.model_copy(update={"max_resolution": spec.inference.resolution})
    full = spec.model_copy(update={"inference": inference})
    smoke = scaled(full, "smoke").inference
    assert smoke.max_resolution is not None and smoke.max_resolution.pixels == smoke.resolution.pixels
    assert smoke.max_resolution.pixels < full.inference.max_resolution.pixels
