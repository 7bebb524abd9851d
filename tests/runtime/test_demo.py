"""The end-to-end demo (runtime/demo.py) for every shipped spec at smoke scale: compile for local-cpu,
curate synthetic raw data of the spec's modalities, train every stage through DeepSpeed, sample, report.
The default spec (flux1-dev, what `make demo` runs) gets the learning run (fitted smoke VAE and pooled text
encoder, more steps): its final samples must be dominated by the background colours their prompts name (at
least 3 of 4), and a rerun must resume instead of starting over. The other specs run with --quick (3 steps
per stage), which proves every step runs.

The demos run as `genspec demo` processes, two at a time: much of a demo is one core importing torch and
DeepSpeed in a new process per stage, or the DeepSpeed launcher polling once a second, so one after the
other they left the second core idle for about 15 minutes of the suite.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime import demo
from specs import SHIPPED

PNG = b"\x89PNG\r\n\x1a\n"
CONCURRENT_DEMOS = 2  # this machine's cores; each demo's processes get one OpenMP thread
DEMO_TIMEOUT_S = 900  # one quick demo took 45-105 s alone
LEARNING_SPEC = "flux1-dev"


def selected_specs(session: pytest.Session) -> list[str]:
    """The specs whose end-to-end test this session runs (all 15, or those a -k picked)."""
    return [
        item.callspec.params["spec"]
        for item in session.items
        if getattr(item, "originalname", None) == "test_every_spec_runs_end_to_end_at_smoke_scale"
    ]


@dataclass
class DemoRun:
    """One `genspec demo` process: its workdir, exit code (None: killed at DEMO_TIMEOUT_S) and output."""

    workdir: Path
    returncode: int | None
    stdout: str
    stderr: str


def run_demo(spec: str, workdir: Path) -> DemoRun:
    """`genspec demo --spec SPEC --workdir WORKDIR` in its own session, killed whole (launcher and trainer
    processes included) if it outlives DEMO_TIMEOUT_S."""
    command = [str(Path(sys.executable).parent / "genspec"), "demo", "--spec", spec, "--workdir", str(workdir)]
    if spec != LEARNING_SPEC:
        command.append("--quick")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=DEMO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            return DemoRun(workdir, None, stdout, stderr)
    return DemoRun(workdir, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def demo_runs(request, tmp_path_factory) -> dict[str, DemoRun]:
    """Run `genspec demo` for every selected spec, CONCURRENT_DEMOS at a time."""
    root = tmp_path_factory.mktemp("demos")
    specs = selected_specs(request.session)
    with ThreadPoolExecutor(CONCURRENT_DEMOS) as pool:
        runs = pool.map(lambda spec: run_demo(spec, root / spec / "demo"), specs)
        return dict(zip(specs, runs))


def check_report(workdir, spec: str) -> list[str]:
    """Assert the report shows the graph, a funnel per curated dataset, a loss curve per stage and samples;
    returns the training stages."""
    text = (workdir / "report.md").read_text()
    assert text.startswith(f"# genspec demo: {spec} ")
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    for picture in pictures:
        assert (workdir / picture).read_bytes()[:8] == PNG, picture
    assert any(p.endswith("graph.png") for p in pictures)
    bundle, run_root = workdir / "bundle", workdir / "run"
    reports = sorted((run_root / "curated").glob("*/report.json"))
    assert reports, "no curation report"
    for path in reports:
        funnel = json.loads(path.read_text())
        assert funnel["samples_read"] > 0 and funnel["kept"] > 0, path
        assert f"### {path.parent.name} (pipeline" in text
    assert any("/curated/" in p and "/report/" in p for p in pictures), "no curation histogram"
    stages = demo.stage_order(bundle)
    assert stages
    for stage in stages:
        output = run_root / demo.stage_output(bundle, stage)
        records = demo.read_metrics(output / "metrics.jsonl")
        assert any(r.get("loss") is not None for r in records), stage
        assert (output / "final" / "done.json").is_file(), stage
        assert f"figures/loss_{stage}.png" in pictures
        check_tensorboard(output, stage)
    assert any(p.startswith("run/samples/") for p in pictures)
    return stages


# What a person watching a run reads in TensorBoard (runtime/train/metrics.py), for every stage of every demo.
TENSORBOARD_SCALARS = {"loss", "lr", "grad_norm", "samples_per_s", "tokens_per_s", "mfu", "peak_memory_gib", "val_loss"}


def check_tensorboard(output: Path, stage: str) -> None:
    """The stage left TensorBoard event files with the training scalars, a loss per dataset and a validation
    loss per timestep."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from runtime.train.metrics import TENSORBOARD

    assert list((output / TENSORBOARD).glob("events.out.tfevents.*")), f"{stage}: no TensorBoard event files"
    events = EventAccumulator(str(output / TENSORBOARD))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert TENSORBOARD_SCALARS <= tags, (stage, TENSORBOARD_SCALARS - tags)
    assert any(tag.startswith("loss/") for tag in tags), (stage, tags)
    assert any(tag.startswith("val_loss/") for tag in tags), (stage, tags)
    assert any(tag.startswith("val_loss_t/") for tag in tags), (stage, tags)
    mfu = [event.value for event in events.Scalars("mfu")]
    assert mfu and all(value > 0 for value in mfu), (stage, mfu)


