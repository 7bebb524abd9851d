"""`genspec status`: where a run stands, read from the files it writes (JSON and YAML only: no torch, so the
command answers at once while training runs beside it).

A bundle says what the run will do; the run root holds what it did (templates/run_local.sh.j2, sbatch.sh.j2):

    BUNDLE/plan.json                    each stage's planned steps, global batch and step time
    BUNDLE/train/<stage>/stage.yaml     the stage's output_dir inside the run root
    BUNDLE/curation/<p>/pipeline.json   the pipeline's output dataset
    RUN_ROOT/curated/<output>/report.json             written when curation finished
    RUN_ROOT/<output_dir>/metrics.jsonl               one record per step (runtime/train/metrics.py)
    RUN_ROOT/<output_dir>/checkpoints/latest          the last complete checkpoint (runtime/train/checkpoint.py)
    RUN_ROOT/<output_dir>/final/done.json             written last, when the stage finished

locate() accepts a bundle (its run root is BUNDLE/run, run_local.sh's default), a demo workdir (WORKDIR/bundle
and WORKDIR/run) or its run root, a run root inside a bundle (BUNDLE/run), or any run root with the bundle named
beside it (a Slurm run on shared storage).

Time per step is measured: global batch / samples_per_s of the stage's last records (the training step alone,
without validation and checkpoint saves). The ETA of a stage not started yet is its planned time scaled by the
measured pace: plan.json's step time assumes an MFU that a given machine need not reach, but it does rank the
stages' costs; with nothing measured yet the plan's own step time stands.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

PACE_WINDOW = 20  # records the measured step time is the median of: recent, and past the first steps' warm-up


class NotARunError(ValueError):
    """A path that is neither a bundle, a demo workdir nor a run root with its bundle."""


@dataclass(frozen=True)
class Layout:
    """Where a run's bundle and run root are."""

    bundle: Path
    run_root: Path


@dataclass(frozen=True)
class StageStatus:
    """One training stage: state is "done" (final/done.json), "started" (step records) or "pending"."""

    stage: str
    state: str
    step: int
    steps: int
    checkpoint_step: int | None
    loss: float | None
    val_loss: float | None
    val_step: int | None
    step_seconds: float | None  # measured
    planned_step_seconds: float
    eta_seconds: float | None  # this stage's remaining steps; 0 when done
    eta_from: str  # "measured", "plan scaled by <stage>'s pace", "plan" or "done"
    updated: str | None  # when metrics.jsonl was last written (UTC, ISO 8601): a stalled run stops moving it
    output_dir: str
    warning: str | None = None


@dataclass(frozen=True)
class CurationStatus:
    """One curation pipeline: "done" (report.json), "started" (its output directory exists) or "pending"."""

    pipeline: str
    state: str
    output_dir: str


@dataclass(frozen=True)
class RunStatus:
    """A run: its curation pipelines, its training stages in order, and the time left for all of them."""

    bundle: str
    run_root: str
    spec: str
    cluster: str
    scale: str
    curation: list[CurationStatus]
    stages: list[StageStatus]
    eta_seconds: float | None

    @property
    def done(self) -> bool:
        return all(stage.state == "done" for stage in self.stages)

    def to_json(self) -> dict:
        return {**asdict(self), "done": self.done}


def locate(path: Path, bundle: Path | None = None) -> Layout:
    """The bundle and run root of PATH (see the module docstring); NotARunError names what was expected."""
    path = Path(path)
    if not path.is_dir():
        raise NotARunError(f"{path}: no such directory; expected a bundle, a demo workdir or a run root")
    if bundle is not None:
        if not (Path(bundle) / "plan.json").is_file():
            raise NotARunError(f"--bundle {bundle}: no plan.json there; name the directory `genspec compile` wrote")
        return Layout(Path(bundle), path)
    if (path / "plan.json").is_file():
        return Layout(path, path / "run")
    if (path / "bundle" / "plan.json").is_file():
        return Layout(path / "bundle", path / "run")
    if (path.parent / "plan.json").is_file():
        return Layout(path.parent, path)
    if (path.parent / "bundle" / "plan.json").is_file():
        return Layout(path.parent / "bundle", path)
    raise NotARunError(
        f"{path} is not a run: expected a bundle (with plan.json, written by `genspec compile`), a demo workdir "
        f"(with bundle/plan.json and run/), or a run root (checkpoints/, curated/) inside its bundle or demo "
        f"workdir; for a run root elsewhere, pass --bundle BUNDLE_DIR"
    )


def read_status(layout: Layout) -> RunStatus:
    """The status of every curation pipeline and training stage of the run."""
    plan = _read_json(layout.bundle / "plan.json")
    stage_files = _stage_files(layout.bundle)
    stages: list[StageStatus] = []
    for entry in plan["stages"]:
        if entry["stage"] not in stage_files:
            raise NotARunError(f"{layout.bundle}: plan.json plans stage {entry['stage']!r} but no "
                               f"train/*/stage.yaml names it; recompile the bundle")
        stages.append(_stage_status(layout.run_root, entry, *stage_files[entry["stage"]]))
    stages = _with_planned_etas(stages)
    remaining = [stage.eta_seconds for stage in stages]
    return RunStatus(
        bundle=str(layout.bundle), run_root=str(layout.run_root), spec=plan["spec"], cluster=plan["cluster"],
        scale=plan["scale"], curation=_curation(layout), stages=stages,
        eta_seconds=None if None in remaining else sum(remaining),
    )


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise NotARunError(f"{path}: not JSON ({error}); recompile the bundle") from None


