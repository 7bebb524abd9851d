"""Training samples from webdataset shards in a deterministic, resumable order.

Order. Each dataset is an endless sequence of epochs; epoch e visits the dataset's shards in a permutation
seeded by (seed, dataset, e) and each shard's samples in a permutation seeded by (seed, dataset, e, shard).
Step s takes the global batch (dp_size x grad_accumulation micro-batches of micro_batch samples); each
micro-batch picks its dataset by the stage's weights with a generator seeded by (seed, s), and all its
samples come from that dataset, so a micro-batch has one shape (videos and images, edit triplets and plain
images, live in different datasets). Rank r takes the r-th contiguous block of grad_accumulation whole
micro-batches. Every rank draws the same choices and walks every dataset identically, so the data position
is one number per dataset (samples consumed, counting those a subset's `where` filter passes over) and
resuming skips whole shards by their member count (tar headers only). A video stage also passes over clips
too short for its frames at its fps, by their metadata (subset.long_enough).

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

import numpy as np
from braceexpand import braceexpand

from compiler.schema.bundle import DataInput
from runtime.train.subset import Sample, long_enough, subset_filter

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


class DatasetStream:
    """One dataset's endless deterministic sample sequence."""

    def __init__(self, shards: list[Path], seed: int, index: int, keep: Callable[[Sample], bool] | None = None):
        self.shards = shards
        self.seed = seed
        self.index = index
        self.keep = keep
        self.consumed = 0
        self._lengths: dict[Path, int] = {}
        self._epoch, self._order, self._position = 0, self._epoch_order(0), 0
        self._samples: deque[Sample] = deque()
        self._loaded = False  # whether the shard at _position has been read into _samples

    def _epoch_order(self, epoch: int) -> list[Path]:
        order = np.random.default_rng([self.seed, self.index, epoch]).permutation(len(self.shards))
        return [self.shards[i] for i in order]

    def _length(self, shard: Path) -> int:
        if shard not in self._lengths:
            self._lengths[shard] = count_samples(shard)
        return self._lengths[shard]

    def _load_current(self) -> None:
        shard = self._order[self._position]
        samples = read_shard(shard)
        self._lengths[shard] = len(samples)
        order = np.random.default_rng([self.seed, self.index, self._epoch, self._position]).permutation(len(samples))
        self._samples = deque(samples[i] for i in order)
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
        while remaining and remaining >= self._length(self._order[self._position]):
            remaining -= self._length(self._order[self._position])
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
            if exhausted > 2 * len(self.shards):  # a whole epoch after the current one without a match
                raise ValueError(
                    f"dataset {self.index}: no sample in its shards {[str(p) for p in self.shards][:3]} "
                    f"{'matches its where filter' if self.keep else 'exists'}"
                )
            self._advance_shard()


class StageData:
    """The stage's datasets mixed by weight; hands each rank its share of every step's global batch."""

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
    ):
        """clip: a video stage's (frames, fps); clips too short for it are passed over like filtered samples."""
        if global_batch % (dp_size * micro_batch):
            raise ValueError(
                f"the global batch {global_batch} is not whole micro-batches of {micro_batch} on each of {dp_size} "
                "ranks; make train_batch_size = micro batch x gradient accumulation x data-parallel size"
            )
        self.inputs = inputs
        self.seed = seed
        self.global_batch, self.micro_batch = global_batch, micro_batch
        self.rank, self.dp_size = rank, dp_size
        self.shards = [expand_shards(d.shards, run_root, f"data[{i}].shards") for i, d in enumerate(inputs)]
        weights = np.array([d.weight for d in inputs], dtype=np.float64)
        self.weights = weights / weights.sum()
        self.filters = [subset_filter(d.where, f"data[{i}].where") for i, d in enumerate(inputs)]
        if clip is not None:
            self.filters = [both(keep, long_enough(*clip)) for keep in self.filters]
        self.streams = self._fresh_streams()

    def _fresh_streams(self) -> list[DatasetStream]:
        return [DatasetStream(s, self.seed, i, keep) for i, (s, keep) in enumerate(zip(self.shards, self.filters))]

    def state_dict(self) -> dict:
        """Samples consumed per dataset."""
        return {"consumed": [stream.consumed for stream in self.streams]}

    def load_state_dict(self, state: dict) -> None:
        """Resume after the samples `state` says were consumed."""
        consumed = state["consumed"]
        if len(consumed) != len(self.streams):
            raise ValueError(
                f"checkpoint data position covers {len(consumed)} datasets, the stage reads {len(self.streams)}; "
                "resume with the stage.yaml the checkpoint was written with"
            )
        self.streams = self._fresh_streams()
        for stream, count in zip(self.streams, consumed):
            stream.skip_to(count)

    def step(self, step: int) -> list[Sample]:
        """This rank's raw samples of the global batch of `step`, in micro-batch order (steps come in order)."""
        micro_batches = self.global_batch // self.micro_batch
        if len(self.streams) == 1:
            choices = np.zeros(micro_batches, dtype=np.int64)
        else:
            rng = np.random.default_rng([self.seed, MIX_STREAM, step])
            choices = rng.choice(len(self.streams), size=micro_batches, p=self.weights)
        per_rank = micro_batches // self.dp_size
        mine = range(self.rank * per_rank, (self.rank + 1) * per_rank)
        samples = []
        for index, choice in enumerate(choices):
            micro = [self.streams[choice].next() for _ in range(self.micro_batch)]
            if index in mine:
                samples.extend(micro)
        return samples

    def first_samples(self, count: int) -> list[Sample]:
        """The first `count` samples the first dataset keeps, in file order (the validation set); an error when
        it keeps none."""
        samples: list[Sample] = []
        keep = self.filters[0] or (lambda sample: True)
        for shard in self.shards[0]:
            samples.extend(sample for sample in read_shard(shard) if keep(sample))
            if len(samples) >= count:
                break
        if not samples:
            first = self.inputs[0]
            raise ValueError(
                f"data[0] (dataset {first.dataset!r}, shards {first.shards!r}): no sample "
                f"{f'matches where = {first.where.model_dump(exclude_none=True)}' if first.where else 'exists'}; "
                "curate more data or loosen the dataset's where filter"
            )
        return samples[:count]


def both(first: Callable[[Sample], bool] | None, second: Callable[[Sample], bool]) -> Callable[[Sample], bool]:
    """A predicate keeping what `first` (None: everything) and `second` keep."""
    return second if first is None else (lambda sample: first(sample) and second(sample))


def load_npy(data: bytes) -> np.ndarray:
    """An .npy member as an array (no pickles)."""
    return np.load(io.BytesIO(data), allow_pickle=False)
