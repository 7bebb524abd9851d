"""Buckets at training time: nearest-bucket assignment, one bucket per micro-batch, exact resume, and a
stage trained through two buckets."""

import io
import json

import numpy as np
import pytest
import tiny_model
import webdataset as wds
from conftest import CHANNELS, CLASSES, class_embeddings, trained_losses, write_stage
from PIL import Image

from compiler.schema.bundle import BucketEntry
from runtime.train import RunOptions, load_stage_file, train
from runtime.train.batch import BatchBuilder
from runtime.train.buckets import BucketTable
from runtime.train.data import StageData
from runtime.train.loader import Loader
from runtime.train.metrics import read_metrics

# Latent grids 8 x 8 (square, 64 x 64 pixels) and 6 x 10 (landscape, 48 x 80); 8x spatial compression.
SQUARE = BucketEntry(resolution=0, height=64, width=64, frames=None, micro_batch=2)
WIDE = BucketEntry(resolution=0, height=48, width=80, frames=None, micro_batch=3)
TALL = BucketEntry(resolution=0, height=80, width=48, frames=None, micro_batch=3)


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return buffer.getvalue()


def jpeg(height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def image_table(tmp_path, conditioning=None, buckets=(SQUARE, WIDE, TALL)) -> BucketTable:
    stage, _ = write_stage(tmp_path, aspect_ratio_buckets=True, buckets=buckets, conditioning=conditioning)
    return BucketTable(load_stage_file(stage))


def write_two_shape_shards(directory, samples=40, per_shard=10):
    """Precomputed samples (latents, text, pooled): every third one landscape 6 x 10, the
    others square 8 x 8; sample i has class i % CLASSES, its latents the class's constant."""
    directory.mkdir(parents=True, exist_ok=True)
    texts, pooled = class_embeddings()
    for first in range(0, samples, per_shard):
        with wds.TarWriter(str(directory / f"shard-{first // per_shard:05d}.tar")) as sink:
            for index in range(first, min(first + per_shard, samples)):
                grid = (6, 10) if index % 3 == 0 else (8, 8)
                c = index % CLASSES
                sink.write({"__key__": f"{index:06d}", "latents.npy": np.full((CHANNELS, *grid), c - 1.5, np.float32),
                            "text.npy": texts[c], "pooled.npy": pooled[c]})


def test_each_sample_goes_to_its_nearest_bucket(tmp_path):
    table = image_table(tmp_path)
    assert table.assign({"__key__": b"a", "jpg": jpeg(40, 56)}, 0) == ("size", 0, 48, 80, None)  # 1.4 -> 5:3
    assert table.assign({"__key__": b"b", "jpg": jpeg(50, 44)}, 0) == ("size", 0, 64, 64, None)  # 0.88 -> 1:1
    # curation's metadata wins over the header (no decode needed)
    tall = {"__key__": b"c", "jpg": jpeg(40, 56), "json": json.dumps({"width": 300, "height": 500}).encode()}
    assert table.assign(tall, 0) == ("size", 0, 80, 48, None)
    # latents without media go by their own shape; a planned shape gets its bucket's micro-batch
    latent = {"__key__": b"d", "latents.npy": npy(np.zeros((CHANNELS, 6, 10), np.float32))}
    assert table.assign(latent, 0) == ("latent", CHANNELS, 6, 10)
    assert table.micro(("latent", CHANNELS, 6, 10)) == WIDE.micro_batch
    assert table.geometry(("latent", CHANNELS, 6, 10)) == ((48, 80), None)
    # an unplanned shape: the token budget of the largest bucket (3 x 60 tokens) over its 4 x 4 = 16, at most 3
    assert table.micro(("latent", CHANNELS, 4, 4)) == 3 and table.micro(("latent", CHANNELS, 20, 20)) == 1


def test_videos_go_to_the_longest_frame_bucket_they_cover(tmp_path):
    entries = [BucketEntry(resolution=0, height=64, width=64, frames=frames, micro_batch=micro)
               for frames, micro in ((9, 1), (5, 2), (1, 4))]
    stage, _ = write_stage(tmp_path, video=True, buckets=entries)
    table = BucketTable(load_stage_file(stage))
    table.fps = 15.0

    def clip(seconds):
        return {"__key__": b"v", "mp4": b"", "json": json.dumps({"width": 64, "height": 64, "duration_s": seconds}).encode()}

    assert table.assign(clip(1.0), 0)[-1] == 9  # 15 frames at 15 fps cover 9
    assert table.assign(clip(0.5), 0)[-1] == 5  # 7.5 frames: 5, not 9
    assert table.assign({"__key__": b"i", "jpg": jpeg(64, 64)}, 0)[-1] == 1  # an image: the one-frame bucket
    # precomputed latents: 3 latent frames are 1 + 4 x 2 = 9 video frames
    assert table.geometry(("latent", CHANNELS, 3, 8, 8)) == ((64, 64), 9)


def draws(data: StageData, indices) -> list[tuple]:
    """(bucket, keys, latent shapes) of micro-batches `indices`."""
    out = []
    for index in indices:
        _, _, samples, bucket = data.micro_batch_at(index)
        shapes = {np.load(io.BytesIO(s["latents.npy"])).shape for s in samples}
        out.append((bucket, tuple(s["__key__"].decode() for s in samples), shapes))
    return out


@pytest.fixture
def two_shapes(tmp_path):
    write_two_shape_shards(tmp_path / "data" / "patterns")
    stage, ds_config = write_stage(tmp_path, aspect_ratio_buckets=True, buckets=(SQUARE, WIDE), micro=2)
    return tmp_path, load_stage_file(stage)


def stage_data(root, stage_file, lanes=2) -> StageData:
    return StageData(stage_file.data, root, 0, 2, 0, 1, micro_batch=2, lanes=lanes, buckets=BucketTable(stage_file))


def test_each_micro_batch_holds_one_bucket_at_its_micro_batch(two_shapes):
    root, stage_file = two_shapes
    data = stage_data(root, stage_file)
    table, builder = data.table, BatchBuilder(stage_file.architecture, mask_from=None)
    seen = set()
    for bucket, keys, shapes in draws(data, range(30)):
        assert len(shapes) == 1 and ("latent", *shapes.pop()) == bucket
        assert len(keys) == table.micro(bucket)
        seen.add(bucket)
    assert seen == {("latent", CHANNELS, 8, 8), ("latent", CHANNELS, 6, 10)}
    _, _, samples, bucket = data.micro_batch_at(30)
    batch = builder(samples, *table.geometry(bucket))
    assert tuple(batch.latents.shape[1:]) == bucket[1:]


def test_the_sampler_resumes_exactly_mid_epoch(two_shapes):
    root, stage_file = two_shapes
    data = stage_data(root, stage_file)
    draws(data, range(7))
    state = data.state_dict()
    waiting = [w for lane in state["lane_buckets"] for dataset in lane for w in dataset["waiting"]]
    assert waiting, state  # samples wait in a bucket at the cut: the resume must bring them back
    expected = draws(data, range(7, 40))  # past the 40-sample epoch, on both lanes
    resumed = stage_data(root, stage_file)
    resumed.load_state_dict(state)
    assert draws(resumed, range(7, 40)) == expected


@pytest.mark.parametrize("workers", [0, 2])
def test_the_loader_checkpoints_the_buckets_of_what_the_trainer_took(two_shapes, workers):
    """Workers read ahead; the state is that of the micro-batches taken, and resumes to the same ones."""
    root, stage_file = two_shapes
    loader = Loader(stage_data(root, stage_file), 0, workers=workers)
    [loader.next() for _ in range(5)]
    state = loader.state_dict()
    expected = [(item.bucket, item.keys) for item in (loader.next() for _ in range(6))]
    loader.close()
    resumed = stage_data(root, stage_file)
    resumed.load_state_dict(state)
    again = Loader(resumed, 5, workers=workers)  # accumulation 1: step 5 ends micro-batch 5
    assert [(item.bucket, item.keys) for item in (again.next() for _ in range(6))] == expected
    again.close()


def test_a_stage_trains_through_two_buckets_and_resumes_exactly(two_shapes):
    """An interrupted run (a checkpoint at step 3, with samples waiting in a bucket) resumes to the losses of the
    uninterrupted one."""
    root, _ = two_shapes
    config = dict(aspect_ratio_buckets=True, buckets=(SQUARE, WIDE), micro=2, accum=2, steps=5, ema=None,
                  validation_every=5, checkpoint_every=3)

    def run(name, max_steps=None):
        stage, ds_config = write_stage(root, name=name, **config)
        train(RunOptions(stage, ds_config, root, max_steps, tiny_model.build, data_workers=0))
        return load_stage_file(stage), read_metrics(root / "runs" / name)

    stage_file, whole = run("whole")
    run("split", max_steps=3)
    _, split = run("split")
    trained_losses(whole, 5)
    assert [(r["step"], r.get("loss")) for r in split] == [(r["step"], r.get("loss")) for r in whole]
    trained = draws(stage_data(root, stage_file, lanes=1), range(10))  # 5 steps x 2 micro-batches
    assert len({bucket for bucket, _, _ in trained}) == 2, trained
    at_checkpoint = stage_data(root, stage_file, lanes=1)
    draws(at_checkpoint, range(6))  # what step 3's checkpoint holds
    assert any(dataset["waiting"] for lane in at_checkpoint.state_dict()["lane_buckets"] for dataset in lane)


def test_a_bucketed_stage_without_a_table_is_told_to_recompile(tmp_path):
    with pytest.raises(ValueError, match="no bucket table.*compile the bundle again"):
        image_table(tmp_path, buckets=())
