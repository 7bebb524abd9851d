"""The emit pass: a resolved, validated, planned spec becomes a bundle of files, deterministically.

Passes:
  1. prepare   overrides, scale profile, resolve, validate (errors stop here), plan, stage graph
  2. render    every file as text, in memory: jinja2 templates for scripts and documents, json.dumps for
               JSON; the same input gives byte-identical files (no timestamps, stable order)
  3. manifest  spec hash and every file's sha256
Writing (writer.py) is separate: files go to a temporary directory that is renamed into place.

Every value that came from a spec reaches a shell script through `q` (shlex.quote), reaches a comment
through `oneline` (control characters escaped, so a newline cannot start a line of code), and reaches a
#SBATCH directive through `slurm_word` (only [A-Za-z0-9._-]). Directory names are slugs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compiler import __version__
from compiler.plan import Plan, plan, scaled
from compiler.plan.conditioning import stage_conditioning
from compiler.resolve import resolve
from compiler.schema.bundle import DataInput, Layout, StageFile
from compiler.schema.cluster import Cluster
from compiler.schema.data import Subset
from compiler.schema.spec import Spec

MASTER_PORT = 29500


class CompileError(ValueError):
    """A spec that cannot be compiled for the target; the message lists every reason and its fix."""


@dataclass
class Bundle:
    """Rendered files by bundle-relative path; `executable` marks the scripts."""

    files: dict[str, str] = field(default_factory=dict)
    executable: set[str] = field(default_factory=set)

    def add(self, path: str, text: str, executable: bool = False) -> None:
        self.files[path] = text
        if executable:
            self.executable.add(path)


# Filters -----------------------------------------------------------------------------------------


def slug(name: str) -> str:
    """A directory-safe name; an altered name gets a short hash so two names never collide."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "x"
    return clean if clean == name else f"{clean[:40]}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def oneline(value: Any) -> str:
    """A value safe inside a comment: one line, control characters escaped."""
    return json.dumps(str(value))[1:-1]


