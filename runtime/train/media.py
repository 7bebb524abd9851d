"""Shard media as training pixels: images and video clips centre-cropped and resized to the stage's size,
captions, and curation's defect masks.

Video clips. The container is decoded with OpenCV from a scratch file (as curation does, runtime/curation/
decode.py), from the first frame, and resampled to the stage's frame rate by nearest frame: output frame i
(at time i / fps) is source frame round(i * source_fps / fps), so a 30 fps clip at 15 fps takes every other
frame and a 12 fps clip at 24 fps repeats each frame. Without a stage fps the file's own frames are taken.
Decoding stops at the last frame needed.

A clip shorter than stage.frames (after resampling) is an error, not a shorter clip: a causal VAE would encode
1 + k*n frames for a smaller n, but one micro-batch must have one shape and the stage's token count (and the
timestep shift derived from it) is fixed by stage.frames, so silently training shorter clips would change
the stage. Keep long enough clips with the dataset's `where.min_seconds`, or lower stage.frames.
"""

from __future__ import annotations

import io
import json
import math
import tempfile

import cv2
import numpy as np
import torch
from PIL import Image

from runtime.train.subset import VIDEO_FIELDS, Sample

IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp")
SOURCE_FIELDS = tuple(f"source.{ext}" for ext in IMAGE_FIELDS)  # an edit triplet's reference image
# A preference pair's rejected image or clip (the sample's own media is the preferred one).
REJECTED_FIELDS = tuple(f"rejected.{ext}" for ext in IMAGE_FIELDS + VIDEO_FIELDS)


def key_of(sample: Sample) -> str:
    """The sample's key as text."""
    return sample["__key__"].decode()


def first_member(sample: Sample, fields: tuple[str, ...]) -> str | None:
    """The first of `fields` the sample has, None if it has none."""
    return next((field for field in fields if field in sample), None)


def cropped(image: Image.Image, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Scale `image` to cover `size` (height, width), then crop the centre to exactly that size."""
    height, width = size
    scale = max(width / image.width, height / image.height)
    image = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))), resample)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return np.asarray(image.crop((left, top, left + width, top + height)))


def signed(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (3, ..., H, W) in [-1, 1]."""
    pixels = torch.from_numpy(np.array(rgb, dtype=np.float32)) / 127.5 - 1
    return pixels.movedim(-1, 0)


def image_pixels(sample: Sample, field: str, size: tuple[int, int]) -> torch.Tensor:
    """The image member `field` as (3, H, W) pixels in [-1, 1] at `size` (height, width)."""
    image = Image.open(io.BytesIO(sample[field])).convert("RGB")
    return signed(cropped(image, size, Image.Resampling.BICUBIC))


def source_indices(frames: int, source_fps: float, fps: float | None) -> list[int]:
    """Source frame index of each of `frames` output frames at `fps` (nearest frame; None: the file's frames)."""
    if fps is None:
        return list(range(frames))
    return [math.floor(i * source_fps / fps + 0.5) for i in range(frames)]


def video_pixels(sample: Sample, field: str, size: tuple[int, int], frames: int, fps: float | None) -> torch.Tensor:
    """The video member `field` as (3, frames, H, W) pixels in [-1, 1]: resampled to `fps`, from the first frame."""
    key = key_of(sample)
    with tempfile.NamedTemporaryFile(suffix=f".{field}") as scratch:
        scratch.write(sample[field])
        scratch.flush()
        capture = cv2.VideoCapture(scratch.name)
        try:
            source_fps = capture.get(cv2.CAP_PROP_FPS)
            if fps is not None and not source_fps > 0:
                raise ValueError(
                    f"sample {key}: {field} states no frame rate, so it cannot be resampled to stage.fps {fps:g}; "
                    "re-encode the clip with its frame rate in the container"
                )
            wanted = source_indices(frames, source_fps, fps)
            decoded, count = _decode(capture, wanted)
        finally:
            capture.release()
    if count <= wanted[-1]:
        rate = f"at stage.fps {fps:g} from {source_fps:g} fps" if fps is not None else "(no stage.fps)"
        raise ValueError(
            f"sample {key}: {field} has {count} frames; stage.frames {frames} {rate} need {wanted[-1] + 1} "
            f"source frames; keep clips of at least {frames / (fps or source_fps or 1):.2f} s with the dataset's "
            "where.min_seconds, or lower stage.frames (to a 1 + k*n count the VAE accepts)"
        )
    clip = [cropped(Image.fromarray(decoded[index]), size, Image.Resampling.BICUBIC) for index in wanted]
    return signed(np.stack(clip))


def _decode(capture, wanted: list[int]) -> tuple[dict[int, np.ndarray], int]:
    """RGB frames at the `wanted` source indices and the number of frames read, stopping after the last one."""
    frames: dict[int, np.ndarray] = {}
    needed, last = set(wanted), max(wanted)
    count = 0
    while count <= last and capture.grab():
        if count in needed:
            ok, frame = capture.retrieve()
            if not ok:
                break
            frames[count] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        count += 1
    return frames, count


def caption(sample: Sample) -> str:
    """The original caption (or an edit triplet's instruction), else the first synthetic caption."""
    if "txt" in sample:
        return sample["txt"].decode()
    if "captions.json" in sample:
        captions = json.loads(sample["captions.json"])
        if captions.get("original"):
            return captions["original"]
        if captions.get("synthetic"):
            return captions["synthetic"][0]["text"]
    raise ValueError(f"sample {key_of(sample)} has no caption (txt or captions.json) to encode")


def defect_keep(sample: Sample, field: str, size: tuple[int, int]) -> torch.Tensor:
    """Curation's defect mask member `field` at `size`: 1 where the loss counts (mask pixel zero)."""
    mask = Image.open(io.BytesIO(sample[field])).convert("L")
    return torch.from_numpy((cropped(mask, size, Image.Resampling.NEAREST) == 0).astype(np.float32))
