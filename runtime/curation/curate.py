"""`run`: curate webdataset shards with one pipeline of a spec; what `genspec curate` calls.

The run is planned (every op built once, so configuration errors surface before any sample is read),
with the context ops encode in (`spec_encoding`: the spec's architecture at the run's scale and the first
consuming training stage's size; a compiled bundle passes the same from its pipeline.json), then executed
stage by stage: the shards of a stage run on the chosen executor; between stages the
barrier decides over all shards in this process. Finally the ledger is checked (every sample in exactly
one place), the report is written to OUTPUT/report.json, and a run that read or kept nothing fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from compiler.schema.architecture import ArchitectureSpec
from compiler.schema.data import Op, Pipeline
from compiler.schema.spec import Spec
from runtime.curation.api import BarrierItem, CurationError, OpContext
from runtime.curation.layout import Layout
from runtime.curation.registry import build
from runtime.curation.report import Report, build_report, check_ledger, load_manifests, throughput, write_rejects
from runtime.curation.shards import expand_shards, member_keys, shard_stem
from runtime.curation.stages import (
    ShardJob,
    StagePlan,
    op_from_json,
    op_notes,
    plan_stages,
)

Scale = Literal["smoke", "full"]


def select_pipeline(spec_or_ops: Spec | Pipeline | list, pipeline: str | None) -> tuple[str, list[Op]]:
    """(pipeline name, ops) from a Spec (by name, or its only pipeline), a Pipeline, or a list of ops."""
    if isinstance(spec_or_ops, Spec):
        pipelines = {p.name: p for p in spec_or_ops.data.pipelines}
        if pipeline is None and len(pipelines) == 1:
            pipeline = next(iter(pipelines))
        if pipeline not in pipelines:
            raise CurationError(
                f"spec {spec_or_ops.name!r} has pipelines {sorted(pipelines)}; choose one with --pipeline NAME"
                + ("" if pipeline is None else f" (got {pipeline!r})")
            )
        return pipeline, list(pipelines[pipeline].ops)
    if isinstance(spec_or_ops, Pipeline):
        return spec_or_ops.name, list(spec_or_ops.ops)
    ops = [op if isinstance(op, Op) else op_from_json(op) for op in spec_or_ops]
    return pipeline or "pipeline", ops


def spec_encoding(spec: Spec, pipeline: str, scale: Scale) -> tuple[ArchitectureSpec, tuple[int, int] | None,
                                                                   tuple[int, float | None] | None]:
    """The architecture, (height, width) and clip (frames, fps) a spec's pipeline encodes with, as the bundle
    compiled at `scale` holds them: the architecture of the spec at that scale profile (compiler.scale.scaled:
    tiny encoders at smoke), the first resolution of the first training stage reading the pipeline's output
    (compiler.schema.bundle.encode_size), None when no stage reads it, and that stage's frames and fps when it
    trains videos (compiler.schema.bundle.encode_clip)."""
    from compiler.schema.bundle import encode_clip, encode_size
    from compiler.scale import scaled

    at_scale = scaled(spec, scale)
    chosen = next(p for p in at_scale.data.pipelines if p.name == pipeline)
    return at_scale.architecture, encode_size(at_scale, chosen), encode_clip(at_scale, chosen)


@dataclass
class CurationRun:
    """A planned run: stages, input shards and where everything goes. Executors run its jobs."""

    name: str
    stages: list[StagePlan]
    shards: list[str]
    output: Path
    cache_dir: Path
    model_dir: Path | None
    scale: Scale
    architecture: ArchitectureSpec | None = None
    encode_size: tuple[int, int] | None = None
    encode_clip: tuple[int, float | None] | None = None
    barrier_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)  # shard path -> samples read from it (--limit)

    @classmethod
    def plan(
        cls,
        spec_or_ops: Spec | Pipeline | list,
        input: str | os.PathLike | list,
        output: str | os.PathLike,
        pipeline: str | None = None,
        scale: Scale = "full",
        model_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        architecture: ArchitectureSpec | None = None,
        encode_size: tuple[int, int] | None = None,
        encode_clip: tuple[int, float | None] | None = None,
        limit: int | None = None,
    ) -> CurationRun:
        """Plan a run. A Spec brings its own architecture and encode size (`spec_encoding`); a Pipeline or op
        list takes them as given (a bundle's pipeline.json), else runs without them. `limit`: curate only
        the first `limit` input samples (shards in order), at any scale."""
        if scale not in ("smoke", "full"):
            raise CurationError(f"scale must be 'smoke' or 'full', got {scale!r}")
        if limit is not None and limit < 1:
            raise CurationError(f"limit must be a positive number of samples, got {limit}; omit it to curate everything")
        name, ops = select_pipeline(spec_or_ops, pipeline)  # no ops: a pass-through (decode check, reshard)
        if isinstance(spec_or_ops, Spec):
            if architecture is not None or encode_size is not None or encode_clip is not None:
                raise CurationError(
                    f"spec {spec_or_ops.name!r} brings its own architecture and encode size; pass them only with "
                    "a Pipeline or op list"
                )
            architecture, encode_size, encode_clip = spec_encoding(spec_or_ops, name, scale)
        model = Path(model_dir) if model_dir is not None else None
        ctx = OpContext(model, scale, architecture, encode_size, encode_clip)
        stages = plan_stages(ops, ctx)
        notes = op_notes(ops, ctx)
        inputs = input if isinstance(input, (list, tuple)) else [input]
        shards = [path for item in inputs for path in expand_shards(item)]  # every shard, at every scale
        limits: dict[str, int] = {}
        if limit is not None:
            shards, limits = _first_samples(shards, limit)
            notes.append(f"--limit {limit}: curated at most the first {limit} samples, from {len(shards)} of the input's "
                         f"shards in order (the last one in part)")
        output = Path(output)
        cache = Path(cache_dir) if cache_dir is not None else Layout(output).cache()
        return cls(name, stages, shards, output, cache, model, scale, architecture, encode_size, encode_clip,
                   notes=notes, limits=limits)

    @property
    def layout(self) -> Layout:
        return Layout(self.output)

    @property
    def context(self) -> OpContext:
        """The context every op of the run is built with."""
        return OpContext(self.model_dir, self.scale, self.architecture, self.encode_size, self.encode_clip)

    def jobs(self, stage: StagePlan, shards: list[str] | None = None) -> list[ShardJob]:
        """The jobs of `stage` for `shards` (default all); a later stage needs the earlier one finished."""
        shards = self.shards if shards is None else shards
        verdicts: dict[str, dict[str, dict[str, Any]]] = {}
        if stage.barrier_in is not None:
            verdicts = self.barrier(stage)
        jobs = []
        for path in shards:
            stem = shard_stem(path)
            if stage.index == 0:
                info = os.stat(path)
                source, source_id = path, f"{os.path.abspath(path)}:{info.st_size}:{info.st_mtime_ns}"
            else:
                source = str(self.layout.intermediate(stage.index - 1, stem))
                source_id = _manifest(self.layout.manifest(stage.index - 1, stem))["job_hash"]
            jobs.append(ShardJob(
                stage=stage, source=source, stem=stem, output=str(self.output), cache_dir=str(self.cache_dir),
                source_id=source_id, verdicts=verdicts.get(stem, {}),
                model_dir=str(self.model_dir) if self.model_dir else None, scale=self.scale,
                architecture=self.architecture.model_dump_json() if self.architecture is not None else None,
                encode_size=self.encode_size, encode_clip=self.encode_clip,
                limit=self.limits.get(path) if stage.index == 0 else None,
            ))
        return jobs

    def pending(self, jobs: list[ShardJob]) -> list[ShardJob]:
        """Jobs without a matching manifest and complete outputs: what a rerun still has to do."""
        return [job for job in jobs if not self._finished(job)]

    def _finished(self, job: ShardJob) -> bool:
        path = self.layout.manifest(job.stage.index, job.stem)
        if not path.is_file():
            return False
        manifest = _manifest(path)
        if manifest.get("job_hash") != job.job_hash():
            return False
        layout = self.layout
        shard = layout.kept(job.stem) if job.stage.final else layout.intermediate(job.stage.index, job.stem)
        return manifest["written"]["kept"] == 0 or shard.is_file()

    def barrier(self, stage: StagePlan) -> dict[str, dict[str, dict[str, Any]]]:
        """The verdicts of the barrier starting `stage`, computed once per stage: stored in
        OUT/_work/stageK/barrier.json with a fingerprint of the manifests they were decided from, and read
        back by every later caller (each Slurm array task of the stage, a rerun) while those are unchanged.
        The Slurm DAG computes it in its own job between the stage arrays (slurm_task --barrier)."""
        path = self.layout.barrier(stage.index)
        fingerprint = self._barrier_fingerprint(stage)
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored.get("fingerprint") == fingerprint:
                self.barrier_seconds.update(stored.get("seconds", {}))
                return stored["verdicts"]
        verdicts = self._barrier_verdicts(stage)
        name = op_from_json(stage.barrier_in).name
        document = {"fingerprint": fingerprint, "verdicts": verdicts, "seconds": {name: self.barrier_seconds[name]}}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(document, sort_keys=True))
        os.replace(tmp, path)
        return verdicts

    def _barrier_fingerprint(self, stage: StagePlan) -> str:
        """The barrier op, its context and the identity (size, mtime) of every input manifest: a rerun of an
        earlier stage rewrites a manifest, and the stored verdicts no longer count."""
        parts: list[Any] = [stage.barrier_in, self.model_dir and str(self.model_dir), self.scale]
        for path in self.shards:
            manifest = self.layout.manifest(stage.index - 1, shard_stem(path))
            if not manifest.is_file():
                raise CurationError(f"{manifest} is missing: run the earlier stage ({stage.index - 1}) for every shard first")
            info = manifest.stat()
            parts.append([manifest.name, info.st_size, info.st_mtime_ns])
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _barrier_verdicts(self, stage: StagePlan) -> dict[str, dict[str, dict[str, Any]]]:
        """The incoming barrier's decisions over every shard, grouped by shard (keeps without metadata omitted).
        Embeddings come from the .npy beside each manifest, memory-mapped: rows are read as the barrier asks."""
        started = time.perf_counter()
        barrier = build(op_from_json(stage.barrier_in), self.context)
        items = []
        for path in self.shards:
            stem = shard_stem(path)
            manifest = _manifest(self.layout.manifest(stage.index - 1, stem))
            passed = [e for e in manifest["records"] if e["fate"] == "pass" and "barrier_score" in e]
            vectors = None
            if any("embedding_row" in e["barrier_score"] for e in passed):
                vectors = np.load(self.layout.embeddings(stage.index - 1, stem), mmap_mode="r")
            items.extend(
                BarrierItem(e["key"], manifest["shard"], e["barrier_score"],
                            None if vectors is None or "embedding_row" not in e["barrier_score"]
                            else vectors[e["barrier_score"]["embedding_row"]])
                for e in passed
            )
        items.sort(key=lambda item: (item.key, item.shard))
        verdicts: dict[str, dict[str, dict[str, Any]]] = {}
        for item, verdict in zip(items, barrier.decide_all(items), strict=True):
            if verdict.fate != "keep" or verdict.metadata:
                verdicts.setdefault(item.shard, {})[item.key] = {
                    "fate": verdict.fate, "reason": verdict.reason, "detail": verdict.detail,
                    "metadata": dict(verdict.metadata),
                }
        self.barrier_seconds[barrier.name] = time.perf_counter() - started
        return verdicts

    def finish(self, executor: str, workers: int, seconds: float) -> Report:
        """Check the ledger, write the report, and fail a run that read or kept nothing."""
        stems = [shard_stem(p) for p in self.shards]
        manifests = load_manifests(self.layout, self.stages, stems)
        check_ledger(self.layout, self.stages, manifests)
        report = build_report(
            self.stages, manifests, self.layout.figures(),
            pipeline=self.name, input=self.shards, output=str(self.output), executor=executor,
            workers=workers, scale=self.scale, shards=len(self.shards), seconds=round(seconds, 3),
        )
        for item in report.ops:
            item.seconds = round(item.seconds + self.barrier_seconds.get(item.name, 0.0), 4)
        throughput(report.ops)
        report.notes = list(self.notes)
        report.rejects_index = str(write_rejects(self.layout, manifests, report.rejects))
        report.write(self.layout.report())
        ended = report.kept + report.dropped + report.review + report.quarantined + report.split
        if ended != report.samples_read + report.created:
            raise CurationError(
                f"{report.samples_read} samples read + {report.created} created, but {ended} ended somewhere; "
                f"see {self.layout.report()}"
            )
        if report.samples_read == 0:
            raise CurationError(
                f"read 0 samples from {len(self.shards)} shards ({self.shards[:3]}...): nothing to curate"
            )
        if report.kept == 0:
            raise CurationError(
                f"kept 0 of {report.samples_read} samples; every sample was dropped or quarantined, see the funnel "
                f"in {self.layout.report()}"
            )
        return report


def _first_samples(shards: list[str], limit: int) -> tuple[list[str], dict[str, int]]:
    """The shards holding the first `limit` samples, in order, and how many to read from the last one
    (counted from tar headers, without reading the media)."""
    chosen: list[str] = []
    limits: dict[str, int] = {}
    left = limit
    for path in shards:
        if left == 0:
            break
        try:
            count = len(member_keys(Path(path)))
        except (OSError, tarfile.TarError):  # a damaged tar: read it up to the limit, quarantining what fails
            count = left
        chosen.append(path)
        if count > left:
            limits[path] = left
        left -= min(count, left)
    return chosen, limits


def _manifest(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CurationError(f"{path} is missing: run the earlier stage for every shard first")
    return json.loads(path.read_text())


def run(
    spec_or_ops: Spec | Pipeline | list,
    input: str | os.PathLike | list,
    output: str | os.PathLike,
    pipeline: str | None = None,
    executor: Literal["local", "ray"] = "local",
    workers: int = 2,
    scale: Scale = "full",
    model_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    architecture: ArchitectureSpec | None = None,
    encode_size: tuple[int, int] | None = None,
    encode_clip: tuple[int, float | None] | None = None,
    limit: int | None = None,
) -> Report:
    """Curate the shards at `input` into `output` with one pipeline; returns the report (also in
    OUTPUT/report.json). A Spec brings the architecture and encode size precompute_embeddings needs; with a
    Pipeline or op list pass them (a bundle's pipeline.json holds them), else that op writes nothing at smoke
    scale and refuses at full. Raises OpConfigError before reading anything if an op cannot run, and
    CurationError if the run read nothing, kept nothing, or lost track of a sample."""
    started = time.perf_counter()
    plan = CurationRun.plan(spec_or_ops, input, output, pipeline, scale, model_dir, cache_dir, architecture,
                            encode_size, encode_clip, limit)
    if executor == "local":
        from runtime.curation.executors.local import run_jobs
    elif executor == "ray":
        from runtime.curation.executors.ray_data import run_jobs
    else:
        raise CurationError(f"executor must be 'local' or 'ray', got {executor!r}")
    for stage in plan.stages:
        run_jobs(plan.pending(plan.jobs(stage)), workers, f"{plan.name} stage {stage.index}")
    return plan.finish(executor, workers, time.perf_counter() - started)
