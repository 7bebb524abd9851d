"""The `genspec` command line. Exit codes: 0 success, 1 the spec is invalid (or specs differ), 2 usage or
load error. Output is rich on a terminal and plain text when piped."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="genspec",
    help="Compile typed specs of image and video generation models into runnable training bundles.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# `\\[` keeps rich from reading [pretrain] as markup and dropping it from --help.
SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a value: PATH=VALUE, e.g. schedule.stages\\[pretrain].steps=1000. "
                 "Applied after --scale, so it wins."),
]
ScaleOption = Annotated[str, typer.Option("--scale", help="full or smoke.")]


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def _load(target: str, overrides: list[str] | None = None, scale: str = "full"):
    """A TARGET through the pipeline's load, scale and overrides passes (compiler/pipeline.py), every load
    problem turned into exit 2 (field errors: exit 1)."""
    from compiler import pipeline
    from compiler.resolve import OverrideError
    from compiler.yamlio import SpecFieldError, SpecLoadError

    try:
        return pipeline.apply(pipeline.load(target), scale, overrides or [])
    except SpecFieldError as error:
        for diagnostic in error.diagnostics:
            print(f"{error.origin}: {diagnostic}", file=sys.stderr)
        raise typer.Exit(1) from None
    except (SpecLoadError, OverrideError) as error:
        raise _fail(str(error)) from None


def _check_scale(scale: str) -> None:
    from compiler.scale import SCALES

    if scale not in SCALES:
        raise _fail(f"--scale {scale!r}: choose one of {', '.join(SCALES)}")


@app.command("list")
def list_specs(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False) -> None:
    """Every shipped spec (read from specs/catalogue.py: no spec is loaded)."""
    from specs.catalogue import CATALOGUE

    rows = [{"name": name, **row} for name, row in CATALOGUE.items()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    console = _console()
    if console.is_terminal:
        from rich.table import Table

        table = Table("name", "modality", "backbone", "objective", "params", "derived from", box=None)
        for row in rows:
            table.add_row(row["name"], row["modality"], row["backbone"], row["objective"],
                          _params(row["params_documented"]), row["derived_from"] or "")
        console.print(table)
    else:
        for row in rows:
            print(f"{row['name']}\t{row['modality']}\t{row['backbone']}\t{row['objective']}\t"
                  f"{_params(row['params_documented'])}\t{row['derived_from'] or ''}")


def _params(value: float | None) -> str:
    return "undisclosed" if value is None else f"{value / 1e9:.3g}B"


@app.command()
def show(
    target: Annotated[str, typer.Argument(help="Shipped name, file.py:attr, or .yaml/.json file.")],
    fmt: Annotated[str, typer.Option("--format", help="yaml or json.")] = "yaml",
    resolved: Annotated[bool, typer.Option("--resolved", help="Apply the resolve pass (derived values).")] = False,
    overrides: SetOption = None,
) -> None:
    """Print a spec as YAML or JSON with every value's provenance."""
    from compiler.yamlio import dump_json, dump_yaml

    if fmt not in ("yaml", "json"):
        raise _fail(f"--format {fmt!r}: choose yaml or json")
    spec = _load(target, overrides)
    header = f"genspec spec {spec.name}: `genspec validate FILE` checks it, `genspec show FILE` prints it back."
    if resolved:
        from compiler.resolve import resolve

        result = resolve(spec)
        spec = result.spec
        header += "\nResolved: derived values filled in."
        for missing in result.missing:
            header += f"\nMissing: {missing}"
    sys.stdout.write(dump_yaml(spec, header=header) if fmt == "yaml" else dump_json(spec))


