"""This rank's micro-batches through a torch DataLoader: one worker per data lane reads the lane's shards,
filters and decodes them and builds the batch, ahead of the step that needs it.

Order. The micro-batches of a rank are numbered from the run's start (index = (step - 1) x grad_accumulation
+ micro); micro-batch k comes from lane k mod lanes (runtime/train/data.py). The DataLoader hands out its
workers' items round-robin, so a run that starts at micro-batch k0 gives worker w the indices k0 + w,
k0 + w + lanes, ... - all of them from lane (k0 + w) mod lanes, which only that worker reads. Without
workers (workers=0) the main process reads every lane in index order; the batches are the same.

Resume. Every item carries its lane's position (samples consumed per dataset, and in a bucketed stage the
samples waiting in each bucket) just after it; the loader keeps
the position of the last item the trainer took from each lane, never of what workers have prefetched, and
that is what the checkpoint stores.

Building. A worker builds the Batch with a copy of the trainer's BatchBuilder that may not encode: a
micro-batch that needs on-the-fly encoding (the encoders run on the accelerator, in the main process) comes
back as raw samples and the trainer builds it. Batches are pinned in page-locked memory only where an
accelerator exists (pinning buys a non-blocking copy to it and costs page-locked RAM otherwise).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from runtime.train.data import Sample, StageData


class NeedsEncoders(Exception):
    """A worker's batch needs on-the-fly encoding, which only the main process does."""


def _refuse_encoders():
    raise NeedsEncoders


def worker_builder(builder):
    """A copy of a BatchBuilder that raises NeedsEncoders instead of loading or using encoders."""
    if builder is None:
        return None
    worker = copy.copy(builder)
    worker.load_encoders = _refuse_encoders
    worker._encoders = None
    worker.device = torch.device("cpu")  # a worker process never touches the accelerator; the trainer moves batches
    return worker


def map_tensors(value: Any, apply) -> Any:
    """`value` with `apply` applied to every tensor in it (through dataclasses, dicts, lists and tuples)."""
    if isinstance(value, torch.Tensor):
        return apply(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(
            value, **{f.name: map_tensors(getattr(value, f.name), apply) for f in dataclasses.fields(value) if f.init}
        )
    if isinstance(value, dict):
        return {key: map_tensors(item, apply) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(map_tensors(item, apply) for item in value)
    return value


def pin(value: Any) -> Any:
    """`value` with every tensor in it in pinned memory."""
    return map_tensors(value, torch.Tensor.pin_memory)


def to_device(value: Any, device: torch.device) -> Any:
    """`value` with every tensor in it on `device` (a worker's batch arrives on the host, pinned where CUDA is)."""
    return map_tensors(value, lambda tensor: tensor.to(device, non_blocking=True))


@dataclass
class Item:
    """One micro-batch as a worker hands it over."""

    index: int  # the rank's micro-batch number from the run's start
    lane: int
    dataset: int
    consumed: list[int]  # the lane's samples consumed per dataset, after this micro-batch
    batch: Any  # a Batch, or the raw samples when it needs on-the-fly encoding
    keys: tuple[str, ...]
    bucket: tuple | None = None  # the micro-batch's bucket (runtime/train/buckets.py); None without buckets
    buckets_state: list[dict] | None = None  # the lane's bucket state per dataset, after this micro-batch

    def pin_memory(self) -> Item:
        """Called by the DataLoader's pin-memory thread."""
        return dataclasses.replace(self, batch=pin(self.batch))


class MicroBatches(IterableDataset):
    """This rank's micro-batches from index `first` on; in a worker, only that worker's share."""

    def __init__(self, data: StageData, first: int, build=None, size_at=None):
        """build: a worker BatchBuilder (None: items carry raw samples); size_at(step) -> (height, width)."""
        self.data, self.first, self.build, self.size_at = data, first, build, size_at

    def __iter__(self) -> Iterator[Item]:
        info = get_worker_info()
        lanes = self.data.lanes
        if info is None:
            indices = _count(self.first, 1)
        else:
            if info.num_workers != lanes:
                raise RuntimeError(f"{info.num_workers} DataLoader workers for {lanes} data lanes; use one per lane")
            indices = _count(self.first + info.id, lanes)
        for index in indices:
            lane, dataset, samples, bucket = self.data.micro_batch_at(index)
            consumed = [stream.consumed for stream in self.data.streams[lane]]
            keys = tuple(sample["__key__"].decode() for sample in samples)
            batch = self._prepare(samples, index, bucket)
            yield Item(index, lane, dataset, consumed, batch, keys, bucket, self.data.bucket_state(lane))

    def _prepare(self, samples: list[Sample], index: int, bucket: tuple | None):
        if self.build is None:
            return samples
        step = index // self.data.accumulation + 1
        size, frames = (self.size_at(step), None) if bucket is None else self.data.table.geometry(bucket)
        try:
            return self.build(samples, size, frames)
        except NeedsEncoders:
            return samples


def _count(start: int, stride: int) -> Iterator[int]:
    index = start
    while True:
        yield index
        index += stride


class Loader:
    """This rank's micro-batches, in order, from a DataLoader with one worker per lane (workers=0: none)."""

    def __init__(self, data: StageData, start_step: int, workers: int, builder=None, size_at=None,
                 prefetch: int = 2):
        """start_step: the steps already trained (the loader begins with step start_step + 1); data must hold
        the position after them (StageData.load_state_dict)."""
        self.data = data
        self.next_index = start_step * data.accumulation
        self.positions = [[stream.consumed for stream in lane] for lane in data.streams]
        self.bucket_states = [data.bucket_state(lane) for lane in range(data.lanes)]
        self.workers = data.lanes if workers else 0
        dataset = MicroBatches(data, self.next_index, worker_builder(builder) if self.workers else builder, size_at)
        self._loader = DataLoader(
            dataset,
            batch_size=None,  # items are whole micro-batches already
            num_workers=self.workers,
            prefetch_factor=prefetch if self.workers else None,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )
        self._iterator = iter(self._loader)

    def next(self) -> Item:
        """The next micro-batch of this rank."""
        item = next(self._iterator)
        if item.index != self.next_index:  # the round-robin order broke: resume would not be exact
            raise RuntimeError(f"data loader returned micro-batch {item.index}, expected {self.next_index}")
        self.next_index += 1
        self.positions[item.lane] = list(item.consumed)
        self.bucket_states[item.lane] = item.buckets_state
        return item

    def state_dict(self) -> dict:
        """The data position after the micro-batches taken so far (StageData.load_state_dict reads it)."""
        state = {
            "lanes": self.data.lanes,
            "lane_consumed": [list(p) for p in self.positions],
            "consumed": [sum(c) for c in zip(*self.positions)],
        }
        if self.data.table is not None:
            state["lane_buckets"] = list(self.bucket_states)
        return state

    def close(self) -> None:
        """Stop the workers."""
        self._iterator = None
        self._loader = None


def default_workers() -> int:
    """DataLoader workers (= data lanes) per rank: GENSPEC_DATA_WORKERS when set (0: read in the main process),
    else up to 4, leaving a core per rank for the training process."""
    import os

    given = os.environ.get("GENSPEC_DATA_WORKERS")
    if given is not None:
        if not given.isdigit():
            raise ValueError(f"GENSPEC_DATA_WORKERS is {given!r}; set it to a whole number (0: no workers)")
        return int(given)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("LOCAL_SIZE", "1")))
    return max(1, min(4, (os.cpu_count() or 1) // max(local, 1) - 1))
