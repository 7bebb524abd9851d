"""The curation op API: how one op kind of the schema (compiler/schema/data.py) is implemented and run.

An implementation is a class registered for a kind, and optionally for one scorer of that kind::

    from runtime.curation.api import KEEP, MapOp, OpConfigError, Resources, Verdict
    from runtime.curation.registry import register

    @register("aesthetic", scorer="laion-aesthetic-v2")
    class LaionAesthetic(MapOp):
        version = "1"       # bump when the scores change: cached scores of other versions are ignored
        stateful = True     # holds weights: Ray runs it in an actor pool (fractional CPUs, see resources)
        batch_size = 32

        def __init__(self, spec, ctx):
            super().__init__(spec, ctx)
            self.weights = ctx.model_path(spec.kind, spec.scorer)   # OpConfigError if absent; cheap

        @functools.cached_property
        def model(self):                                  # weights load on the first score() call
            return load_head(self.weights)

        def decode_side(self):
            return 224                                    # short side, px, of the pixels score() reads

        def resources(self):
            return Resources(cpus=0.5, gpus=1, gpu_memory_gb=2.0)

        def scoring_params(self):
            return {"frames": self.spec.frames, "reduce": self.spec.reduce}

        def score(self, records):
            frames = [r.pixels.keyframes(224, self.spec.frames) for r in records]
            return [{"value": float(s)} for s in self.model(frames)]

        def decide(self, record, score):
            if self.spec.min_score is not None and score["value"] < self.spec.min_score:
                return Verdict.drop("aesthetic below min_score", f"{score['value']:.2f} < {self.spec.min_score}")
            return KEEP

Registering is the whole job: the registry imports every `runtime/curation/ops/*.py` module, so a new
module named that way is found without touching any list. Modules must stay cheap to import (no torch or
transformers at module level: the compiler asks the registry which kinds exist).

Three shapes, as in the schema:

- `MapOp` (1 -> 1). Per batch the runner (runtime/curation/runner.py) does, for the records the op
  `applies` to: look up cached scores, call `score(misses)` once, store new scores, then
  `decide(record, score)` per record. `decide` returns a `Verdict` (keep, drop with a reason, route to
  human review) and may change the record (captions, metadata, masks, columns, `replace_media`).
- `SplitOp` (1 -> N). Scores like a map op, then `split(record, score)` returns the records that replace
  the input: children with derived keys (`derive_key`), the input itself plus generated records, or a
  `Verdict` to drop it.
- `BarrierOp` (N -> M). `score` runs in the workers like a map op's (a signature: hash, embedding);
  then `decide_all(items)` sees every record that reached the barrier, sorted by key, in one process,
  and returns one `Verdict` per item. Verdicts may carry metadata (a sampling weight) for kept records.

Scores are JSON objects. The key "value" (a float) is the primary score: histograms, human_review,
score_conditioning and dataset subsets read it. A score is cached under (sample key, media sha256,
score id); the score id hashes the kind, `version`, `scoring_params()` and the decode size, never a
threshold, so changing only a threshold re-decides without scoring again. Ops without a score
(`scoring_params()` returns None) are not cached: `score` returns a list of None.

Errors: `OpConfigError` from a constructor stops the run before any sample is read (name the op, the
field, the value and the fix). `UnreadableSample` raised by `score`, `decide` or `split` quarantines that
one sample with the message; the pixel accessors raise it for undecodable media. Any other exception is a
bug and stops the run.

Pixels: `record.pixels` decodes once per stage at the largest `decode_side()` of the stage's ops and
serves each op its own size from that: `header()`, `image(side)`, `grey(side)`, `frames(side, fps)`,
`keyframes(side)`, `load(side)`, `video_path()`, `memo(key, fn)` (see runtime/curation/decode.py). Images
are RGB uint8 arrays; `grey(side)` and `grey=True` give BT.601 luma (2-D uint8). An op that reads only
luma sets `needs_color = False`: when no op of a stage needs colour, the stage decodes luma only (a JPEG
decodes about 1.2x faster than in colour at the same reduced size). An op that reads colour while saying
it does not still gets correct pixels, from a second (colour) decode.

Context: `ctx` (OpContext) holds the model directory and the scale, and, when curation runs a spec's
pipeline (a Spec, or a compiled bundle's pipeline.json), the spec's architecture at the run's scale and the
size the first training stage reading the pipeline's output trains at. An op that reads those sets
`reads_architecture = True`: its stage's jobs then carry them in their hash, so a rerun after they change
redoes the stage instead of skipping it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from compiler.schema.architecture import ArchitectureSpec
    from compiler.schema.data import Op
    from runtime.curation.records import Record

Score = dict[str, Any]
FULL = 1 << 30  # decode_side meaning "native resolution": no op is served more pixels than the media has


class OpConfigError(ValueError):
    """An op's parameters cannot run here; raised before any sample is read."""


