"""Buckets at training time: each sample to its nearest bucket, micro-batches of one bucket, exact resume.

The plan's bucket table (stage.yaml `buckets`, compiler/plan/buckets.py) lists, per resolution of the stage,
the buckets' pixel sizes, frame counts and micro-batches. A sample's bucket (`BucketTable.assign`), at the
resolution the step trains:
  precomputed latents only (no media member, or stage.conditioning 'precomputed'): the latents' own shape.
      Curation stores latents unpadded, one array per sample (runtime/curation/ops/precompute.py), so samples are
      grouped by latent shape and trained at it; a shape the table lacks gets the micro-batch of the same
      token budget as the table's largest bucket (its micro-batch x tokens / the shape's tokens, at least 1)
  an image: the bucket of nearest aspect ratio (by |log(width / height)|) among the image buckets (frames
      None in an image stage, 1 in a video stage)
  a video: the longest bucket frame count the clip covers at stage.fps, then the nearest aspect ratio.
Geometry comes from curation's KEY.json (width, height, duration_s or frame_count and fps) where present,
else from the media: the image header (PIL), the video container (OpenCV). The batch builder then scales and
centre-crops each image or clip to its bucket's size (runtime/train/media.py), so an image keeps its aspect
ratio up to the bucket's rounding, and takes the bucket's frame count of a clip.

Micro-batches (`BucketStream`): one reader's samples of one dataset, in the stream's order (deterministic
from seed, dataset, epoch and reader: runtime/train/data.py), go to one queue per bucket, first in first out;
when a queue holds its bucket's micro-batch, those samples are the reader's next micro-batch. When a
progressive stage moves to its next resolution, waiting samples are assigned again at the new one, oldest
first. State: the stream's position and each waiting sample's ordinal (the stream position just after it);
`load_state_dict` rewinds a fresh stream to the oldest waiting sample and reads forward to the position,
queueing the waiting samples again, so a resumed run draws the same micro-batches as an uninterrupted one.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
from collections import deque

import numpy as np

from compiler.schema.bundle import BucketEntry, StageFile
from runtime.train.data import DatasetStream
from runtime.train.media import IMAGE_FIELDS, first_member, key_of
from runtime.train.subset import VIDEO_FIELDS, Sample

Key = tuple  # ("size", resolution, height, width, frames) or ("latent", *shape)


def trains_on_buckets(stage_file: StageFile) -> bool:
    """Whether the stage trains on buckets: it has a bucket table, or asks for aspect-ratio or frame buckets."""
    stage = stage_file.stage
    return bool(stage_file.buckets or stage.aspect_ratio_buckets or stage.frame_buckets)


def resolution_index(step: int, count: int, total_steps: int) -> int:
    """The resolution (of `count`, in order) that step `step` trains: the resolutions split the steps evenly."""
    return min((step - 1) * count // total_steps, count - 1)


def latent_shape_of(data: bytes) -> tuple[int, ...]:
    """The shape of an .npy member, from its header alone."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return tuple(header(stream)[0])


