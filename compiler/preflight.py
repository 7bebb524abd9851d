"""`genspec preflight BUNDLE`: what a bundle needs before it spends a GPU-hour, every problem at once.

Checks, each problem naming the path it expected:
  - models: every model id the stages (text encoders, VAE, released init_from weights) and curation pipelines
    (model fields) name is where the runtime will load it from (compiler/schema/model_dir.py, the resolver both
    use): a folder with a config.json as `org/name`, `org--name`, the Hugging Face hub cache layout
    `models--org--name/snapshots/<rev>/` (directly or under hub/), or wherever the model directory's models.yaml
    maps the id;
  - shards: each curation source has input shards (*.tar) under RAW/SOURCE;
  - run root: writable, with free space for one checkpoint of every stage (plan.json's parameter counts at
    16 bytes each: bf16 weights, fp32 master weights and two fp32 Adam moments).

Curation scorers named without an organisation (e.g. `laion-aesthetic-v2`) map to model ids inside the
runtime's model zoo, which the compiler does not import: they are listed as not checked.
Reads only the bundle's files; imports nothing from runtime.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import tempfile
from pathlib import Path

from compiler.schema.model_dir import ModelDirectory

CHECKPOINT_BYTES_PER_PARAM = 16


def _model_ids(bundle: Path) -> tuple[dict[str, str], set[str]]:
    """Model ids by the file that needs them, and scorer names the compiler cannot map to ids."""
    from ruamel.yaml import YAML

    needed: dict[str, str] = {}
    scorers: set[str] = set()
    for stage_yaml in sorted(bundle.glob("train/*/stage.yaml")):
        stage_file = YAML(typ="safe").load(stage_yaml.read_text())
        architecture = stage_file.get("architecture") or {}
        init_from = (stage_file.get("stage") or {}).get("init_from")
        if isinstance(init_from, dict) and init_from.get("released"):  # released weights a stage starts from
            needed.setdefault(init_from["released"], str(stage_yaml.relative_to(bundle)))
        for encoder in architecture.get("text_encoders") or []:
            needed.setdefault(encoder["model"], str(stage_yaml.relative_to(bundle)))
        space = architecture.get("space") or {}
        if space.get("kind") == "latent":  # the runtime looks the VAE up by the space's whole `vae` string
            needed.setdefault(space["vae"], str(stage_yaml.relative_to(bundle)))
    for pipeline_json in sorted(bundle.glob("curation/*/pipeline.json")):
        text = pipeline_json.read_text()
        for model_id in re.findall(r'"model": "([^"]+/[^"]+)"', text):
            needed.setdefault(model_id, str(pipeline_json.relative_to(bundle)))
        scorers |= set(re.findall(r'"scorer": "([^"/]+)"', text))
    return needed, scorers


def preflight(bundle: Path, model_dir: Path | None, run_root: Path | None, raw: Path | None) -> tuple[list[str], list[str]]:
    """(problems, notes) for `bundle`; no problems means the DAG may be submitted."""
    problems, notes = [], []
    if not (bundle / "manifest.json").is_file():
        return [f"{bundle}: not a genspec bundle (no manifest.json); give the directory `genspec compile` wrote"], []

    needed, scorers = _model_ids(bundle)
    if json.loads((bundle / "manifest.json").read_text()).get("scale") == "smoke":
        # At smoke scale a missing model is a reported tiny stand-in (runtime/encoders), not an error.
        notes.append(f"smoke scale: models not required ({len(needed)} named)")
    elif model_dir is None:
        problems.append(f"no model directory: pass --model-dir DIR or set GENSPEC_MODEL_DIR "
                        f"({len(needed)} model(s) needed: {', '.join(sorted(needed))})")
    else:
        problems += _model_problems(ModelDirectory(model_dir), needed)
    if scorers:
        notes.append(f"curation scorers not checked (their weights are named by the runtime's model zoo): "
                     f"{', '.join(sorted(scorers))}")

    if raw is not None:
        # submit_slurm.sh sizes each array to the shards it finds: any number from one up will do.
        for script in sorted(bundle.glob("curation/*/sbatch_array.sh")):
            for quoted in re.findall(r'--input "\$raw/"(\S+)', script.read_text()):
                source = shlex.split(quoted)[0]
                if not any((raw / source).glob("*.tar")):
                    problems.append(f"shards of source {source} ({script.relative_to(bundle)}): no *.tar under "
                                    f"{raw / source}; put the source's webdataset shards there")

    if run_root is None:
        problems.append("no run root: pass --run-root DIR (shared storage every node reaches)")
    else:
        problems += _run_root_problems(bundle, run_root)
    return problems, notes


def _model_problems(directory: ModelDirectory, needed: dict[str, str]) -> list[str]:
    """One line per model the runtime would not find, with the folder it would read (its first layout)."""
    problems = []
    for model_id, needed_by in sorted(needed.items()):
        try:
            entry = directory.entry(model_id)
        except (OSError, ValueError, TypeError) as error:  # an ambiguous hub cache, a malformed models.yaml
            problems.append(f"model {model_id} (needed by {needed_by}): {error}")
            continue
        if entry.present:
            continue
        if entry.mapped:
            where = f"no config.json in {entry.path}, where {directory.root}/models.yaml maps it"
        else:
            folder = entry.path.name if entry.path else model_id
            where = (f"no config.json in {entry.path} (also accepted: {directory.root}/{model_id}, "
                     f"{directory.root}/models--{folder}/snapshots/REV, or a models.yaml entry)")
        problems.append(f"model {model_id} (needed by {needed_by}): missing; {where}")
    return problems


def _run_root_problems(bundle: Path, run_root: Path) -> list[str]:
    existing = run_root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"run root {run_root}: not writable ({existing} refuses writes); give a directory you can write"]
    try:
        run_root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_root):
            pass
    except OSError as error:
        return [f"run root {run_root}: not writable ({error.strerror})"]
    plan = json.loads((bundle / "plan.json").read_text())
    need = sum(stage["params"] for stage in plan["stages"]) * CHECKPOINT_BYTES_PER_PARAM
    free = shutil.disk_usage(run_root).free
    if free < need:
        return [f"run root {run_root}: {free / 1e9:.1f} GB free, the stages' checkpoints need {need / 1e9:.1f} GB"]
    return []