class UnreadableSample(Exception):
    """This sample's bytes cannot be read; the runner quarantines it with this message."""


class CurationError(RuntimeError):
    """A run that must not count as a success: nothing read, nothing kept, or a broken invariant."""


@dataclass(frozen=True)
class Verdict:
    """What happens to one record: kept, dropped with a reason, or routed to human review.

    `reason` is the category counted in the funnel ("too blurry"); `detail` holds this sample's numbers.
    `metadata` is merged into a kept record's metadata (a barrier's sampling weight).
    """

    fate: Literal["keep", "drop", "review"]
    reason: str = ""
    detail: str = ""
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @staticmethod
    def keep(**metadata: Any) -> Verdict:
        return Verdict("keep", metadata=MappingProxyType(metadata))

    @staticmethod
    def drop(reason: str, detail: str = "") -> Verdict:
        return Verdict("drop", reason, detail)

    @staticmethod
    def review(reason: str, detail: str = "") -> Verdict:
        return Verdict("review", reason, detail)


KEEP = Verdict("keep")


@dataclass(frozen=True)
class Resources:
    """What one running instance of an op needs; the plan pass and the Ray executor read it."""

    cpus: float = 1.0
    gpus: float = 0.0
    gpu_memory_gb: float = 0.0
    dtype: str = "auto"  # inference precision of the op's model (runtime/curation/modelzoo/weights.py inference_dtype)


@dataclass(frozen=True)
class OpContext:
    """Where an op finds its weights, the run's scale (smoke: stand-ins allowed), and what
    the training stages will encode with: the spec's architecture at the run's scale (its text encoders and
    latent space), the (height, width) of the first stage reading the pipeline's output and, when that stage trains
    videos, its (frames, fps). They are None when curation runs a bare pipeline or op list; ops that read them set
    `reads_architecture`."""

    model_dir: Path | None = None
    scale: Literal["smoke", "full"] = "full"
    architecture: ArchitectureSpec | None = None
    encode_size: tuple[int, int] | None = None
    encode_clip: tuple[int, float | None] | None = None

    def model_path(self, op_kind: str, name: str) -> Path:
        """The local weights of model `name` in MODEL_DIR, in any layout runtime/encoders/model_directory.py
        accepts (DIR/org/name, DIR/org--name, the Hugging Face hub cache). Raises OpConfigError naming the fix."""
        from runtime.encoders.model_directory import folder_name, model_folder

        if self.model_dir is None:
            raise OpConfigError(
                f"{op_kind}: scorer/model {name!r} needs local weights; pass model_dir "
                f"(genspec curate --model-dir DIR) holding DIR/{name}"
            )
        try:
            path = model_folder(Path(self.model_dir), name)
        except FileNotFoundError as error:
            raise OpConfigError(f"{op_kind}: {error}") from None
        if path is None:
            raise OpConfigError(
                f"{op_kind}: no weights for {name!r} at {Path(self.model_dir) / name}; put the model there (or at "
                f"{folder_name(name)}, or models--{folder_name(name)} as the Hugging Face hub cache stores it)"
            )
        return path