@app.command()
def validate(
    targets: Annotated[Optional[list[str]], typer.Argument(help="Specs to check.")] = None,
    all_specs: Annotated[bool, typer.Option("--all", help="Check every shipped spec.")] = False,
    scale: ScaleOption = "full",
    overrides: SetOption = None,
) -> None:
    """Check specs with every check compile runs except planning: field rules, semantic rules, the stage
    graph, runtime support and values the planner needs. Exit 0 valid, 1 invalid, 2 load error."""
    from compiler import pipeline  # the schema loads with the first spec: an unknown --scale is found there

    names = list(targets or [])
    if all_specs:
        import specs

        names += list(specs.SHIPPED)
    if not names:
        raise _fail("name at least one TARGET, or pass --all")
    invalid = False
    load_failed = False
    for name in names:
        try:
            spec = _load(name)
            checked = pipeline.check(spec, scale, overrides or [])
        except typer.Exit as exit_:
            load_failed |= exit_.exit_code == 2
            invalid |= exit_.exit_code == 1
            continue
        except ValueError as error:  # an unknown --scale, or an override that cannot be applied (OverrideError)
            print(f"error: {error}", file=sys.stderr)
            load_failed = True
            continue
        for diagnostic in checked.diagnostics:
            print(f"{name}: {diagnostic}")
        errors = len(checked.errors)
        verdict = "invalid" if errors else "valid"
        print(f"{name}: {verdict} ({errors} error(s), {len(checked.diagnostics) - errors} warning(s))")
        invalid |= bool(errors)
    raise typer.Exit(2 if load_failed else 1 if invalid else 0)


@app.command()
def explain(
    target: Annotated[str, typer.Argument(help="Shipped name, file.py:attr, or .yaml/.json file.")],
    path: Annotated[Optional[str], typer.Argument(help="A value's path, e.g. architecture.backbone.hidden_size.")] = None,
    overrides: SetOption = None,
) -> None:
    """Where a value comes from. Without PATH: the spec's undisclosed and assumed values."""
    from compiler.document import walk_leaves

    spec = _load(target, overrides)
    leaves = [(p, node.provenance_of(field), value) for p, node, field, value in walk_leaves(spec)]
    if path is None:
        _explain_summary(spec.name, leaves)
        return
    under = [leaf for leaf in leaves if leaf[0] == path or leaf[0].startswith((path + ".", path + "["))]
    if not under:
        close = [p for p, _, _ in leaves if path.split(".")[-1].split("[")[0] in p][:8]
        hint = f"; similar paths: {', '.join(close)}" if close else ""
        raise _fail(f"{spec.name} has no value at {path!r}{hint}")
    for leaf_path, provenance, value in under:
        shown = "(no value)" if value is None else json.dumps(value, default=str)
        print(f"{leaf_path} = {shown}")
        print(f"  {provenance.describe() if provenance else 'no provenance recorded'}")


def _explain_summary(name: str, leaves: list) -> None:
    from collections import Counter

    counts = Counter(provenance.status if provenance else "unrecorded" for _, provenance, _ in leaves)
    print(f"{name}: {len(leaves)} values: " + ", ".join(f"{n} {status}" for status, n in counts.most_common()))
    for status in ("undisclosed", "assumed", "override", "unrecorded"):
        picked = [(p, prov) for p, prov, _ in leaves if (prov.status if prov else "unrecorded") == status]
        if picked:
            print(f"\n{status}:")
            for leaf_path, provenance in picked:
                detail = (provenance.reason or provenance.source) if provenance else ""
                print(f"  {leaf_path}" + (f": {detail}" if detail else ""))


@app.command()
def graph(
    target: Annotated[str, typer.Argument(help="Shipped name, file.py:attr, or .yaml/.json file.")],
    fmt: Annotated[str, typer.Option("--format", help="dot, mermaid, json or svg (svg needs Graphviz).")] = "dot",
    overrides: SetOption = None,
) -> None:
    """The stage graph: sources, curation ops, datasets, stages, checkpoints; jobs and reorders in JSON.
    Graph problems are printed to stderr; exit 1 if any is an error."""
    from compiler.graph import RenderError, build, render_graph

    spec = _load(target, overrides)
    stage_graph = build(spec)
    try:
        sys.stdout.write(render_graph(stage_graph, fmt))
    except RenderError as error:
        raise _fail(str(error)) from None
    for diagnostic in stage_graph.diagnostics:
        print(f"{spec.name}: {diagnostic}", file=sys.stderr)
    raise typer.Exit(1 if any(d.severity == "error" for d in stage_graph.diagnostics) else 0)


