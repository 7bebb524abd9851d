"""The emit pass: a resolved, validated, planned spec becomes a bundle of files, deterministically.

It runs last in the pipeline (compiler/pipeline.py), on a spec already scaled, overridden, resolved,
checked and planned, whose stage graph it reuses:
  1. render    every file as text, in memory: jinja2 templates for scripts and documents, json.dumps for
               JSON; the same input gives byte-identical files (no timestamps, stable order)
  2. manifest  spec hash and every file's sha256
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
from compiler.pipeline import Compiled
from compiler.plan.conditioning import stage_conditioning
from compiler.plan.curation_time import MARGIN, STARTUP_MINUTES, CurationTimes, curation_times
from compiler.plan.planner import SAMPLE_SECONDS
from compiler.schema.bundle import (
    BucketEntry, DataInput, ParallelLayout, PipelineFile, StageFile, encode_clip, encode_size, root_dataset, slug,
)
from compiler.schema.cluster import Cluster
from compiler.schema.schedule import dataset_task
from compiler.schema.spec import Spec
from compiler.schema.support import op_smoke_only

MASTER_PORT = 29500


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
    env.filters.update(q=lambda v: shlex.quote(str(v)), oneline=oneline, slurm_word=slurm_word, slug=slug)
    return env


def smoke_only_ops(spec: Spec) -> list[str]:
    """Ops whose implementation runs only at smoke scale (a reported stand-in), for the assumptions report."""
    return [f"data.pipelines[{p.name}].ops[{op.name}]" for p in spec.data.pipelines for op in p.ops
            if op_smoke_only(op.kind, getattr(op, "scorer", None))]


# Rendering ---------------------------------------------------------------------------------------


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
        after = {producer[root_dataset(spec, use.dataset)[0]] for use in stage.datasets
                 if root_dataset(spec, use.dataset)[0] in producer}
        after |= {f"train-{slug(ref)}" for ref in (stage.init_stage, stage.teacher) if ref}
        jobs.append({"kind": "stage", "id": f"train-{slug(stage.name)}", "dir": slug(stage.name),
                     "label": f"training stage: {stage.name}", "script": f"train/{slug(stage.name)}/sbatch.sh",
                     "after": sorted(after)})
    return jobs


def _stage_file(spec: Spec, stage, stage_plan, scale: str) -> StageFile:
    inputs = []
    for use in stage.datasets:
        root, where = root_dataset(spec, use.dataset)
        # A curation run keeps its samples in OUTPUT/shards (runtime/curation/layout.py).
        modality = where.modality if where is not None and where.modality else _modality(spec, root)
        inputs.append(DataInput(dataset=use.dataset, weight=use.weight, shards=f"curated/{root}/shards",
                                where=where, modality=modality, task=dataset_task(spec.data.datasets, use.dataset)))
    # The trainer reads whether to load the frozen encoders from stage.conditioning: resolved here.
    stage = stage.model_copy(update={"conditioning": stage_conditioning(spec, stage)})
    return StageFile(
        spec=spec.name, scale=scale, stage=stage, architecture=spec.architecture, objective=spec.objective,
        inference=spec.inference,
        layout=ParallelLayout(dp_size=stage_plan.dp_size, sp_size=stage_plan.sp_size, micro_batch=stage_plan.micro_batch,
                      grad_accumulation=stage_plan.grad_accumulation, zero_stage=stage_plan.zero_stage,
                      offload=stage_plan.offload, activation_checkpointing=stage_plan.activation_checkpointing,
                      precision=stage_plan.precision, compile=stage_plan.compile),
        buckets=[BucketEntry(resolution=b.resolution, height=b.height, width=b.width, frames=b.frames,
                             micro_batch=b.micro_batch) for b in stage_plan.buckets],
        data=inputs,
        output_dir=f"checkpoints/{slug(stage.name)}",
        # Released weights stay in stage.init_from: the trainer finds them in its model directory.
        init_from=f"checkpoints/{slug(stage.init_stage)}" if stage.init_stage else None,
        teacher=f"checkpoints/{slug(stage.teacher)}" if stage.teacher else None,
        checkpoint_every=stage_plan.cadence.checkpoint_every,
        validation_every=stage_plan.cadence.validation_every,
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


def render(spec: Spec, cluster: Cluster, scale: str, overrides: list[str] | tuple[str, ...] = ()) -> Bundle:
    """Every file of the bundle of `spec` for `cluster`: the whole pipeline (compiler/pipeline.py) run on it.
    Raises compiler.pipeline.CompileError with every problem found."""
    from compiler import pipeline

    return pipeline.emit(pipeline.compile(spec, cluster, scale, overrides))


def render_bundle(compiled: Compiled) -> Bundle:
    """Every file of the bundle of a compiled spec, as text (the emit pass)."""
    from compiler.emit.deepspeed import ds_config
    from compiler.emit.reports import assumption_groups, plan_json
    from compiler.yamlio import dump_yaml

    spec, planned, cluster, scale = compiled.spec, compiled.plan, compiled.cluster, compiled.checked.scale
    stage_graph = compiled.checked.stage_graph
    env = _environment()
    order = _order(spec)
    common = {"version": __version__, "spec_name": spec.name, "cluster": cluster, "scale": scale,
              "order": order, "environment": dict(sorted(cluster.environment.items()))}
    bundle = Bundle()
    how = compiled.command
    bundle.add("spec.resolved.yaml", dump_yaml(spec, header=f"Generated by genspec {__version__}: {how}\n"
                                               "Every value of the spec with its provenance; "
                                               "`genspec validate spec.resolved.yaml` checks it."))
    bundle.add("assumptions.md", env.get_template("assumptions.md.j2").render(
        groups=assumption_groups(compiled.checked.resolved.table, spec), smoke_only=smoke_only_ops(spec), **common))
    resources = {p.name: _curation_resources(stage_graph, p.name, cluster) for p in spec.data.pipelines}
    times = {p.name: curation_times(p, _modality(spec, p.output) != "image", resources[p.name]["job_cpus"],
                                    resources[p.name]["job_gpus"], cluster.curation_samples_per_shard)
             for p in spec.data.pipelines}
    shards_per_task = cluster.curation_shards_per_task
    bundle.add("plan.md", env.get_template("plan.md.j2").render(
        plan=planned, sample_seconds=SAMPLE_SECONDS, pipelines=spec.data.pipelines, curation_times=times,
        curation_resources=resources, shards_per_task=shards_per_task, startup_minutes=STARTUP_MINUTES,
        curation_margin=MARGIN, curation_ops=curation_op_rows(spec, stage_graph), **common))
    bundle.add("plan.json", _json(plan_json(planned, how)))
    _add_graph(bundle, stage_graph, how)

    for pipeline in spec.data.pipelines:
        base = f"curation/{slug(pipeline.name)}"
        contract = resources[pipeline.name]
        bundle.add(f"{base}/pipeline.json", _json(pipeline_document(spec, pipeline, how)))
        context = {**common, "pipeline": pipeline, "pipeline_dir": slug(pipeline.name),
                   "stages": curation_stages(pipeline), "shards_per_task": shards_per_task, **contract}
        bundle.add(f"{base}/run_local.sh", env.get_template("curation_local.sh.j2").render(**context), True)
        bundle.add(f"{base}/run_ray.sh", env.get_template("curation_ray.sh.j2").render(**context), True)
        bundle.add(f"{base}/sbatch_array.sh", env.get_template("curation_array.sbatch.j2").render(**context), True)
        bundle.add(f"{base}/sbatch_single.sh", env.get_template("curation_single.sbatch.j2").render(**context), True)

    for stage, stage_plan in zip(spec.schedule.stages, planned.stages):
        base = f"train/{slug(stage.name)}"
        stage_file = _stage_file(spec, stage, stage_plan, scale)
        context = {**common, "stage": stage, "stage_dir": slug(stage.name), "layout": stage_file.layout,
                   "output_dir": stage_file.output_dir,
                   "master_port": MASTER_PORT, "time_limit": _time_limit(stage_plan, cluster),
                   "signal_grace": min(cluster.signal_grace_seconds, cluster.time_limit_minutes * 30),
                   "cpus_per_rank": max(cluster.cpus_per_node // cluster.ranks_per_node, 1)}
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

    bundle.add("preflight.sbatch.sh", env.get_template("preflight.sbatch.sh.j2").render(**common), True)
    bundle.add("run_local.sh", env.get_template("run_local.sh.j2").render(**common), True)
    bundle.add("submit_slurm.sh", env.get_template("submit_slurm.sh.j2").render(
        **{**common, "order": _slurm_jobs(spec, order, times)}, pipelines=spec.data.pipelines,
        shards_per_task=shards_per_task, startup_minutes=STARTUP_MINUTES), True)
    bundle.add("README.md", env.get_template("README.md.j2").render(
        sources=[s.name for s in spec.data.sources], rerun=how, **common))
    bundle.add("manifest.json", _json(_manifest(spec, cluster, scale, bundle, how)))
    return bundle


def _add_graph(bundle: Bundle, stage_graph, how: str) -> None:
    from compiler.graph import render_graph

    bundle.add("graph.dot", f"// Generated by genspec {__version__}: {how}\n" + render_graph(stage_graph, "dot"))
    bundle.add("graph.mmd", f"%% Generated by genspec {__version__}: {how}\n" + render_graph(stage_graph, "mermaid"))


def _curation_resources(stage_graph, pipeline: str, cluster: Cluster) -> dict[str, int]:
    """What one curation array task asks Slurm for: the largest of the pipeline's fused per-sample jobs, capped
    by what one node of the cluster has (a CPU-only cluster gets no GPU request: sbatch would refuse it); and
    the CPUs of its single-task jobs (barrier decisions, finalize), which need no GPU."""
    jobs = [job for job in stage_graph.jobs if job.pipeline == pipeline]
    cpus = min(max((j.cpu_cores for j in jobs), default=4), cluster.cpus_per_node)
    gpus = min(max((j.gpus for j in jobs), default=0), cluster.gpus_per_node)
    single = min(max((j.cpu_cores for j in jobs if j.scope == "global"), default=1), cluster.cpus_per_node)
    return {"job_cpus": cpus, "job_gpus": gpus, "single_cpus": single}


def curation_op_rows(spec: Spec, stage_graph) -> list[dict[str, Any]]:
    """Per curation op, in run order: its job, where it runs and the GPU memory one copy of its model needs
    (compiler/graph/contracts.py), for plan.md."""
    from compiler.graph.contracts import contract

    rows = []
    for job in stage_graph.jobs:
        ops = {op.name: op for p in spec.data.pipelines if p.name == job.pipeline for op in p.ops}
        for name in job.ops:
            needs = contract(ops[name])
            rows.append({"pipeline": job.pipeline, "job": job.name, "op": name, "resource": needs.resource,
                         "gpu_memory_gib": needs.gpu_memory_gib, "cpu_cores": needs.cpu_cores})
    return rows


def curation_stages(pipeline) -> int:
    """Stages the curation runtime splits a pipeline into: one more than its barriers
    (runtime/curation/stages.py plan_stages); the Slurm DAG runs one array job per stage."""
    return 1 + sum(1 for op in pipeline.ops if op.shape == "barrier")


def _slurm_jobs(spec: Spec, order: list[dict[str, Any]], times: dict[str, CurationTimes]) -> list[dict[str, Any]]:
    """The Slurm DAG: each curation pipeline as one array job per stage, the barrier that starts each later
    stage in a job of its own between two arrays, and a finalize job, chained; training stages after the
    finalize jobs of the pipelines they read. Curation jobs carry `sizing`: submit_slurm.sh derives their
    --array and --time from the input shards it counts and the estimated seconds per shard."""
    pipelines = {f"curate-{slug(p.name)}": p for p in spec.data.pipelines}
    # Preflight first: a missing model or shard fails it in seconds and cancels the rest, before GPU-hours.
    jobs = [{"kind": "preflight", "id": "preflight", "script": "preflight.sbatch.sh", "after": [], "args": [],
             "sizing": None}]
    for job in order:
        if job["kind"] != "curation":
            jobs.append({**job, "after": job["after"] or ["preflight"], "args": [], "sizing": None})
            continue
        pipeline = pipelines[job["id"]]
        estimate = times[pipeline.name]
        single = f"curation/{job['dir']}/sbatch_single.sh"
        previous: list[str] = ["preflight"]
        for stage in range(curation_stages(pipeline)):
            if stage:
                barrier_id = f"{job['id']}-s{stage}-barrier"
                jobs.append({**job, "id": barrier_id, "script": single, "after": previous,
                             "args": ["--stage", str(stage), "--barrier"],
                             "sizing": {"pipeline": job["dir"], "array": False, "seconds": estimate.barrier}})
                previous = [barrier_id]
            stage_id = f"{job['id']}-s{stage}"
            jobs.append({**job, "id": stage_id, "after": previous, "args": ["--stage", str(stage)],
                         "sizing": {"pipeline": job["dir"], "array": True, "seconds": estimate.stages[stage]}})
            previous = [stage_id]
        jobs.append({**job, "script": single, "after": previous, "args": ["--finalize"],
                     "sizing": {"pipeline": job["dir"], "array": False, "seconds": estimate.finalize}})
    return jobs


def pipeline_document(spec: Spec, pipeline, how: str) -> dict[str, Any]:
    """curation/<slug>/pipeline.json (compiler.schema.bundle.PipelineFile), as JSON data."""
    return PipelineFile(generated_by=f"genspec {__version__}: {how}", pipeline=pipeline,
                        architecture=spec.architecture, encode_size=encode_size(spec, pipeline),
                        encode_clip=encode_clip(spec, pipeline)).model_dump(mode="json")


def _time_limit(stage_plan, cluster: Cluster) -> str:
    """Wall-clock limit of one job of a stage: the estimate with 50% margin and at least an hour, at most the
    partition's limit (a longer stage checkpoints and requeues itself: templates/sbatch.sh.j2)."""
    seconds = min(max(stage_plan.step_seconds * stage_plan.steps * 1.5, 3600), cluster.time_limit_minutes * 60)
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
