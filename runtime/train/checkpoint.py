"""Checkpoints: DeepSpeed's training state plus the trainer's own, the final weights, and weight loading.

output_dir/
  checkpoints/step00000012/   DeepSpeed save_checkpoint (model, optimizer, LR schedule; per rank for ZeRO)
                              + trainer_rank<r>.pt: step, data position, objective state (noise-aware
                              compute), EMA shadow, stage-loss state (LADD heads), RNG states
  checkpoints/step.../complete.json   written by rank 0 after every rank's files are saved (after DeepSpeed's
                              final barrier): the name and size of every file of the checkpoint
  checkpoints/latest          names the newest complete checkpoint; written (atomically) after complete.json
  final/model.safetensors     whole fp32 weights at the stage's last step (the weights the model ran with;
  final/ema.safetensors       under bf16 they are bf16-rounded, the fp32 masters stay in the checkpoint)
  final/architecture.json     the architecture the weights belong to
  final/diffusers{,_ema}/     the same weights as diffusers model folders, for families diffusers has
  final/stage.yaml, spec.resolved.yaml, plan.json, provenance.json   what the weights are: the stage file, the
                              bundle's resolved spec, the stage's plan row, the genspec version
  final/done.json             written last: the stage, its steps and the sha256 of the stage.yaml it ran; a
                              rerun of a finished stage stops at once (see finished())
final/ is written by runtime/train/export.py, one parameter at a time (its docstring has the whole layout).

`init_from` loads final/model.safetensors of an earlier stage into this stage's model; parameters the
checkpoint lacks are an error, except in guidance distillation, whose student adds a guidance embedding.
(An init_from naming released weights is read from the model directory by runtime/models/released.py.)
A teacher is rebuilt from its own final/architecture.json and loads final/ema.safetensors when it exists
(the weights one samples from), else model.safetensors.

Resume loads the newest checkpoint whose complete.json exists and whose files all still have the sizes it
lists; a newer one that a kill, a full disk or a lost file left incomplete is passed over (and said so), and
the run resumes from the one before. Older checkpoints are deleted only once a newer one is complete, so
KEEP complete checkpoints remain.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

CHECKPOINTS = "checkpoints"
FINAL = "final"
ARCHITECTURE = "architecture.json"
DONE = "done.json"
COMPLETE = "complete.json"
KEEP = 2  # complete checkpoints kept: the newer may later turn out damaged (a truncated file), then the other


def tag(step: int) -> str:
    """The checkpoint tag of a step."""
    return f"step{step:08d}"


def rng_state() -> dict:
    """Python, numpy and torch global RNG states."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    """Restore what rng_state returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save(engine, output_dir: Path, step: int, trainer_state: dict, rank: int) -> None:
    """Save a resumable checkpoint of `step` (collective: every rank calls it). The checkpoint counts as
    complete, and `latest` names it, only after every rank's files are written."""
    import torch.distributed as dist

    directory = output_dir / CHECKPOINTS
    target = directory / tag(step)
    if rank == 0 and target.exists():  # a rerun after falling back: no stale file may join the new manifest
        shutil.rmtree(target)
    directory.mkdir(parents=True, exist_ok=True)
    _barrier(dist)
    target.mkdir(parents=True, exist_ok=True)
    torch.save({**trainer_state, "step": step, "rng": rng_state()}, target / f"trainer_rank{rank}.pt")
    engine.save_checkpoint(str(directory), tag=tag(step), save_latest=False)  # ends with a barrier
    if rank == 0:
        files = {str(p.relative_to(target)): p.stat().st_size for p in sorted(target.rglob("*")) if p.is_file()}
        _replace(target / COMPLETE, lambda path: path.write_text(json.dumps({"step": step, "files": files}, indent=1)))
        _replace(directory / "latest", lambda path: path.write_text(tag(step)))
        older = [p for p in directory.glob("step*") if p.is_dir() and p.name < tag(step)]
        complete_older = sorted(p for p in older if (p / COMPLETE).is_file())
        keep = set(complete_older[len(complete_older) - (KEEP - 1) :]) if KEEP > 1 else set()
        for old in older:
            if old not in keep:
                shutil.rmtree(old, ignore_errors=True)
    _barrier(dist)