@app.command("diff")
def diff_specs(
    a: Annotated[str, typer.Argument(help="The spec before: shipped name, file.py:attr, or .yaml/.json.")],
    b: Annotated[str, typer.Argument(help="The spec after.")],
    fmt: Annotated[str, typer.Option("--format", help="text, markdown or json.")] = "text",
    only: Annotated[Optional[str], typer.Option("--only", help="data, architecture, objective or schedule.")] = None,
    graph: Annotated[bool, typer.Option("--graph", help="Print the stage-graph diff as DOT instead.")] = False,
    hide_provenance: Annotated[bool, typer.Option(
        "--hide-provenance", help="Value changes only: no provenance-only changes, no provenance lines.")] = False,
) -> None:
    """What changed from A to B. Exit 0 when equal, 1 when they differ, 2 on error."""
    from compiler import diff_format
    from compiler.diff import SECTIONS, diff

    if fmt not in ("text", "markdown", "json"):
        raise _fail(f"--format {fmt!r}: choose text, markdown or json")
    if only is not None and only not in SECTIONS:
        raise _fail(f"--only {only!r}: choose one of {', '.join(SECTIONS)}")
    spec_a, spec_b = _load(a), _load(b)
    result = diff(spec_a, spec_b).only(only)
    if hide_provenance:
        result = result.values_only()
    if graph:
        from compiler.graph import build

        sys.stdout.write(diff_format.graph_dot(result, build(spec_a).graph, build(spec_b).graph))
    elif fmt == "json":
        sys.stdout.write(diff_format.to_json(result))
    elif fmt == "markdown":
        sys.stdout.write(diff_format.to_markdown(result))
    else:
        console = _console()
        if console.is_terminal:
            console.print(diff_format.to_text(result, colour=True), end="")
        else:
            sys.stdout.write(diff_format.to_text(result))
    raise typer.Exit(1 if result.changes else 0)


@app.command("compile")
def compile_spec(
    target: Annotated[str, typer.Argument(help="Shipped name, file.py:attr, or .yaml/.json file.")],
    cluster: Annotated[str, typer.Option("--cluster", help="Preset name (`genspec clusters`), .yaml/.json, or file.py:attr.")],
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Bundle directory (default generated/SPEC/CLUSTER[-smoke]).")] = None,
    scale: ScaleOption = "full",
    overrides: SetOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output directory.")] = False,
    data_reports: Annotated[Optional[list[str]], typer.Option(
        "--data-report", help="A curation run's report.json: its kept count becomes the pipeline's kept_count, "
        "which bucket feasibility checks (repeatable).")] = None,
) -> None:
    """Compile a spec for a cluster into a runnable bundle. Exit 0 written, 1 the spec cannot be compiled, 2 usage."""
    from pathlib import Path

    from compiler import pipeline
    from compiler.clusters import load_cluster
    from compiler.emit import OutputExistsError, write_bundle
    from compiler.resolve import OverrideError
    from compiler.yamlio import SpecLoadError

    from compiler.plan.buckets import report_overrides

    _check_scale(scale)
    spec = _load(target)
    try:
        overrides = [*report_overrides(data_reports or []), *(overrides or [])]
    except ValueError as error:
        raise _fail(str(error)) from None
    try:
        target_cluster = load_cluster(cluster)
    except SpecLoadError as error:
        raise _fail(str(error)) from None
    out = Path(output) if output else Path("generated") / spec.name / (target_cluster.name + ("-smoke" if scale == "smoke" else ""))
    if out.exists() and not force:
        raise _fail(f"{out} exists; pass --force to replace it")
    try:
        compiled = pipeline.compile(spec, target_cluster, scale, overrides or [], target=target, cluster_target=cluster)
        bundle = pipeline.emit(compiled)
        write_bundle(bundle, out, force=force)
    except OverrideError as error:
        raise _fail(str(error)) from None
    except pipeline.CompileError as error:
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(1) from None
    except OutputExistsError as error:
        raise _fail(str(error)) from None
    print(f"wrote {out} ({len(bundle.files)} files)")


