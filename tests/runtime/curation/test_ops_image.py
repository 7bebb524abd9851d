"""Header filters and pixel checks on images: what each must catch and what it must keep."""

import pytest

from compiler.schema.data import (
    AspectRatioFilter,
    Blur,
    Corruption,
    Exposure,
    PerceptualDedup,
    Probe,
    ResolutionFilter,
)
from runtime.curation import run
from runtime.curation.decode import Decoded

IMAGES = ["sharp0", "blurred", "dark", "clipped", "tiny", "wide", "png", "rotated", "truncated", "not_an_image"]


def test_probe_reads_headers_and_quarantines_what_has_none(apply_op):
    out = apply_op(Probe(), IMAGES + ["video_pan"])
    rotated = out.records["rotated"].metadata
    assert (rotated["width"], rotated["height"], rotated["orientation"]) == (320, 480, 6)  # as displayed
    video = out.records["video_pan"].metadata
    assert (video["fps"], video["frame_count"], video["duration_s"]) == (24.0, 72, 3.0)
    assert out.kind("not_an_image") == "quarantined" and "header unreadable" in out.fates["not_an_image"].detail
    assert out.kind("truncated") == "kept"  # its header is fine; only a decode finds the damage


@pytest.mark.parametrize("check", ["first_last", "full"])
def test_probe_decoding_checks_catch_truncation(apply_op, check):
    out = apply_op(Probe(check=check), ["sharp0", "truncated", "video_pan"])
    assert out.kept() == ["sharp0", "video_pan"]
    assert "truncated" in out.fates["truncated"].detail


def test_resolution_uses_displayed_size(apply_op):
    out = apply_op(ResolutionFilter(min_short_side_px=64), ["sharp0", "tiny", "rotated"])
    assert out.kept() == ["sharp0", "rotated"]
    assert out.fates["tiny"].reason == "short side below minimum"
    tall = apply_op(ResolutionFilter(min_height_px=400), ["rotated"])  # stored 480x320, displayed 320x480
    assert tall.kept() == ["rotated"]
    assert apply_op(ResolutionFilter(min_width_px=400), ["rotated"]).kind("rotated") == "dropped"
    assert apply_op(ResolutionFilter(max_long_side_px=800), ["wide", "sharp0"]).kept() == ["sharp0"]


def test_aspect_ratio(apply_op):
    out = apply_op(AspectRatioFilter(min_ratio=1 / 3, max_ratio=3), ["sharp0", "wide", "rotated"])
    assert out.kept() == ["sharp0", "rotated"]
    assert "5.120" in out.fates["wide"].detail


def test_corruption_fully_decodes(apply_op):
    out = apply_op(Corruption(), ["sharp0", "png", "truncated", "not_an_image", "video_pan", "video_no_frames"])
    assert out.kept() == ["sharp0", "png", "video_pan"]
    assert {out.kind(k) for k in ("truncated", "not_an_image", "video_no_frames")} == {"quarantined"}


def test_blur_drops_blurred_and_featureless(apply_op):
    out = apply_op(Blur(min_laplacian_var=20), ["sharp0", "png", "rotated", "blurred", "dark"])
    assert out.kept() == ["sharp0", "png", "rotated"]
    assert out.fates["blurred"].reason == "too blurry"
    assert out.records["sharp0"].scores["blur"]["value"] > 100 > 5 > out.records["blurred"].scores["blur"]["value"]


def test_exposure(apply_op):
    out = apply_op(Exposure(min_mean_luma=20, max_mean_luma=235, max_clipped_fraction=0.3), ["sharp0", "dark", "clipped"])
    assert out.kept() == ["sharp0"]
    assert out.fates["dark"].reason == "too dark" and out.fates["clipped"].reason == "too bright"
    clipped = apply_op(Exposure(max_clipped_fraction=0.3), ["clipped"])
    assert clipped.fates["clipped"].reason == "too many clipped pixels"


def test_reduced_jpeg_decode_is_served_at_each_ops_size(media):
    pixels = Decoded(media["sharp0"], "jpg", plan_side=256)
    assert pixels.image(256).shape == (256, 341, 3)
    assert pixels.image(128).shape == (128, 171, 3)
    assert pixels.image(64).shape == (64, 85, 3)
    assert Decoded(media["tiny"], "jpg", 256).image(256).shape == (48, 64, 3)  # never upscaled


def test_one_decode_per_image_for_the_fused_pipeline(shards, tmp_path, monkeypatch):
    calls = []
    original = Decoded._decode_image

    def counting(self, side):
        calls.append(side)
        return original(self, side)

    monkeypatch.setattr(Decoded, "_decode_image", counting)
    ops = [Probe(), Blur(min_laplacian_var=20), Exposure(min_mean_luma=20), PerceptualDedup()]
    run(ops, f"{shards}/images-000.tar", tmp_path / "out", workers=1)
    # 10 images, header-readable all: one decode each, at blur's 256 px, shared by exposure and pHash.
    assert calls == [256] * 10
