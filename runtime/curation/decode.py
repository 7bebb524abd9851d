"""Decode a sample's media once per stage, at the largest size any op of the stage reads.

Images: the header (format, size, EXIF orientation) comes from PIL without decoding pixels. Pixels are
decoded once at the stage's plan side: for JPEG through PIL's draft mode, which lets libjpeg scale the
DCT by 1/2, 1/4 or 1/8 while decoding (about 1.8x faster than a full decode at 256 px, see
shared/reference/curation-ops.md); then each op gets its own short side by an antialiased resize of
that one decode. Videos: OpenCV reads the container from a scratch file; all frames are decoded in one
pass at the plan side and each op samples its frame rate and size from them.

Every decoder failure raises UnreadableSample: the bytes came from outside and any error means the
sample cannot be read.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from runtime.curation.api import FULL, UnreadableSample

_VIDEO_EXTS = frozenset({"mp4", "webm", "mov", "avi", "mkv"})
_TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class Header:
    """What the container says, without decoding pixels. Width and height are as displayed (EXIF applied)."""

    kind: str  # "image" | "video"
    format: str
    width: int
    height: int
    orientation: int = 1
    fps: float | None = None
    frame_count: int | None = None

    @property
    def duration_s(self) -> float | None:
        if self.fps is None or self.frame_count is None:
            return None
        return self.frame_count / self.fps


def target_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) with the short side `side`, never larger than the source."""
    short = min(width, height)
    if side >= short:
        return width, height
    scale = side / short
    return max(1, round(width * scale)), max(1, round(height * scale))