@app.command()
def curate(
    target: Annotated[str, typer.Argument(help="A spec (shipped name, file.py:attr, .yaml/.json) or a compiled bundle directory.")],
    inputs: Annotated[list[str], typer.Option("--input", help="Shards: a directory, glob or brace pattern (repeatable).")],
    output: Annotated[str, typer.Option("--output", help="Directory for kept shards, quarantine and report.json.")],
    pipeline: Annotated[Optional[str], typer.Option("--pipeline", help="Pipeline name (needed when there are several).")] = None,
    executor: Annotated[str, typer.Option("--executor", help="local or ray.")] = "local",
    workers: Annotated[int, typer.Option("--workers", help="Worker processes (local) or actors (ray).")] = 2,
    scale: Annotated[Optional[str], typer.Option("--scale", help="full or smoke (a bundle's own scale by default).")] = None,
    model_dir: Annotated[Optional[str], typer.Option("--model-dir", help="Local model directory for model-backed ops.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Curate only the first N input samples (any scale).")] = None,
) -> None:
    """Run a curation pipeline over webdataset shards. Exit 0 on success, 1 when the run fails (nothing read or
    kept, a lost sample, an op that cannot run), 2 on usage errors."""
    from pathlib import Path

    from runtime.curation import run
    from runtime.curation.api import CurationError, OpConfigError

    if executor not in ("local", "ray"):
        raise _fail(f"--executor {executor!r}: choose local or ray")
    encoding: dict = {}  # a spec gives its own architecture and encode size; a bundle's pipeline.json holds them
    if Path(target).is_dir():
        shipped = _bundle_pipeline(Path(target), pipeline)
        source, default_scale = shipped.pipeline, shipped.scale
        encoding = {"architecture": shipped.architecture, "encode_size": shipped.encode_size,
                    "encode_clip": shipped.encode_clip}
    else:
        source, default_scale = _load(target), "full"
    try:
        report = run(source, inputs if len(inputs) > 1 else inputs[0], output, pipeline=pipeline, executor=executor,
                     workers=workers, scale=scale or default_scale, model_dir=model_dir, limit=limit, **encoding)
    except (CurationError, OpConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"{report.pipeline}: read {report.samples_read}, kept {report.kept}, dropped {report.dropped}, "
          f"quarantined {report.quarantined}; report: {Path(output) / 'report.json'}")


def _bundle_pipeline(bundle, pipeline: str | None):
    """What a compiled bundle ships for `pipeline`: the schema Pipeline, the bundle's scale, the architecture
    and encode size (compiler.schema.bundle.BundlePipeline)."""
    from compiler.schema.bundle import read_bundle_pipeline

    try:
        return read_bundle_pipeline(bundle, pipeline)
    except (OSError, ValueError) as error:
        raise _fail(str(error)) from None


