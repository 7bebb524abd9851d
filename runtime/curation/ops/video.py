"""Cut videos: scene_split (1 -> N single-scene clips) and trim (drop head and tail frames).

Scene detection follows PySceneDetect's ContentDetector (scenedetect/detectors/content_detector.py):
each frame's score is the mean absolute difference to the previous frame in H, S and V (OpenCV's 8-bit
HSV, H in 0-179), averaged over the three channels, so the threshold (27 by default) is on the 0-255
scale. A cut starts a new scene when the score reaches the threshold and the current scene has at least
`min_scene_frames` frames. The adaptive detector (AdaptiveDetector) instead cuts where a frame's score is
at least 3 times the mean of the 2 frames either side and at least `threshold`, which tolerates fast
camera motion. Per-frame scores are the cached score; cut points are decided from them, so changing the
threshold or the clip lengths does not decode the video again. Scores come from one streamed decode at
128 px (one frame in memory at a time). Clip times are the frames' own timestamps (variable frame rate
right). Scene clips start on keyframes (each bound moves back to the keyframe at or before it; encoders
put keyframes at scene cuts) and are stream copies with their audio (runtime/curation/video.py): no
decode, no quality loss, the same bytes on every machine. Trim cuts exactly: H.264 from the keyframe
before its first kept frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

import cv2
import numpy as np

from runtime.curation.api import (
    KEEP,
    MapOp,
    OpConfigError,
    Score,
    SplitOp,
    UnreadableSample,
    Verdict,
    derive_key,
)
from runtime.curation.records import Record
from runtime.curation.registry import register

SCENE_SIDE = 128  # HSV differences of whole frames need little resolution; PySceneDetect downscales too
ADAPTIVE_RATIO = 3.0  # PySceneDetect AdaptiveDetector adaptive_threshold default
ADAPTIVE_WINDOW = 2  # frames either side (PySceneDetect window_width default)


def hsv_frame_scores(frames: Iterable[np.ndarray]) -> list[float]:
    """Score of frame i (i >= 1): mean over H, S, V of the mean absolute difference to frame i-1."""
    scores = []
    previous = None
    for frame in frames:
        hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV).astype(np.int16)
        if previous is not None:
            scores.append(float(np.abs(hsv - previous).mean()))  # mean over pixels and the 3 channels
        previous = hsv
    return scores


def cut_frames(scores: list[float], detector: str, threshold: float, min_scene_frames: int) -> list[int]:
    """Frame indices where a new scene starts (score i belongs to the step from frame i to i+1)."""
    cuts: list[int] = []
    last = 0
    for step, value in enumerate(scores):
        frame = step + 1
        if detector == "adaptive":
            window = scores[max(0, step - ADAPTIVE_WINDOW) : step] + scores[step + 1 : step + 1 + ADAPTIVE_WINDOW]
            average = float(np.mean(window)) if window else 0.0
            is_cut = value >= threshold and value >= ADAPTIVE_RATIO * average
        else:
            is_cut = value >= threshold
        if is_cut and frame - last >= min_scene_frames:
            cuts.append(frame)
            last = frame
    return cuts


def span(times: tuple[float, ...], duration: float, start: int, stop: int) -> tuple[float, float]:
    """Seconds [start, end) of frames [start, stop): from the first frame's time to the next frame's (or the end)."""
    return times[start], times[stop] if stop < len(times) else duration


def at_keyframes(clips: list[tuple[int, int]], times: tuple[float, ...], keyframes: tuple[float, ...]) -> list[tuple[int, int]]:
    """Clip bounds moved back to the keyframe at or before each, so every clip is a stream copy: no decode,
    no quality loss, the same bytes wherever it runs (x264 re-encodes were not byte-reproducible across
    processes). Encoders place keyframes at scene cuts, so the move is usually zero; clips that vanish go."""
    keys = sorted({i for i, t in enumerate(times) if any(abs(t - k) < 1e-6 for k in keyframes)} | {0})

    def snap(frame: int) -> int:
        return frame if frame >= len(times) else max(k for k in keys if k <= frame)

    snapped = [(snap(start), snap(stop)) for start, stop in clips]
    return [(start, stop) for start, stop in snapped if stop > start]


@register("scene_split")
class SceneSplit(SplitOp):
    """Splits a video at scene cuts into clips KEY_sceneNNN; clips outside [clip_min, clip_max] seconds
    are dropped or cut into pieces of at most clip_max_seconds. Images pass through."""

    batch_size = 4

    def applies(self, record: Record) -> bool:
        return record.is_video

    def decode_side(self) -> int | None:
        return SCENE_SIDE

    def scoring_params(self) -> dict:
        return {"side": SCENE_SIDE, "features": "hsv_mean_abs_diff"}

    def score(self, records: list[Record]) -> list[Score | None]:
        scores = []
        for record in records:
            frame_scores = hsv_frame_scores(frame for _, frame in record.pixels.stream(SCENE_SIDE))
            scores.append({"frame_scores": [round(s, 3) for s in frame_scores], "frames": len(frame_scores) + 1})
        return scores

    def scenes(self, score: Score, times: tuple[float, ...], duration: float) -> list[tuple[int, int]]:
        """Frame ranges [start, stop) of the clips to write; lengths in seconds from the frames' timestamps."""
        spec = self.spec
        cuts = cut_frames(score["frame_scores"], spec.detector, spec.threshold, spec.min_scene_frames)
        frames = min(score["frames"], len(times))

        def seconds(start: int, stop: int) -> float:
            first, end = span(times[:frames], duration, start, stop)
            return end - first

        clips = []
        for start, stop in pairwise([0, *cuts, frames]):
            if spec.clip_min_seconds is not None and seconds(start, stop) < spec.clip_min_seconds:
                continue
            piece = start
            while piece < stop:  # pieces of at most clip_max_seconds, by timestamp
                end = piece + 1
                while end < stop and (spec.clip_max_seconds is None or seconds(piece, end + 1) <= spec.clip_max_seconds + 1e-6):
                    end += 1
                clips.append((piece, end))
                piece = end
        if spec.clip_min_seconds is not None:  # the tail piece of a long scene may be short
            clips = [(a, b) for a, b in clips if seconds(a, b) >= spec.clip_min_seconds]
        return clips

    def split(self, record: Record, score: Score | None) -> list[Record] | Verdict:
        from runtime.curation.video import cut

        header = record.pixels.header()
        times, duration = header.frame_times, header.duration_s
        clips = self.scenes(score, times, duration)
        if not clips:
            detail = f"{score['frames']} frames over {duration:.2f} s; clip_min_seconds {self.spec.clip_min_seconds}"
            return Verdict.drop("no scene long enough", detail)
        if clips == [(0, min(score["frames"], len(times)))]:
            return [record]  # one scene, nothing to cut: keep the original bytes
        info = record.pixels.video_info()
        clips = at_keyframes(clips, times, info.keyframes)
        spans = [span(times, duration, start, stop) for start, stop in clips]
        media = cut(record.pixels.media, spans, info)
        return [
            record.child(
                derive_key(record.key, "scene", i), data, "mp4",
                scene=i, start_frame=start, end_frame=stop, start_s=first, end_s=end,
                frame_count=stop - start, duration_s=end - first,  # the clip's, not the parent's
            )
            for i, ((start, stop), (first, end), data) in enumerate(zip(clips, spans, media))
        ]