class Decoded:
    """The decode cache of one record's media."""

    def __init__(self, media: bytes, ext: str, plan_side: int = FULL) -> None:
        self.media = media
        self.ext = ext
        self.plan_side = plan_side
        self._header: Header | None = None
        self._base: np.ndarray | list[np.ndarray] | None = None  # image, or all frames, at the plan side
        self._base_side = 0
        self._source_size = (0, 0)  # (width, height) as displayed, known after the first decode
        self._sized: dict[int, Any] = {}
        self._memo: dict[Any, Any] = {}
        self._video_file: str | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def is_video(self) -> bool:
        return self.ext in _VIDEO_EXTS

    # Header ---------------------------------------------------------------------------------------

    def header(self) -> Header:
        if self._header is None:
            self._header = self._video_header() if self.is_video else self._image_header()
        return self._header

    def _image_header(self) -> Header:
        try:
            with Image.open(io.BytesIO(self.media)) as image:
                width, height = image.size
                orientation = int(image.getexif().get(0x0112, 1) or 1)
                fmt = image.format or self.ext
        except Exception as error:  # noqa: BLE001 - any failure of the parser means the header is unreadable
            raise UnreadableSample(f"image header unreadable: {type(error).__name__}: {error}") from None
        if orientation in _TRANSPOSED_ORIENTATIONS:
            width, height = height, width
        return Header("image", fmt.lower(), width, height, orientation)

    def _video_header(self) -> Header:
        capture = self._capture()
        try:
            fps = capture.get(cv2.CAP_PROP_FPS)
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        finally:
            capture.release()
        if count <= 0 or fps <= 0 or width <= 0 or height <= 0:
            raise UnreadableSample(f"video container reports no frames (frames={count}, fps={fps:g}, {width}x{height})")
        return Header("video", self.ext, width, height, 1, float(fps), count)

    # Pixels ---------------------------------------------------------------------------------------

    def image(self, side: int = FULL) -> np.ndarray:
        """The image (RGB uint8) with short side `side` (native if smaller); for a video, its first frame."""
        if self.is_video:
            return self.frames(side)[0]
        if side not in self._sized:
            base = self._decoded_base(side)
            height, width = base.shape[:2]
            size = target_size(*self._source_size, side)  # from the source, so sizes never depend on the plan
            if size == (width, height):
                self._sized[side] = base
            else:
                self._sized[side] = np.asarray(Image.fromarray(base).resize(size, Image.Resampling.BILINEAR))
        return self._sized[side]

    def frames(self, side: int = FULL, fps: float | None = None) -> list[np.ndarray]:
        """RGB frames with short side `side`, sampled at `fps` (None: every frame); an image is one frame."""
        if not self.is_video:
            return [self.image(side)]
        if side not in self._sized:
            base = self._decoded_base(side)
            height, width = base[0].shape[:2]
            size = target_size(*self._source_size, side)
            self._sized[side] = (
                base if size == (width, height) else [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in base]
            )
        frames = self._sized[side]
        return [frames[i] for i in self.sample_indices(len(frames), fps)]

    def keyframes(self, side: int, count: int = 3) -> list[np.ndarray]:
        """`count` evenly spaced frames (first to last) for image ops on videos; an image is one frame."""
        frames = self.frames(side)
        if len(frames) <= count:
            return frames
        return [frames[i] for i in np.linspace(0, len(frames) - 1, count).round().astype(int)]

    def sample_indices(self, frame_count: int, fps: float | None) -> list[int]:
        """Frame indices at `fps` from the container's rate; always the first and, if there are two, the last."""
        if fps is None or frame_count <= 1:
            return list(range(frame_count))
        step = max(1.0, self.header().fps / fps)
        indices = sorted({min(frame_count - 1, round(i * step)) for i in range(math.ceil(frame_count / step))})
        if len(indices) == 1:
            indices.append(frame_count - 1)
        return indices

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """A value derived from the pixels (optical flow), computed once per record and stage."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def _decoded_base(self, side: int) -> Any:
        """The one decode: at the plan side, or larger if an op asks for more than the plan promised."""
        wanted = max(side, self.plan_side)
        if self._base is None or self._base_side < wanted:
            self._base = self._decode_video(wanted) if self.is_video else self._decode_image(wanted)
            self._base_side = wanted
            self._sized.clear()
        return self._base

    def _decode_image(self, side: int) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(self.media)) as image:
                width, height = image.size
                if image.format == "JPEG" and side < FULL:
                    # draft() picks the largest DCT scale whose result is still >= the requested size.
                    image.draft("RGB", target_size(width, height, side))
                image.load()
                orientation = image.getexif().get(0x0112, 1)
                if orientation in _TRANSPOSED_ORIENTATIONS:
                    width, height = height, width
                if orientation != 1:
                    image = ImageOps.exif_transpose(image)
                self._source_size = (width, height)
                if image.mode != "RGB":  # convert() copies even when the mode already matches
                    image = image.convert("RGB")
                size = target_size(width, height, side)
                if size != image.size:
                    image = image.resize(size, Image.Resampling.BILINEAR)
                return np.asarray(image)
        except Exception as error:  # noqa: BLE001 - any decoder failure means the sample is unreadable
            raise UnreadableSample(f"image decode failed: {type(error).__name__}: {error}") from None

    def _decode_video(self, side: int) -> list[np.ndarray]:
        header = self.header()
        self._source_size = (header.width, header.height)
        size = target_size(header.width, header.height, side)
        capture = self._capture()
        frames = []
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if (frame.shape[1], frame.shape[0]) != size:
                    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        finally:
            capture.release()
        if not frames:
            raise UnreadableSample(f"video decodes no frames (container says {header.frame_count})")
        return frames

    def first_last_frames(self) -> list[np.ndarray]:
        """The first and last frames at native size (seeking, not decoding everything between)."""
        header = self.header()
        capture = self._capture()
        frames = []
        try:
            for index in sorted({0, header.frame_count - 1}):
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
                ok, frame = capture.read()
                if not ok:
                    raise UnreadableSample(f"video frame {index} of {header.frame_count} does not decode")
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        finally:
            capture.release()
        return frames

    def verify_video(self) -> int:
        """Decode every frame at native size without keeping them; the count, or UnreadableSample."""
        header = self.header()
        capture = self._capture()
        decoded = 0
        try:
            while capture.grab():
                if capture.retrieve()[0]:
                    decoded += 1
        finally:
            capture.release()
        # Containers round their frame count; losing more than a frame or two means a damaged stream.
        if decoded == 0 or decoded < header.frame_count - 2:
            raise UnreadableSample(f"video decodes {decoded} of {header.frame_count} frames")
        return decoded

    # Video scratch file -----------------------------------------------------------------------------

    def video_path(self) -> str:
        """A scratch file (under TMPDIR) holding the video bytes: OpenCV reads containers from paths only."""
        if self._video_file is None:
            handle, path = tempfile.mkstemp(suffix=f".{self.ext}")
            with os.fdopen(handle, "wb") as file:
                file.write(self.media)
            self._video_file = path
            self._finalizer = weakref.finalize(self, _remove, path)
        return self._video_file

    def _capture(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(self.video_path())
        if not capture.isOpened():
            capture.release()
            raise UnreadableSample("OpenCV cannot open the video container")
        return capture

    def close(self) -> None:
        """Drop pixels and delete the scratch file."""
        self._base = None
        self._sized.clear()
        self._memo.clear()
        if self._finalizer is not None:
            self._finalizer()
            self._video_file = None
            self._finalizer = None


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