def slurm_word(value: Any) -> str:
    """A value safe in a #SBATCH directive, which sbatch parses itself (no shell quoting applies)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(value)) or "_"


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    import templates

    env = Environment(
        loader=FileSystemLoader(Path(templates.__file__).parent),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(q=lambda v: shlex.quote(str(v)), oneline=oneline, slurm_word=slurm_word)
    return env


# Preparation -------------------------------------------------------------------------------------


def prepare(spec: Spec, cluster: Cluster, scale: str) -> tuple[Spec, Plan, Any]:
    """Scale, resolve, validate and plan; raise CompileError with every problem found."""
    from compiler.plan import PlanError
    from compiler.validate import validate

    resolved = resolve(scaled(spec, scale))
    problems = [str(m) for m in resolved.missing]
    problems += [str(d) for d in validate(resolved.spec) if d.severity == "error"]
    problems += _unimplemented_ops(resolved.spec)
    from compiler.graph import build

    problems += [str(d) for d in build(resolved.spec).diagnostics if d.severity == "error"]
    if problems:
        raise CompileError(f"{spec.name} cannot be compiled for {cluster.name}:\n- " + "\n- ".join(problems))
    try:
        planned = plan(resolved.spec, cluster, scale)
    except PlanError as error:
        raise CompileError(str(error)) from error
    return resolved.spec, planned, resolved


def _unimplemented_ops(spec: Spec) -> list[str]:
    """Curation ops (kind and scorer) the runtime has no implementation for: refused here, never skipped
    later. The registry imports no torch: it only reads which classes are registered."""
    from runtime.curation.registry import missing_implementations

    return [f"data.pipelines[{p.name}]: {message}" for p in spec.data.pipelines
            for message in missing_implementations(p.ops)]


def smoke_only_ops(spec: Spec) -> list[str]:
    """Ops whose implementation runs only at smoke scale (a reported stand-in), for the assumptions report."""
    from runtime.curation.registry import implementation_for

    return [f"data.pipelines[{p.name}].ops[{op.name}]" for p in spec.data.pipelines for op in p.ops
            if getattr(implementation_for(op), "smoke_only", False)]


# Rendering ---------------------------------------------------------------------------------------


def _root_dataset(spec: Spec, name: str) -> tuple[str, Subset | None]:
    """A dataset's root (the one a pipeline writes) and the subset filter on the way down: every ancestor's
    filter merged into one, since a subset of a subset keeps only what both keep."""
    datasets = {d.name: d for d in spec.data.datasets}
    where = None
    while name in datasets and datasets[name].subset_of:
        if datasets[name].where is not None:
            where = datasets[name].where if where is None else _both(where, datasets[name].where)
        name = datasets[name].subset_of
    return name, where


def _both(child: Subset, parent: Subset) -> Subset:
    """A filter keeping what both keep: the stricter bound of each field (a child's modality wins)."""
    def stricter(pick, a, b):
        return b if a is None else a if b is None else pick(a, b)

    scores = dict(parent.min_score)
    for name, value in child.min_score.items():
        scores[name] = max(value, scores.get(name, value))
    return Subset(
        min_short_side_px=stricter(max, child.min_short_side_px, parent.min_short_side_px),
        min_score=scores,
        modality=child.modality or parent.modality,
        min_seconds=stricter(max, child.min_seconds, parent.min_seconds),
        max_seconds=stricter(min, child.max_seconds, parent.max_seconds),
    )


def _modality(spec: Spec, dataset: str) -> str:
    producers = [p for p in spec.data.pipelines if p.output == dataset]
    sources = {s.name: s for s in spec.data.sources}
    kinds = {("video" if sources[n].modality.startswith("video") else "image")
             for p in producers for n in p.sources if n in sources}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _order(spec: Spec) -> list[dict[str, Any]]:
    """Jobs in dependency order: curation pipelines, then stages after their inputs."""
    producer = {p.output: f"curate-{slug(p.name)}" for p in spec.data.pipelines}
    jobs = [{"kind": "curation", "id": f"curate-{slug(p.name)}", "dir": slug(p.name),
             "label": f"curation: {p.name}", "script": f"curation/{slug(p.name)}/sbatch_array.sh", "after": []}
            for p in spec.data.pipelines]
    for stage in spec.schedule.stages:
        after = {producer[_root_dataset(spec, use.dataset)[0]] for use in stage.datasets
                 if _root_dataset(spec, use.dataset)[0] in producer}
        after |= {f"train-{slug(ref)}" for ref in (stage.init_from, stage.teacher) if ref}
        jobs.append({"kind": "stage", "id": f"train-{slug(stage.name)}", "dir": slug(stage.name),
                     "label": f"training stage: {stage.name}", "script": f"train/{slug(stage.name)}/sbatch.sh",
                     "after": sorted(after)})
    return jobs


def _stage_file(spec: Spec, stage, stage_plan, scale: str) -> StageFile:
    inputs = []
    for use in stage.datasets:
        root, where = _root_dataset(spec, use.dataset)
        # A curation run keeps its samples in OUTPUT/shards (runtime/curation/layout.py).
        modality = where.modality if where is not None and where.modality else _modality(spec, root)
        inputs.append(DataInput(dataset=use.dataset, weight=use.weight, shards=f"curated/{root}/shards",
                                where=where, modality=modality))
    # The trainer reads whether to load the frozen encoders from stage.conditioning: resolved here.
    stage = stage.model_copy(update={"conditioning": stage_conditioning(spec, stage)})
    return StageFile(
        spec=spec.name, scale=scale, stage=stage, architecture=spec.architecture, objective=spec.objective,
        inference=spec.inference,
        layout=Layout(dp_size=stage_plan.dp_size, micro_batch=stage_plan.micro_batch,
                      grad_accumulation=stage_plan.grad_accumulation, zero_stage=stage_plan.zero_stage,
                      offload=stage_plan.offload, activation_checkpointing=stage_plan.activation_checkpointing,
                      precision=stage_plan.precision, compile=stage_plan.compile),
        data=inputs,
        output_dir=f"checkpoints/{slug(stage.name)}",
        init_from=f"checkpoints/{slug(stage.init_from)}" if stage.init_from else None,
        teacher=f"checkpoints/{slug(stage.teacher)}" if stage.teacher else None,
    )


def _yaml(data: Any, header: str) -> str:
    import io

    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096
    out = io.StringIO()
    out.write("".join(f"# {oneline(line)}\n" for line in header.splitlines()))
    yaml.dump(data, out)
    return out.getvalue()


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def render(spec: Spec, cluster: Cluster, scale: str) -> Bundle:
    """Every file of the bundle, as text."""
    from compiler.emit.deepspeed import ds_config
    from compiler.emit.reports import assumption_groups, plan_json
    from compiler.yamlio import dump_yaml

    spec, planned, resolved = prepare(spec, cluster, scale)
    env = _environment()
    order = _order(spec)
    common = {"version": __version__, "spec_name": spec.name, "cluster": cluster, "scale": scale,
              "order": order, "environment": dict(sorted(cluster.environment.items()))}
    bundle = Bundle()
    how = f"genspec compile {spec.name} --cluster {cluster.name} --scale {scale}"
    bundle.add("spec.resolved.yaml", dump_yaml(spec, header=f"Generated by genspec {__version__}: {how}\n"
                                               "Every value of the spec with its provenance; "
                                               "`genspec validate spec.resolved.yaml` checks it."))
    bundle.add("assumptions.md", env.get_template("assumptions.md.j2").render(
        groups=assumption_groups(resolved.table, spec), smoke_only=smoke_only_ops(spec), **common))
    bundle.add("plan.md", env.get_template("plan.md.j2").render(plan=planned, **common))
    bundle.add("plan.json", _json(plan_json(planned, how)))
    _add_graph(bundle, spec, how)

    for pipeline in spec.data.pipelines:
        base = f"curation/{slug(pipeline.name)}"
        contract = _curation_resources(spec, pipeline.name, cluster, scale)
        bundle.add(f"{base}/pipeline.json", _json(pipeline_document(spec, pipeline, how)))
        context = {**common, "pipeline": pipeline, "pipeline_dir": slug(pipeline.name),
                   "stages": curation_stages(pipeline), **contract}
        bundle.add(f"{base}/run_local.sh", env.get_template("curation_local.sh.j2").render(**context), True)
        bundle.add(f"{base}/run_ray.sh", env.get_template("curation_ray.sh.j2").render(**context), True)
        bundle.add(f"{base}/sbatch_array.sh", env.get_template("curation_array.sbatch.j2").render(**context), True)

    for stage, stage_plan in zip(spec.schedule.stages, planned.stages):
        base = f"train/{slug(stage.name)}"
        stage_file = _stage_file(spec, stage, stage_plan, scale)
        context = {**common, "stage": stage, "stage_dir": slug(stage.name), "layout": stage_file.layout,
                   "output_dir": stage_file.output_dir,
                   "master_port": MASTER_PORT, "time_limit": _time_limit(stage_plan)}
        bundle.add(f"{base}/stage.yaml", _yaml(stage_file.model_dump(mode="json"),
                                               f"Generated by genspec {__version__}: {how}\n"
                                               f"Training stage {stage.name}: read by `python -m runtime.train`."))
        bundle.add(f"{base}/ds_config.json", _json(ds_config(stage, stage_plan, bool(cluster.gpu), f"genspec {__version__}: {how}")))
        bundle.add(f"{base}/hostfile", env.get_template("hostfile.j2").render(**context))
        bundle.add(f"{base}/launch.sh", env.get_template("launch.sh.j2").render(**context), True)
        bundle.add(f"{base}/sbatch.sh", env.get_template("sbatch.sh.j2").render(**context), True)
        bundle.add(f"{base}/model.py", env.get_template("model.py.j2").render(
            architecture=repr(spec.architecture.model_dump(mode="json")), model_name=repr(stage.model),
            stage_name_literal=repr(stage.name), **{**common, "spec_name": repr(spec.name)}))

    bundle.add("run_local.sh", env.get_template("run_local.sh.j2").render(**common), True)
    bundle.add("submit_slurm.sh", env.get_template("submit_slurm.sh.j2").render(
        **{**common, "order": _slurm_jobs(spec, order)}), True)
    bundle.add("README.md", env.get_template("README.md.j2").render(
        sources=[s.name for s in spec.data.sources], **common))
    bundle.add("manifest.json", _json(_manifest(spec, cluster, scale, bundle, how)))
    return bundle


def _add_graph(bundle: Bundle, spec: Spec, how: str) -> None:
    from compiler.graph import render as render_graph

    bundle.add("graph.dot", f"// Generated by genspec {__version__}: {how}\n" + render_graph(spec, "dot"))
    bundle.add("graph.mmd", f"%% Generated by genspec {__version__}: {how}\n" + render_graph(spec, "mermaid"))


def _curation_resources(spec: Spec, pipeline: str, cluster: Cluster, scale: str) -> dict[str, int]:
    """What one curation array task asks Slurm for: the largest of the pipeline's fused jobs, capped by
    what one node of the cluster has (a CPU-only cluster gets no GPU request: sbatch would refuse it)."""
    from compiler.graph import build

    jobs = [job for job in build(spec).jobs if job.pipeline == pipeline]
    cpus = min(max((j.cpu_cores for j in jobs), default=4), cluster.cpus_per_node)
    gpus = min(max((j.gpus for j in jobs), default=0), cluster.gpus_per_node)
    # Smoke runs read a handful of shards: two tasks exercise the array without 64 interpreter starts.
    return {"job_cpus": cpus, "job_gpus": gpus, "array_tasks": 2 if scale == "smoke" else 64}


def curation_stages(pipeline) -> int:
    """Stages the curation runtime splits a pipeline into: one more than its barriers
    (runtime/curation/stages.py plan_stages); the Slurm DAG runs one array job per stage."""
    return 1 + sum(1 for op in pipeline.ops if op.shape == "barrier")


def _slurm_jobs(spec: Spec, order: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Slurm DAG: each curation pipeline as one array job per stage plus a finalize task, chained;
    training stages after the finalize tasks of the pipelines they read."""
    pipelines = {f"curate-{slug(p.name)}": p for p in spec.data.pipelines}
    jobs = []
    for job in order:
        if job["kind"] != "curation":
            jobs.append({**job, "args": [], "options": []})
            continue
        previous: list[str] = []
        for stage in range(curation_stages(pipelines[job["id"]])):
            stage_id = f"{job['id']}-s{stage}"
            jobs.append({**job, "id": stage_id, "after": previous, "args": ["--stage", str(stage)], "options": []})
            previous = [stage_id]
        jobs.append({**job, "after": previous, "args": ["--finalize"], "options": ["--array=0"]})
    return jobs


def encode_size(spec: Spec, pipeline) -> tuple[int, int] | None:
    """(height, width) curation precomputes latents at for `pipeline`: the first resolution of the first
    training stage that reads its output dataset, directly or through a subset (data.datasets[*].subset_of);
    None when no stage reads it. Later stages at other sizes encode from the image (runtime/train/batch.py)."""
    for stage in spec.schedule.stages:
        if any(_root_dataset(spec, use.dataset)[0] == pipeline.output for use in stage.datasets):
            return stage.resolutions[0].height, stage.resolutions[0].width
    return None


def encode_clip(spec: Spec, pipeline) -> tuple[int, float | None] | None:
    """(frames, fps) of the clips curation precomputes video latents of for `pipeline`: those of the training stage
    encode_size takes its size from; None when that stage trains images (or no stage reads the output)."""
    for stage in spec.schedule.stages:
        if any(_root_dataset(spec, use.dataset)[0] == pipeline.output for use in stage.datasets):
            return (stage.frames, stage.fps) if stage.frames else None
    return None


def pipeline_document(spec: Spec, pipeline, how: str) -> dict[str, Any]:
    """curation/<slug>/pipeline.json: the pipeline, and what its ops encode with as the trainer does (the
    architecture of the bundle's stage.yaml files and the encode size); read back by read_bundle_pipeline."""
    size, clip = encode_size(spec, pipeline), encode_clip(spec, pipeline)
    return {"generated_by": f"genspec {__version__}: {how}", "pipeline": pipeline.model_dump(mode="json"),
            "architecture": spec.architecture.model_dump(mode="json"),
            "encode_size": list(size) if size is not None else None,
            "encode_clip": list(clip) if clip is not None else None}


@dataclass(frozen=True)
class BundlePipeline:
    """What `genspec curate BUNDLE` and the Slurm array task read from a bundle for one pipeline."""

    pipeline: Any  # compiler.schema.data.Pipeline
    scale: str
    architecture: Any  # compiler.schema.architecture.ArchitectureSpec, or None in a bundle that lacks it
    encode_size: tuple[int, int] | None
    encode_clip: tuple[int, float | None] | None = None


def read_bundle_pipeline(bundle: Path, pipeline: str | None) -> BundlePipeline:
    """The curation Pipeline a compiled bundle ships (curation/<slug>/pipeline.json), the bundle's scale, and
    the architecture and encode size written beside the pipeline. With one pipeline, `pipeline` may be None."""
    from compiler.schema.architecture import ArchitectureSpec
    from compiler.schema.data import Pipeline

    bundle = Path(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    shipped = sorted(p.parent.name for p in bundle.glob("curation/*/pipeline.json"))
    if pipeline is None and len(shipped) == 1:
        folder = shipped[0]
    elif pipeline is not None and slug(pipeline) in shipped:
        folder = slug(pipeline)
    else:
        raise ValueError(f"{bundle}: choose a pipeline with --pipeline NAME; the bundle has: {', '.join(shipped)}")
    document = json.loads((bundle / "curation" / folder / "pipeline.json").read_text())
    architecture = document.get("architecture")
    size, clip = document.get("encode_size"), document.get("encode_clip")
    return BundlePipeline(
        pipeline=Pipeline.model_validate(document["pipeline"]), scale=manifest["scale"],
        architecture=ArchitectureSpec.model_validate(architecture) if architecture is not None else None,
        encode_size=(size[0], size[1]) if size is not None else None,
        encode_clip=(clip[0], clip[1]) if clip is not None else None,
    )


def _time_limit(stage_plan) -> str:
    """Wall-clock limit for sbatch: the estimate with 50% margin, at least an hour, at most 14 days."""
    seconds = min(max(stage_plan.step_seconds * stage_plan.steps * 1.5, 3600), 14 * 86400)
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}-{hours:02d}:{rest // 60:02d}:00"


def _manifest(spec: Spec, cluster: Cluster, scale: str, bundle: Bundle, how: str) -> dict[str, Any]:
    from compiler.yamlio import document

    canonical = json.dumps({"spec": document(spec), "cluster": cluster.model_dump(mode="json"), "scale": scale},
                           sort_keys=True, separators=(",", ":"))
    return {
        "generated_by": f"genspec {__version__}: {how}",
        "compiler_version": __version__,
        "spec": spec.name,
        "spec_sha256": hashlib.sha256(canonical.encode()).hexdigest(),
        "cluster": cluster.name,
        "scale": scale,
        "files": {path: hashlib.sha256(text.encode()).hexdigest() for path, text in sorted(bundle.files.items())},
    }
