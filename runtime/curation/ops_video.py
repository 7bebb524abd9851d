"""Cut videos: scene_split (1 -> N single-scene clips) and trim (drop head and tail frames).

Scene detection follows PySceneDetect's ContentDetector (scenedetect/detectors/content_detector.py):
each frame's score is the mean absolute difference to the previous frame in H, S and V (OpenCV's 8-bit
HSV, H in 0-179), averaged over the three channels, so the threshold (27 by default) is on the 0-255
scale. A cut starts a new scene when the score reaches the threshold and the current scene has at least
`min_scene_frames` frames. The adaptive detector (AdaptiveDetector) instead cuts where a frame's score is
at least 3 times the mean of the 2 frames either side and at least `threshold`, which tolerates fast
camera motion. Per-frame scores are the cached score; cut points are decided from them, so changing the
threshold or the clip lengths does not decode the video again. Clips are re-encoded with OpenCV (mp4v).
"""

from __future__ import annotations

import os
import tempfile
from itertools import pairwise
from pathlib import Path

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


def hsv_frame_scores(frames: list[np.ndarray]) -> list[float]:
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


def encode_ranges(path: str, ranges: list[tuple[int, int]], fps: float) -> list[bytes]:
    """Re-encode frame ranges [start, stop) of a video as mp4 clips, reading the source once."""
    capture = cv2.VideoCapture(path)
    outputs: list[tuple[str, cv2.VideoWriter | None]] = []
    try:
        for _ in ranges:
            handle, out = tempfile.mkstemp(suffix=".mp4")
            os.close(handle)
            outputs.append((out, None))
        index, written = 0, [0] * len(ranges)
        while True:
            ok, frame = capture.read()
            if not ok or index >= ranges[-1][1]:
                break
            for slot, (start, stop) in enumerate(ranges):
                if start <= index < stop:
                    out, writer = outputs[slot]
                    if writer is None:
                        size = (frame.shape[1], frame.shape[0])
                        writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
                        outputs[slot] = (out, writer)
                    writer.write(frame)
                    written[slot] += 1
            index += 1
        clips = []
        for slot, (out, writer) in enumerate(outputs):
            if writer is not None:
                writer.release()
            if written[slot] == 0:
                raise UnreadableSample(f"frames {ranges[slot][0]}..{ranges[slot][1]} do not decode")
            clips.append(Path(out).read_bytes())
        return clips
    finally:
        capture.release()
        for out, writer in outputs:
            if writer is not None:
                writer.release()
            Path(out).unlink(missing_ok=True)


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
            frame_scores = hsv_frame_scores(record.pixels.frames(SCENE_SIDE))
            scores.append({"frame_scores": [round(s, 3) for s in frame_scores], "frames": len(frame_scores) + 1})
        return scores

    def scenes(self, score: Score, fps: float) -> list[tuple[int, int]]:
        """Frame ranges [start, stop) of the clips to write."""
        spec = self.spec
        cuts = cut_frames(score["frame_scores"], spec.detector, spec.threshold, spec.min_scene_frames)
        bounds = [0, *cuts, score["frames"]]
        clips = []
        for start, stop in pairwise(bounds):
            if spec.clip_min_seconds is not None and (stop - start) / fps < spec.clip_min_seconds:
                continue
            longest = stop - start if spec.clip_max_seconds is None else max(1, int(spec.clip_max_seconds * fps))
            pieces = range(start, stop, longest)
            clips.extend((p, min(p + longest, stop)) for p in pieces)
        if spec.clip_min_seconds is not None:  # the tail piece of a long scene may be short
            clips = [(a, b) for a, b in clips if (b - a) / fps >= spec.clip_min_seconds]
        return clips

    def split(self, record: Record, score: Score | None) -> list[Record] | Verdict:
        fps = record.pixels.header().fps
        clips = self.scenes(score, fps)
        if not clips:
            detail = f"{score['frames']} frames at {fps:g} fps; clip_min_seconds {self.spec.clip_min_seconds}"
            return Verdict.drop("no scene long enough", detail)
        if clips == [(0, score["frames"])]:
            return [record]  # one scene, nothing to cut: keep the original bytes
        media = encode_ranges(record.pixels.video_path(), clips, fps)
        return [
            record.child(
                derive_key(record.key, "scene", i), data, "mp4",
                scene=i, start_frame=start, end_frame=stop, start_s=start / fps, end_s=stop / fps,
                frame_count=stop - start, duration_s=(stop - start) / fps,  # the clip's, not the parent's
            )
            for i, ((start, stop), data) in enumerate(zip(clips, media))
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
        header = record.pixels.header()
        spec, fps, count = self.spec, header.fps, header.frame_count
        if spec.unit == "frames":
            head, tail = int(spec.head), int(spec.tail)
        else:
            head, tail = round(spec.head * fps), round(spec.tail * fps)
        if head == 0 and tail == 0:
            return KEEP
        if head + tail >= count:
            other = "seconds" if spec.unit == "frames" else "frames"
            return Verdict.drop(
                "trim removes the whole clip",
                f"head {spec.head:g} + tail {spec.tail:g} {spec.unit} = {head + tail} frames >= {count} frames "
                f"({count / fps:.2f} s at {fps:g} fps); if head/tail are in {other}, set unit = '{other}'",
            )
        (media,) = encode_ranges(record.pixels.video_path(), [(head, count - tail)], fps)
        record.replace_media(media, "mp4")
        kept = count - head - tail  # subsets filter on duration_s: it must describe the trimmed clip
        record.metadata.update(trimmed_head_frames=head, trimmed_tail_frames=tail, frame_count=kept,
                               duration_s=kept / fps)
        return KEEP
