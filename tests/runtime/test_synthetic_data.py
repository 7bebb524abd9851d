"""Synthetic raw data: deterministic shards, member names per modality, clips the curation decoder reads at
the intended frame counts, bad cases that are bad, edits that are really applied."""

import io
import json
import tarfile
from collections import defaultdict
from itertools import pairwise

import cv2
import numpy as np
import pytest
from PIL import Image

from compiler.schema.data import Blur
from runtime.curation.api import UnreadableSample
from runtime.curation.decode import Decoded
from runtime.curation.ops.video import cut_frames, hsv_frame_scores
from runtime.synthetic_data import (
    Limits,
    edit_triplet_samples,
    image_samples,
    load_spec,
    make_raw,
    preference_sources,
    source_limits,
    video_samples,
)
from specs.flux import FLUX_KONTEXT_REPLAYING_PRETRAINING as KONTEXT_AND_FLUX  # image_text and edit_triplets

VIDEO_LIMITS = Limits(min_side=96, min_seconds=1.0, min_fps=12, scene_frames=8, trim_frames=4)
BLUR_SIDE = Blur.model_fields["analysis_short_side_px"].default  # blur filters measure at this side


def read_tar(path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, ext = member.name.split(".", 1)
            samples[key][ext] = tar.extractfile(member).read()
    return dict(samples)


def laplacian_var(image_bytes: bytes) -> float:
    grey = Decoded(image_bytes, "jpg").grey(BLUR_SIDE)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@pytest.fixture(scope="module")
def clips():
    return video_samples(12, seed=3, limits=VIDEO_LIMITS)


def by_kind(samples, kind):
    return [s for s in samples if s.kind == kind]


def test_same_arguments_give_identical_bytes(tmp_path):
    first = make_raw(tmp_path / "a", KONTEXT_AND_FLUX, count=6, shards=2)
    second = make_raw(tmp_path / "b", KONTEXT_AND_FLUX, count=6, shards=2)
    assert set(first) == {"image_text", "edit_triplets"}
    for source, paths in first.items():
        assert [p.name for p in paths] == [f"{source}-00000.tar", f"{source}-00001.tar"]
        for a, b in zip(paths, second[source]):
            assert a.read_bytes() == b.read_bytes()
    other = make_raw(tmp_path / "c", KONTEXT_AND_FLUX, count=6, shards=2, seed=1)
    assert other["image_text"][0].read_bytes() != first["image_text"][0].read_bytes()


def test_clips_are_deterministic(clips):
    again = video_samples(12, seed=3, limits=VIDEO_LIMITS)
    assert [c.members for c in again] == [c.members for c in clips]


def test_member_names_per_modality(tmp_path):
    paths = make_raw(tmp_path, KONTEXT_AND_FLUX, count=4, shards=1)
    images = read_tar(paths["image_text"][0])
    assert all(set(m) == {"jpg", "txt", "json"} for m in images.values())
    triplets = read_tar(paths["edit_triplets"][0])
    assert all(set(m) == {"jpg", "source.jpg", "txt", "json"} for m in triplets.values())
    key, members = min(triplets.items())
    assert json.loads(members["json"])["key"] == key == "edit_triplets-000000"
    clip = video_samples(1, seed=0, limits=Limits())[0]
    assert set(clip.members) == {"mp4", "txt"}  # KEY.json is added from the metadata when the shard is written


def test_clean_clips_decode_at_their_frame_counts_and_pass_the_limits(clips):
    clean = by_kind(clips, "clean")
    assert len(clean) >= 6
    sizes, rates = set(), set()
    for clip in clean:
        meta = clip.metadata
        pixels = Decoded(clip.members["mp4"], "mp4")
        header = pixels.header()
        assert (header.width, header.height, header.fps) == (meta["width"], meta["height"], meta["fps"])
        assert len(pixels.frames()) == header.frame_count == meta["frame_count"]
        assert min(header.width, header.height) >= VIDEO_LIMITS.min_side
        assert header.fps >= VIDEO_LIMITS.min_fps and header.duration_s >= VIDEO_LIMITS.min_seconds
        assert header.frame_count > VIDEO_LIMITS.trim_frames + VIDEO_LIMITS.scene_frames
        assert cut_frames(hsv_frame_scores(pixels.frames(128)), "content", 27.0, 15) == []  # one scene
        sizes.add((header.width, header.height))
        rates.add(header.fps)
    assert len(sizes) > 1 and len(rates) > 1


def test_bad_clips_are_bad(clips):
    (corrupt,) = by_kind(clips, "corrupt")
    with pytest.raises(UnreadableSample):
        Decoded(corrupt.members["mp4"], "mp4").frames()
    (short,) = by_kind(clips, "too_short")
    assert Decoded(short.members["mp4"], "mp4").header().duration_s < VIDEO_LIMITS.min_seconds
    (static,) = by_kind(clips, "static")
    frames = Decoded(static.members["mp4"], "mp4").frames(fps=2)
    assert max(np.abs(a.astype(int) - b).mean() for a, b in pairwise(frames)) < 0.5
    moving = Decoded(by_kind(clips, "clean")[0].members["mp4"], "mp4").frames(fps=2)
    assert np.abs(moving[0].astype(int) - moving[-1]).mean() > 2.5  # five times the static bound
    (duplicate,) = by_kind(clips, "duplicate")
    assert any(duplicate.members["mp4"] == c.members["mp4"] for c in by_kind(clips, "clean"))


def test_scene_cut_clip_splits_where_it_was_cut(clips):
    (clip,) = by_kind(clips, "scene_cut")
    pixels = Decoded(clip.members["mp4"], "mp4")
    cuts = cut_frames(hsv_frame_scores(pixels.frames(128)), "content", 27.0, VIDEO_LIMITS.scene_frames)
    assert cuts == [clip.metadata["scene_cut_frame"]]
    scenes = [clip.metadata["scene_cut_frame"], clip.metadata["frame_count"] - clip.metadata["scene_cut_frame"]]
    assert min(scenes) > VIDEO_LIMITS.trim_frames + VIDEO_LIMITS.scene_frames


def test_bad_images_are_bad():
    samples = image_samples(12, seed=0, limits=Limits(min_side=256))
    (corrupt,) = by_kind(samples, "corrupt")
    with pytest.raises(UnreadableSample):
        Decoded(corrupt.members["jpg"], "jpg").image(64)
    (tiny,) = by_kind(samples, "tiny")
    assert max(Image.open(io.BytesIO(tiny.members["jpg"])).size) < 256
    (blurry,) = by_kind(samples, "blurry")
    clean = by_kind(samples, "clean")
    assert all(min(Image.open(io.BytesIO(s.members["jpg"])).size) >= 256 for s in clean)
    assert laplacian_var(blurry.members["jpg"]) < 100 < min(laplacian_var(s.members["jpg"]) for s in clean)
    (duplicate,) = by_kind(samples, "duplicate")
    assert any(duplicate.members["jpg"] == s.members["jpg"] for s in clean)


def test_edit_is_applied_to_the_source():
    samples = edit_triplet_samples(5, seed=0, limits=Limits())
    assert [s.metadata["edit"] for s in samples] == ["recolour", "move", "resize", "remove", "background"]
    for sample in samples:
        source = np.asarray(Image.open(io.BytesIO(sample.members["source.jpg"])), dtype=np.int16)
        target = np.asarray(Image.open(io.BytesIO(sample.members["jpg"])), dtype=np.int16)
        changed = (np.abs(source - target).max(axis=2) > 40).mean()
        assert 0.005 < changed < (1.0 if sample.metadata["edit"] == "background" else 0.5), sample.metadata
        instruction = sample.members["txt"].decode()
        assert instruction.split()[0] in ("make", "move", "remove", "change")
    recolour = samples[0]
    colour = recolour.members["txt"].decode().split()[-1]
    assert colour in recolour.metadata["target_caption"] and colour not in recolour.metadata["source_caption"]


def test_limits_are_read_from_the_spec():
    allegro = load_spec("allegro")
    resolution = next(op for op in allegro.data.pipelines[0].ops if op.kind == "resolution")
    duration = next(op for op in allegro.data.pipelines[0].ops if op.kind == "duration")
    limits = source_limits(allegro, "video_corpus")
    assert (limits.min_side, limits.min_seconds, limits.min_fps) == (
        resolution.min_short_side_px, duration.min_seconds, duration.min_fps)
    assert limits.trim_frames == 20 and limits.scene_frames == 15
    hq = next(d for d in allegro.data.datasets if d.name == "allegro_video_hq")  # a subset of a subset
    assert limits.subset_seconds == (hq.where.min_seconds, hq.where.max_seconds)
    assert source_limits(load_spec("flux1-dev"), "image_text") == Limits()


def test_unknown_modality_is_refused(tmp_path):
    spec = load_spec("flux1-dev")
    odd = spec.model_copy(deep=True)
    object.__setattr__(odd.data.sources[0], "modality", "audio")
    with pytest.raises(NotImplementedError, match=r"data.sources\[0\] \(image_text\).*'audio'"):
        make_raw(tmp_path, odd, count=1)


def test_samples_reaching_a_preference_stage_carry_a_rejected_sample(tmp_path):
    spec = load_spec("seedream-2.0")  # its rlhf stage trains Diffusion-DPO on a subset of image_text
    assert preference_sources(spec) == {"image_text"}
    assert preference_sources(load_spec("flux1-dev")) == set()
    ((path, *_),) = make_raw(tmp_path, spec, count=12, shards=1).values()
    samples = read_tar(path)
    assert len(samples) == 12
    for key, members in samples.items():
        assert members["rejected.jpg"] != members["jpg"], key
