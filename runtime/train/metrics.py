"""Metrics from rank 0: JSON lines (output_dir/metrics.jsonl), TensorBoard event files
(output_dir/tensorboard/) and the progress bar.

One record per step, each number also a TensorBoard scalar under its key:
    loss, loss/<dataset>      training loss of the step, and per dataset of the stage (over the micro-batches
                              drawn from it, all ranks)
    grad_norm, lr             global gradient norm before clipping (DeepSpeed's), the step's learning rate
    samples_per_s, tokens_per_s   global samples and backbone (latent) tokens per second of the step
    mfu                       model FLOPs utilisation against the plan: plan.json's flops_per_step over the
                              step time and the peak the planner assumed (flops / (step_seconds x mfu)) for
                              its ranks, scaled to the ranks running; absent when the bundle has no plan.json
    peak_memory_gib           peak accelerator memory allocated by this process (torch.cuda.max_memory_allocated),
                              else the process's peak resident set size
    val_loss, val_loss/<dataset>, val_loss_t/<t>   on validation steps (runtime/train/validation.py)
Step 0 holds the validation losses before training. A resumed run first drops the records after its
checkpoint (a run without a checkpoint drops them all) from metrics.jsonl and, through the writer's
purge_step, from the event files, so both read as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

TENSORBOARD = "tensorboard"


class Metrics:
    """Appends step records to metrics.jsonl and the TensorBoard event files, and drives a tqdm bar."""

    def __init__(self, output_dir: Path, enabled: bool, start: int, stop: int, name: str):
        self.path = output_dir / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if enabled:
            output_dir.mkdir(parents=True, exist_ok=True)
            self._truncate_after(start)
            from torch.utils.tensorboard import SummaryWriter  # imports the tensorboard package: rank 0 only

            self.writer = SummaryWriter(str(output_dir / TENSORBOARD), purge_step=start + 1 if start else 0)
        self.bar = tqdm(total=stop, initial=start, desc=name, disable=not enabled, dynamic_ncols=True)

    def _truncate_after(self, step: int) -> None:
        """Keep the records up to the resumed checkpoint's step; a run starting over keeps none."""
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        kept = [line for line in lines if line and 0 < step and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def log(self, record: dict) -> None:
        """Write one record and, for training steps, advance the bar."""
        if not self.enabled:
            return
        with self.path.open("a") as stream:
            stream.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, record["step"])
        self.writer.flush()
        if "loss" in record:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", samples_s=f"{record['samples_per_s']:.1f}")

    def close(self) -> None:
        """Close the bar and the event files."""
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def read_metrics(output_dir: Path) -> list[dict]:
    """The records of a run's metrics.jsonl."""
    return [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines() if line]


@dataclass(frozen=True)
class PlannedCompute:
    """A stage's planned training FLOPs and the peak throughput the planner assumed, from plan.json."""

    flops_per_sample: float
    peak_flops_per_rank: float

    def mfu(self, samples: int, seconds: float, world: int) -> float:
        """Model FLOPs utilisation of `samples` trained in `seconds` on `world` ranks."""
        return self.flops_per_sample * samples / (seconds * self.peak_flops_per_rank * world)


def planned_compute(stage_path: Path, stage: str, model: str | None = None) -> PlannedCompute | None:
    """The stage's entry of the bundle's plan.json (bundle/train/<stage>/stage.yaml -> bundle/plan.json), None
    when there is no plan.json or it does not plan this stage."""
    plan_path = Path(stage_path).resolve().parent.parent.parent / "plan.json"
    if not plan_path.is_file():
        return None
    try:
        stages = json.loads(plan_path.read_text())["stages"]
        entry = next(s for s in stages if s["stage"] == stage and (model is None or s.get("model") in (None, model)))
        flops, seconds, mfu = float(entry["flops_per_step"]), float(entry["step_seconds"]), float(entry["mfu"])
        batch, ranks = int(entry["global_batch"]), int(entry["dp_size"])
    except (StopIteration, KeyError, TypeError, ValueError, json.JSONDecodeError) as error:
        print(f"{plan_path}: no planned FLOPs for stage {stage!r} ({error!r}); the metrics leave out mfu",
              file=sys.stderr)
        return None
    if min(flops, seconds, mfu, batch, ranks) <= 0:
        return None
    return PlannedCompute(flops / batch, flops / (seconds * mfu) / ranks)


def peak_memory_gib() -> float:
    """Peak accelerator memory allocated by this process; without CUDA, the process's peak resident set."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30  # ru_maxrss is KiB on Linux


class StepTally:
    """One step's losses per dataset, samples and tokens on this rank, reduced over ranks into the step's record."""

    def __init__(self, datasets: int):
        self.datasets = datasets
        self.losses: list[tuple[int, torch.Tensor]] = []
        self.samples = self.tokens = 0
        self.grad_norm: float | None = None  # where DeepSpeed records none (unwrapped_grad_norm)

    def add(self, dataset: int, loss: torch.Tensor, samples: int, tokens_per_sample: int) -> None:
        """A micro-batch of `dataset` with mean loss `loss` (kept on its device: no synchronisation per step)."""
        self.losses.append((dataset, loss.detach().double().reshape(())))
        self.samples += samples
        self.tokens += samples * tokens_per_sample

    def record(self, all_reduce_sum, names: list[str], seconds: float, grad_norm, compute: PlannedCompute | None,
               world: int) -> dict:
        """loss/<dataset> (for the datasets drawn this step), tokens_per_s, grad_norm, mfu and peak_memory_gib
        (collective: all_reduce_sum sums over ranks; the sums live on the losses' device, as a NCCL group needs)."""
        device = self.losses[0][1].device
        # loss sums per dataset, micro-batches per dataset, samples, backbone tokens
        sums = torch.zeros(2 * self.datasets + 2, dtype=torch.float64, device=device)
        for dataset, loss in self.losses:
            sums[dataset] += loss
            sums[self.datasets + dataset] += 1
        sums[-2], sums[-1] = self.samples, self.tokens
        sums = all_reduce_sum(sums).cpu()
        record = {
            f"loss/{name}": (sums[i] / sums[self.datasets + i]).item()
            for i, name in enumerate(names)
            if sums[self.datasets + i] > 0
        }
        record["tokens_per_s"] = sums[-1].item() / seconds
        if grad_norm is not None:
            record["grad_norm"] = float(grad_norm)
        if compute is not None:
            record["mfu"] = compute.mfu(int(sums[-2].item()), seconds, world)
        record["peak_memory_gib"] = peak_memory_gib()
        return record


def unwrapped_grad_norm(engine) -> float | None:
    """The global gradient norm where DeepSpeed's optimizer does not record one (fp32 without ZeRO: the engine
    clips with torch and drops the norm); None where engine.get_global_grad_norm() will have it. Call after the
    accumulation boundary's backward (gradients are all-reduced then) and before step()."""
    if hasattr(engine.optimizer, "_global_grad_norm"):
        return None
    norms = [p.grad.detach().float().norm() for p in engine.module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)).item() if norms else None
