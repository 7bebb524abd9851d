"""Video through FFmpeg (PyAV): container facts with true timestamps, streamed frames, clips cut by stream copy.

- `probe`: per-frame presentation times from the demuxed packets (no decode), so a variable-frame-rate
  video gets its true duration and timestamps; the average rate is frames / duration, never the
  container's nominal rate.
- `stream_frames`: decoded frames one at a time with their timestamps, scaled by FFmpeg's swscale to the
  requested size inside the decoder loop: memory holds one frame, never the video.
- `cut`: clips [start, end) seconds. A clip that starts on a keyframe is a stream copy of its packets
  (no decode, no quality loss); one that does not is re-encoded with H.264 (libx264, shipped in PyAV's
  wheels), decoding only from the keyframe before it. Audio packets inside the clip are copied either way.
- `frame_at`, `count_frames`: one frame by time (decoding from its keyframe), a full decode check.

Times are seconds from the first video frame.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from runtime.curation.api import UnreadableSample

X264_PRESET = "veryfast"  # clips are training data, re-encoded once: speed over the last few % of size
X264_CRF = "18"  # visually lossless for x264; the source was already lossy
# One encoder thread per clip: clips are encoded side by side by the workers, so threads inside x264 only
# add contention. (Even so, a second encode in one process was not always byte-identical to the first here:
# scene_split therefore cuts by stream copy only; see ops/video.py at_keyframes.)
X264_THREADS = "1"
ANALYSIS_SHRINK = 2  # frames at most half the source's short side skip the deblocking filter (stream_frames)


@dataclass(frozen=True)
class VideoInfo:
    """What the container holds: display size, every frame's time, the duration, and whether audio is there."""

    width: int
    height: int
    times: tuple[float, ...]  # presentation time of each frame, sorted, from 0
    duration_s: float
    keyframes: tuple[float, ...]
    has_audio: bool

    @property
    def frame_count(self) -> int:
        return len(self.times)

    @property
    def fps(self) -> float:
        """Average frame rate: frames per second of true duration (variable-frame-rate safe)."""
        return self.frame_count / self.duration_s if self.duration_s > 0 else 0.0


def _open(media: bytes):
    import av

    try:
        return av.open(io.BytesIO(media), mode="r")
    except Exception as error:  # noqa: BLE001 - any failure to parse the container means it is unreadable
        raise UnreadableSample(f"FFmpeg cannot open the video container: {type(error).__name__}: {error}") from None


def probe(media: bytes) -> VideoInfo:
    """Container facts from demuxing the video packets (no frame is decoded)."""
    with _open(media) as container:
        if not container.streams.video:
            raise UnreadableSample("the container has no video stream")
        stream = container.streams.video[0]
        base = stream.time_base
        stamps, keys, durations = [], [], {}
        try:
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue  # the demuxer's end-of-stream flush packet
                stamps.append(packet.pts)
                durations[packet.pts] = packet.duration or 0
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except Exception as error:  # noqa: BLE001
            raise UnreadableSample(f"video demux failed: {type(error).__name__}: {error}") from None
        width, height = stream.codec_context.width, stream.codec_context.height
        has_audio = bool(container.streams.audio)
    if not stamps or width <= 0 or height <= 0:
        raise UnreadableSample(f"video container holds no frames ({len(stamps)} packets, {width}x{height})")
    stamps.sort()
    first = stamps[0]
    times = tuple(float((pts - first) * base) for pts in stamps)
    last_duration = durations[stamps[-1]]  # the last frame shows for as long as the container says
    if not last_duration and len(stamps) > 1:
        last_duration = stamps[-1] - stamps[-2]  # the last frame lasts as long as the one before it
    duration = float((stamps[-1] - first + last_duration) * base)
    return VideoInfo(width, height, times, duration, tuple(float((k - first) * base) for k in sorted(keys)), has_audio)


def stream_frames(media: bytes, size: tuple[int, int] | None = None, grey: bool = False) -> Iterator[tuple[float, np.ndarray]]:
    """(time, frame) for every frame in presentation order: RGB uint8 (or luma) at `size` (width, height)."""
    with _open(media) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads inside FFmpeg's decoder
        context = stream.codec_context
        if size is not None and min(size) * ANALYSIS_SHRINK <= min(context.width, context.height):
            # Frames for analysis, downscaled: the deblocking filter only smooths codec block edges, which
            # the area downscale averages away; skipping it (and allowing FFmpeg's fast, non-bit-exact
            # paths) saves about 17% of the decoder's CPU at 1080p (tests/bench/test_video_speed.py).
            context.options = {"skip_loop_filter": "all", "flags2": "+fast"}
        first = None
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                first = frame.pts if first is None else first
                width, height = size or (frame.width, frame.height)
                picture = frame.reformat(width=width, height=height, format="gray" if grey else "rgb24",
                                         interpolation="AREA")
                yield float((frame.pts - first) * stream.time_base), picture.to_ndarray()
        except UnreadableSample:
            raise
        except Exception as error:  # noqa: BLE001 - a damaged stream is an unreadable sample
            if "GeneratorExit" in type(error).__name__:
                raise
            raise UnreadableSample(f"video decode failed: {type(error).__name__}: {error}") from None


