"""Training samples from webdataset shards in a deterministic, resumable order, each rank reading only its share.

Readers. A rank's data comes through `lanes` readers (runtime/train/loader.py runs one DataLoader worker per
lane), so a stage has dp_size x lanes readers; reader j = rank x lanes + lane. Each dataset is an endless
sequence of epochs; epoch e orders the dataset's shards by a permutation seeded by (seed, dataset, e), and
reader j takes the shards at positions j, j + R, j + 2R, ... of it (R readers), so the readers' shards are
disjoint and together are the epoch. A dataset with fewer shards than readers is split by shards over the
ranks and by samples over the lanes (every lane of a rank reads the rank's shards and keeps every lanes-th
sample), and with fewer shards than ranks by samples over all readers. Each shard's samples are visited in a
permutation seeded by (seed, dataset, e, position of the shard in the epoch), the same for every reader.

Batches. Step s has dp_size x grad_accumulation micro-batches of micro_batch samples; each picks its dataset
by the stage's weights with a generator seeded by (seed, s), identically on every rank, and all its samples
come from that dataset, so a micro-batch has one shape (videos and images, edit triplets and plain images,
live in different datasets). A bucketed stage's micro-batch also holds one bucket (runtime/train/buckets.py:
each reader's samples queue per bucket until one has its micro-batch), and a dataset's weight is then its
share of micro-batches. Rank r fills the r-th block of grad_accumulation micro-batches from its own
readers: its micro-batch k (counted from the run's start over all steps) comes from lane k mod lanes. The
data position is one number per lane and dataset (samples consumed, counting those a subset's `where` filter
passes over); resuming skips whole shards by their member count (tar headers only). A video stage also
passes over clips too short for its frames at its fps, by their metadata (subset.long_enough).

A shard is read whole into memory as raw bytes while it is consumed; members are grouped into samples by
key as webdataset does (`dir/key.field.ext`: key up to the first dot of the file name).
"""

from __future__ import annotations

import glob
import io
import re
import tarfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from braceexpand import braceexpand

from compiler.schema.bundle import DataInput
from runtime.train.subset import Sample, long_enough, subset_filter

if TYPE_CHECKING:
    from runtime.train.buckets import BucketTable

MIX_STREAM = 0x6D6978  # separates the dataset-choice seeds from the order seeds
KEY_FIELD = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset tariterators.base_plus_ext


def expand_shards(pattern: str, run_root: Path, field: str) -> list[Path]:
    """The .tar files of a shard pattern: a directory, a glob or a brace pattern, relative to run_root."""
    found: list[Path] = []
    for part in braceexpand(pattern):
        path = run_root / part
        if path.is_dir():
            found.extend(sorted(path.glob("*.tar")))
        elif any(char in part for char in "*?["):
            found.extend(sorted(Path(p) for p in glob.glob(str(path))))
        elif path.exists():
            found.append(path)
    if not found:
        raise FileNotFoundError(
            f"{field} = {pattern!r} matches no .tar shards under the run root {run_root}; curate the dataset first "
            "or pass --run-root pointing at the directory the bundle's paths are relative to"
        )
    return found


def split_member(name: str) -> tuple[str, str] | None:
    """(key, field) of a tar member name, or None for names without a field."""
    match = KEY_FIELD.match(name)
    return (match.group(1), match.group(2)) if match else None


def read_shard(path: Path) -> list[Sample]:
    """A shard's samples in tar order, as raw member bytes by field."""
    samples: dict[str, Sample] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            parts = split_member(member.name) if member.isfile() else None
            if parts is None:
                continue
            key, field = parts
            sample = samples.setdefault(key, {"__key__": key.encode()})
            sample[field] = tar.extractfile(member).read()
    return list(samples.values())


def count_samples(path: Path) -> int:
    """Samples in a shard, from the member headers alone."""
    with tarfile.open(path) as tar:
        return len({parts[0] for member in tar if member.isfile() and (parts := split_member(member.name))})


def reader_split(shards: int, ranks: int, lanes: int) -> tuple[int, int]:
    """(shard groups, sample slots) of a dataset with `shards` shards read by ranks x lanes readers: whole shards
    per reader when there are enough, else shards per rank and samples per lane, else samples per reader."""
    readers = ranks * lanes
    if shards >= readers:
        return readers, 1
    if shards >= ranks:
        return ranks, lanes
    return 1, readers


