"""Decode a sample's media once per stage, at the largest size any op of the stage reads.

Images: the header (format, size, EXIF orientation) is read without decoding pixels: a plain JPEG's from
its markers (`jpeg_header`, 5x faster than PIL, accepting only what PIL accepts, with the same result),
anything else's by PIL. Pixels are decoded once at the stage's plan side, in colour or, when no op of the
stage needs colour (`OpImpl.needs_color`), as luma only:

- colour: JPEG through PIL's draft mode, which lets libjpeg scale the DCT by 1/2, 1/4 or 1/8 while
  decoding (about 1.4x faster than a full decode at 256 px, see shared/reference/curation-ops.md); each
  op gets its own short side by an antialiased resize of that one decode.
- luma: JPEG through OpenCV's reduced greyscale decode (IMREAD_REDUCED_GRAYSCALE_2/4/8): libjpeg scales
  the DCT as above and also skips the chroma IDCT, upsampling and colour conversion (about 1.7x faster
  than a full colour decode at 256 px). The grey image is the JPEG's own Y channel, i.e. BT.601 luma, the
  same quantity `luma(rgb)` computes, up to rounding. Smaller sides are INTER_AREA resizes of it.
  OpenCV passes over damage that libjpeg reports only after the last row (a truncated stream, a stray
  marker in the scan: the rest of the image comes out grey), so a file not ending with the EOI marker,
  or whose decode shows such a grey tail (`_complete`), is decoded again by PIL's draft "L" mode, which
  raises as the colour decode does (a fuzz of damaged JPEGs found no verdict differing from PIL's).
  Other formats are decoded in colour by PIL and converted.

`grey(side)` (`image(side, grey=True)`) serves luma either way: from the luma decode, or converted once
per side from the colour decode. A colour request on a luma-only decoder decodes colour too (correct,
but a second decode: ops that read colour must say so). Videos go through FFmpeg (PyAV, runtime/curation/
video.py) from the bytes in memory: the header and every frame's timestamp come from demuxing (variable
frame rate right: duration and rates are true ones, not the container's nominal rate); frames are decoded
once at the plan side, FFmpeg scaling each one as it is decoded, so no full-resolution frame is kept, and
each op samples its frame rate (by timestamp) and size from them. `stream(side)` decodes frame by frame
without keeping any, for ops that read every frame once (scene detection): memory stays one frame.

Every decoder failure raises UnreadableSample: the bytes came from outside and any error means the
sample cannot be read.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

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
    fps: float | None = None  # videos: average rate, frames / true duration
    frame_count: int | None = None
    video_duration_s: float | None = None  # from the frames' timestamps (last frame's own duration included)
    frame_times: tuple[float, ...] = ()  # each frame's presentation time, from 0

    @property
    def duration_s(self) -> float | None:
        if self.video_duration_s is not None:
            return self.video_duration_s
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


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma, Y = 0.299 R + 0.587 G + 0.114 B (OpenCV's RGB2GRAY), uint8."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def oriented(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """`pixels` as displayed under EXIF `orientation` (the same transform as PIL's exif_transpose)."""
    if orientation == 1 or orientation not in _ORIENTATIONS:
        return pixels
    return np.ascontiguousarray(_ORIENTATIONS[orientation](pixels))


_ORIENTATIONS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],  # mirrored
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored vertically
    5: lambda a: a.swapaxes(0, 1),  # transposed
    6: lambda a: a.swapaxes(0, 1)[:, ::-1],  # rotated 90 clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transversed
    8: lambda a: a.swapaxes(0, 1)[::-1],  # rotated 90 counter-clockwise
}
_JPEG_EOI = b"\xff\xd9"
_REDUCED_GREY = ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
                 (2, cv2.IMREAD_REDUCED_GRAYSCALE_2), (1, cv2.IMREAD_GRAYSCALE))


