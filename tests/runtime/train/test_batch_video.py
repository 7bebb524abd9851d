"""Batches encoded on the fly: video clips, images as one-frame videos, edit triplets' context latents, and
precomputed members used per input where they fit the stage."""

import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from conftest import CHANNELS, TEXT_DIM, VIDEO_FRAMES, architecture, trained_losses, write_mp4, write_stage
from PIL import Image

from compiler.schema.architecture import ArchitectureSpec
from compiler.schema.bundle import BucketEntry
from runtime.encoders import build_encoders
from runtime.train import RunOptions, load_stage_file, train
from runtime.train.batch import BatchBuilder
from runtime.train.buckets import BucketTable
from runtime.train.data import StageData
from runtime.train.media import image_pixels, video_pixels
from runtime.train.metrics import read_metrics

SIZE = (32, 32)  # pixels; latents 4 x 4
FPS = 15.0


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32))
    return buffer.getvalue()


def jpeg(seed: int, shape=(40, 56)) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (*shape, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def video_stage():
    """(architecture, smoke encoders) of a Wan-like video spec: causal VAE, 4x in time, 8x in space."""
    arch = ArchitectureSpec(**architecture(video=True))
    return arch, build_encoders(arch, "smoke", None)


@pytest.fixture(scope="module")
def image_stage():
    """(architecture, smoke encoders) of a FLUX-like image spec (T5 tokens and CLIP pooled)."""
    arch = ArchitectureSpec(**architecture())
    return arch, build_encoders(arch, "smoke", None)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return write_mp4(tmp_path_factory.mktemp("clips") / "c.mp4", list(range(0, 240, 12)), fps=30, size=(40, 48))


def video_builder(stage) -> BatchBuilder:
    arch, encoders = stage
    return BatchBuilder(arch, mask_from=None, encoders=lambda: encoders, frames=VIDEO_FRAMES, fps=FPS)


def test_video_clips_are_resampled_clipped_and_encoded(video_stage, clip):
    samples = [{"__key__": f"v{i}".encode(), "mp4": clip, "txt": f"clip {i}".encode()} for i in range(2)]
    batch = video_builder(video_stage)(samples, SIZE)
    assert batch.latents.shape == (2, CHANNELS, 3, 4, 4)  # 9 frames -> 3 latent frames
    pixels = video_pixels(samples[0], "mp4", SIZE, VIDEO_FRAMES, FPS)
    with torch.no_grad():
        expected = video_stage[1].encode_images(pixels[None])
    torch.testing.assert_close(batch.latents[:1], expected)
    assert batch.cond.text.shape[::2] == (2, TEXT_DIM) and batch.cond.text_mask is not None


def test_an_image_in_a_video_stage_is_a_one_frame_video(video_stage):
    image = {"__key__": b"i", "jpg": jpeg(0), "txt": b"a still"}
    batch = video_builder(video_stage)([image], SIZE)
    assert batch.latents.shape == (1, CHANNELS, 1, 4, 4)
    with torch.no_grad():
        expected = video_stage[1].encode_images(image_pixels(image, "jpg", SIZE)[None, :, None])
    torch.testing.assert_close(batch.latents, expected)


def test_a_micro_batch_may_not_mix_videos_and_images(video_stage, clip):
    samples = [{"__key__": b"v", "mp4": clip, "txt": b"x"}, {"__key__": b"i", "jpg": jpeg(0), "txt": b"y"}]
    with pytest.raises(ValueError, match=r"mixes videos \['v'\] with images \['i'\]"):
        video_builder(video_stage)(samples, SIZE)


def test_a_frame_count_the_causal_vae_cannot_encode_is_refused(video_stage):
    with pytest.raises(ValueError, match="stage.frames is 10.*1 \\+ 4n frames; set stage.frames to 9 or 13"):
        BatchBuilder(video_stage[0], mask_from=None, frames=10, fps=FPS)


def test_precomputed_text_is_used_and_latents_at_another_size_are_encoded(video_stage, clip):
    sentinel = np.full((5, TEXT_DIM), 7.0)
    sample = {
        "__key__": b"v",
        "mp4": clip,
        "text.npy": npy(sentinel),
        "latents.npy": npy(np.zeros((CHANNELS, 3, 8, 8))),  # a 64 px precompute: does not fit 32 px
    }
    batch = video_builder(video_stage)([sample], SIZE)  # no caption: the text must come from text.npy
    assert torch.equal(batch.cond.text, torch.full((1, 5, TEXT_DIM), 7.0)) and batch.cond.text_mask is None
    assert batch.latents.shape == (1, CHANNELS, 3, 4, 4) and batch.latents.abs().sum() > 0


def test_fitting_precomputed_members_need_no_encoders(video_stage):
    def no_encoders():
        raise AssertionError("encoders were built although every input was precomputed")

    arch = video_stage[0]
    builder = BatchBuilder(arch, mask_from=None, encoders=no_encoders, frames=VIDEO_FRAMES, fps=FPS)
    sample = {
        "__key__": b"p",
        "mp4": b"not decoded",
        "latents.npy": npy(np.full((CHANNELS, 3, 4, 4), 3.0)),
        "text.npy": npy(np.ones((4, TEXT_DIM))),
    }
    batch = builder([sample], SIZE)
    assert torch.equal(batch.latents, torch.full((1, CHANNELS, 3, 4, 4), 3.0))


def test_an_input_neither_precomputed_nor_encodable_names_key_member_and_shapes(video_stage, clip):
    sample = {"__key__": b"k7", "mp4": clip, "text.npy": npy(np.ones((5, 3)))}
    with pytest.raises(ValueError, match=r"sample k7: text.npy is \(5, 3\), the stage needs \(tokens, 16\).*caption"):
        video_builder(video_stage)([sample], SIZE)


def edit(key: str, target: int, source: int) -> dict:
    return {"__key__": key.encode(), "jpg": jpeg(target), "source.jpg": jpeg(source), "txt": b"make it blue"}


def test_edit_triplets_get_the_source_images_latents_as_context(image_stage):
    arch, encoders = image_stage
    builder = BatchBuilder(arch, mask_from=None, encoders=lambda: encoders)
    samples = [edit("e0", 1, 2), edit("e1", 3, 4)]
    batch = builder(samples, SIZE)
    with torch.no_grad():
        sources = torch.stack([image_pixels(s, "source.jpg", SIZE) for s in samples])
        targets = torch.stack([image_pixels(s, "jpg", SIZE) for s in samples])
        torch.testing.assert_close(batch.cond.context_latents, encoders.encode_images(sources))
        torch.testing.assert_close(batch.latents, encoders.encode_images(targets))
    assert batch.cond.pooled.shape[0] == 2

    plain = {"__key__": b"p", "jpg": jpeg(5), "txt": b"a photo"}
    assert builder([plain], SIZE).cond.context_latents is None
    with pytest.raises(ValueError, match=r"mixes edit triplets .* plain samples \['p'\]"):
        builder([samples[0], plain], SIZE)


def test_precomputed_context_is_used_where_it_fits(image_stage):
    arch, encoders = image_stage
    builder = BatchBuilder(arch, mask_from=None, encoders=lambda: encoders)
    sample = edit("e", 1, 2)
    sample["context.npy"] = npy(np.full((CHANNELS, 4, 4), -2.0))
    assert torch.equal(builder([sample], SIZE).cond.context_latents, torch.full((1, CHANNELS, 4, 4), -2.0))


def test_preference_pairs_encode_the_rejected_image_alongside_the_preferred(image_stage):
    arch, encoders = image_stage
    builder = BatchBuilder(arch, mask_from=None, encoders=lambda: encoders)
    pairs = [{"__key__": f"r{i}".encode(), "jpg": jpeg(i), "rejected.jpg": jpeg(i + 5), "txt": b"a photo"}
             for i in range(2)]
    batch = builder(pairs, SIZE)
    with torch.no_grad():
        rejected = torch.stack([image_pixels(s, "rejected.jpg", SIZE) for s in pairs])
        torch.testing.assert_close(batch.rejected, encoders.encode_images(rejected))
    assert not torch.equal(batch.rejected, batch.latents)
    assert builder([{"__key__": b"p", "jpg": jpeg(1), "txt": b"a photo"}], SIZE).rejected is None
    with pytest.raises(ValueError, match="sample p: rejected.npy is missing.*no rejected image or clip"):
        builder([pairs[0], {"__key__": b"p", "jpg": jpeg(1), "txt": b"a photo"}], SIZE)


def test_media_train_at_their_buckets_size_and_frames(video_stage, tmp_path):
    """On the fly: an image is scaled and cropped to its aspect-ratio bucket, a clip to its frame bucket."""
    entries = [BucketEntry(resolution=0, height=h, width=w, frames=f, micro_batch=1)
               for h, w in ((32, 32), (32, 48)) for f in (9, 5, 1)]
    stage, _ = write_stage(tmp_path, video=True, buckets=entries)
    stage_file = load_stage_file(stage)
    table = BucketTable(stage_file)
    table.fps = 15.0
    arch, encoders = video_stage
    builder = BatchBuilder(arch, mask_from=None, encoders=lambda: encoders, frames=9, fps=15.0)
    image = {"__key__": b"i", "jpg": jpeg(0, (40, 60)), "txt": b"a wide photo"}
    short = {"__key__": b"v", "txt": b"a short clip",  # 6 frames at 15 fps: 0.4 s covers 5 frames, not 9
             "mp4": write_mp4(tmp_path / "short.mp4", [10 * i for i in range(6)], fps=15, size=(32, 48))}
    for sample, bucket, latent_shape in ((image, ("size", 0, 32, 48, 1), (CHANNELS, 1, 4, 6)),
                                         (short, ("size", 0, 32, 48, 5), (CHANNELS, 2, 4, 6))):
        assert table.assign(sample, 0) == bucket
        batch = builder([sample], *table.geometry(bucket))
        assert tuple(batch.latents.shape[1:]) == latent_shape
    with torch.no_grad():
        expected = encoders.encode_images(image_pixels(image, "jpg", (32, 48))[None, :, None])
    torch.testing.assert_close(builder([image], (32, 48), 1).latents, expected.float())


def write_wan_shards(run_root: Path, stage_file) -> None:
    """Raw curated shards of the stage's datasets: 16 fps clips in the video dataset, JPEGs in the image one."""
    for data in stage_file.data:
        directory = run_root / data.shards
        directory.mkdir(parents=True, exist_ok=True)
        with wds.TarWriter(str(directory / "shard-00000.tar")) as sink:
            for index in range(4):
                sample = {"__key__": f"{data.dataset}-{index}", "txt": f"{data.modality} number {index}"}
                if data.modality == "video":
                    levels = [(20 * index + 8 * frame) % 256 for frame in range(12)]
                    sample["mp4"] = write_mp4(directory / "scratch.mp4", levels, fps=16, size=(40, 48))
                else:
                    sample["jpg"] = jpeg(index)
                sink.write(sample)


@pytest.mark.slow
def test_wan_joint_stage_trains_on_raw_videos_and_images(tmp_path):
    bundle = tmp_path / "bundle"
    command = [sys.executable, "-m", "compiler.cli", "compile", "wan2.1-t2v-1.3b", "--cluster", "local-cpu",
               "--scale", "smoke", "-o", str(bundle)]
    subprocess.run(command, check=True, capture_output=True)
    stage_dir = bundle / "train" / "joint_256p"
    stage_file = load_stage_file(stage_dir / "stage.yaml")
    assert [d.modality for d in stage_file.data] == ["video", "image"]
    run_root = tmp_path / "run"
    write_wan_shards(run_root, stage_file)
    # The run must see both shapes: the datasets its micro-batches are drawn from, as StageData chooses them.
    choices = StageData(stage_file.data, run_root, stage_file.seed, 2, 0, 1, micro_batch=2)
    drawn = {key.split("-")[0] for step in range(1, stage_file.stage.steps + 1) for key in
             (sample["__key__"].decode() for sample in choices.step(step))}
    assert drawn == {"wan_videos", "wan_images"}

    train(RunOptions(stage_dir / "stage.yaml", stage_dir / "ds_config.json", run_root))
    records = read_metrics(run_root / stage_file.output_dir)
    trained_losses(records, stage_file.stage.steps)
    validation = [r["val_loss"] for r in records if "val_loss" in r]
    assert validation and all(math.isfinite(loss) for loss in validation), records
    assert (run_root / stage_file.output_dir / "final" / "model.safetensors").is_file()