class DatasetStream:
    """One reader's endless deterministic sample sequence of one dataset (reader 0 of 1 reads everything)."""

    def __init__(
        self,
        shards: list[Path],
        seed: int,
        index: int,
        keep: Callable[[Sample], bool] | None = None,
        reader: int = 0,
        ranks: int = 1,
        lanes: int = 1,
    ):
        """reader: this reader's number (rank x lanes + lane) among ranks x lanes readers."""
        self.shards = shards
        self.seed = seed
        self.index = index
        self.keep = keep
        self.groups, self.slots = reader_split(len(shards), ranks, lanes)
        self.group, self.slot = reader // self.slots, reader % self.slots
        self.consumed = 0
        self._lengths: dict[Path, int] = {}
        self._epoch, self._order, self._position = 0, self._epoch_order(0), 0
        self._samples: deque[Sample] = deque()
        self._loaded = False  # whether the shard at _position has been read into _samples

    def _epoch_order(self, epoch: int) -> list[tuple[int, Path]]:
        """This reader's shards of `epoch` with their positions in the epoch's order of all shards."""
        order = np.random.default_rng([self.seed, self.index, epoch]).permutation(len(self.shards))
        return [(place, self.shards[i]) for place, i in enumerate(order) if place % self.groups == self.group]

    def _mine(self, count: int) -> range:
        """The positions of a shard's (permuted) samples this reader keeps."""
        return range(self.slot, count, self.slots)

    def _length(self, shard: Path) -> int:
        if shard not in self._lengths:
            self._lengths[shard] = len(self._mine(count_samples(shard)))
        return self._lengths[shard]

    def _load_current(self) -> None:
        place, shard = self._order[self._position]
        samples = read_shard(shard)
        order = np.random.default_rng([self.seed, self.index, self._epoch, place]).permutation(len(samples))
        self._samples = deque(samples[order[i]] for i in self._mine(len(samples)))
        self._lengths[shard] = len(self._samples)
        self._loaded = True

    def _advance_shard(self) -> None:
        self._position += 1
        if self._position == len(self._order):
            self._epoch += 1
            self._order, self._position = self._epoch_order(self._epoch), 0
        self._loaded = False

    def skip_to(self, consumed: int) -> None:
        """Jump to the position after `consumed` samples from the start (a fresh stream only)."""
        if self.consumed:
            raise RuntimeError("skip_to works on a fresh stream; build a new one to move back")
        remaining = consumed
        while remaining and remaining >= self._length(self._order[self._position][1]):
            remaining -= self._length(self._order[self._position][1])
            self._advance_shard()
        self._load_current()
        for _ in range(remaining):
            self._samples.popleft()
        self.consumed = consumed

    def next(self) -> Sample:
        """The next sample (that the subset filter keeps); `consumed` counts every sample passed over."""
        exhausted = 0
        while True:
            if not self._loaded:
                self._load_current()
            while self._samples:
                sample = self._samples.popleft()
                self.consumed += 1
                if self.keep is None or self.keep(sample):
                    return sample
            exhausted += 1
            if exhausted > 2 * len(self._order) + 2:  # a whole epoch after the current one without a match
                raise ValueError(
                    f"dataset {self.index}: no sample in its shards {[str(p) for p in self.shards][:3]} "
                    f"{'matches its where filter' if self.keep else 'exists'}"
                    + (f" among the share of reader {self.group * self.slots + self.slot}" if self.groups > 1 or
                       self.slots > 1 else "")
                )
            self._advance_shard()