def _reduced_grey_flag(width: int, height: int, size: tuple[int, int]) -> int:
    """The cheapest OpenCV greyscale flag whose DCT-scaled result (ceil(dim / n)) still covers `size`."""
    for denominator, flag in _REDUCED_GREY:
        if -(-width // denominator) >= size[0] and -(-height // denominator) >= size[1]:
            return flag | cv2.IMREAD_IGNORE_ORIENTATION
    return cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION


def _complete(data: bytes, scan: int, pixels: np.ndarray) -> bool:
    """Whether OpenCV's decode of a single-scan JPEG met no damage that PIL would raise on.

    libjpeg stops at a marker inside the entropy-coded data (a truncation, a corrupted byte), fills the
    rest of the scan with zero coefficients, i.e. uniform grey 128, and warns; the marker is then read
    after the last row, where it is an error (PIL raises it; OpenCV has already returned the pixels).
    So a last pixel of exactly 128, or a marker among the last bytes (damage inside the final MCUs, which
    leave it otherwise intact) mean: ask PIL. Either can happen in an intact image too; PIL then decodes
    it, a little slower. A progressive JPEG needs neither check: libjpeg reads all its scans before the
    first row, so OpenCV itself fails on such damage.
    """
    if pixels[-1, -1] == 128:
        return False
    end = len(data) - 2
    at = max(scan, end - _TAIL)
    while (at := data.find(b"\xff", at, end)) >= 0:
        follower = data[at + 1]
        if follower != 0 and not 0xD0 <= follower <= 0xD7:
            return False
        at += 2
    return True


_TAIL = 1024  # bytes before EOI checked for markers: more than the final MCU of any photo holds


_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE_MARKERS = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_SKIPPED_MARKERS = frozenset({0xC4, 0xDD, 0xFE})  # DHT, DRI, COM: segments PIL reads past without checks


class JpegLayout(NamedTuple):
    """What `jpeg_header` reads: size as stored, EXIF orientation, colour components, progressive, and
    where the entropy-coded data of the first scan starts (0: not known)."""

    width: int
    height: int
    orientation: int
    components: int
    progressive: bool
    scan: int = 0


def jpeg_header(data: bytes) -> JpegLayout | None:
    """The header of a plain JPEG, read from its markers in a few microseconds; None when anything is
    unusual (PIL then reads the header, and decides).

    Accepts only what PIL's JPEG plugin accepts too, with the same result: the markers PIL checks are
    checked as PIL does (8-bit samples, 1/3/4 components, complete quantisation tables, segments within
    the file); a second EXIF or frame header, an XMP packet (PIL may read the orientation there), an MPO
    index (PIL opens those as MPO), Photoshop resources, an unknown marker, a malformed EXIF block or an
    orientation that is not one SHORT all fall back.
    """
    end = len(data)
    if end < 4 or data[0] != 0xFF or data[1] != 0xD8 or data[2] != 0xFF:
        return None
    pos, frame, orientation, exif, xmp = 2, None, None, False, False
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        start, stop = pos + 4, pos + 2 + length
        if length < 2 or stop > end:
            return None
        if marker == 0xDA:  # start of scan: the header is complete
            if frame is None or xmp and orientation is None:
                return None
            width, height, components, progressive = frame
            return JpegLayout(width, height, orientation or 1, components, progressive, stop)
        if 0xE0 <= marker <= 0xEF:
            segment = data[start:stop]
            if marker == 0xE1 and segment.startswith(b"Exif\0\0"):
                if exif:
                    return None
                exif = True
                found = _exif_orientation(segment, 6)
                if found is None:
                    return None
                orientation = found or None  # 0: no orientation tag
            elif marker == 0xE1 and segment.startswith(b"http://ns.adobe.com/xap/1.0/"):
                xmp = True
            elif _unusual_app_segment(marker, segment):
                return None
        elif marker == 0xDB:  # quantisation tables: PIL rejects a short one
            at = start
            while at < stop:
                at += 1 + (64 if data[at] < 16 else 128)
            if at != stop:
                return None
        elif marker in _SOF_MARKERS:
            # PIL reads the component specs in threes to the segment's end (a partial one fails)
            components = data[start + 5] if length >= 8 else 0
            if frame is not None or components not in (1, 3, 4) or (length - 8) % 3 or data[start] != 8:
                return None
            height = (data[start + 1] << 8) | data[start + 2]
            width = (data[start + 3] << 8) | data[start + 4]
            if width == 0 or height == 0:
                return None
            frame = (width, height, components, marker in _PROGRESSIVE_MARKERS)
        elif marker not in _SKIPPED_MARKERS:
            return None
        pos = stop
    return None


def _unusual_app_segment(marker: int, segment: bytes) -> bool:
    """APPn segments PIL parses further and might fail on (short JFIF / Adobe / ICC headers), or that make
    it read more than a plain JPEG (an MPO index, Photoshop resources)."""
    return (
        (marker == 0xE0 and segment.startswith(b"JFIF") and len(segment) < 7)
        or (marker == 0xEE and segment.startswith(b"Adobe") and len(segment) < 7)
        or (marker == 0xE2 and segment.startswith(b"ICC_PROFILE\0") and len(segment) < 14)
        or (marker == 0xE2 and segment.startswith(b"MPF\0"))
        or (marker == 0xED and segment.startswith(b"Photoshop 3.0\0"))
    )


def _exif_orientation(segment: bytes, tiff: int) -> int | None:
    """The orientation tag of IFD0 of the TIFF block at `tiff` (1 if its value is 0), 0 if absent, None if
    PIL might read it differently. PIL stops reading the IFD at the first entry whose data lies outside
    the block (skipping entries of unknown type or beyond its total-size budget), so entries before the
    orientation are checked the same way."""
    order = segment[tiff : tiff + 4]
    if order == b"II*\0":
        byteorder = "little"
    elif order == b"MM\0*":
        byteorder = "big"
    else:
        return None
    block = len(segment) - tiff

    def number(at: int, width: int) -> int:
        return int.from_bytes(segment[tiff + at : tiff + at + width], byteorder)

    ifd = number(4, 4)
    if ifd + 2 > block:
        return None
    entries = number(ifd, 2)
    if ifd + 2 + 12 * entries > block:
        return None
    total = 0
    for entry in range(ifd + 2, ifd + 2 + 12 * entries, 12):
        tag, kind = number(entry, 2), number(entry + 2, 2)
        if tag == 0x0112:
            if kind != 3 or number(entry + 4, 4) != 1:  # not one SHORT
                return None
            return number(entry + 8, 2) or 1
        size = number(entry + 4, 4) * _TIFF_UNITS.get(kind, 0)
        if size > 4:
            total += size
            if total <= block and number(entry + 8, 4) + size > block:
                return None
    return 0


_TIFF_UNITS = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8}