def _stage_files(bundle: Path) -> dict[str, tuple[str, Path]]:
    """Stage name -> (output_dir, stage.yaml path) for every train/*/stage.yaml of the bundle."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe")
    found = {}
    for path in sorted(bundle.glob("train/*/stage.yaml")):
        document = yaml.load(path.read_text())
        found[document["stage"]["name"]] = (document["output_dir"], path)
    return found


def _records(metrics: Path) -> list[dict]:
    """metrics.jsonl's records; a line cut short by a write in progress is left out."""
    if not metrics.is_file():
        return []
    records = []
    for line in metrics.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _stage_status(run_root: Path, entry: dict, output_dir: str, stage_yaml: Path) -> StageStatus:
    directory = run_root / output_dir
    records = _records(directory / "metrics.jsonl")
    trained = [r for r in records if "loss" in r]
    validated = [r for r in records if "val_loss" in r]
    done = _done(directory)
    steps, planned = int(entry["steps"]), float(entry["step_seconds"])
    step = int(done["steps"]) if done else (trained[-1]["step"] if trained else 0)
    paces = [entry["global_batch"] / r["samples_per_s"] for r in trained[-PACE_WINDOW:] if r.get("samples_per_s")]
    measured = statistics.median(paces) if paces else None
    state = "done" if done else "started" if trained or directory.is_dir() else "pending"
    warning = None
    if done and done.get("stage_sha256") != hashlib.sha256(stage_yaml.read_bytes()).hexdigest():
        warning = (f"{directory / 'final'} was trained from another stage.yaml than {stage_yaml}; the trainer "
                   f"refuses it: delete {directory} to train this stage again")
    return StageStatus(
        stage=entry["stage"], state=state, step=step, steps=steps, checkpoint_step=_latest_checkpoint(directory),
        loss=trained[-1]["loss"] if trained else None,
        val_loss=validated[-1]["val_loss"] if validated else None,
        val_step=validated[-1]["step"] if validated else None,
        step_seconds=measured, planned_step_seconds=planned,
        eta_seconds=0.0 if done else None if measured is None else (steps - step) * measured,
        eta_from="done" if done else "measured" if measured is not None else "plan",
        updated=_modified(directory / "metrics.jsonl"), output_dir=str(directory), warning=warning,
    )


def _with_planned_etas(stages: list[StageStatus]) -> list[StageStatus]:
    """Fill in the ETA of stages with no measured pace: the plan's time, scaled by the measured/planned ratio of
    the last stage measured before them (or the first one measured at all), else the plan's time as it is."""
    measured = [i for i, s in enumerate(stages) if s.step_seconds is not None and s.planned_step_seconds > 0]
    filled = []
    for index, stage in enumerate(stages):
        if stage.eta_seconds is not None:
            filled.append(stage)
            continue
        before = [i for i in measured if i < index]
        reference = stages[before[-1]] if before else stages[measured[0]] if measured else None
        planned = (stage.steps - stage.step) * stage.planned_step_seconds
        if reference is None:
            filled.append(replace(stage, eta_seconds=planned, eta_from="plan"))
        else:
            ratio = reference.step_seconds / reference.planned_step_seconds
            filled.append(replace(stage, eta_seconds=planned * ratio,
                                  eta_from=f"plan scaled by {reference.stage}'s pace"))
    return filled


def _done(directory: Path) -> dict | None:
    path = directory / "final" / "done.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:  # being renamed into place cannot leave this, but a hand-edited file can
        return None


def _modified(path: Path) -> str | None:
    if not path.is_file():
        return None
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def _latest_checkpoint(directory: Path) -> int | None:
    pointer = directory / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    text = pointer.read_text().strip().removeprefix("step")
    return int(text) if text.isdigit() else None


def _curation(layout: Layout) -> list[CurationStatus]:
    rows = []
    for path in sorted(layout.bundle.glob("curation/*/pipeline.json")):
        pipeline = _read_json(path)["pipeline"]
        output = layout.run_root / "curated" / pipeline["output"]
        state = "done" if (output / "report.json").is_file() else "started" if output.is_dir() else "pending"
        rows.append(CurationStatus(pipeline=pipeline["name"], state=state, output_dir=str(output)))
    return rows


def duration(seconds: float | None) -> str:
    """A duration for people: 45s, 12m 05s, 3h 20m, 2d 4h; "?" when unknown."""
    if seconds is None:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def format_text(status: RunStatus, now: datetime | None = None) -> str:
    """The status as lines for a terminal; `now` (default: the clock) dates the last metrics record."""
    now = now or datetime.now(timezone.utc)
    verdict = "finished" if status.done else f"training ETA {duration(status.eta_seconds)}"
    lines = [f"{status.spec} on {status.cluster} ({status.scale}): {verdict}",
             f"  bundle {status.bundle}", f"  run root {status.run_root}"]
    for row in status.curation:
        lines.append(f"curation {row.pipeline}: {row.state}")
    for stage in status.stages:
        parts = [f"step {stage.step}/{stage.steps}"]
        if stage.loss is not None:
            parts.append(f"loss {stage.loss:.4g}")
        if stage.val_loss is not None:
            parts.append(f"val_loss {stage.val_loss:.4g} (step {stage.val_step})")
        if stage.step_seconds is not None:
            parts.append(f"{stage.step_seconds:.3g} s/step")
        if stage.state != "done":
            parts.append(f"ETA {duration(stage.eta_seconds)} ({stage.eta_from})")
            if stage.updated is not None:
                ago = (now - datetime.fromisoformat(stage.updated)).total_seconds()
                parts.append(f"last record {duration(max(ago, 0))} ago")
        lines.append(f"stage {stage.stage}: {stage.state}, " + ", ".join(parts))
        if stage.warning:
            lines.append(f"  warning: {stage.warning}")
    return "\n".join(lines) + "\n"