class StageData:
    """The stage's datasets mixed by weight; this rank's readers and its share of every step's global batch."""

    def __init__(
        self,
        inputs: list[DataInput],
        run_root: Path,
        seed: int,
        global_batch: int,
        rank: int,
        dp_size: int,
        *,
        micro_batch: int,
        clip: tuple[int, float | None] | None = None,
        lanes: int = 1,
        buckets: BucketTable | None = None,
        resolution_at: Callable[[int], int] | None = None,
    ):
        """clip: a video stage's (frames, fps); clips too short for it are passed over like filtered samples.
        lanes: readers per rank (one per DataLoader worker); part of the data order, so a resumed run keeps
        the checkpoint's. buckets: a bucketed stage's table (runtime/train/buckets.py): each micro-batch then
        holds one bucket, with that bucket's micro-batch; resolution_at(step): the index of the stage resolution
        step trains (buckets depend on it)."""
        if global_batch % (dp_size * micro_batch):
            raise ValueError(
                f"the global batch {global_batch} is not whole micro-batches of {micro_batch} on each of {dp_size} "
                "ranks; make train_batch_size = micro batch x gradient accumulation x data-parallel size"
            )
        if lanes < 1:
            raise ValueError(f"data lanes must be at least 1, got {lanes}")
        self.inputs = inputs
        self.seed = seed
        self.global_batch, self.micro_batch = global_batch, micro_batch
        self.accumulation = global_batch // (dp_size * micro_batch)
        self.rank, self.dp_size = rank, dp_size
        self.lanes = lanes
        self.shards = [expand_shards(d.shards, run_root, f"data[{i}].shards") for i, d in enumerate(inputs)]
        weights = np.array([d.weight for d in inputs], dtype=np.float64)
        self.weights = weights / weights.sum()
        self.filters = [subset_filter(d.where, f"data[{i}].where") for i, d in enumerate(inputs)]
        if clip is not None:
            self.filters = [both(keep, long_enough(*clip)) for keep in self.filters]
        self.table, self.resolution_at = buckets, resolution_at or _first_resolution
        self.streams = self._fresh_streams()

    @property
    def streams(self) -> list[list[DatasetStream]]:
        """streams[lane][dataset]."""
        return self._streams

    @streams.setter
    def streams(self, streams: list[list[DatasetStream]]) -> None:
        self._streams = streams
        if self.table is not None:
            from runtime.train.buckets import bucket_streams

            self.bucketed = bucket_streams(streams, self.table)

    def _fresh_streams(self) -> list[list[DatasetStream]]:
        """streams[lane][dataset]."""
        return [
            [
                DatasetStream(s, self.seed, i, keep, self.rank * self.lanes + lane, self.dp_size, self.lanes)
                for i, (s, keep) in enumerate(zip(self.shards, self.filters))
            ]
            for lane in range(self.lanes)
        ]

    def state_dict(self) -> dict:
        """Samples consumed per lane and dataset ("consumed": their sums per dataset)."""
        per_lane = [[stream.consumed for stream in lane] for lane in self.streams]
        state = {"lanes": self.lanes, "lane_consumed": per_lane, "consumed": [sum(c) for c in zip(*per_lane)]}
        if self.table is not None:
            state["lane_buckets"] = [self.bucket_state(lane) for lane in range(self.lanes)]
        return state

    def bucket_state(self, lane: int) -> list[dict] | None:
        """Each dataset's bucket state on `lane` (BucketStream.state_dict); None without buckets."""
        return None if self.table is None else [stream.state_dict() for stream in self.bucketed[lane]]

    def load_state_dict(self, state: dict) -> None:
        """Resume after the samples `state` says were consumed (with the checkpoint's lanes)."""
        per_lane = state.get("lane_consumed", [state["consumed"]])  # checkpoints from before lanes: one lane
        if any(len(consumed) != len(self.shards) for consumed in per_lane):
            raise ValueError(
                f"checkpoint data position covers {len(per_lane[0])} datasets, the stage reads {len(self.shards)}; "
                "resume with the stage.yaml the checkpoint was written with"
            )
        self.lanes = len(per_lane)
        self.streams = self._fresh_streams()
        if self.table is not None:
            if "lane_buckets" not in state:
                raise ValueError("the checkpoint's data position has no bucket state, but the stage trains on buckets; "
                                 "resume with the stage.yaml the checkpoint was written with")
            for lane, states in zip(self.bucketed, state["lane_buckets"]):
                for stream, saved in zip(lane, states):
                    stream.load_state_dict(saved)
            return
        for lane, consumed in zip(self.streams, per_lane):
            for stream, count in zip(lane, consumed):
                stream.skip_to(count)

    def choices(self, step: int) -> np.ndarray:
        """The dataset of each of this rank's micro-batches of `step` (the same draws on every rank)."""
        micro_batches = self.global_batch // self.micro_batch
        if len(self.shards) == 1:
            return np.zeros(self.accumulation, dtype=np.int64)
        rng = np.random.default_rng([self.seed, MIX_STREAM, step])
        choices = rng.choice(len(self.shards), size=micro_batches, p=self.weights)
        return choices[self.rank * self.accumulation : (self.rank + 1) * self.accumulation]

    def micro_batch_at(self, index: int) -> tuple[int, int, list[Sample], tuple | None]:
        """(lane, dataset, samples, bucket) of this rank's micro-batch `index` (0-based over all steps; each
        lane's micro-batches must be asked for in order); bucket is None in a stage without buckets."""
        step, micro = index // self.accumulation + 1, index % self.accumulation
        lane, dataset = index % self.lanes, int(self.choices(step)[micro])
        if self.table is not None:
            bucket, samples = self.bucketed[lane][dataset].next(self.resolution_at(step))
            return lane, dataset, samples, bucket
        stream = self.streams[lane][dataset]
        return lane, dataset, [stream.next() for _ in range(self.micro_batch)], None

    def step(self, step: int) -> list[Sample]:
        """This rank's raw samples of the global batch of `step`, in micro-batch order (steps come in order)."""
        first = (step - 1) * self.accumulation
        return [s for index in range(first, first + self.accumulation) for s in self.micro_batch_at(index)[2]]

    def first_samples(self, count: int, dataset: int = 0) -> list[Sample]:
        """The first `count` samples a dataset keeps, in file order (its validation set); an error when it
        keeps none."""
        samples: list[Sample] = []
        keep = self.filters[dataset] or (lambda sample: True)
        for shard in self.shards[dataset]:
            samples.extend(sample for sample in read_shard(shard) if keep(sample))
            if len(samples) >= count:
                break
        if not samples:
            given = self.inputs[dataset]
            raise ValueError(
                f"data[{dataset}] (dataset {given.dataset!r}, shards {given.shards!r}): no sample "
                f"{f'matches where = {given.where.model_dump(exclude_none=True)}' if given.where else 'exists'}; "
                "curate more data or loosen the dataset's where filter"
            )
        return samples[:count]


def _first_resolution(step: int) -> int:
    """The resolution index of every step of a stage with one resolution."""
    return 0


def both(first: Callable[[Sample], bool] | None, second: Callable[[Sample], bool]) -> Callable[[Sample], bool]:
    """A predicate keeping what `first` (None: everything) and `second` keep."""
    return second if first is None else (lambda sample: first(sample) and second(sample))


def load_npy(data: bytes) -> np.ndarray:
    """An .npy member as an array (no pickles)."""
    return np.load(io.BytesIO(data), allow_pickle=False)