@dataclass(frozen=True)
class BarrierItem:
    """One record that reached a barrier: its key, input shard and the barrier's score of it. An embedding
    barrier's vector is `vector` (a row of the .npy stored beside the shard's manifest, memory-mapped), not
    part of the score."""

    key: str
    shard: str
    score: Score
    vector: Any = None


class OpImpl:
    """Base of every implementation. `spec` is the schema op (frozen pydantic), `ctx` the run context."""

    shape: ClassVar[Literal["map", "split", "barrier"]] = "map"
    version: ClassVar[str] = "1"
    stateful: ClassVar[bool] = False
    batch_size: ClassVar[int] = 16
    needs_color: ClassVar[bool] = True  # False: reads only header / luma (grey=True), lets the stage skip colour
    reads_architecture: ClassVar[bool] = False  # True: reads ctx.architecture, encode_size; reruns when they change

    def __init__(self, spec: Op, ctx: OpContext) -> None:
        self.spec = spec
        self.ctx = ctx
        wanted = getattr(spec, "resources", None)
        if wanted is not None and wanted.batch_size is not None:
            self.batch_size = wanted.batch_size  # the spec's `resources.batch_size` overrides the kind's default

    @property
    def name(self) -> str:
        return self.spec.name

    def applies(self, record: Record) -> bool:
        """Whether the op looks at this record at all; others pass through untouched (e.g. images for trim)."""
        return True

    def decode_side(self) -> int | None:
        """Short side in pixels of the images/frames `score` reads; FULL for native size; None: no pixels."""
        return None

    def resources(self) -> Resources:
        """The op kind's default needs; `planned_resources` applies the spec's overrides."""
        return Resources()

    def planned_resources(self) -> tuple[Resources, int | None]:
        """(resources per copy, copies or None for the executor's choice): the kind's defaults with the
        spec's `resources` fields (compiler/schema/data.py OpResources) put over them."""
        default, wanted = self.resources(), getattr(self.spec, "resources", None)
        if wanted is None:
            return default, None
        return Resources(
            cpus=default.cpus if wanted.cpus is None else wanted.cpus,
            gpus=default.gpus if wanted.gpus is None else wanted.gpus,
            gpu_memory_gb=default.gpu_memory_gb,
            dtype=default.dtype if wanted.dtype is None else wanted.dtype,
        ), wanted.concurrency

    def scoring_params(self) -> dict[str, Any] | None:
        """The parameters the score depends on (never thresholds); None: the op has no cached score."""
        return None

    def requires_scores(self) -> list[str]:
        """Names of earlier ops whose scores this op reads; the planner checks they come first."""
        return []

    def score(self, records: list[Record]) -> list[Score | None]:
        """One score per record, in order."""
        return [None] * len(records)


class MapOp(OpImpl):
    """1 -> 1: keep, drop or route each record, possibly adding columns to it."""

    shape: ClassVar = "map"

    def decide(self, record: Record, score: Score | None) -> Verdict:
        raise NotImplementedError(f"{type(self).__name__}.decide")


class SplitOp(OpImpl):
    """1 -> N: replace a record by children (or itself plus generated records)."""

    shape: ClassVar = "split"

    def split(self, record: Record, score: Score | None) -> list[Record] | Verdict:
        raise NotImplementedError(f"{type(self).__name__}.split")


class BarrierOp(OpImpl):
    """N -> M: score per record in the workers, then decide over all records at once."""

    shape: ClassVar = "barrier"

    def decide_all(self, items: list[BarrierItem]) -> list[Verdict]:
        raise NotImplementedError(f"{type(self).__name__}.decide_all")


def derive_key(parent: str, tag: str, index: int) -> str:
    """Key of the `index`-th record an op derives from `parent` (no dots: webdataset splits keys at dots)."""
    return f"{parent}_{tag}{index:03d}"