class Decoded:
    """The decode cache of one record's media.

    `color=False` (the stage's ops read luma only): the one decode is greyscale, see the module docstring.
    """

    def __init__(self, media: bytes, ext: str, plan_side: int = FULL, color: bool = True) -> None:
        self.media = media
        self.ext = ext
        self.plan_side = plan_side
        self.color = color
        self._header: Header | None = None
        self._jpeg: JpegLayout | None = None  # a JPEG's layout, read with the header
        self._base: np.ndarray | list[np.ndarray] | None = None  # image, or all frames, at the plan side (RGB)
        self._base_side = 0
        self._grey_base: np.ndarray | None = None  # the luma-only image decode (images only)
        self._grey_base_side = 0
        self._source_size = (0, 0)  # (width, height) as displayed, known after the first decode
        self._sized: dict[int, Any] = {}  # side -> RGB image, or all RGB frames of a video
        self._grey: dict[Any, np.ndarray] = {}  # side -> grey image; (side, frame index) -> grey video frame
        self._memo: dict[Any, Any] = {}
        self._video_file: str | None = None
        self._video_info = None  # runtime.curation.video.VideoInfo, read with the header
        self._finalizer: weakref.finalize | None = None

    @property
    def is_video(self) -> bool:
        return self.ext in _VIDEO_EXTS

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the decoded pixels, so the Ray executor's next segment of the stage does not decode
        again; the scratch file (a path on this host) and op memos stay behind."""
        state = dict(self.__dict__)
        state.update(_video_file=None, _finalizer=None, _memo={})
        return state

    # Header ---------------------------------------------------------------------------------------

    def header(self) -> Header:
        if self._header is None:
            self._header = self._video_header() if self.is_video else self._image_header()
        return self._header

    def _image_header(self) -> Header:
        layout = jpeg_header(self.media)
        if layout is not None and (Image.MAX_IMAGE_PIXELS is None or layout.width * layout.height <= Image.MAX_IMAGE_PIXELS):
            self._jpeg = layout
            width, height, orientation = layout.width, layout.height, layout.orientation
            if orientation in _TRANSPOSED_ORIENTATIONS:
                width, height = height, width
            return Header("image", "jpeg", width, height, orientation)
        try:
            with Image.open(io.BytesIO(self.media)) as image:
                width, height = image.size
                orientation = int(image.getexif().get(0x0112, 1) or 1)
                fmt = image.format or self.ext
                if fmt == "JPEG":
                    components = {"L": 1, "RGB": 3, "CMYK": 4}.get(image.mode, 0)
                    progressive = bool(image.info.get("progressive"))
                    self._jpeg = JpegLayout(width, height, orientation, components, progressive)
        except Exception as error:  # noqa: BLE001 - any failure of the parser means the header is unreadable
            # PIL names the BytesIO by its address: dropped, so the quarantine shard is the same on every run.
            detail = re.sub(r" at 0x[0-9a-f]+", "", str(error))
            raise UnreadableSample(f"image header unreadable: {type(error).__name__}: {detail}") from None
        if orientation in _TRANSPOSED_ORIENTATIONS:
            width, height = height, width
        return Header("image", fmt.lower(), width, height, orientation)

    def _video_header(self) -> Header:
        from runtime.curation.video import probe

        info = self._video_info = probe(self.media)
        if info.duration_s <= 0:
            raise UnreadableSample(f"video has {info.frame_count} frames over {info.duration_s:g} s")
        return Header("video", self.ext, info.width, info.height, 1, info.fps, info.frame_count, info.duration_s,
                      info.times)

    # Pixels ---------------------------------------------------------------------------------------

    def image(self, side: int = FULL, grey: bool = False) -> np.ndarray:
        """The image (RGB uint8, or luma if `grey`) with short side `side` (native if smaller); for a video,
        its first frame."""
        if grey:
            return self.grey(side)
        if self.is_video:
            return self.frames(side)[0]
        sized = self._sized.get(side)
        if sized is None:
            base = self._decoded_base(side)
            height, width = base.shape[:2]
            size = target_size(*self._source_size, side)  # from the source, so sizes never depend on the plan
            if size == (width, height):
                sized = base
            else:
                sized = np.asarray(Image.fromarray(base).resize(size, Image.Resampling.BILINEAR))
            self._sized[side] = sized
        return sized

    def grey(self, side: int = FULL) -> np.ndarray:
        """BT.601 luma (uint8, 2-D) with short side `side`: from the luma-only decode when the stage has one,
        else converted once from the colour image of that size. For a video, its first frame."""
        sized = self._grey.get(side)
        if sized is not None:
            return sized
        if self.is_video:
            return self._grey_frame(side, 0)
        if self._serves_grey_from_colour(side):
            sized = luma(self.image(side))
        else:
            base = self._decoded_grey_base(side)
            height, width = base.shape
            size = target_size(*self._source_size, side)
            sized = base if size == (width, height) else cv2.resize(base, size, interpolation=cv2.INTER_AREA)
        self._grey[side] = sized
        return sized

    def frames(self, side: int = FULL, fps: float | None = None, grey: bool = False) -> list[np.ndarray]:
        """Frames (RGB, or luma if `grey`) with short side `side`, sampled at `fps` (None: every frame);
        an image is one frame."""
        if not self.is_video:
            return [self.grey(side) if grey else self.image(side)]
        frames = self._video_frames(side)
        indices = self.sample_indices(len(frames), fps)
        return [self._grey_frame(side, i) for i in indices] if grey else [frames[i] for i in indices]

    def keyframes(self, side: int, count: int = 3, grey: bool = False) -> list[np.ndarray]:
        """`count` evenly spaced frames (first to last) for image ops on videos; an image is one frame."""
        if not self.is_video:
            return [self.grey(side) if grey else self.image(side)]
        frames = self._video_frames(side)
        total = len(frames)
        indices = range(total) if total <= count else np.linspace(0, total - 1, count).round().astype(int).tolist()
        return [self._grey_frame(side, i) for i in indices] if grey else [frames[i] for i in indices]

    def load(self, side: int = FULL, grey: bool = False) -> None:
        """Decode now, raising UnreadableSample if the media cannot be decoded: the decode `grey(side)` (if
        `grey`) or `image(side)` would read, without producing any per-op size."""
        if grey and not self.is_video and not self._serves_grey_from_colour(side):
            self._decoded_grey_base(side)
        else:
            self._decoded_base(side)

    def sample_indices(self, frame_count: int, fps: float | None) -> list[int]:
        """Frame indices at `fps` by the frames' timestamps (the frame shown at each 1/fps tick, so a
        variable-frame-rate video is sampled evenly in time); always the first and, if there are two, the last."""
        if fps is None or frame_count <= 1:
            return list(range(frame_count))
        times = np.asarray(self.header().frame_times[:frame_count])
        if len(times) < frame_count:  # decoded more frames than the demuxer timed: fall back to the average rate
            times = np.arange(frame_count) / self.header().fps
        ticks = np.arange(0.0, times[-1] + 1e-9, 1.0 / fps)
        indices = sorted({int(i) for i in np.searchsorted(times, ticks + 1e-9, side="right") - 1})
        if len(indices) == 1:
            indices.append(frame_count - 1)
        return indices

    def video_info(self):
        """The container facts of runtime/curation/video.py (timestamps, keyframes, audio) of a video."""
        self.header()
        return self._video_info

    def stream(self, side: int = FULL, grey: bool = False):
        """(time, frame) for every frame of a video at short side `side`, decoded one at a time and not kept."""
        from runtime.curation.video import stream_frames

        header = self.header()
        self._source_size = (header.width, header.height)
        yield from stream_frames(self.media, target_size(header.width, header.height, side), grey=grey)

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """A value derived from the pixels (optical flow), computed once per record and stage."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def _video_frames(self, side: int) -> list[np.ndarray]:
        """Every RGB frame of a video at short side `side` (cached; the caller must not modify the list)."""
        frames = self._sized.get(side)
        if frames is None:
            base = self._decoded_base(side)
            height, width = base[0].shape[:2]
            size = target_size(*self._source_size, side)
            frames = self._sized[side] = (
                base if size == (width, height) else [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in base]
            )
        return frames

    def _grey_frame(self, side: int, index: int) -> np.ndarray:
        """Luma of one video frame at `side`, converted once (only the frames some op reads)."""
        key = (side, index)
        grey = self._grey.get(key)
        if grey is None:
            grey = self._grey[key] = luma(self._video_frames(side)[index])
        return grey

    def _serves_grey_from_colour(self, side: int) -> bool:
        """Luma comes from the colour decode when the stage decodes colour, or one big enough exists."""
        return self.color or (self._base is not None and self._base_side >= max(side, self.plan_side))

    def _decoded_base(self, side: int) -> Any:
        """The one decode: at the plan side, or larger if an op asks for more than the plan promised."""
        wanted = max(side, self.plan_side)
        if self._base is None or self._base_side < wanted:
            self._base = self._decode_video(wanted) if self.is_video else self._decode_image(wanted)
            self._base_side = wanted
            self._sized.clear()
            self._grey.clear()
        return self._base

    def _decoded_grey_base(self, side: int) -> np.ndarray:
        """The luma-only image decode, at the plan side or larger (never smaller than the decode it serves)."""
        wanted = max(side, self.plan_side)
        if self._grey_base is None or self._grey_base_side < wanted:
            self._grey_base = self._decode_image(wanted, grey=True)
            self._grey_base_side = wanted
            self._grey.clear()
        return self._grey_base

    def _decode_image(self, side: int, grey: bool = False) -> np.ndarray:
        """The one decode of an image: RGB at exactly `side`, or (`grey`) luma at `side` or somewhat larger
        (a DCT-scaled size)."""
        if not grey:
            return self._decode_rgb(side)
        header = self.header()  # raises UnreadableSample itself
        if header.format == "jpeg":
            return self._decode_jpeg_grey(header, side)
        return luma(self._decode_rgb(side))

    def _decode_rgb(self, side: int) -> np.ndarray:
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
            raise UnreadableSample(f"image decode failed: {type(error).__name__}: {_message(error)}") from None

    def _decode_jpeg_grey(self, header: Header, side: int) -> np.ndarray:
        width, height = header.width, header.height  # as displayed
        self._source_size = (width, height)
        size = target_size(width, height, side)
        if header.orientation in _TRANSPOSED_ORIENTATIONS:  # the stored image is sideways
            width, height, size = height, width, size[::-1]
        layout = self._jpeg
        if layout is not None and layout.components != 4 and self.media.endswith(_JPEG_EOI):
            pixels = cv2.imdecode(np.frombuffer(self.media, np.uint8), _reduced_grey_flag(width, height, size))
            if pixels is not None and pixels.ndim == 2 and pixels.size and (layout.progressive or _complete(self.media, layout.scan, pixels)):
                return oriented(pixels, header.orientation)
        try:  # PIL raises on damage OpenCV passes over; it decides whatever looks damaged, or OpenCV refused
            with Image.open(io.BytesIO(self.media)) as image:
                if side < FULL:
                    image.draft("L", size)
                image.load()
                pixels = np.asarray(image) if image.mode == "L" else luma(np.asarray(image.convert("RGB")))
        except Exception as error:  # noqa: BLE001 - any decoder failure means the sample is unreadable
            raise UnreadableSample(f"image decode failed: {type(error).__name__}: {_message(error)}") from None
        return oriented(pixels, header.orientation)

    def _decode_video(self, side: int) -> list[np.ndarray]:
        header = self.header()
        frames = [frame for _, frame in self.stream(side)]
        if not frames:
            raise UnreadableSample(f"video decodes no frames (container says {header.frame_count})")
        return frames

    def first_last_frames(self) -> list[np.ndarray]:
        """The first and last frames at native size: the first decoded, the last from its keyframe on."""
        from runtime.curation.video import frame_at

        header = self.header()
        return [frame_at(self.media, t, self._video_info) for t in sorted({0.0, header.frame_times[-1]})]

    def verify_video(self) -> int:
        """Decode every frame at native size without keeping them; the count, or UnreadableSample."""
        from runtime.curation.video import count_frames

        header = self.header()
        decoded = count_frames(self.media)
        # Containers round their frame count; losing more than a frame or two means a damaged stream.
        if decoded == 0 or decoded < header.frame_count - 2:
            raise UnreadableSample(f"video decodes {decoded} of {header.frame_count} frames")
        return decoded

    # Video scratch file -----------------------------------------------------------------------------

    def video_path(self) -> str:
        """A scratch file (under TMPDIR) holding the video bytes, for tools that read containers from paths."""
        if self._video_file is None:
            handle, path = tempfile.mkstemp(suffix=f".{self.ext}")
            with os.fdopen(handle, "wb") as file:
                file.write(self.media)
            self._video_file = path
            self._finalizer = weakref.finalize(self, _remove, path)
        return self._video_file

    def close(self) -> None:
        """Drop pixels and delete the scratch file."""
        self._base = self._grey_base = None
        self._sized.clear()
        self._grey.clear()
        self._memo.clear()
        if self._finalizer is not None:
            self._finalizer()
            self._video_file = None
            self._finalizer = None


def _message(error: Exception) -> str:
    """The error's text without object addresses (PIL names its BytesIO "at 0x7f..."): the quarantine
    record must not depend on the process that decoded it."""
    return re.sub(r" at 0x[0-9a-f]+", "", str(error))


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