def frame_at(media: bytes, t: float, info: VideoInfo) -> np.ndarray:
    """The RGB frame shown at time `t` at native size, decoding from the keyframe before it."""
    with _open(media) as container:
        stream = container.streams.video[0]
        origin = _origin(stream)
        key = max((k for k in info.keyframes if k <= t + 1e-6), default=0.0)
        container.seek(round((key + origin) / stream.time_base), stream=stream, backward=True)
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and float(frame.pts * stream.time_base) - origin >= t - 1e-6:
                    return frame.to_ndarray(format="rgb24")
        except Exception as error:  # noqa: BLE001
            raise UnreadableSample(f"video frame at {t:.3f} s does not decode: {type(error).__name__}: {error}") from None
    raise UnreadableSample(f"video has no frame at {t:.3f} s")


def count_frames(media: bytes) -> int:
    """Decode every frame at native size without converting or keeping it; the number decoded."""
    decoded = 0
    with _open(media) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for _ in container.decode(stream):
                decoded += 1
        except Exception as error:  # noqa: BLE001
            raise UnreadableSample(f"video decode failed after {decoded} frames: {type(error).__name__}: {error}") from None
    return decoded


def cut(media: bytes, ranges: list[tuple[float, float]], info: VideoInfo) -> list[bytes]:
    """MP4 clips of the time ranges [start, end), each a stream copy when it starts on a keyframe, else H.264."""
    return [_copy(media, start, end) if _on_keyframe(start, info) else _encode(media, start, end, info)
            for start, end in ranges]


def _on_keyframe(start: float, info: VideoInfo) -> bool:
    return any(abs(start - key) < 1e-6 for key in info.keyframes)


def _copy(media: bytes, start: float, end: float) -> bytes:
    """The packets of [start, end) of the video stream and the audio packets of the same span, remuxed."""
    import av

    out = io.BytesIO()
    with _open(media) as source, av.open(out, mode="w", format="mp4") as target:
        video = source.streams.video[0]
        streams = [video, *source.streams.audio[:1]]
        mapped = {s.index: target.add_stream_from_template(s) for s in streams}
        origin = _origin(video)
        for packet in source.demux(*streams):
            if packet.pts is None or packet.size == 0:
                continue
            t = float(packet.pts * packet.time_base) - origin
            if start - 1e-6 <= t < end - 1e-6:
                shift = round((start + origin) / packet.time_base)
                packet.pts -= shift
                packet.dts = packet.dts - shift if packet.dts is not None else None
                packet.stream = mapped[packet.stream.index]
                target.mux(packet)
    return out.getvalue()


def _encode(media: bytes, start: float, end: float, info: VideoInfo) -> bytes:
    """Frames of [start, end) re-encoded with libx264 at the source size; audio of the span copied."""
    import av

    out = io.BytesIO()
    with _open(media) as source, av.open(out, mode="w", format="mp4") as target:
        video = source.streams.video[0]  # no frame threads: after a seek they made the first frames vary by run
        rate = Fraction(info.fps).limit_denominator(1001) if info.fps > 0 else Fraction(25)
        encoder = target.add_stream("libx264", rate=rate, options={"preset": X264_PRESET, "crf": X264_CRF,
                                                                         "threads": X264_THREADS})
        encoder.width, encoder.height, encoder.pix_fmt = info.width, info.height, "yuv420p"
        encoder.codec_context.thread_count = 1
        encoder.codec_context.time_base = encoder.time_base = video.time_base  # keep the source's timestamps
        audio = source.streams.audio[0] if source.streams.audio else None
        audio_out = target.add_stream_from_template(audio) if audio is not None else None
        origin = _origin(video)
        key_before = max((k for k in info.keyframes if k <= start + 1e-6), default=0.0)
        source.seek(round((key_before + origin) / video.time_base), stream=video, backward=True, any_frame=False)
        shift = round((start + origin) / video.time_base)
        for frame in source.decode(video):
            t = float(frame.pts * video.time_base) - origin
            if t >= end - 1e-6:
                break
            if t < start - 1e-6:
                continue
            # A fresh frame: the decoder's carries its own picture type and side data into the encoder.
            picture = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            picture.pts, picture.time_base = frame.pts - shift, video.time_base
            target.mux(encoder.encode(picture))
        target.mux(encoder.encode(None))
        if audio is not None:
            source.seek(0)
            audio_shift = round((start + origin) / audio.time_base)
            for packet in source.demux(audio):
                if packet.pts is None or packet.size == 0:
                    continue
                t = float(packet.pts * audio.time_base) - origin
                if start - 1e-6 <= t < end - 1e-6:
                    packet.pts -= audio_shift
                    packet.dts = packet.dts - audio_shift if packet.dts is not None else None
                    packet.stream = audio_out
                    target.mux(packet)
    return out.getvalue()


def _origin(video) -> float:
    """Time of the first video frame in the stream's clock (times in this module count from it)."""
    start = video.start_time
    return float(start * video.time_base) if start is not None else 0.0
