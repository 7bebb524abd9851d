"""Video through FFmpeg (runtime/curation/video.py): true timestamps of variable-frame-rate videos, streamed
decoding with bounded memory, clips cut with their audio."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest

from compiler.schema.data import DurationFilter, SceneSplit
from runtime.curation.decode import Decoded
from runtime.curation.records import Record
from runtime.curation.registry import build
from runtime.curation import video


def h264(times: list[float], size: tuple[int, int] = (64, 48), audio: bool = False, scene_at: float | None = None,
         gop: int = 12) -> bytes:
    """An H.264 MP4 (PyAV, libx264) with one frame at each of `times` (seconds: uneven = variable frame rate),
    a still texture that brightens at `scene_at` (a cut), and optionally a silent AAC track."""
    import av

    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=30, options={"preset": "ultrafast", "g": str(gop)})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        sound = container.add_stream("aac", rate=16000) if audio else None
        rng = np.random.default_rng(0)
        texture = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
        for i, t in enumerate(times):
            level = 30 if scene_at is None or t < scene_at else 170
            frame = av.VideoFrame.from_ndarray(texture + level, format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            for start in range(0, int((times[-1] + 0.1) * 16000), 1024):
                chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return out.getvalue()


VFR_TIMES = [0.0, 0.04, 0.08, 0.5, 0.52, 0.54, 1.5, 1.6, 2.9]  # bursts and gaps: nominal rates mislead


def test_a_variable_frame_rate_video_gets_its_true_timestamps_and_duration():
    media = h264(VFR_TIMES)
    header = Decoded(media, "mp4").header()
    assert header.frame_times == pytest.approx(VFR_TIMES, abs=1e-3)
    last = header.duration_s - VFR_TIMES[-1]
    assert 0 < last <= 0.1  # the last frame's own duration, as the container states it
    assert header.frame_count == len(VFR_TIMES)
    assert header.fps == pytest.approx(len(VFR_TIMES) / header.duration_s)
    assert [round(t, 3) for t, _ in video.stream_frames(media, (32, 24))] == pytest.approx(VFR_TIMES, abs=1e-3)


def test_sampling_at_an_fps_follows_the_timestamps():
    pixels = Decoded(h264(VFR_TIMES), "mp4")
    # At 2 fps the frames shown at 0, 0.5, 1.0, 1.5, 2.0, 2.5 s: indices 0, 3, 5 (still shown at 1.0), 6, 7, 7.
    assert pixels.sample_indices(len(VFR_TIMES), 2.0) == [0, 3, 5, 6, 7]


def test_duration_filter_reads_the_true_duration():
    record = Record("vfr", h264(VFR_TIMES), "mp4", shard="test")
    record.attach_decoder(64)
    impl = build(DurationFilter(min_seconds=2.9), None)
    verdict = impl.decide(record, None)
    assert verdict.fate == "keep", verdict  # 9 frames, yet about 3 s long


def test_scene_split_cuts_at_timestamps_and_keeps_the_audio():
    times = [i / 25 for i in range(75)]  # 3 s at 25 fps, a cut at 1.6 s, on a keyframe (every 10th frame)
    media = h264(times, audio=True, scene_at=1.6, gop=10)
    record = Record("clip", media, "mp4", shard="test")
    record.attach_decoder(128)
    impl = build(SceneSplit(min_scene_frames=5), None)
    (score,) = impl.score([record])
    children = impl.split(record, score)
    assert [c.metadata["start_s"] for c in children] == pytest.approx([0.0, 1.6])
    assert [c.metadata["duration_s"] for c in children] == pytest.approx([1.6, 1.4], abs=0.05)
    for child in children:
        info = video.probe(child.media)
        assert info.has_audio
        assert info.frame_count == child.metadata["frame_count"]
        assert info.duration_s == pytest.approx(child.metadata["duration_s"], abs=0.05)


PEAK_RSS_SCRIPT = """
import resource, sys
from pathlib import Path
from compiler.schema.data import SceneSplit
from runtime.curation.records import Record
from runtime.curation.registry import build
record = Record("long", Path(sys.argv[1]).read_bytes(), "mp4", shard="test")
record.attach_decoder(128)
impl = build(SceneSplit(), None)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
(score,) = impl.score([record])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(score["frames"], (after - before) * 1024)
"""


def test_scene_split_memory_stays_bounded_on_a_long_video(tmp_path):
    """1500 frames at 160x120: 65 MB as RGB frames at the 128 px scene side. Peak RSS (PyAV's frames are not
    seen by tracemalloc) may grow by a fraction of that: the streamed detection holds a few frames."""
    import os
    import subprocess
    import sys

    times = [i / 25 for i in range(1500)]
    path = tmp_path / "long.mp4"
    path.write_bytes(h264(times, size=(160, 120), gop=250))
    all_frames = len(times) * 128 * 171 * 3
    result = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, str(path)], env=dict(os.environ),
                            capture_output=True, text=True, timeout=300, check=True)
    frames, growth = map(int, result.stdout.split())
    assert frames == len(times)
    assert growth < all_frames / 5, f"peak RSS grew {growth / 1e6:.1f} MB; the frames total {all_frames / 1e6:.0f} MB"


def test_scene_clips_start_on_keyframes():
    from runtime.curation.ops.video import at_keyframes

    times = tuple(i / 10 for i in range(30))
    keyframes = (0.0, 1.2, 2.4)  # frames 0, 12, 24
    assert at_keyframes([(0, 15), (15, 25), (25, 30)], times, keyframes) == [(0, 12), (12, 24), (24, 30)]
    assert at_keyframes([(0, 13), (13, 14), (14, 30)], times, keyframes) == [(0, 12), (12, 30)]  # one vanishes


def test_trim_cuts_exactly_and_keeps_the_audio():
    from compiler.schema.data import Trim

    times = [i / 25 for i in range(50)]
    record = Record("clip", h264(times, audio=True, gop=50), "mp4", shard="test")
    record.attach_decoder(64)
    impl = build(Trim(head=7, tail=3, unit="frames"), None)
    assert impl.decide(record, None).fate == "keep"
    info = video.probe(record.media)
    assert info.frame_count == 40 and info.has_audio
    assert record.metadata["duration_s"] == pytest.approx(1.6)
