"""Shard media as pixels: video clips decoded, resampled to the stage's fps and clipped; images centre-cropped."""

import io

import cv2
import numpy as np
import pytest
from conftest import write_mp4
from PIL import Image

from runtime.train.media import image_pixels, source_indices, video_pixels

SIDE = 16


def grey_levels(pixels) -> list[float]:
    """The mean grey level (0-255) of each frame of (3, F, H, W) pixels in [-1, 1]."""
    return [(float(frame.mean()) + 1) * 127.5 for frame in pixels.unbind(1)]


LEVELS = [12 * i for i in range(20)]  # 0, 12, ..., 228: each frame recognisable by its grey level


def test_a_30_fps_clip_at_15_fps_takes_every_other_frame(tmp_path):
    clip = {"__key__": b"clip", "mp4": write_mp4(tmp_path / "a.mp4", LEVELS, fps=30)}
    pixels = video_pixels(clip, "mp4", (SIDE, SIDE), frames=9, fps=15)
    assert pixels.shape == (3, 9, SIDE, SIDE)
    assert grey_levels(pixels) == pytest.approx(LEVELS[0:18:2], abs=5)  # lossy mp4v; neighbours differ by 12


def test_without_a_stage_fps_the_files_frames_are_taken(tmp_path):
    clip = {"__key__": b"clip", "mp4": write_mp4(tmp_path / "a.mp4", LEVELS, fps=30)}
    pixels = video_pixels(clip, "mp4", (SIDE, SIDE), frames=5, fps=None)
    assert grey_levels(pixels) == pytest.approx(LEVELS[:5], abs=5)


def test_nearest_frame_resampling_repeats_frames_of_a_slower_clip():
    assert source_indices(5, source_fps=12, fps=24) == [0, 1, 1, 2, 2]  # 0.5 rounds up
    assert source_indices(4, source_fps=24, fps=16) == [0, 2, 3, 5]  # 0, 1.5, 3, 4.5


def test_a_clip_too_short_for_the_stage_is_an_error(tmp_path):
    clip = {"__key__": b"short", "mp4": write_mp4(tmp_path / "s.mp4", LEVELS[:10], fps=30)}
    with pytest.raises(ValueError, match=r"sample short: mp4 has 10 frames; stage.frames 9 .* need 17 source frames"):
        video_pixels(clip, "mp4", (SIDE, SIDE), frames=9, fps=15)


def test_video_frames_are_centre_cropped_like_images(tmp_path):
    frame = np.zeros((SIDE, 2 * SIDE, 3), dtype=np.uint8)
    frame[:, SIDE // 2 : SIDE + SIDE // 2] = 200  # the centre square is bright, the sides dark
    path = tmp_path / "wide.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (2 * SIDE, SIDE))
    writer.write(frame)
    writer.release()
    pixels = video_pixels({"__key__": b"w", "mp4": path.read_bytes()}, "mp4", (8, 8), frames=1, fps=None)
    assert grey_levels(pixels) == pytest.approx([200], abs=10)

    png = io.BytesIO()
    Image.fromarray(frame).save(png, format="PNG")
    image = image_pixels({"__key__": b"i", "png": png.getvalue()}, "png", (8, 8))
    assert image.shape == (3, 8, 8) and (image.mean().item() + 1) * 127.5 == pytest.approx(200, abs=10)  # squashing instead would give 100
