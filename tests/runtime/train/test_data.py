"""Shard reading order: deterministic, resumable by skipping, mixed by weight, split over ranks."""

from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from compiler.schema.bundle import DataInput
from runtime.train.data import DatasetStream, StageData, expand_shards, read_shard


def write(directory: Path, counts: list[int], prefix="s") -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths, index = [], 0
    for shard, count in enumerate(counts):
        path = directory / f"{prefix}-{shard:03d}.tar"
        with wds.TarWriter(str(path)) as sink:
            for _ in range(count):
                sink.write({"__key__": f"{prefix}{index:05d}", "value.npy": np.array([index])})
                index += 1
        paths.append(path)
    return paths


def keys(samples):
    return [s["__key__"].decode() for s in samples]


@pytest.fixture
def shards(tmp_path):
    return write(tmp_path / "d", [5, 3, 7, 0, 4])  # an empty shard in the middle


def test_each_epoch_visits_every_sample_once_in_a_new_order(shards):
    stream = DatasetStream(shards, seed=1, index=0)
    first = keys(stream.next() for _ in range(19))
    second = keys(stream.next() for _ in range(19))
    assert sorted(first) == sorted(second) == sorted(f"s{i:05d}" for i in range(19))
    assert first != second
    again = DatasetStream(shards, seed=1, index=0)
    assert keys(again.next() for _ in range(19)) == first


@pytest.mark.parametrize("consumed", [0, 1, 5, 8, 15, 19, 23, 40])
def test_skip_to_lands_where_the_stream_would_be(shards, consumed):
    reference = DatasetStream(shards, seed=3, index=2)
    for _ in range(consumed):
        reference.next()
    resumed = DatasetStream(shards, seed=3, index=2)
    resumed.skip_to(consumed)
    assert keys(resumed.next() for _ in range(25)) == keys(reference.next() for _ in range(25))


def test_empty_dataset_is_an_error(tmp_path):
    stream = DatasetStream(write(tmp_path / "e", [0, 0]), seed=0, index=0)
    with pytest.raises(ValueError, match="no sample"):
        stream.next()


def test_ranks_and_lanes_read_disjoint_shares_that_cover_each_epoch(tmp_path):
    write(tmp_path / "d", [6] * 8)  # 48 samples, 8 shards: 2 shards for each of 2 ranks x 2 lanes per epoch
    inputs = [DataInput(dataset="d", weight=1.0, shards="d")]
    ranks = [
        StageData(inputs, tmp_path, seed=0, global_batch=8, rank=r, dp_size=2, micro_batch=2, lanes=2)
        for r in range(2)
    ]
    for epoch in range(2):
        parts = [[k for step in range(1, 7) for k in keys(data.step(6 * epoch + step))] for data in ranks]
        assert len(parts[0]) == len(parts[1]) == 24
        assert set(parts[0]).isdisjoint(parts[1])
        assert sorted(parts[0] + parts[1]) == [f"s{i:05d}" for i in range(48)]


