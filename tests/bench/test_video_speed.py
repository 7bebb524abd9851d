"""Video split + transcode speed at 1080p (`make bench`), the FFmpeg path beside today's OpenCV path in one run.

The source: 12 s of 1920x1080 H.264 at 24 fps (libx264 defaults, so keyframes fall on the scene cuts as
x264's scene-cut detection places them), four 3 s scenes of slowly panning textures. One round is what
scene_split does to one video: per-frame HSV scores at 128 px, cut points, the clips written.

- "ffmpeg_stream_copy": runtime/curation (PyAV): frames streamed and scaled inside FFmpeg, clips cut by
  stream copy where they start on a keyframe (H.264 re-encode otherwise).
- "opencv_mp4v" (the baseline, the runtime's path before FFmpeg): every frame decoded by OpenCV into a list
  at 128 px, then a second full-resolution decode re-encoding each clip with OpenCV's mp4v.

extra_info["clips_per_cpu_second"] is clips / process CPU time (all threads): clips per second per core
(goal: >= 3 at 1080p).
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from compiler.schema.data import SceneSplit
from runtime.curation.ops.video import SCENE_SIDE, cut_frames, hsv_frame_scores
from runtime.curation.records import Record
from runtime.curation.registry import build

WIDTH, HEIGHT, FPS, SCENES, SCENE_SECONDS = 1920, 1080, 24, 4, 3


@pytest.fixture(scope="module")
def source() -> bytes:
    import av

    out = io.BytesIO()
    rng = np.random.default_rng(0)
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "crf": "20"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for scene in range(SCENES):
            low = rng.random((18, 32, 3)).astype(np.float32)
            base = (cv2.resize(low, (WIDTH + 256, HEIGHT), interpolation=cv2.INTER_CUBIC) * 220).clip(0, 255).astype(np.uint8)
            for i in range(SCENE_SECONDS * FPS):
                picture = np.ascontiguousarray(base[:, 2 * i: 2 * i + WIDTH])
                container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode(None))
    return out.getvalue()


def ffmpeg_split(media: bytes) -> int:
    record = Record("bench", media, "mp4", shard="bench")
    record.attach_decoder(SCENE_SIDE)
    impl = build(SceneSplit(), None)
    (score,) = impl.score([record])
    clips = impl.split(record, score)
    return len(clips)


def opencv_mp4v_split(media: bytes) -> int:
    """The runtime's video path before FFmpeg (decode.py + ops/video.py encode_ranges), kept here as the baseline."""
    handle, path = tempfile.mkstemp(suffix=".mp4")
    with os.fdopen(handle, "wb") as file:
        file.write(media)
    try:
        capture = cv2.VideoCapture(path)
        fps = capture.get(cv2.CAP_PROP_FPS)
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            small = cv2.resize(frame, (round(WIDTH * SCENE_SIDE / HEIGHT), SCENE_SIDE), interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
        capture.release()
        cuts = cut_frames(hsv_frame_scores(frames), "content", 27.0, 15)
        ranges = list(pairwise([0, *cuts, len(frames)]))
        capture = cv2.VideoCapture(path)
        writers = [None] * len(ranges)
        outputs = []
        for _ in ranges:
            out_handle, out = tempfile.mkstemp(suffix=".mp4")
            os.close(out_handle)
            outputs.append(out)
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            for slot, (start, stop) in enumerate(ranges):
                if start <= index < stop:
                    if writers[slot] is None:
                        writers[slot] = cv2.VideoWriter(outputs[slot], cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                                        (frame.shape[1], frame.shape[0]))
                    writers[slot].write(frame)
            index += 1
        capture.release()
        for writer in writers:
            writer.release()
        clips = [Path(out).read_bytes() for out in outputs]
        for out in outputs:
            Path(out).unlink()
        return len([c for c in clips if c])
    finally:
        Path(path).unlink()


CONTENDERS = {"opencv_mp4v": opencv_mp4v_split, "ffmpeg_stream_copy": ffmpeg_split}


@pytest.mark.parametrize("contender", list(CONTENDERS))
def test_video_split_and_transcode_1080p(benchmark, source, contender):
    benchmark.group = "video split + transcode, 1080p"
    benchmark.extra_info["baseline"] = "opencv_mp4v"
    function = CONTENDERS[contender]
    cpu = []

    def timed(media: bytes) -> int:
        start = time.process_time()
        clips = function(media)
        cpu.append((time.process_time() - start, clips))
        return clips

    clips = benchmark.pedantic(timed, args=(source,), rounds=3, iterations=1, warmup_rounds=1)
    assert clips == SCENES
    seconds = min(c for c, _ in cpu)
    benchmark.extra_info["clips"] = clips
    benchmark.extra_info["clips_per_cpu_second"] = round(clips / seconds, 3)
