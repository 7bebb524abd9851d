"""`genspec status` on runs laid out as the trainer and curation lay them out: a real smoke bundle of flux1-dev
(`genspec compile`), metrics.jsonl records in runtime/train's format, checkpoints/latest, final/done.json and
curation's report.json."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compiler.cli import app

runner = CliRunner()
STAGES = ("pretrain", "highres_finetune", "timestep_shifting", "guidance_distillation")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    bundle = tmp_path_factory.mktemp("compiled") / "bundle"
    result = runner.invoke(app, ["compile", "flux1-dev", "--cluster", "local-cpu", "--scale", "smoke",
                                 "-o", str(bundle), "--set", "schedule.stages[pretrain].steps=10"])
    assert result.exit_code == 0, result.output
    return bundle


def plan_of(bundle: Path, stage: str) -> dict:
    return next(s for s in json.loads((bundle / "plan.json").read_text())["stages"] if s["stage"] == stage)


def train(run_root: Path, bundle: Path, stage: str, steps: int, seconds: float, finish: bool) -> Path:
    """Write what runtime/train writes for `steps` steps of `stage`, each taking `seconds`: the step-0
    validation, one record per step (val_loss every validation_every steps), a checkpoint and, when `finish`,
    final/done.json with the stage.yaml's sha256."""
    entry = plan_of(bundle, stage)
    output = run_root / "checkpoints" / stage
    output.mkdir(parents=True)
    every = entry["cadence"]["validation_every"]
    records = [{"step": 0, "val_loss": 2.0}]
    for step in range(1, steps + 1):
        record = {"step": step, "loss": 1.0 / step, "lr": 1e-4, "samples_per_s": entry["global_batch"] / seconds}
        if step % every == 0:
            record["val_loss"] = 1.5 / step
        records.append(record)
    (output / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (output / "checkpoints").mkdir()
    (output / "checkpoints" / "latest").write_text(f"step{steps:08d}")
    if finish:
        digest = hashlib.sha256((bundle / "train" / stage / "stage.yaml").read_bytes()).hexdigest()
        (output / "final").mkdir()
        (output / "final" / "done.json").write_text(json.dumps(
            {"stage": stage, "steps": entry["steps"], "stage_sha256": digest}, indent=2, sort_keys=True))
    return output


def curated(run_root: Path) -> None:
    (run_root / "curated" / "flux_training_set").mkdir(parents=True)
    (run_root / "curated" / "flux_training_set" / "report.json").write_text("{}")


def status_json(*args: str) -> dict:
    result = runner.invoke(app, ["status", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def finished(compiled, tmp_path) -> Path:
    """A demo workdir whose run finished every stage."""
    workdir = tmp_path / "demo-run"
    shutil.copytree(compiled, workdir / "bundle")
    curated(workdir / "run")
    for stage in STAGES:
        train(workdir / "run", workdir / "bundle", stage, plan_of(compiled, stage)["steps"], 0.5, finish=True)
    return workdir


@pytest.fixture
def half(compiled, tmp_path) -> Path:
    """A bundle whose run (BUNDLE/run, run_local.sh's default) finished pretrain and is at step 1 of 3 of
    highres_finetune, at 2 s a step."""
    bundle = tmp_path / "bundle"
    shutil.copytree(compiled, bundle)
    curated(bundle / "run")
    train(bundle / "run", bundle, "pretrain", 10, 0.5, finish=True)
    train(bundle / "run", bundle, "highres_finetune", 1, 2.0, finish=False)
    return bundle


def test_a_finished_run_is_done_at_every_stages_last_step(finished):
    status = status_json(str(finished))
    assert status["done"] is True and status["eta_seconds"] == 0
    assert [s["stage"] for s in status["stages"]] == list(STAGES)
    assert [(s["state"], s["step"], s["steps"]) for s in status["stages"]] == [
        ("done", 10, 10), ("done", 3, 3), ("done", 3, 3), ("done", 3, 3)]
    pretrain = status["stages"][0]
    assert pretrain["loss"] == pytest.approx(1 / 10) and pretrain["checkpoint_step"] == 10
    every = plan_of(finished / "bundle", "pretrain")["cadence"]["validation_every"]
    assert pretrain["val_step"] == 10 // every * every and pretrain["val_loss"] == pytest.approx(1.5 / pretrain["val_step"])
    assert pretrain["step_seconds"] == pytest.approx(0.5) and pretrain["warning"] is None
    assert [c["state"] for c in status["curation"]] == ["done"]


def test_a_half_finished_run_shows_step_of_total_last_losses_and_eta(half, compiled):
    status = status_json(str(half))
    assert status["done"] is False and status["run_root"] == str(half / "run")
    pretrain, highres, shifting, distillation = status["stages"]
    assert (pretrain["state"], pretrain["step"], pretrain["eta_seconds"]) == ("done", 10, 0)
    assert (highres["state"], highres["step"], highres["steps"]) == ("started", 1, 3)
    assert highres["loss"] == pytest.approx(1.0) and highres["val_loss"] == pytest.approx(2.0)
    assert highres["val_step"] == 0  # only the validation before training so far
    assert highres["step_seconds"] == pytest.approx(2.0)
    assert highres["eta_seconds"] == pytest.approx(2 * 2.0) and highres["eta_from"] == "measured"
    # Stages not started: their planned time, scaled by how much slower highres_finetune runs than planned.
    ratio = 2.0 / plan_of(compiled, "highres_finetune")["step_seconds"]
    for stage in (shifting, distillation):
        assert stage["state"] == "pending" and stage["step"] == 0 and stage["loss"] is None
        assert stage["eta_from"] == "plan scaled by highres_finetune's pace"
        assert stage["eta_seconds"] == pytest.approx(3 * plan_of(compiled, stage["stage"])["step_seconds"] * ratio)
    assert status["eta_seconds"] == pytest.approx(sum(s["eta_seconds"] for s in status["stages"]))


def test_text_output_names_each_stage_with_its_step_losses_and_eta(half):
    result = runner.invoke(app, ["status", str(half)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("flux1-dev on local-cpu (smoke): training ETA ")
    assert "stage pretrain: done, step 10/10, loss 0.1, val_loss 0.15 (step 10), 0.5 s/step" in lines
    assert any(line.startswith("stage highres_finetune: started, step 1/3, loss 1, val_loss 2 (step 0), 2 s/step, "
                               "ETA 4s (measured), last record ") for line in lines)
    assert "curation flux: done" in lines


def test_every_way_to_name_a_run_finds_the_same_one(half, tmp_path):
    by_bundle = status_json(str(half))
    assert status_json(str(half / "run")) == by_bundle
    elsewhere = tmp_path / "shared" / "run"  # a Slurm run root on shared storage
    shutil.copytree(half / "run", elsewhere)
    moved = status_json(str(elsewhere), "--bundle", str(half))
    assert [s["step"] for s in moved["stages"]] == [s["step"] for s in by_bundle["stages"]]


def test_demo_run_root_finds_its_bundle(finished):
    assert status_json(str(finished / "run"))["done"] is True


def test_a_run_before_any_step_uses_the_plan(compiled):
    status = status_json(str(compiled))  # no run/ yet
    assert {s["state"] for s in status["stages"]} == {"pending"}
    assert {s["eta_from"] for s in status["stages"]} == {"plan"}
    assert status["eta_seconds"] == pytest.approx(sum(s["steps"] * s["step_seconds"]
                                                      for s in json.loads((compiled / "plan.json").read_text())["stages"]))


def test_a_stage_finished_from_another_stage_yaml_is_flagged(finished):
    done = finished / "run" / "checkpoints" / "pretrain" / "final" / "done.json"
    done.write_text(json.dumps({**json.loads(done.read_text()), "stage_sha256": "0" * 64}))
    warning = status_json(str(finished))["stages"][0]["warning"]
    assert "another stage.yaml" in warning and "delete" in warning


def test_a_record_cut_short_by_a_write_in_progress_is_skipped(half):
    metrics = half / "run" / "checkpoints" / "highres_finetune" / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 2, "lo')
    assert status_json(str(half))["stages"][1]["step"] == 1


def test_a_directory_that_is_not_a_run_is_refused_with_what_was_expected(tmp_path):
    result = runner.invoke(app, ["status", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path} is not a run" in result.output and "plan.json" in result.output
    assert "--bundle" in result.output
    missing = runner.invoke(app, ["status", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such directory" in missing.output
    wrong_bundle = runner.invoke(app, ["status", str(tmp_path), "--bundle", str(tmp_path)])
    assert wrong_bundle.exit_code == 2 and "--bundle" in wrong_bundle.output and "no plan.json" in wrong_bundle.output


def test_status_imports_no_torch(half):
    probe = (f"import sys\nfrom compiler.cli import app\ntry:\n    app(['status', {str(half)!r}])\n"
             "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'deepspeed', 'runtime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_a_stalled_stage_shows_how_long_ago_its_last_record_was(half):
    metrics = half / "run" / "checkpoints" / "highres_finetune" / "metrics.jsonl"
    os.utime(metrics, (metrics.stat().st_atime, metrics.stat().st_mtime - 3 * 3600))
    assert status_json(str(half))["stages"][1]["updated"].endswith("+00:00")
    lines = runner.invoke(app, ["status", str(half)]).stdout.splitlines()
    highres = next(line for line in lines if line.startswith("stage highres_finetune:"))
    assert highres.endswith("last record 3h 00m ago")
