"""The end-to-end demo: compile a spec at smoke scale, curate synthetic raw data, train every stage, sample, report.

    main(spec="flux1-dev", workdir="demo-run")

Steps:
  1. compile the spec for the local-cpu cluster at smoke scale into WORKDIR/bundle (reused when its
     manifest.json names the same spec, cluster, scale and spec hash; else recompiled with --force);
  2. write synthetic raw webdataset shards into WORKDIR/raw/<source>/ (runtime.synthetic_data.make_raw; skipped
     when present): images, video clips or edit triplets by each source's modality, with the cases curation
     must catch (corrupt, duplicate, near-duplicate, blurry, tiny; clips without frames, too short, static);
  3. run the bundle's run_local.sh with --raw WORKDIR/raw --run-root WORKDIR/run, output streamed. Curation
     skips finished shards and the trainer returns at once for a finished stage, so a rerun resumes;
  4. sample from the last stage's final checkpoint (python -m runtime.sample) into WORKDIR/run/samples/;
  5. write WORKDIR/report.md with the stage graph (graph.dot rendered by Graphviz), the curation funnel
     (report.json and its histograms), a loss curve per stage (metrics.jsonl) and the sample grid.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from runtime.synthetic_data import make_raw

CLUSTER, SCALE = "local-cpu", "smoke"
ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ("a red circle on a blue background", "a yellow square on a green background",
           "a white triangle on a black background", "a blue star on an orange background")


def log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


# --- the spec -------------------------------------------------------------------------------------------------


def load_spec(spec: str):
    """The shipped spec named SPEC (or a spec file: compiler.targets.load_target)."""
    from compiler.targets import load_target

    return load_target(spec)


def raw_present(raw_dir: Path, spec_obj) -> bool:
    """Whether every source of the spec has raw shards under RAW_DIR/<source>/."""
    return all(any((raw_dir / source.name).glob("*.tar")) for source in spec_obj.data.sources)


# --- compile and run ------------------------------------------------------------------------------------------


def bundle_matches(bundle: Path, spec: str) -> bool:
    """The bundle exists and its manifest names spec SPEC (the spec's name), the local-cpu cluster and smoke
    scale, and its files are intact (their sha256 match the manifest)."""
    manifest_path = bundle / "manifest.json"
    if not manifest_path.exists():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return False
    if (manifest.get("spec"), manifest.get("cluster"), manifest.get("scale")) != (spec, CLUSTER, SCALE):
        return False
    if manifest.get("compiler_version") != _compiler_version():
        return False
    for name, digest in manifest.get("files", {}).items():
        path = bundle / name
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            return False
    return True


def _compiler_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("genspec")
    except Exception:  # noqa: BLE001
        return None


def genspec_command() -> list[str]:
    exe = Path(sys.executable).parent / "genspec"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "compiler.cli"]


def compile_bundle(spec: str, bundle: Path, name: str | None = None) -> None:
    """Compile TARGET `spec` (absolute, as runs start in the project root) into `bundle`, unless the bundle
    there is of the same spec (named `name`, by default `spec`) and the same content."""
    if bundle_matches(bundle, name or spec):
        # The manifest matches; still recompile into a scratch dir only if the spec itself changed.
        fresh = bundle.parent / ".bundle-check"
        shutil.rmtree(fresh, ignore_errors=True)
        run([*genspec_command(), "compile", spec, "--cluster", CLUSTER, "--scale", SCALE, "-o", str(fresh)],
            quiet=True)
        same = json.loads((fresh / "manifest.json").read_text()).get("spec_sha256") == json.loads(
            (bundle / "manifest.json").read_text()).get("spec_sha256")
        shutil.rmtree(fresh, ignore_errors=True)
        if same:
            log(f"reusing bundle {bundle} (manifest matches)")
            return
    log(f"compiling {spec} --cluster {CLUSTER} --scale {SCALE} -> {bundle}")
    run([*genspec_command(), "compile", spec, "--cluster", CLUSTER, "--scale", SCALE, "-o", str(bundle), "--force"])


def run(command: list[str], quiet: bool = False, env: dict | None = None) -> None:
    """Run COMMAND from the project root with output streamed (unless quiet); raise on failure."""
    environment = {**os.environ, **(env or {})}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    environment["PYTHONPATH"] = f"{ROOT}{os.pathsep}{environment.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    if quiet:
        done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return
    process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
    if process.wait() != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}")


def stage_order(bundle: Path) -> list[str]:
    """Training stages in the order run_local.sh runs them."""
    return re.findall(r'bash "\$bundle/train/([^/"]+)/launch\.sh"', (bundle / "run_local.sh").read_text())


def stage_output(bundle: Path, stage: str) -> str:
    """The stage's output_dir (relative to the run root) from its stage.yaml."""
    from ruamel.yaml import YAML

    return YAML(typ="safe").load((bundle / "train" / stage / "stage.yaml").read_text())["output_dir"]


def stage_done(bundle: Path, run_root: Path, stage: str) -> bool:
    """Whether the stage finished on an earlier run (the trainer's final/done.json)."""
    return (run_root / stage_output(bundle, stage) / "final" / "done.json").exists()


def run_pipeline(bundle: Path, raw: Path, run_root: Path) -> list[str]:
    """Run run_local.sh. Finished curation and training stages return at once (the runtime checks its own
    outputs), so a rerun resumes. Returns the training stages that had finished before this run."""
    skipped = [stage for stage in stage_order(bundle) if stage_done(bundle, run_root, stage)]
    if skipped:
        log(f"resuming: {', '.join(skipped)} already trained")
    run(["bash", str(bundle / "run_local.sh"), "--raw", str(raw.resolve()), "--run-root", str(run_root.resolve())])
    return skipped


def sample(bundle: Path, run_root: Path, stage: str, steps: int | None = None) -> Path:
    out = run_root / "samples" / f"{stage}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "runtime.sample", "--stage", str((bundle / "train" / stage / "stage.yaml").resolve()),
               "--run-root", str(run_root.resolve()), "--prompts", *PROMPTS, "--out", str(out.resolve())]
    if steps is not None:
        command += ["--steps", str(steps)]
    run(command)
    return out


