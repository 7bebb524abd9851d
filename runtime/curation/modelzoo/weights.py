"""Where a model-backed op finds its weights, and what it does at smoke scale when they are missing.

Weights live at MODEL_DIR/<model id> (`OpContext.model_path`; also org--name and the Hugging Face hub cache
layout, see runtime/encoders/model_directory.py). At full scale a missing folder, or a folder
without the files the loader reads, is an OpConfigError naming the model id, the folder and what it must
hold. At smoke scale a missing folder is replaced by a tiny randomly initialised stand-in of the same kind,
and the substitution is never silent:

- `Located.note` is one line for the run report; ops return their notes from `notes()` and log each one as
  a warning when they are built;
- every score a stand-in produces carries `"stand_in": <model id>`, and the score id includes the weights'
  fingerprint, so a cached stand-in score is never reused once real weights are in place;
- a stand-in's scores are meaningless on the scorer's scale, so each absolute threshold becomes a quantile
  of the scores the op has seen (`Limit`): a minimum drops the lowest SMOKE_DROP_FRACTION, a maximum the
  highest. A fixed, lenient quantile keeps a smoke pipeline of several filters from emptying itself while
  still exercising both the keep and the drop path.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from runtime.curation.api import OpConfigError, OpContext

SMOKE_DROP_FRACTION = 0.1  # share of the observed scores a smoke-scale threshold drops
log = logging.getLogger("runtime.curation.models")


@dataclass(frozen=True)
class Located:
    """A model's weights folder, or None for the smoke stand-in (with the note that says so)."""

    model_id: str
    path: Path | None
    note: str | None = None

    @property
    def stand_in(self) -> bool:
        return self.path is None

    @property
    def seed(self) -> int:
        """Seed of the stand-in: every worker process builds the same random model."""
        return zlib.crc32(self.model_id.encode())

    def fingerprint(self) -> str:
        """Changes when the weights change: part of the score id, so stale cached scores are not reused."""
        if self.path is None:
            return f"stand-in:{self.model_id}"
        digest = hashlib.sha256()
        for file in sorted(p for p in self.path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(self.path)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def file(self, *candidates: str) -> Path:
        """The first of `candidates` (paths relative to the folder) that exists; `locate` checked one does."""
        for name in candidates:
            if (self.path / name).exists():
                return self.path / name
        raise FileNotFoundError(f"none of {', '.join(candidates)} in {self.path}")


def locate(ctx: OpContext, op: Any, model_id: str, contents: str, required: Sequence[Sequence[str]] = (),
           thresholds: bool = True) -> Located:
    """The weights of `model_id` for `op`, or at smoke scale a stand-in if the folder is missing.

    `contents` says what the folder holds (for the error); `required` lists groups of relative paths of
    which one per group must exist, checked here so a broken folder fails before any sample is read.
    `thresholds`: whether the op decides against absolute thresholds (the note says what replaces them).
    """
    try:
        path = ctx.model_path(op.kind, model_id)
    except OpConfigError as error:
        if ctx.scale != "smoke":
            raise OpConfigError(
                f"op {op.name!r} ({op.kind}): {error}. MODEL_DIR/{model_id} must hold {contents}; "
                "or run at smoke scale (--scale smoke) to use a random stand-in"
            ) from None
        where = f"MODEL_DIR/{model_id}" if ctx.model_dir is None else str(Path(ctx.model_dir) / model_id)
        consequence = (
            f"absolute thresholds become quantiles of the observed scores (drop {SMOKE_DROP_FRACTION:.0%} on the "
            "failing side)" if thresholds else "its outputs are meaningless"
        )
        note = (
            f"{op.name} ({op.kind}): no weights for {model_id!r} at {where}; scale is smoke, so a tiny RANDOMLY "
            f"INITIALISED stand-in runs instead and {consequence}"
        )
        log.warning(note)
        return Located(model_id, None, note)
    for group in required:
        if not any((path / name).exists() for name in group):
            raise OpConfigError(
                f"op {op.name!r} ({op.kind}): {path} has none of {', '.join(group)}; the folder of "
                f"{model_id!r} must hold {contents}"
            )
    return Located(model_id, path)


class Limit:
    """One threshold of an op. Absolute as the spec says it, or, when a stand-in model scores, the
    quantile of the scores seen so far by this op instance (at least the current batch when it was scored
    fresh; cached scores are counted as `decide` sees them)."""

    def __init__(self, field: str, value: float | None, bound: Literal["min", "max"], stand_in: bool) -> None:
        self.field, self.value, self.bound, self.stand_in = field, value, bound, stand_in
        self._seen: dict[str, float] = {}

    def observe(self, key: str, value: float) -> None:
        if self.stand_in:
            self._seen[key] = value

    def limit(self) -> float:
        if not self.stand_in:
            return float(self.value)
        quantile = SMOKE_DROP_FRACTION if self.bound == "min" else 1 - SMOKE_DROP_FRACTION
        return float(np.quantile(list(self._seen.values()), quantile))

    def failure(self, key: str, value: float) -> str | None:
        """None if `value` passes, else the detail of the drop (both numbers and where the limit came from)."""
        if self.value is None:
            return None
        self.observe(key, value)
        limit = self.limit()
        failed = value < limit if self.bound == "min" else value > limit
        if not failed:
            return None
        sign = "<" if self.bound == "min" else ">"
        if not self.stand_in:
            return f"{value:.4g} {sign} {self.field} {limit:g}"
        share = SMOKE_DROP_FRACTION if self.bound == "min" else 1 - SMOKE_DROP_FRACTION
        return (f"{value:.4g} {sign} {limit:.4g}, the {share:.0%} quantile of {len(self._seen)} stand-in scores "
                f"(smoke scale replaces {self.field} {self.value:g})")


def reduce_frames(values: Iterable[float], how: str) -> float:
    """Scores of a video's sampled frames reduced to one: min, mean or max."""
    values = list(values)
    return float({"min": np.min, "mean": np.mean, "max": np.max}[how](values))


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# The inference precision of the op being scored: its `resources.dtype`, set by the runner around score()
# (models load lazily, on their op's first score() call, so they are built in their op's precision).
PRECISION: ContextVar[str] = ContextVar("curation_precision", default="auto")


@contextmanager
def precision(dtype: str):
    """Models built and run inside load and infer in `dtype` ("auto", "float32", "bfloat16", "float16")."""
    token = PRECISION.set(dtype)
    try:
        yield
    finally:
        PRECISION.reset(token)


def inference_dtype(on: str):
    """The op's `resources.dtype`, or by default ("auto") bf16 on a GPU that has it (fp16 on older ones) and
    fp32 on CPU: the scorers only rank and threshold, and half precision halves their memory and doubles
    their throughput on a GPU; CPU half matmuls are slow."""
    import torch

    wanted = PRECISION.get()
    if wanted != "auto":
        return getattr(torch, wanted)
    if on != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def from_pretrained_strict(model_class, path: Path):
    """`model_class.from_pretrained(path)` that fails when the weights do not match the config: transformers
    otherwise initialises missing layers randomly and only logs it, which would score with a broken model."""
    model, info = model_class.from_pretrained(path, local_files_only=True, output_loading_info=True)
    problems = {name: info.get(name) for name in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(name)}
    if problems:
        detail = "; ".join(f"{name}: {sorted(map(str, keys))[:5]}" for name, keys in problems.items())
        raise ValueError(
            f"{path}: the weights do not match config.json for {model_class.__name__} ({detail}); the folder must "
            "hold the checkpoint its config.json describes, as released"
        )
    return model


class ModelBacked:
    """Mixin of model-backed ops: locates their weights and returns the stand-in notes for the run report."""

    def locate(self, model_id: str, contents: str, required: Sequence[Sequence[str]] = (), thresholds: bool = True) -> Located:
        located = locate(self.ctx, self.spec, model_id, contents, required, thresholds)
        self.__dict__.setdefault("_located", []).append(located)
        return located

    def notes(self) -> list[str]:
        """One line per model replaced by a random stand-in (smoke scale); empty when real weights load."""
        return [located.note for located in self.__dict__.get("_located", []) if located.note]


def load_state_dict(path: Path) -> dict[str, Any]:
    """A state dict from .safetensors or a torch pickle (.pth/.pt/.bin, loaded with weights_only=True)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def quiet_transformers() -> None:
    """No download/loading progress bars in curation logs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def processor_side(located: Located, default: int, subfolder: str = "") -> int:
    """The input short side a model's image processor resizes to (its preprocessor config), else `default`.

    Read without loading the model, so `decode_side` is known when the plan is made.
    """
    import json

    if located.path is None:
        return default
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = located.path / subfolder / name
        if path.is_file():
            config = json.loads(path.read_text())
            config = config.get("image_processor", config)
            for key in ("crop_size", "size"):
                size = config.get(key)
                if isinstance(size, int):
                    return size
                if isinstance(size, dict):
                    sides = [v for k, v in size.items() if k in ("shortest_edge", "height", "width")]
                    if sides:
                        return int(min(sides))
    return default


def model_resources(gpu_memory_gb: float):
    """One CPU, plus one GPU with `gpu_memory_gb` when this machine has one."""
    import torch

    from runtime.curation.api import Resources

    gpus = 1.0 if torch.cuda.is_available() else 0.0
    return Resources(cpus=1.0, gpus=gpus, gpu_memory_gb=gpu_memory_gb if gpus else 0.0)