class BucketTable:
    """A stage's buckets: which a sample goes to, its micro-batch, and the size and frames it trains at."""

    def __init__(self, stage_file: StageFile):
        stage, space = stage_file.stage, stage_file.architecture.space
        if not stage_file.buckets:
            raise ValueError(
                f"stage {stage.name}: stage.yaml has no bucket table, but the stage trains on buckets "
                "(aspect_ratio_buckets, frame_buckets, or images with videos); compile the bundle again"
            )
        self.entries: list[BucketEntry] = list(stage_file.buckets)
        self.compression = space.spatial_compression if space.kind == "latent" else 1
        self.temporal = getattr(space, "temporal_compression", 1)
        self.causal = bool(getattr(space, "causal", False))
        self.video_stage = stage.frames is not None
        self.fps = stage.fps
        self.latents_only = stage.conditioning == "precomputed"
        largest = max(self.entries, key=lambda e: self._tokens(self._latent_grid(e)) * e.micro_batch)
        self.token_budget = self._tokens(self._latent_grid(largest)) * largest.micro_batch
        self.most = max(e.micro_batch for e in self.entries)

    # --- assignment -------------------------------------------------------------------------------------
    def assign(self, sample: Sample, resolution: int) -> Key:
        """The bucket of `sample` when the stage trains its resolution `resolution`."""
        media = first_member(sample, VIDEO_FIELDS + IMAGE_FIELDS)
        if media is None or (self.latents_only and "latents.npy" in sample):
            if "latents.npy" not in sample:
                raise ValueError(f"sample {key_of(sample)} has neither media ({', '.join(VIDEO_FIELDS + IMAGE_FIELDS)}) "
                                 "nor latents.npy to bucket by; keep its media or precompute its latents")
            shape = latent_shape_of(sample["latents.npy"])
            if self.video_stage and len(shape) == 3:
                shape = (shape[0], 1, *shape[1:])  # an image in a video stage: one latent frame
            return ("latent", *shape)
        height, width, seconds, count = self._geometry(sample, media)
        video = media in VIDEO_FIELDS
        candidates = [e for e in self.entries if e.resolution == resolution
                      and (e.frames is not None and e.frames > 1) == video]
        if not candidates:
            raise ValueError(
                f"sample {key_of(sample)} is {'a video' if video else 'an image'}, but the stage's buckets at "
                f"resolution {resolution} hold no {'videos' if video else 'images'}; keep such samples out with "
                "the dataset's where.modality"
            )
        if video:
            frames = sorted({e.frames for e in candidates}, reverse=True)
            covered = [f for f in frames if self._covers(seconds, count, f)]
            chosen = covered[0] if covered else frames[-1]  # too short for every bucket: decoding says so
            candidates = [e for e in candidates if e.frames == chosen]
        ratio = math.log(width / height)
        best = min(candidates, key=lambda e: abs(math.log(e.width / e.height) - ratio))
        return ("size", best.resolution, best.height, best.width, best.frames)

    def _covers(self, seconds: float | None, count: int | None, frames: int) -> bool:
        """Whether a clip of `seconds` (or `count` frames) yields `frames` frames at the stage's fps."""
        if self.fps is not None and seconds is not None:
            return seconds * self.fps >= frames - 1e-6
        return count is None or count >= frames

    @staticmethod
    def _geometry(sample: Sample, media: str) -> tuple[int, int, float | None, int | None]:
        """(height, width, seconds, frame count) of the sample's media: KEY.json, else the media itself."""
        metadata = {}
        if "json" in sample:
            try:
                metadata = json.loads(sample["json"])
            except ValueError:
                metadata = {}
        width, height = metadata.get("width"), metadata.get("height")
        seconds, count, fps = metadata.get("duration_s"), metadata.get("frame_count"), metadata.get("fps")
        video = media in VIDEO_FIELDS
        if not (width and height) or (video and seconds is None and count is None):
            if video:
                width, height, count, fps = _probe_video(sample, media)
            else:
                from PIL import Image

                width, height = Image.open(io.BytesIO(sample[media])).size  # the header only
        if video and seconds is None and count and fps:
            seconds = count / fps
        return int(height), int(width), seconds, count

    # --- micro-batch and geometry ---------------------------------------------------------------------------
    def micro(self, key: Key) -> int:
        """Samples per micro-batch of bucket `key`."""
        if key[0] == "size":
            return next(e.micro_batch for e in self.entries if self._key(e) == key)
        grid = key[2:]
        planned = [e for e in self.entries if self._latent_grid(e) == tuple(grid)]
        if planned:
            return planned[0].micro_batch
        return max(1, min(self.most, self.token_budget // self._tokens(grid)))

    def geometry(self, key: Key) -> tuple[tuple[int, int], int | None]:
        """((height, width) pixels, frames) a micro-batch of bucket `key` is built at (frames None: images of an
        image stage)."""
        if key[0] == "size":
            return (key[2], key[3]), key[4]
        grid = key[2:]
        size = (grid[-2] * self.compression, grid[-1] * self.compression)
        if len(grid) == 2:
            return size, None
        latent = grid[0]
        frames = 1 if latent == 1 else (1 + self.temporal * (latent - 1) if self.causal else self.temporal * latent)
        return size, frames

    @staticmethod
    def _key(entry: BucketEntry) -> Key:
        return ("size", entry.resolution, entry.height, entry.width, entry.frames)

    def _latent_grid(self, entry: BucketEntry) -> tuple[int, ...]:
        """([latent frames,] h, w) of a table entry's latents."""
        grid = (entry.height // self.compression, entry.width // self.compression)
        if entry.frames is None:
            return grid
        latent = 1 if entry.frames == 1 else (
            1 + (entry.frames - 1) // self.temporal if self.causal else entry.frames // self.temporal)
        return (latent, *grid)

    @staticmethod
    def _tokens(grid) -> int:
        return math.prod(grid)


def _probe_video(sample: Sample, field: str) -> tuple[int, int, int, float]:
    """(width, height, frame count, fps) of a video member, from its container."""
    import cv2

    with tempfile.NamedTemporaryFile(suffix=f".{field}") as scratch:
        scratch.write(sample[field])
        scratch.flush()
        capture = cv2.VideoCapture(scratch.name)
        try:
            return (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                    int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), float(capture.get(cv2.CAP_PROP_FPS)))
        finally:
            capture.release()


class BucketStream:
    """One reader's micro-batches of one dataset, each of one bucket (see the module docstring)."""

    def __init__(self, stream: DatasetStream, table: BucketTable):
        self.stream, self.table = stream, table
        self.resolution = 0
        self.queues: dict[Key, deque[tuple[int, Sample]]] = {}

    def next(self, resolution: int = 0) -> tuple[Key, list[Sample]]:
        """The next micro-batch: (its bucket, its samples), at the stage's resolution `resolution`."""
        if resolution != self.resolution:
            self._rehome(resolution)
        while True:
            full = self._full()
            if full is not None:
                queue = self.queues[full]
                batch = [queue.popleft()[1] for _ in range(self.table.micro(full))]
                if not queue:
                    del self.queues[full]
                return full, batch
            sample = self.stream.next()
            self._queue(self.stream.consumed, sample, self.table.assign(sample, resolution))

    def _queue(self, ordinal: int, sample: Sample, key: Key) -> None:
        self.queues.setdefault(key, deque()).append((ordinal, sample))

    def _full(self) -> Key | None:
        """The bucket whose queue holds a micro-batch, the one waiting longest first."""
        full = [key for key, queue in self.queues.items() if len(queue) >= self.table.micro(key)]
        return min(full, key=lambda key: self.queues[key][0][0]) if full else None

    def _rehome(self, resolution: int) -> None:
        """Assign the waiting samples again at `resolution`, oldest first (latent-shape buckets stay)."""
        waiting = sorted((entry for key, queue in self.queues.items() if key[0] == "size" for entry in queue),
                         key=lambda entry: entry[0])
        self.queues = {key: queue for key, queue in self.queues.items() if key[0] != "size"}
        self.resolution = resolution
        for ordinal, sample in waiting:
            self._queue(ordinal, sample, self.table.assign(sample, resolution))

    def state_dict(self) -> dict:
        """The stream position, the resolution, and each bucket's waiting samples by ordinal."""
        return {
            "consumed": self.stream.consumed,
            "resolution": self.resolution,
            "waiting": [[list(key), [ordinal for ordinal, _ in queue]] for key, queue in self.queues.items()],
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume a fresh stream where `state` was taken, with the same samples waiting in the same buckets."""
        self.resolution = state["resolution"]
        wanted = {ordinal: tuple(key) for key, ordinals in state["waiting"] for ordinal in ordinals}
        self.queues = {tuple(key): deque() for key, _ in state["waiting"]}
        if not wanted:
            self.stream.skip_to(state["consumed"])
            return
        self.stream.skip_to(min(wanted) - 1)
        while self.stream.consumed < state["consumed"]:
            sample = self.stream.next()
            if self.stream.consumed in wanted:
                self.queues[wanted[self.stream.consumed]].append((self.stream.consumed, sample))
        if self.stream.consumed != state["consumed"] or sum(map(len, self.queues.values())) != len(wanted):
            raise ValueError(
                f"bucket state of dataset {self.stream.index}: reading to position {state['consumed']} found "
                f"{sum(map(len, self.queues.values()))} of {len(wanted)} waiting samples; the shards changed "
                "since the checkpoint was written"
            )


def bucket_streams(lanes: list[list[DatasetStream]], table: BucketTable) -> list[list[BucketStream]]:
    """BucketStreams over streams[lane][dataset]."""
    return [[BucketStream(stream, table) for stream in lane] for lane in lanes]
