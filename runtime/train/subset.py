"""A dataset subset's `where` filter (a resolution tier, a quality tier, a modality, a duration range)
applied to shard samples, from the members curation writes: KEY.json metadata (width, height,
duration_s), KEY.scores.json ({op name: {"value": float, ...}}), and the media or latents member."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import numpy as np

from compiler.schema.data import Subset

Sample = dict[str, bytes]  # field (e.g. "latents.npy") -> member bytes, plus "__key__"

VIDEO_FIELDS = ("mp4", "webm", "mov", "avi", "mkv")


def subset_filter(where: Subset | None, field: str) -> Callable[[Sample], bool] | None:
    """A predicate keeping the samples `where` describes; None keeps everything. `field` names the
    stage.yaml path of `where` for errors."""
    if where is None:
        return None

    def keep(sample: Sample) -> bool:
        key = sample["__key__"].decode()
        if where.modality is not None and _modality(sample) != where.modality:
            return False
        if where.min_short_side_px is not None or where.min_seconds is not None or where.max_seconds is not None:
            metadata = _json(sample, "json", key, field)
            if where.min_short_side_px is not None:
                short = min(_number(metadata, "width", key, field), _number(metadata, "height", key, field))
                if short < where.min_short_side_px:
                    return False
            if where.min_seconds is not None or where.max_seconds is not None:
                seconds = _number(metadata, "duration_s", key, field)
                if where.min_seconds is not None and seconds < where.min_seconds:
                    return False
                if where.max_seconds is not None and seconds > where.max_seconds:
                    return False
        if where.min_score:
            scores = _json(sample, "scores.json", key, field)
            for op, minimum in where.min_score.items():
                if op not in scores:
                    raise ValueError(
                        f"{field}.min_score needs the score of op {op!r}; sample {key}'s scores.json "
                        f"has {sorted(scores)}"
                    )
                if _number(scores[op], "value", key, field) < minimum:
                    return False
        return True

    return keep


def long_enough(frames: int, fps: float | None) -> Callable[[Sample], bool]:
    """A predicate passing over video clips too short for a stage of `frames` frames at `fps` (the file's own
    rate when None), judged by the clip's metadata (KEY.json duration_s, else frame_count and fps); samples
    without a video member, or without that metadata, are kept (decoding then says if a clip is short)."""

    def keep(sample: Sample) -> bool:
        if not any(f in sample for f in VIDEO_FIELDS) or "json" not in sample:
            return True
        try:
            metadata = json.loads(sample["json"])
        except ValueError:
            return True
        if fps is not None:
            seconds = metadata.get("duration_s")
            if seconds is None and metadata.get("frame_count") and metadata.get("fps"):
                seconds = metadata["frame_count"] / metadata["fps"]
            return seconds is None or seconds >= frames / fps
        count = metadata.get("frame_count")
        return count is None or count >= frames

    return keep


def _modality(sample: Sample) -> str:
    if any(f in sample for f in VIDEO_FIELDS):
        return "video"
    if "latents.npy" in sample:
        return "video" if np.load(io.BytesIO(sample["latents.npy"]), allow_pickle=False).ndim == 4 else "image"
    return "image"


def _json(sample: Sample, member: str, key: str, field: str) -> dict:
    if member not in sample:
        raise ValueError(f"{field} filters on {member}, which sample {key} lacks; keep curation's {member} members")
    return json.loads(sample[member])


def _number(record: dict, name: str, key: str, field: str) -> float:
    if name not in record:
        raise ValueError(f"{field} needs {name!r}, missing for sample {key} (has {sorted(record)})")
    return float(record[name])