@pytest.mark.slow
@pytest.mark.parametrize("spec", list(SHIPPED))
def test_every_spec_runs_end_to_end_at_smoke_scale(spec, demo_runs, capsys):
    result = demo_runs[spec]
    workdir = result.workdir
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode is not None, f"killed after {DEMO_TIMEOUT_S} s\n{output}"
    assert result.returncode == 0, output
    assert f"report: {workdir / 'report.md'}" in result.stdout
    stages = check_report(workdir, spec)
    if spec != LEARNING_SPEC:
        return

    run_root, bundle = workdir / "run", workdir / "bundle"
    for stage in stages:  # the learning run samples every stage
        assert (run_root / "samples" / f"{stage}.png").read_bytes()[:8] == PNG, stage

    finals = {stage: (run_root / demo.stage_output(bundle, stage) / "final" / "model.safetensors").stat().st_mtime_ns
              for stage in stages}
    demo.main(spec, workdir)
    out = capsys.readouterr().out
    assert "reusing bundle" in out and "raw data present" in out
    for stage in stages:
        assert f"stage {stage}: already trained" in out
        final = run_root / demo.stage_output(bundle, stage) / "final" / "model.safetensors"
        assert final.stat().st_mtime_ns == finals[stage], stage

    # Last, after the resume checks: the final samples follow their prompts' colours.
    matches = demo.colour_matches(run_root / "samples" / f"{stages[-1]}.png")
    assert len(matches) == len(demo.PROMPTS) == 4
    assert all(named is not None for _, named, _ in matches), matches
    hits = [(prompt, named, found) for prompt, named, found in matches if named == found]
    assert len(hits) >= 3, f"dominant colours {matches}"


@pytest.mark.parametrize("seed", range(6))
def test_dominant_colour_is_a_synthetic_pictures_background(seed):
    """The colour check the learning run is judged by reads a synthetic picture's background colour, which
    its caption names (the checker itself, on pictures drawn by runtime.synthetic_data)."""
    import numpy as np

    from runtime.synthetic_data import random_scene, render

    scene = random_scene(np.random.default_rng(seed))
    caption = scene.caption()
    assert demo.prompt_background(caption) == scene.background
    assert demo.dominant_colour(np.asarray(render(scene, 64, 64))) == scene.background, caption


def test_every_demo_prompt_names_a_background_of_the_synthetic_data():
    from runtime.synthetic_data import BACKGROUNDS

    assert [demo.prompt_background(prompt) in BACKGROUNDS for prompt in demo.PROMPTS] == [True] * 4