# --- the report -----------------------------------------------------------------------------------------------


def render_graph(bundle: Path, out: Path) -> Path | None:
    dot = shutil.which("dot")
    if dot is None:
        log("Graphviz `dot` not found: the report links graph.dot instead of a picture")
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([dot, "-Tpng", str(bundle / "graph.dot"), "-o", str(out)], check=True)
    return out


def read_metrics(path: Path) -> list[dict]:
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return records


def plot_losses(stage: str, records: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(6, 3.5))
    train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    if train:
        axes.plot(*zip(*train), label="loss", marker="." if len(train) < 30 else None)
    if val:
        axes.plot(*zip(*val), label="val_loss", marker="o")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(stage)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return out


def funnel_markdown(report: dict, report_dir: Path, workdir: Path) -> list[str]:
    summary = (f"Read {report.get('samples_read')} samples from {report.get('shards')} shard(s) (a smoke run "
               f"curates the first shard of each source); kept {report.get('kept')}, dropped {report.get('dropped')}, "
               f"quarantined {report.get('quarantined')}, review {report.get('review')}.")
    lines = [summary, "",
             "| op | kind | seen | kept | dropped (reason: count) | quarantined | seconds |",
             "|---|---|---:|---:|---|---:|---:|"]
    for op in report.get("ops", []):
        dropped = ", ".join(f"{reason}: {n}" for reason, n in (op.get("dropped") or {}).items()) or "-"
        lines.append(f"| {op.get('name')} | {op.get('kind')} | {op.get('seen')} | {op.get('kept')} | {dropped} | "
                     f"{op.get('quarantined', 0)} | {op.get('seconds', 0):.2f} |")
    lines.append("")
    for png in sorted(report_dir.glob("*.png")):
        lines += [f"![{png.stem}]({png.relative_to(workdir)})", ""]
    return lines


