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
  4. sample from every stage's final checkpoint (python -m runtime.samplers) into WORKDIR/run/samples/;
  5. write WORKDIR/report.md with the stage graph (graph.dot rendered by Graphviz), the curation funnel
     (report.json and its histograms), a loss curve per stage (metrics.jsonl) and each stage's samples beside
     their prompts, with whether each sample's dominant colour is its prompt's background colour.

Learning run (the default for specs whose latent space is a 2D KL VAE, e.g. flux1-dev; `quick=True` or a
video / pixel space gives the plain smoke run, which only proves every step runs): plain smoke scale trains
3 steps of batch 2 through a randomly initialised VAE, so its samples are noise. The learning run changes
what it needs for its samples to follow their prompts, each said in the report and the bundle:
- the smoke VAE is fitted to the synthetic data (runtime/smoke_vae.py) and the text encoders with a pooled
  output (CLIP's stand-in) to the synthetic captions (runtime/smoke_text.py) before curation, written to
  WORKDIR/models and found there through GENSPEC_MODEL_DIR (by curation's precompute, the trainer, the sampler);
- the bundle is compiled with `--set` overrides (learn_overrides: steps, batch size and learning rate per
  stage, text encoders' max_tokens long enough for a whole caption, a backbone LEARN_WIDTH wide, a resolution
  shift's base scaled like the smoke resolutions), which the bundle records as overrides (assumptions.md);
- more raw samples (LEARN_RAW) and more sampling steps (LEARN_SAMPLE_STEPS); stages of a model that embeds a
  guidance scale are sampled at guidance 1 with true classifier-free guidance at the spec's embedded value
  until it is guidance-distilled, the distilled stage as the spec says (sampling_guidance); each stage's
  sidecar json and the report say which;
- the recaptioner's random stand-in writes LEARN_CAPTION_TOKENS tokens, not the spec's 512 (training reads the
  original captions);
- one thread (OMP_NUM_THREADS=1) for the fits, curation and training, so `make demo` and the test suite compute
  the same sums and get the same samples.
The token encoders (T5's stand-in) stay random: byte-level, so their outputs differ by prompt word.

Findings (in-process experiments at smoke widths, flux1-dev, 64 synthetic pictures) behind the settings:
- the smoke VAE fit at Adam 1e-2 kept the background colour of 19 of 64 held-out pictures through
  encode/decode (MSE 0.19); at 3e-3 and 400 steps, 41-49 of 64 (MSE 0.11-0.15), and the fit a demo used
  decoded every blue and green background teal and every red and yellow one orange (65 of 128 kept): no
  backbone could then draw a blue background. 800 steps keep 63-64 of 64 (MSE 0.05-0.06, 40 s on one core);
  600 steps, batch 8, a cosine decay, 16-px crops or an extra loss on 8x8-pooled colours did worse (31-53).
- the background colour explains 70% of the latents' variance, so a model that reads its prompt has much to
  gain at high noise; but FLUX's resolution shift keeps its full-scale base (65536 px) at smoke scale, so
  training at 64 px used shift 0.25 and almost never drew t > 0.8, where a sample's colours are decided;
- the 32-wide smoke backbone cannot carry a 16-channel latent's 2x2 patches (64 numbers per token): its loss
  stalls near 0.75; 64 wide reaches 0.3;
- with a one-hot background colour in place of the pooled text vector, the 64-wide model learns the colours
  within 300 steps (loss at t = 0.95: 0.30 with its own prompts, 0.97 with shuffled ones); with the random
  smoke text encoders' outputs it barely does (0.57 against 0.63 after 400 steps), although a linear probe
  reads the background colour from their outputs (T5 token mean 90%, CLIP pooled 71%): the random byte-level
  encoders were the bottleneck; with CLIP's stand-in fitted to the captions (runtime/smoke_text.py) it is
  0.26 against 1.08 after 250 steps.
- models that embed a guidance scale (FLUX.1 dev) are trained with guidance 1 until guidance distillation,
  so those stages are sampled at guidance 1, the distilled one at the spec's value. Without classifier-free
  guidance the undistilled stages drift to the data's mean colour (blue and green prompts came out teal): in
  a run of 800 pretraining steps and 250 per later stage, over 8 seeds x 4 prompts, the pretrained model kept
  22 of 32 background colours without CFG and 28 with true CFG 3.5 (4 seeds: 14 of 16 at CFG 2, 3.5 and 5),
  the timestep-shifting stage 10 of 16 (4 seeds) without and 32 of 32 with CFG 3.5. The stages train with
  cfg_dropout (joint rate 0.1), so the unconditional branch is a trained one.
- the guidance-distilled student at 100 steps (Adam 2e-3) followed its guidance input badly: 8 of 16 at
  guidance 3.5 where its teacher under true CFG 3.5 kept 16; at 200 steps 15 of 16; at 100 steps of 5e-4,
  12 of 16, nearly the same at every guidance (it had not learned what the input means). From a one-thread
  teacher, over 16 seeds per prompt (blue, green, purple, orange): 200 steps 13, 16, 0, 16; 300 steps 16, 16,
  4, 16.
- later stages at a lower rate (150 steps at 5e-4 or 1e-3) kept fewer colours (21-24 of 32) than 250 steps at
  2e-3 (32); 500 pretraining steps fewer than 800 (24 and 28 of 32 with CFG); 8, 16 and 32 sampling steps the
  same.
- runs repeat: the trainer gives bit-identical weights for every stage from the same inputs and thread count,
  and curation keeps the same samples in the same order; the fits (in this process) did not repeat across
  thread counts (held-out VAE MSE 0.065 with two threads, 0.057 with one), which changed every later number.
  With one thread throughout, a `genspec demo` run, the test suite's run and a third run gave bit-identical
  weights for all four stages and identical sample PNGs (with 200 distillation steps: 3 of 4 colours at
  every stage).
- time (2 cores, shared): the whole run took 4 min 10 s at load 1-2 (fits 44 s, curation and training 200 s
  of which pretraining 52 s, sampling 2 s in this process where four sampler processes took 20-35 s), with
  200 distillation steps 4 min 20 s at load 3.9 falling to 1.3 and 9 min 47 s at load 5. The recaptioner's
  stand-in at 512 tokens took 76 s of curation's worker time.
- still weak: "a white triangle on a purple background". The model draws the white shape as a large soft
  blob whose edge blends white and purple into pink, the palette colour most of those pixels are nearest
  to, so that prompt's dominant colour flips between purple and pink with small numerical differences: the
  undistilled stages keep it in 0-1 of 16 seeds (one thread; 8 of 8 in a two-thread run), the final stage in
  4 of 16 (seed 0, the report's, among them) while keeping blue, green and orange in 16 of 16 each.
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
# In the synthetic data's vocabulary (runtime/synthetic_data.py COLOURS, BACKGROUNDS, SHAPES), so a model
# trained on it can follow them.
PROMPTS = ("a red circle on a blue background", "a yellow square on a green background",
           "a white triangle on a purple background", "a blue star on an orange background")
# The learning run (module docstring). What each value fixes was measured in-process at smoke widths (the
# module docstring's findings).
LEARN_FIRST_STEPS = 800  # the first stage (pretrain, 32 px: 4 image tokens, cheap) learns the colours
LEARN_STEPS = 250  # each later stage refines at its own resolution
# Per stage that distils a teacher: the student starts from its teacher but must learn what its guidance input
# means (never trained before); at 100 steps its samples at guidance 3.5 kept 8 of 16 background colours where
# its teacher under true CFG 3.5 kept 16; at 200, 45 of 64 (blue 13 of 16); at 300, 52 of 64 (blue 16 of 16).
LEARN_TEACHER_STEPS = 300
LEARN_BATCH = 16
LEARN_LR = 2e-3  # the spec's 1e-4 (1e-5 for a student) is for billions of parameters and samples
# Smoke scale's 32-wide backbone cannot pass a 16-channel latent's 2x2 patch (64 numbers per token) through
# its 32-wide residual stream: its velocity loss stalls near 0.75 whatever it is taught; 64 wide reaches 0.3.
LEARN_WIDTH = 64
# Byte-level tokens (the smoke stand-ins' ByT5 tokenizer): the longest synthetic caption, two shapes and a
# background, is under 64 bytes. Smoke scale's 16 cut "a red circle on a blue background" after "on ", so no
# encoder ever saw the background colour, the colour covering most of a picture.
LEARN_TEXT_TOKENS = 64
LEARN_RAW = 96  # raw samples per source (plain smoke: 48); about 60% survive curation
# runtime/smoke_vae.py at 400 steps decoded every blue and green background teal (0 of 37 kept); 800 steps keep
# 63-64 of 64 held-out backgrounds, 600 steps (or batch 8) 48-53.
LEARN_VAE_STEPS = 800
LEARN_TEXT_FIT_STEPS = 150  # runtime/smoke_text.py: the pooled encoder names the background 99% of the time
LEARN_SAMPLE_STEPS = 16  # 8, 16 and 32 Euler steps gave the same colours
# A recaptioner's stand-in (random weights at smoke scale) writes meaningless text that training never reads (the
# original caption wins: runtime/train/media.py); at the spec's 512 new tokens it took most of curation's time.
LEARN_CAPTION_TOKENS = 16
MODEL_DIR_VARIABLE = "GENSPEC_MODEL_DIR"  # compiler/schema/model_dir.py


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


def compile_bundle(spec: str, bundle: Path, name: str | None = None, overrides: list[str] | None = None) -> None:
    """Compile TARGET `spec` (absolute, as runs start in the project root) with the `--set` OVERRIDES into
    `bundle`, unless the bundle there is of the same spec (named `name`, by default `spec`) and the same content."""
    sets = [word for override in overrides or [] for word in ("--set", override)]
    if bundle_matches(bundle, name or spec):
        # The manifest matches; still recompile into a scratch dir only if the spec itself changed.
        fresh = bundle.parent / ".bundle-check"
        shutil.rmtree(fresh, ignore_errors=True)
        run([*genspec_command(), "compile", spec, "--cluster", CLUSTER, "--scale", SCALE, *sets, "-o", str(fresh)],
            quiet=True)
        same = json.loads((fresh / "manifest.json").read_text()).get("spec_sha256") == json.loads(
            (bundle / "manifest.json").read_text()).get("spec_sha256")
        shutil.rmtree(fresh, ignore_errors=True)
        if same:
            log(f"reusing bundle {bundle} (manifest matches)")
            return
    log(f"compiling {spec} --cluster {CLUSTER} --scale {SCALE}{''.join(' --set ' + o for o in overrides or [])} -> {bundle}")
    run([*genspec_command(), "compile", spec, "--cluster", CLUSTER, "--scale", SCALE, *sets, "-o", str(bundle),
         "--force"])


def learns(spec_obj) -> bool:
    """Whether SPEC_OBJ gets the learning run: its latent space is one the demo can fit a smoke VAE for."""
    from runtime.smoke_vae import fittable

    return fittable(spec_obj.architecture.space)


def sampling_guidance(smoke_spec, stage: str) -> tuple[float | None, float | None]:
    """(embedded guidance, true CFG weight) to sample STAGE with; None: the spec's value.

    A model that embeds a guidance scale (FLUX.1 dev) is fed guidance 1 by the trainer until it is
    guidance-distilled, so its earlier stages are sampled at guidance 1 with true classifier-free guidance at
    the spec's embedded value (3.5), the guidance its distilled student stands in for (its teacher's CFG
    targets span the distillation's guidance_range): without it a conditional flow model's samples drift to
    the mean colour (teal). The distilled stage is sampled as the spec says (embedded guidance, one pass).
    Other models: the spec's sampling as is."""
    if not getattr(smoke_spec.architecture.backbone, "guidance_embed", False):
        return None, None
    named = {s.name: s for s in smoke_spec.schedule.stages}[stage]
    if getattr(named.loss, "kind", None) == "guidance_distillation":
        return None, None
    return 1.0, smoke_spec.inference.guidance_embedded


def learn_overrides(spec_obj, smoke_spec) -> list[str]:
    """The `--set` overrides of the learning run for SPEC_OBJ, whose smoke-scale version is SMOKE_SPEC."""
    overrides = []
    for number, stage in enumerate(smoke_spec.schedule.stages):
        base = f"schedule.stages[{stage.name}]"
        steps = LEARN_TEACHER_STEPS if stage.teacher else LEARN_FIRST_STEPS if number == 0 else LEARN_STEPS
        overrides += [f"{base}.steps={steps}", f"{base}.batch_size={LEARN_BATCH}", f"{base}.optimizer.lr={LEARN_LR}"]
    for encoder in smoke_spec.architecture.text_encoders:
        overrides.append(f"architecture.text_encoders[{encoder.name}].max_tokens={LEARN_TEXT_TOKENS}")
    for pipeline in smoke_spec.data.pipelines:
        overrides += [f"data.pipelines[{pipeline.name}].ops[{op.name}].max_new_tokens={LEARN_CAPTION_TOKENS}"
                      for op in pipeline.ops if op.kind == "recaption"]
    backbone = smoke_spec.architecture.backbone
    if getattr(backbone, "hidden_size", None) and getattr(backbone, "head_dim", None):
        overrides += [f"architecture.backbone.hidden_size={LEARN_WIDTH}",
                      f"architecture.backbone.num_heads={LEARN_WIDTH // backbone.head_dim}"]
    shift = smoke_spec.objective.shift
    if getattr(shift, "kind", None) == "resolution" and shift.base_pixels:
        # A resolution shift sqrt(pixels / base_pixels) keeps its full-scale base at smoke scale, so FLUX's
        # shift 4 at 1024 px becomes 0.25 at 64 px: training then almost never sees t > 0.8, where a sample's
        # colours are decided. Scaling the base like the largest resolution gives the full-scale shifts.
        full, smoke = (max(r.height * r.width for s in spec.schedule.stages for r in s.resolutions)
                       for spec in (spec_obj, smoke_spec))
        overrides.append(f"objective.shift.base_pixels={max(1, round(shift.base_pixels * smoke / full))}")
    return overrides


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


def run_pipeline(bundle: Path, raw: Path, run_root: Path, env: dict | None = None) -> list[str]:
    """Run run_local.sh. Finished curation and training stages return at once (the runtime checks its own
    outputs), so a rerun resumes. Returns the training stages that had finished before this run."""
    skipped = [stage for stage in stage_order(bundle) if stage_done(bundle, run_root, stage)]
    if skipped:
        log(f"resuming: {', '.join(skipped)} already trained")
    run(["bash", str(bundle / "run_local.sh"), "--raw", str(raw.resolve()), "--run-root", str(run_root.resolve())],
        env=env)
    return skipped


def sample(bundle: Path, run_root: Path, stage: str, steps: int | None = None, env: dict | None = None,
           guidance: float | None = None) -> Path:
    out = run_root / "samples" / f"{stage}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "runtime.samplers", "--stage", str((bundle / "train" / stage / "stage.yaml").resolve()),
               "--run-root", str(run_root.resolve()), "--prompts", *PROMPTS, "--out", str(out.resolve())]
    if steps is not None:
        command += ["--steps", str(steps)]
    if guidance is not None:
        command += ["--cfg", str(guidance)]
    run(command, env=env)
    return out


def sample_here(bundle: Path, run_root: Path, stage: str, models: Path, steps: int, guidance: float | None,
                true_cfg: float | None) -> Path:
    """As `sample`, in this process with one thread (what `python -m runtime.samplers` runs, with the same
    options and sums as there under OMP_NUM_THREADS=1): the learning run samples every stage, and a new
    process per stage cost more in imports than the sampling itself."""
    import torch

    from runtime.samplers import from_checkpoint

    out = run_root / "samples" / f"{stage}.png"
    options = from_checkpoint.SampleOptions(stage=(bundle / "train" / stage / "stage.yaml").resolve(),
                                            prompts=list(PROMPTS), out=out.resolve(), run_root=run_root.resolve(),
                                            steps=steps, cfg=guidance, true_cfg=true_cfg, model_dir=models)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return from_checkpoint.sample(options)
    finally:
        torch.set_num_threads(threads)


# --- do the samples follow their prompts? ----------------------------------------------------------------------


def sample_tiles(png: Path) -> list[tuple[str, "np.ndarray"]]:  # noqa: F821
    """(prompt, RGB tile) per prompt of an image sample grid, read with its sidecar (the .png made .json)."""
    import numpy as np
    from PIL import Image

    sidecar = json.loads(png.with_suffix(".json").read_text())
    height, width = sidecar["resolution"]["height"], sidecar["resolution"]["width"]
    pixels = np.asarray(Image.open(png).convert("RGB"))
    columns = pixels.shape[1] // width
    return [(prompt, pixels[(i // columns) * height:(i // columns + 1) * height, (i % columns) * width:(i % columns + 1) * width])
            for i, prompt in enumerate(sidecar["prompts"])]


def dominant_colour(tile) -> str:
    """The synthetic palette's colour (runtime/synthetic_data.py COLOURS) most of TILE's pixels are nearest to."""
    import numpy as np

    from runtime.synthetic_data import COLOURS

    names = list(COLOURS)
    palette = np.array([COLOURS[name] for name in names], dtype=np.float32)
    distances = ((tile.reshape(-1, 1, 3).astype(np.float32) - palette[None]) ** 2).sum(-1)
    return names[int(np.bincount(distances.argmin(1), minlength=len(names)).argmax())]


def prompt_background(prompt: str) -> str | None:
    """The background colour a prompt names ("... on a blue background" -> "blue"), else None."""
    found = re.search(r"on an? (\w+) background", prompt)
    return found.group(1) if found else None


def colour_matches(png: Path) -> list[tuple[str, str | None, str]]:
    """Per prompt of an image sample grid: (prompt, the background colour it names, the sample's dominant
    colour). The background covers most of a synthetic picture, so a sample that follows its prompt is
    dominated by that colour."""
    return [(prompt, prompt_background(prompt), dominant_colour(tile)) for prompt, tile in sample_tiles(png)]


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
    summary = (f"Read {report.get('samples_read')} samples from {report.get('shards')} shard(s); kept {report.get('kept')}, dropped {report.get('dropped')}, "
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


def sampled_with(sidecar: dict) -> str:
    """How a sample grid was drawn, from its sidecar (runtime/samplers/from_checkpoint.py)."""
    cfg, guidance = sidecar.get("cfg_scale"), sidecar.get("guidance_embedded")
    return (f"Sampled from `{sidecar.get('weights')}` weights with {sidecar.get('sampler')}, {sidecar.get('steps')} steps, "
            + (f"true classifier-free guidance {cfg:g}" if cfg not in (None, 1.0) else "no classifier-free guidance")
            + (f", embedded guidance {guidance:g}" if guidance is not None else "") + f", seed {sidecar.get('seed')}.")


def write_report(spec: str, bundle: Path, run_root: Path, workdir: Path, graph: Path | None,
                 samples: dict[str, Path], timings: dict[str, float], skipped: list[str],
                 notes: list[str] | None = None) -> Path:
    """WORKDIR/report.md. SAMPLES: the sample grid per sampled stage, in stage order; NOTES: what the learning
    run changed (module docstring)."""
    lines = [f"# genspec demo: {spec} ({CLUSTER}, {SCALE} scale)", "",
             f"Bundle: `{bundle}`; run root: `{run_root}`.", "",
             "Timings: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()) + ".", ""]
    if notes:
        lines += ["Learning run: " + "; ".join(notes) + ".", ""]
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
    lines += ["## Samples", "", "From each sampled stage's final checkpoint, one tile per prompt (left to right, "
              "top to bottom).", ""]
    for stage, png in samples.items():
        lines += [f"### {stage}", "", f"![samples {stage}]({png.relative_to(workdir)})", ""]
        sidecar = png.with_suffix(".json")
        if sidecar.is_file():
            lines += [sampled_with(json.loads(sidecar.read_text())), ""]
        if notes:  # the learning run: image grids whose colours can be read
            matches = colour_matches(png)
            hits = sum(named == found for _, named, found in matches)
            lines += [f"Dominant colour = the prompt's background colour: {hits} of {len(matches)}.", "",
                      "| prompt | background named | dominant colour |", "|---|---|---|"]
            lines += [f"| {prompt} | {named} | {found}{'' if named == found else ' (no match)'} |"
                      for prompt, named, found in matches]
        else:
            lines += ["Prompts: " + "; ".join(PROMPTS) + "."]
        lines.append("")
    path = workdir / "report.md"
    path.write_text("\n".join(lines))
    return path


# --- main -----------------------------------------------------------------------------------------------------


def main(spec: str = "flux1-dev", workdir: str | Path = "demo-run", quick: bool = False) -> Path:
    """Compile, make raw data, run the whole DAG locally, sample and write WORKDIR/report.md; returns its path.
    SPEC is any TARGET (shipped name, file.py:ATTR, .yaml/.json); a file is found from the current directory.
    QUICK: the plain smoke run even where the learning run applies (module docstring)."""
    from compiler.scale import scaled
    from compiler.targets import absolute_target

    spec = absolute_target(spec)
    spec_obj = load_spec(spec)
    smoke_spec = scaled(spec_obj, SCALE)
    learning = not quick and learns(spec_obj)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bundle, raw, run_root = workdir / "bundle", workdir / "raw", workdir / "run"
    timings: dict[str, float] = {}
    overrides = learn_overrides(spec_obj, smoke_spec) if learning else []
    env, notes = None, []

    started = time.perf_counter()
    compile_bundle(spec, bundle, spec_obj.name, overrides)
    timings["compile"] = time.perf_counter() - started

    started = time.perf_counter()
    if raw_present(raw, spec_obj):
        log(f"raw data present in {raw}, reused")
    else:
        log(f"writing synthetic raw shards into {raw}")
        make_raw(raw, smoke_spec, **({"count": LEARN_RAW} if learning else {}))  # the bundle's thresholds
    timings["raw data"] = time.perf_counter() - started

    if learning:
        import torch

        from runtime.smoke_text import fit_smoke_text_encoders
        from runtime.smoke_vae import fit_smoke_vae

        started = time.perf_counter()
        models = workdir / "models"
        # One thread for the whole learning run (the fits here, and through OMP_NUM_THREADS every process it
        # starts): its ops are tiny, so a second thread buys little, and the sums then come out the same in
        # `make demo` as in the test suite, which runs demos with one thread: the same weights, the same samples.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            fit_smoke_vae(smoke_spec.architecture.space, models, steps=LEARN_VAE_STEPS, log=log)
            # Fitted at the length the bundle's encoders read (CLIP's learned positions are that many).
            encoders = [encoder.model_copy(update={"max_tokens": LEARN_TEXT_TOKENS})
                        for encoder in smoke_spec.architecture.text_encoders]
            fitted = fit_smoke_text_encoders(smoke_spec.architecture.model_copy(update={"text_encoders": encoders}),
                                             models, steps=LEARN_TEXT_FIT_STEPS, log=log)
        finally:
            torch.set_num_threads(threads)
        env = {MODEL_DIR_VARIABLE: str(models), "OMP_NUM_THREADS": "1"}
        timings["smoke VAE and text encoder fits"] = time.perf_counter() - started
        notes = [f"smoke VAE fitted to the synthetic data ({LEARN_VAE_STEPS} steps, {models}, "
                 f"fit.json there)",
                 f"pooled smoke text encoders fitted to the synthetic captions ({LEARN_TEXT_FIT_STEPS} steps: "
                 + ", ".join(f"`{folder.name}`" for folder in fitted) + "; runtime/smoke_text.py)",
                 f"{LEARN_RAW} raw samples per source",
                 "compiled with " + " ".join(f"`--set {o}`" for o in overrides),
                 f"{LEARN_SAMPLE_STEPS} sampling steps, each stage with the guidance its samples' json and the "
                 "table below state (sampling_guidance: true CFG before guidance distillation)",
                 "one thread (OMP_NUM_THREADS=1) for the fits, curation and training"]

    started = time.perf_counter()
    skipped = run_pipeline(bundle, raw, run_root, env)
    timings["curation + training"] = time.perf_counter() - started

    started = time.perf_counter()
    stages = stage_order(bundle) if learning else stage_order(bundle)[-1:]
    samples = {}
    for stage in stages:
        png = run_root / "samples" / f"{stage}.png"
        if png.exists() and stage in skipped:
            log(f"samples of {stage} present, reused: {png}")
        else:
            log(f"sampling from {stage}")
            png = (sample_here(bundle, run_root, stage, models, LEARN_SAMPLE_STEPS,
                               *sampling_guidance(smoke_spec, stage))
                   if learning else sample(bundle, run_root, stage))
        samples[stage] = png
    timings["sampling"] = time.perf_counter() - started

    graph = render_graph(bundle, workdir / "figures" / "graph.png")
    report = write_report(spec, bundle, run_root, workdir, graph, samples, timings, skipped, notes)
    log(f"report: {report}")
    return report


if __name__ == "__main__":
    main(*sys.argv[1:3])
