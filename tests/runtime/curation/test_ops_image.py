"""Header filters and pixel checks on images: what each must catch and what it must keep."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

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
from runtime.curation.api import FULL, MapOp, OpContext, UnreadableSample
from runtime.curation.decode import Decoded, jpeg_header, luma
from runtime.curation.registry import build
from runtime.curation.runner import BoundOp, plan_color

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
    assert out.records["sharp0"].scores["blur"]["value"] > 100
    assert out.records["blurred"].scores["blur"]["value"] < 5


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

    def counting(self, side, grey=False):
        calls.append((side, grey))
        return original(self, side, grey)

    monkeypatch.setattr(Decoded, "_decode_image", counting)
    ops = [Probe(), Blur(min_laplacian_var=20), Exposure(min_mean_luma=20), PerceptualDedup()]
    run(ops, f"{shards}/images-000.tar", tmp_path / "out", workers=1)
    # 10 images, header-readable all: one decode each, at blur's 256 px, shared by exposure and pHash;
    # luma only, as none of these ops needs colour.
    assert calls == [(256, True)] * 10


# The luma-only decode ---------------------------------------------------------------------------------


def header_by_pil(data: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        return width, height, int(image.getexif().get(0x0112, 1) or 1)


def test_jpeg_header_read_from_markers_is_pils(media):
    for name in ("sharp0", "tiny", "wide", "rotated", "truncated", "sharp1_resized"):
        assert jpeg_header(media[name])[:3] == header_by_pil(media[name]), name
    header = Decoded(media["rotated"], "jpg").header()
    assert (header.format, header.width, header.height, header.orientation) == ("jpeg", 320, 480, 6)
    # Whatever the fast reader does not fully understand goes to PIL: an XMP packet (PIL may take the
    # orientation from it), a damaged quantisation table, bytes that are not a JPEG at all.
    xmp = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(xmp, "JPEG", xmp=b'<x tiff:Orientation="3"/>')
    assert jpeg_header(xmp.getvalue()) is None
    assert Decoded(xmp.getvalue(), "jpg").header().orientation == 3
    table = media["sharp0"].index(b"\xff\xdb")
    damaged = media["sharp0"][: table + 2] + b"\x00\x30" + media["sharp0"][table + 4 :]
    assert jpeg_header(damaged) is None
    assert jpeg_header(media["png"]) is None and jpeg_header(media["not_an_image"]) is None


@pytest.mark.parametrize("name, ext", [("sharp0", "jpg"), ("rotated", "jpg"), ("tiny", "jpg"), ("png", "png")])
def test_luma_decode_is_the_luma_of_the_colour_decode(media, name, ext):
    grey, colour = Decoded(media[name], ext, 256, color=False), Decoded(media[name], ext, 256)
    for side in (256, 128, 64):
        served = grey.grey(side)
        assert served.shape == colour.image(side).shape[:2] and served.dtype == np.uint8
        assert np.array_equal(colour.grey(side), luma(colour.image(side)))  # a colour decoder converts its own
        # The JPEG's own Y channel vs Y of the RGB reconstructed from it (rounding, clipping), both reduced
        # with the luma decoder's box filter (the colour decoder's bilinear one alone differs by ~2 levels).
        expected = cv2.resize(luma(colour.image(256)), served.shape[::-1], interpolation=cv2.INTER_AREA)
        assert np.abs(served.astype(int) - expected).mean() < 1.0, (name, side)
    assert grey._base is None  # no colour decode happened


def test_luma_decoder_finds_truncation_and_still_serves_colour(media):
    with pytest.raises(UnreadableSample, match="truncated"):
        Decoded(media["truncated"], "jpg", 256, color=False).load(256, grey=True)
    # A stray marker inside the scan (a corrupted byte): libjpeg greys out the rest and fails after the
    # last row, which OpenCV ignores; the decoder sees the grey and lets PIL fail as the colour decode does.
    middle = len(media["sharp2"]) // 2
    damaged = media["sharp2"][:middle] + b"\xff\x4f" + media["sharp2"][middle:]
    assert cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_2) is not None
    for side in (FULL, 256):
        with pytest.raises(UnreadableSample, match="broken data stream"):
            Decoded(damaged, "jpg", side).load(side)
        with pytest.raises(UnreadableSample, match="broken data stream"):
            Decoded(damaged, "jpg", side, color=False).load(side, grey=True)
    pixels = Decoded(media["sharp0"], "jpg", 256, color=False)
    assert pixels.grey(256).shape == (256, 341)
    assert pixels.image(256).shape == (256, 341, 3)  # an op that reads colour gets it, by a second decode


def test_a_stage_decodes_luma_only_when_no_op_reads_colour():
    class ReadsColour(MapOp):
        def decode_side(self):
            return 224

    luma_ops = [build(op, OpContext()) for op in (Blur(min_laplacian_var=20), Exposure(), PerceptualDedup())]
    header_only = build(ResolutionFilter(min_short_side_px=64), OpContext())
    assert not plan_color([*luma_ops, header_only])
    assert plan_color([*luma_ops, ReadsColour(Blur(min_laplacian_var=1), OpContext())])
    blur = luma_ops[0]
    # Y-channel scores are not bit-identical to luma(RGB) scores: they are cached apart.
    assert BoundOp(blur, 256, color=False).score_id != BoundOp(blur, 256, color=True).score_id


def test_video_luma_is_converted_from_the_colour_frames(media):
    pixels = Decoded(media["video_pan"], "mp4", 128, color=False)
    colour = pixels.keyframes(128)
    assert [f.shape for f in pixels.keyframes(128, grey=True)] == [f.shape[:2] for f in colour]
    assert all(np.array_equal(g, luma(f)) for g, f in zip(pixels.keyframes(128, grey=True), colour))
    assert np.array_equal(pixels.grey(128), luma(pixels.image(128)))
    assert len(pixels.frames(128, fps=8, grey=True)) == len(pixels.frames(128, fps=8))