def write_report(spec: str, bundle: Path, run_root: Path, workdir: Path, graph: Path | None,
                 sample_png: Path, timings: dict[str, float], skipped: list[str]) -> Path:
    lines = [f"# genspec demo: {spec} ({CLUSTER}, {SCALE} scale)", "",
             f"Bundle: `{bundle}`; run root: `{run_root}`.", "",
             "Timings: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()) + ".", ""]
    if skipped:
        lines += [f"Already trained on an earlier run, skipped: {', '.join(skipped)}.", ""]
    lines += ["## Stage graph", ""]
    lines += [f"![stage graph]({graph.relative_to(workdir)})" if graph else f"(no Graphviz) see `{bundle / 'graph.dot'}`",
              "", f"Plan: `{bundle / 'plan.md'}`.", "", "## Curation funnel", ""]
    for report_path in sorted((run_root / "curated").glob("*/report.json")):
        report = json.loads(report_path.read_text())
        lines += [f"### {report_path.parent.name} (pipeline {report.get('pipeline')})", ""]
        lines += funnel_markdown(report, report_path.parent / "report", workdir)
    lines += ["## Training", ""]
    for stage in stage_order(bundle):
        output = run_root / stage_output(bundle, stage)
        records = read_metrics(output / "metrics.jsonl")
        losses = [r["loss"] for r in records if r.get("loss") is not None]
        png = plot_losses(stage, records, workdir / "figures" / f"loss_{stage}.png")
        summary = (f"{len(losses)} steps, loss {losses[0]:.4g} -> {losses[-1]:.4g}" if losses else "no steps logged")
        lines += [f"### {stage}", "", summary + ".", "", f"![loss {stage}]({png.relative_to(workdir)})", ""]
    lines += ["## Samples", "", f"From the last stage's final checkpoint; prompts: {', '.join(PROMPTS)}.", "",
              f"![samples]({sample_png.relative_to(workdir)})", ""]
    path = workdir / "report.md"
    path.write_text("\n".join(lines))
    return path


# --- main -----------------------------------------------------------------------------------------------------


def main(spec: str = "flux1-dev", workdir: str | Path = "demo-run") -> Path:
    """Compile, make raw data, run the whole DAG locally, sample and write WORKDIR/report.md; returns its path.
    SPEC is any TARGET (shipped name, file.py:ATTR, .yaml/.json); a file is found from the current directory."""
    from compiler.targets import absolute_target

    spec = absolute_target(spec)
    spec_obj = load_spec(spec)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bundle, raw, run_root = workdir / "bundle", workdir / "raw", workdir / "run"
    timings: dict[str, float] = {}

    started = time.perf_counter()
    compile_bundle(spec, bundle, spec_obj.name)
    timings["compile"] = time.perf_counter() - started

    started = time.perf_counter()
    if raw_present(raw, spec_obj):
        log(f"raw data present in {raw}, reused")
    else:
        log(f"writing synthetic raw shards into {raw}")
        from compiler.scale import scaled

        make_raw(raw, scaled(spec_obj, SCALE))  # the bundle's thresholds (smoke shortens clip durations)
    timings["raw data"] = time.perf_counter() - started

    started = time.perf_counter()
    skipped = run_pipeline(bundle, raw, run_root)
    timings["curation + training"] = time.perf_counter() - started

    started = time.perf_counter()
    last = stage_order(bundle)[-1]
    sample_png = run_root / "samples" / f"{last}.png"
    if sample_png.exists() and last in skipped:
        log(f"samples of {last} present, reused: {sample_png}")
    else:
        log(f"sampling from {last}")
        sample_png = sample(bundle, run_root, last)
    timings["sampling"] = time.perf_counter() - started

    graph = render_graph(bundle, workdir / "figures" / "graph.png")
    report = write_report(spec, bundle, run_root, workdir, graph, sample_png, timings, skipped)
    log(f"report: {report}")
    return report


if __name__ == "__main__":
    main(*sys.argv[1:3])