def _barrier(dist) -> None:
    if dist.is_initialized():
        dist.barrier()


def latest_step(output_dir: Path) -> int | None:
    """The step `latest` names (the newest complete checkpoint written), None if there is none."""
    pointer = output_dir / CHECKPOINTS / "latest"
    if not pointer.is_file():
        return None
    return int(pointer.read_text().strip().removeprefix("step"))


def incomplete(checkpoint_dir: Path) -> str | None:
    """Why a checkpoint directory cannot be resumed from, None when it is complete."""
    manifest = checkpoint_dir / COMPLETE
    if not manifest.is_file():
        return f"it has no {COMPLETE} (its save did not finish)"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return f"its {COMPLETE} is unreadable"
    for name, size in files.items():
        path = checkpoint_dir / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} is {path.stat().st_size} bytes, {size} were written"
    return None


def resumable_step(output_dir: Path) -> int | None:
    """The step of the newest complete checkpoint; newer incomplete ones are reported on stderr."""
    directory = output_dir / CHECKPOINTS
    if not directory.is_dir():
        return None
    for candidate in sorted((p for p in directory.glob("step*") if p.is_dir()), reverse=True):
        why = incomplete(candidate)
        if why is None:
            return int(candidate.name.removeprefix("step"))
        print(f"checkpoint {candidate} is incomplete: {why}; resuming from an older one", file=sys.stderr)
    return None


def load(engine, output_dir: Path, rank: int) -> dict | None:
    """Load the newest complete checkpoint into `engine`; returns the trainer state, None without one.
    Rank 0 chooses it (every rank must load the same step)."""
    import torch.distributed as dist

    choice = [resumable_step(output_dir) if rank == 0 else None]
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast_object_list(choice, src=0)
    step = choice[0]
    if step is None:
        return None
    path, _ = engine.load_checkpoint(str(output_dir / CHECKPOINTS), tag=tag(step))
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load checkpoint {tag(step)} from {output_dir / CHECKPOINTS}")
    trainer_file = output_dir / CHECKPOINTS / tag(step) / f"trainer_rank{rank}.pt"
    if not trainer_file.is_file():
        raise FileNotFoundError(
            f"checkpoint {tag(step)} in {output_dir / CHECKPOINTS} has no {trainer_file.name}: it was written by "
            "fewer data-parallel ranks; resume with the world size it was saved with"
        )
    state = torch.load(trainer_file, weights_only=False)
    set_rng_state(state["rng"])
    return state


def finished(output_dir: Path) -> dict | None:
    """The done.json record of a stage whose final/ export completed, None otherwise."""
    path = output_dir / FINAL / DONE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _replace(path: Path, write) -> None:
    part = path.with_name(path.name + ".part")
    write(part)
    part.replace(path)


def weights_file(directory: Path, field: str, prefer_ema: bool) -> Path:
    """The weights file of a stage checkpoint directory (its output_dir or its final/ directory)."""
    names = ("ema.safetensors", "model.safetensors") if prefer_ema else ("model.safetensors",)
    for base in (directory, directory / FINAL):
        for name in names:
            if (base / name).is_file():
                return base / name
    raise FileNotFoundError(
        f"{field} = {directory}: no {' or '.join(names)} there or in {directory / FINAL}; run that stage to its "
        "last step first (it writes final/model.safetensors)"
    )


def load_weights(module: torch.nn.Module, path: Path, field: str, allow_missing: bool = False) -> list[str]:
    """Load a weights file into `module`; every checkpoint key must fit, and every model key must be present
    unless allow_missing. Returns the model keys left at their initialisation."""
    state = load_file(str(path))
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected or (missing and not allow_missing):
        raise ValueError(
            f"{field}: {path} does not fit the model: missing {sorted(missing)[:5]}, unexpected "
            f"{sorted(unexpected)[:5]}; it was written for another architecture"
        )
    return sorted(missing)