@app.command()
def demo(
    spec: Annotated[str, typer.Option(
        "--spec", help="Any TARGET to run end to end: a shipped name (`genspec list`), file.py:ATTR or a "
        ".yaml/.json file, found from the current directory.")] = "flux1-dev",
    workdir: Annotated[str, typer.Option("--workdir", help="Where the bundle, data, run and report go.")] = "demo-run",
    quick: Annotated[bool, typer.Option(
        "--quick", help="Only prove every step runs (3 steps per stage, random smoke VAE), also for specs with a "
        "2D latent space, which otherwise get the learning run (fitted smoke VAE, more steps).")] = False,
) -> None:
    """Compile SPEC at smoke scale for this machine, make synthetic raw data, run curation, every training
    stage through DeepSpeed and sampling, and write WORKDIR/report.md. A rerun resumes. For specs with a 2D
    latent space (flux1-dev) it is a learning run whose samples follow their prompts (runtime/demo.py)."""
    from runtime.demo import main as run_demo

    from compiler.targets import TargetError

    try:
        report = run_demo(spec, workdir, quick)
    except (NotImplementedError, TargetError) as error:
        raise _fail(f"genspec demo --spec {spec}: {error}") from None
    except RuntimeError as error:  # a step of the run failed; its output is above
        raise _fail(f"genspec demo --spec {spec}: {error}; the run resumes from here when rerun") from None
    print(f"report: {report}")


@app.command()
def status(
    run: Annotated[str, typer.Argument(help="A bundle, a demo workdir, or a run root (RUN_ROOT).")],
    bundle: Annotated[Optional[str], typer.Option(
        "--bundle", help="The run's bundle, for a run root outside it (a Slurm run on shared storage).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """Where a run stands: curation and training stages done, step of total, last loss and validation loss,
    time per step and the ETA. Reads the run's files only (no torch), so it can run beside training."""
    from pathlib import Path

    from compiler.status import NotARunError, format_text, locate, read_status

    try:
        run_status = read_status(locate(Path(run), Path(bundle) if bundle else None))
    except NotARunError as error:
        raise _fail(str(error)) from None
    if as_json:
        print(json.dumps(run_status.to_json(), indent=2))
    else:
        sys.stdout.write(format_text(run_status))


@app.command()
def preflight(
    bundle: Annotated[str, typer.Argument(help="A bundle directory written by `genspec compile`.")],
    model_dir: Annotated[Optional[str], typer.Option("--model-dir", help="Model weights; default GENSPEC_MODEL_DIR.")] = None,
    run_root: Annotated[Optional[str], typer.Option("--run-root", help="Run root; default GENSPEC_RUN_ROOT.")] = None,
    raw: Annotated[Optional[str], typer.Option("--raw", help="Raw shards, one sub-folder per source.")] = None,
) -> None:
    """Check, before any GPU-hour: models present, input shards, run root writable with room. Every problem at once."""
    import os
    from pathlib import Path

    from compiler.preflight import preflight as check

    def path(value: str | None, variable: str) -> Path | None:
        value = value or os.environ.get(variable) or None
        return Path(value) if value else None

    problems, notes = check(Path(bundle), path(model_dir, "GENSPEC_MODEL_DIR"), path(run_root, "GENSPEC_RUN_ROOT"),
                            path(raw, "GENSPEC_RAW"))
    for note in notes:
        typer.echo(f"note: {note}")
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise _fail(f"preflight: {len(problems)} problem(s) in {bundle}", 1)
    typer.echo(f"preflight: {bundle} is ready")


@app.command()
def clusters(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False) -> None:
    """The cluster presets --cluster accepts (a .yaml/.json file or file.py:attr works too)."""
    from compiler.schema.cluster import PRESETS

    rows = [cluster.model_dump(mode="json") for cluster in PRESETS.values()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for cluster in PRESETS.values():
        device = f"{cluster.gpus_per_node} x {cluster.gpu.name}" if cluster.gpu else f"{cluster.cpus_per_node} CPU cores"
        print(f"{cluster.name}\t{cluster.nodes} node(s) x {device}\t{cluster.scheduler}\t{cluster.interconnect}")


@app.command()
def schema() -> None:
    """The JSON Schema of a spec file's `spec` section."""
    from compiler.schema.spec import Spec

    print(json.dumps(Spec.model_json_schema(), indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