@pytest.mark.parametrize("shard_count", [1, 3, 5, 9])
def test_readers_epochs_are_disjoint_and_cover_the_dataset_for_any_shard_count(tmp_path, shard_count):
    # 1 and 3 shards: fewer than the 4 readers (then split by samples); 5 and 9: uneven shares of shards
    write(tmp_path / "d", [12 // shard_count + (i < 12 % shard_count) for i in range(shard_count)])
    paths = sorted((tmp_path / "d").glob("*.tar"))
    shares = []
    for reader in range(4):  # 2 ranks x 2 lanes
        stream = DatasetStream(paths, seed=4, index=0, reader=reader, ranks=2, lanes=2)
        epoch = sum(stream._length(shard) for _, shard in stream._epoch_order(0))
        shares.append(keys(stream.next() for _ in range(epoch)))
    every = [key for share in shares for key in share]
    assert sorted(every) == [f"s{i:05d}" for i in range(12)]  # disjoint (no repeats) and complete
    assert all(shares)


def test_lanes_resume_exactly(tmp_path):
    write(tmp_path / "d", [5, 3, 7, 2, 4, 6])
    inputs = [DataInput(dataset="d", weight=1.0, shards="d")]

    def make():
        return StageData(inputs, tmp_path, seed=2, global_batch=6, rank=1, dp_size=2, micro_batch=1, lanes=3)

    data = make()
    for step in range(1, 8):
        data.step(step)
    state = data.state_dict()
    after = [keys(data.step(step)) for step in range(8, 20)]
    resumed = StageData(inputs, tmp_path, seed=2, global_batch=6, rank=1, dp_size=2, micro_batch=1, lanes=1)
    resumed.load_state_dict(state)  # the checkpoint's lanes win
    assert resumed.lanes == 3
    assert [keys(resumed.step(step)) for step in range(8, 20)] == after


def test_mixing_follows_weights_and_resumes(tmp_path):
    write(tmp_path / "a", [50, 50], prefix="a")
    write(tmp_path / "b", [50], prefix="b")
    inputs = [DataInput(dataset="a", weight=0.75, shards="a"), DataInput(dataset="b", weight=0.25, shards="b/*.tar")]
    data = StageData(inputs, tmp_path, seed=0, global_batch=8, rank=0, dp_size=1, micro_batch=1)
    drawn = [k for step in range(1, 301) for k in keys(data.step(step))]
    share_a = sum(k.startswith("a") for k in drawn) / len(drawn)
    assert share_a == pytest.approx(0.75, abs=0.03)

    state = data.state_dict()
    after = [keys(data.step(step)) for step in range(301, 311)]
    resumed = StageData(inputs, tmp_path, seed=0, global_batch=8, rank=0, dp_size=1, micro_batch=1)
    resumed.load_state_dict(state)
    assert [keys(resumed.step(step)) for step in range(301, 311)] == after


def test_expand_shards_patterns(tmp_path):
    write(tmp_path / "x", [1, 1, 1], prefix="x")
    assert len(expand_shards("x", tmp_path, "data[0].shards")) == 3
    assert len(expand_shards("x/x-00{0,2}.tar", tmp_path, "data[0].shards")) == 2
    assert len(expand_shards("x/*.tar", tmp_path, "data[0].shards")) == 3
    with pytest.raises(FileNotFoundError, match=r"data\[0\].shards"):
        expand_shards("missing", tmp_path, "data[0].shards")


def test_read_shard_groups_members_by_key(tmp_path):
    path = tmp_path / "g.tar"
    with wds.TarWriter(str(path)) as sink:
        sink.write({"__key__": "dir/k1", "latents.npy": np.zeros(2), "txt": "a cat"})
        sink.write({"__key__": "dir/k2", "latents.npy": np.ones(2), "txt": "a dog"})
    samples = read_shard(path)
    assert keys(samples) == ["dir/k1", "dir/k2"]
    assert samples[1]["txt"] == b"a dog" and set(samples[0]) == {"__key__", "latents.npy", "txt"}


def test_where_filter_keeps_the_subset_and_counts_what_it_skips(tmp_path):
    from compiler.schema.data import Subset

    (tmp_path / "q").mkdir()
    with wds.TarWriter(str(tmp_path / "q" / "q-000.tar")) as sink:
        for index in range(12):
            sink.write(
                {
                    "__key__": f"q{index:03d}",
                    "latents.npy": np.zeros((1, 2, 2)),
                    "json": {"width": 512 if index % 3 else 256, "height": 512},
                    "scores.json": {"aesthetic": {"value": index / 2}},
                }
            )
    where = Subset(min_short_side_px=512, min_score={"aesthetic": 2.0})
    inputs = [DataInput(dataset="q", weight=1.0, shards="q", where=where)]
    data = StageData(inputs, tmp_path, seed=0, global_batch=2, rank=0, dp_size=1, micro_batch=2)
    kept = {k for step in range(1, 4) for k in keys(data.step(step))}
    assert kept == {"q004", "q005", "q007", "q008", "q010", "q011"}  # index >= 4, not a multiple of 3
    assert 6 < data.state_dict()["consumed"][0] <= 12  # skipped samples count towards the position
    assert keys(data.first_samples(2)) == ["q004", "q005"]
    strict = [DataInput(dataset="q", weight=1.0, shards="q", where=Subset(min_score={"aesthetic": 9.0}))]
    empty = StageData(strict, tmp_path, seed=0, global_batch=2, rank=0, dp_size=1, micro_batch=2)
    with pytest.raises(ValueError, match=r"dataset 'q'.*no sample matches where = .*aesthetic.*loosen"):
        empty.first_samples(2)
    with pytest.raises(ValueError, match=r"data\[0\].where.min_score needs the score of op 'ocr'"):
        StageData(
            [DataInput(dataset="q", weight=1.0, shards="q", where=Subset(min_score={"ocr": 1.0}))],
            tmp_path,
            seed=0,
            global_batch=2,
            rank=0,
            dp_size=1,
            micro_batch=2,
        ).step(1)


def test_each_micro_batch_comes_from_one_dataset_identically_on_every_rank(tmp_path):
    write(tmp_path / "a", [10] * 6, prefix="a")
    write(tmp_path / "b", [10] * 4, prefix="b")
    inputs = [DataInput(dataset="a", weight=0.5, shards="a"), DataInput(dataset="b", weight=0.5, shards="b")]

    def stage_data(rank, dp_size):
        return StageData(inputs, tmp_path, seed=0, global_batch=12, rank=rank, dp_size=dp_size, micro_batch=3)

    ranks, single = [stage_data(r, 2) for r in range(2)], stage_data(0, 1)
    sources_per_step = []
    for step in range(1, 31):
        parts = [keys(data.step(step)) for data in ranks]
        whole = keys(single.step(step))
        # rank r fills the r-th block of whole micro-batches, each from the dataset the single run drew there
        micro_batches = [parts[r][i : i + 3] for r in range(2) for i in range(0, 6, 3)]
        assert [micro[0][0] for micro in micro_batches] == [whole[i][0] for i in range(0, 12, 3)]
        assert all(len({key[0] for key in micro}) == 1 for micro in micro_batches)
        assert set(parts[0]).isdisjoint(parts[1])
        sources_per_step.append({micro[0][0] for micro in micro_batches})
    assert any(len(sources) == 2 for sources in sources_per_step)  # chosen per micro-batch, not per step

    state = ranks[1].state_dict()
    after = [keys(ranks[1].step(step)) for step in range(31, 36)]
    resumed = stage_data(1, 2)
    resumed.load_state_dict(state)
    assert [keys(resumed.step(step)) for step in range(31, 36)] == after


def test_the_global_batch_must_be_whole_micro_batches_per_rank(tmp_path):
    write(tmp_path / "a", [4], prefix="a")
    with pytest.raises(ValueError, match="global batch 6 is not whole micro-batches of 2 on each of 2 ranks"):
        StageData([DataInput(dataset="a", weight=1.0, shards="a")], tmp_path, 0, 6, 0, 2, micro_batch=2)


def test_a_rare_match_is_found_again_in_any_shard_order(tmp_path):
    # One matching sample in the first of four shards: after taking it, the stream must drain the rest of
    # this epoch and up to a whole next epoch before it comes round again; it must not give up early.
    directory = tmp_path / "rare"
    directory.mkdir()
    for shard in range(4):
        with wds.TarWriter(str(directory / f"r-{shard:03d}.tar")) as sink:
            for index in range(3):
                sink.write({"__key__": f"r{shard}{index}", "value.npy": np.array([shard * 3 + index])})
    paths = sorted(directory.glob("*.tar"))
    for seed in range(8):
        stream = DatasetStream(paths, seed=seed, index=0, keep=lambda sample: sample["__key__"] == b"r00")
        assert keys(stream.next() for _ in range(5)) == ["r00"] * 5


def test_video_stages_pass_over_clips_too_short_for_their_frames(tmp_path):
    directory = tmp_path / "clips"
    directory.mkdir()
    with wds.TarWriter(str(directory / "c-000.tar")) as sink:
        sink.write({"__key__": "short", "mp4": b"", "json": {"duration_s": 0.25}})  # 9 frames at 16 fps: 0.5625 s
        sink.write({"__key__": "long", "mp4": b"", "json": {"frame_count": 24, "fps": 12}})  # 2 s
        sink.write({"__key__": "image", "jpg": b"", "json": {"width": 8, "height": 8}})
        sink.write({"__key__": "unknown", "mp4": b""})  # no metadata: decoding judges it
    inputs = [DataInput(dataset="c", weight=1.0, shards="clips")]
    data = StageData(inputs, tmp_path, seed=0, global_batch=3, rank=0, dp_size=1, micro_batch=3, clip=(9, 16.0))
    assert sorted(keys(data.step(1))) == ["image", "long", "unknown"]
    assert data.state_dict()["consumed"] == [4]
    by_frames = StageData(inputs, tmp_path, seed=0, global_batch=1, rank=0, dp_size=1, micro_batch=1, clip=(30, None))
    assert "long" not in keys(by_frames.first_samples(4))  # 24 frames at the file's own rate < 30