@register("trim")
class Trim(MapOp):
    """Removes `head` and `tail` (frames or seconds) from each clip and re-encodes it; images pass through."""

    batch_size = 4

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        if spec.unit == "frames":
            for field in ("head", "tail"):
                value = getattr(spec, field)
                if value != int(value):
                    raise OpConfigError(
                        f"{spec.name}.{field} = {value:g} with unit 'frames' is not a whole number of frames; "
                        f"write a whole number, or set {spec.name}.unit = 'seconds' if {value:g} is in seconds"
                    )

    def applies(self, record: Record) -> bool:
        return record.is_video

    def decide(self, record: Record, score: Score | None) -> Verdict:
        from runtime.curation.video import cut

        header = record.pixels.header()
        spec, fps, count, times = self.spec, header.fps, header.frame_count, header.frame_times
        if spec.unit == "frames":
            head, tail = int(spec.head), int(spec.tail)
        else:  # frames whose timestamps fall in the first `head` / last `tail` seconds
            head = sum(1 for t in times if t < spec.head - 1e-6)
            tail = sum(1 for t in times if t >= header.duration_s - spec.tail - 1e-6)
        if head == 0 and tail == 0:
            return KEEP
        if head + tail >= count:
            other = "seconds" if spec.unit == "frames" else "frames"
            return Verdict.drop(
                "trim removes the whole clip",
                f"head {spec.head:g} + tail {spec.tail:g} {spec.unit} = {head + tail} frames >= {count} frames "
                f"({count / fps:.2f} s at {fps:g} fps); if head/tail are in {other}, set unit = '{other}'",
            )
        first, end = span(times, header.duration_s, head, count - tail)
        (media,) = cut(record.pixels.media, [(first, end)], record.pixels.video_info())
        record.replace_media(media, "mp4")
        kept = count - head - tail  # subsets filter on duration_s: it must describe the trimmed clip
        record.metadata.update(trimmed_head_frames=head, trimmed_tail_frames=tail, frame_count=kept,
                               duration_s=end - first)
        return KEEP
