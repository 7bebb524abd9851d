"""The GPU check's steps (scripts/gpu-check.sh runs them): the Triton op against its PyTorch formula, and a
few-block FLUX and Wan stage trained through their bundles' own launch.sh, compiled and eager, measured
against the plan the compiler made for exactly that layout.

    python scripts/gpu_check.py kernel [--cpu]
    python scripts/gpu_check.py train WORKDIR [--cpu]

On a GPU the bundles are full width (full scale on a one-GPU cluster, depth cut to a few blocks, bf16 and
compiled blocks as the planner sets them); with --cpu they are smoke scale (reduced width) on local-cpu, with
compile forced on for the compiled run. Prints one line per figure and writes WORKDIR/report.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 16  # synthetic samples per dataset: enough for validation and a few global batches
WARMUP_STEPS = 2  # steps left out of the step time: the first compiles the blocks

# spec: (stage, --set overrides); "{steps}" is filled in. Few blocks, full width, a small batch.
CHECKS = {
    "flux1-dev": (
        "pretrain",
        [
            "architecture.backbone.double_blocks=2",
            "architecture.backbone.single_blocks=4",
            "schedule.stages[pretrain].batch_size=2",
            "schedule.stages[pretrain].steps={steps}",
            "schedule.stages[pretrain].lr_schedule.warmup_steps=1",
        ],
    ),
    "wan2.1-t2v-1.3b": (
        "joint_256p",
        [
            "architecture.backbone.depth=4",
            "schedule.stages[joint_256p].batch_size=1",
            "schedule.stages[joint_256p].frames=17",
            "schedule.stages[joint_256p].steps={steps}",
            "schedule.stages[joint_256p].lr_schedule.warmup_steps=1",
        ],
    ),
}


def kernel(cpu: bool) -> dict:
    """The Triton op against layer_norm_modulate_reference: max abs error in bf16 and, on CUDA, both times."""
    import torch

    from runtime.models import kernels

    if kernels.triton is None:
        raise SystemExit("gpu-check kernel: triton is not installed")
    device = "cpu" if cpu else "cuda"
    batch, tokens, dim = (2, 16, 64) if cpu else (2, 4096, 3072)  # FLUX width on a GPU
    generator = torch.Generator(device).manual_seed(0)
    x = torch.randn(batch, tokens, dim, device=device, dtype=torch.bfloat16, generator=generator)
    shift, scale = (torch.randn(batch, dim, device=device, dtype=torch.bfloat16, generator=generator) for _ in "ab")
    # On a CPU the kernel runs in Triton's interpreter (TRITON_INTERPRET=1, set by gpu-check.sh).
    fused = kernels.launch_layer_norm_modulate(x, shift, scale, 1e-6)
    reference = kernels.layer_norm_modulate_reference(x, shift, scale, 1e-6)
    error = (fused.float() - reference.float()).abs().max().item()
    report = {"shape": [batch, tokens, dim], "dtype": "bfloat16", "max_abs_error": error}
    if not cpu:
        report["triton_ms"] = _cuda_ms(lambda: kernels.launch_layer_norm_modulate(x, shift, scale, 1e-6))
        report["pytorch_ms"] = _cuda_ms(lambda: kernels.layer_norm_modulate_reference(x, shift, scale, 1e-6))
    print(f"kernel: Triton op vs PyTorch formula, bf16 {batch}x{tokens}x{dim}: max abs error {error:.3g}"
          + (f"; {report['triton_ms']:.3f} ms vs {report['pytorch_ms']:.3f} ms" if not cpu else ""))
    # Both compute in float32 and round once to bf16: one bf16 ulp of values up to ~8 apart at most.
    if not error <= 2**-7 * 8:
        raise SystemExit(f"gpu-check kernel: the Triton op is {error} from the formula")
    return report


def _cuda_ms(function, repeats: int = 50) -> float:
    import torch

    for _ in range(5):
        function()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        function()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def compile_bundle(spec: str, workdir: Path, cpu: bool, steps: int) -> tuple[Path, str]:
    """genspec compile with the check's overrides, onto one GPU of the card at hand (or local-cpu)."""
    stage, overrides = CHECKS[spec]
    bundle = workdir / f"{spec}-bundle"
    if cpu:
        cluster, scale = "local-cpu", "smoke"
    else:
        cluster, scale = str(_one_gpu_cluster(workdir)), "full"
    command = [sys.executable, "-m", "compiler.cli", "compile", spec, "--cluster", cluster, "--scale", scale,
               "-o", str(bundle), "--force"]
    for override in overrides:
        command += ["--set", override.format(steps=steps)]
    subprocess.run(command, check=True, cwd=ROOT)
    return bundle, stage


def _one_gpu_cluster(workdir: Path) -> Path:
    """A one-node, one-GPU cluster file of the card this runs on (H200 or H100; the presets' figures)."""
    import torch

    from compiler.schema.cluster import H100, H200

    name = torch.cuda.get_device_name()
    gpu = H200 if "H200" in name else H100
    cluster = {
        "name": "gpu-check", "nodes": 1, "gpus_per_node": 1, "gpu": gpu.model_dump(mode="json"),
        "cpus_per_node": os.cpu_count(), "memory_gib_per_node": 128, "scheduler": "local",
    }
    path = workdir / "gpu-check-cluster.json"
    path.write_text(json.dumps(cluster))
    print(f"card: {name}, planned as {gpu.name}")
    return path


def write_shards(stage_path: Path, run_root: Path) -> None:
    """Precomputed latents and text embeddings of every dataset the stage reads, at the stage's geometry."""
    import numpy as np
    import webdataset as wds

    from runtime.train import load_stage_file
    from runtime.train.batch import latent_frames

    stage_file = load_stage_file(stage_path)
    architecture, stage = stage_file.architecture, stage_file.stage
    space = architecture.space
    size = stage.resolutions[0]
    grid = (size.height // space.spatial_compression, size.width // space.spatial_compression)
    shape = (space.channels, *((latent_frames(space, stage.frames),) if stage.frames else ()), *grid)
    encoders = {encoder.role: encoder for encoder in architecture.text_encoders}
    text = encoders.get("tokens") or encoders.get("cross_attention")
    rng = np.random.default_rng(0)
    for data in stage_file.data:
        directory = run_root / data.shards
        directory.mkdir(parents=True, exist_ok=True)
        with wds.TarWriter(str(directory / "shard-00000.tar")) as sink:
            for index in range(SAMPLES):
                sample = {
                    "__key__": f"{index:05d}",
                    "latents.npy": rng.standard_normal(shape).astype(np.float32),
                    "text.npy": rng.standard_normal((text.max_tokens, text.dim)).astype(np.float32),
                    "txt": f"sample {index}",
                    "json": {"width": 4096, "height": 4096, "fps": 16, "seconds": 10, "frames": 160},
                }
                if "pooled" in encoders:
                    sample["pooled.npy"] = rng.standard_normal(encoders["pooled"].dim).astype(np.float32)
                sink.write(sample)


def train(bundle: Path, stage: str, compiled: bool, workdir: Path, cpu: bool) -> dict:
    """Train the stage through a copy of its directory (layout.compile set) with the bundle's own launch.sh."""
    from ruamel.yaml import YAML

    from runtime.train.metrics import read_metrics

    variant = "compiled" if compiled else "eager"
    source = bundle / "train" / stage
    directory = bundle / "train" / f"{stage}-{variant}"
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(source, directory)
    document = YAML(typ="safe").load((directory / "stage.yaml").read_text())
    document["layout"]["compile"] = compiled
    (directory / "stage.yaml").write_text(json.dumps(document))  # JSON is YAML
    run_root = workdir / f"run-{bundle.name}-{variant}"
    shutil.rmtree(run_root, ignore_errors=True)
    write_shards(directory / "stage.yaml", run_root)
    hostfile = workdir / "hostfile"
    hostfile.write_text("localhost slots=1\n")
    env = {**os.environ, "GENSPEC_HOSTFILE": str(hostfile), "MASTER_PORT": str(_free_port())}
    sampler = None if cpu else _GpuMemorySampler()
    started = time.perf_counter()
    result = subprocess.run(["bash", str(directory / "launch.sh"), "--run-root", str(run_root)], env=env)
    wall = time.perf_counter() - started
    if sampler is not None:
        sampler.stop()
    if result.returncode != 0:
        raise SystemExit(f"gpu-check: {directory}/launch.sh failed ({result.returncode})")
    records = [r for r in read_metrics(run_root / document["output_dir"]) if "loss" in r]
    losses = [r["loss"] for r in records]
    if len(records) != document["stage"]["steps"] or not all(math.isfinite(loss) for loss in losses):
        raise SystemExit(f"gpu-check: {directory} trained {len(records)} steps, losses {losses}")
    global_batch = document["stage"]["batch_size"]
    timed = records[WARMUP_STEPS:] or records[-1:]
    step_seconds = statistics.median(global_batch / r["samples_per_s"] for r in timed)
    logged = [r["peak_memory_gib"] for r in records if "peak_memory_gib" in r]
    if logged:
        peak, how = max(logged), "torch.cuda.max_memory_allocated" if not cpu else "peak RSS (trainer)"
    elif cpu:  # the largest resident set of any process this one waited for so far (kilobytes on Linux)
        peak, how = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, "peak RSS of the launcher's processes"
    else:
        peak, how = sampler.peak_gib, "nvidia-smi memory.used (includes the CUDA context)"
    return {"variant": variant, "losses": losses, "step_seconds": step_seconds, "wall_seconds": wall,
            "peak_memory_gib": peak, "peak_memory_source": how}


class _GpuMemorySampler:
    """Highest nvidia-smi memory.used while a launch runs (when the trainer logs no peak of its own)."""

    def __init__(self):
        self.peak_gib, self._done = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._done.wait(0.2):
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                self.peak_gib = max(self.peak_gib, float(out.stdout.split()[0]) / 1024)

    def stop(self):
        self._done.set()
        self._thread.join()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train_all(workdir: Path, cpu: bool) -> dict:
    steps = 3 if cpu else 8
    report = {}
    for spec in CHECKS:
        bundle, stage = compile_bundle(spec, workdir, cpu, steps)
        plan = next(s for s in json.loads((bundle / "plan.json").read_text())["stages"] if s["stage"] == stage)
        # FLUX compares compiled with eager (the compile goal is at FLUX width); Wan trains compiled only.
        runs = [train(bundle, stage, True, workdir, cpu)]
        if spec == "flux1-dev":
            runs.append(train(bundle, stage, False, workdir, cpu))
        compiled = runs[0]
        # MFU: the plan's FLOPs per step over the measured step time at the peak throughput the plan assumed.
        mfu = plan["mfu"] * plan["step_seconds"] / compiled["step_seconds"]
        entry = {
            "stage": stage, "params": plan["params"], "zero_stage": plan["zero_stage"], "precision": plan["precision"],
            "micro_batch": plan["micro_batch"], "planned_memory_gib": plan["memory_gib"]["total"],
            "planned_step_seconds": plan["step_seconds"], "planned_mfu": plan["mfu"], "mfu": mfu, "runs": runs,
        }
        line = (f"{spec} {stage}: {plan['params'] / 1e9:.2f}B params, ZeRO-{plan['zero_stage']}, "
                f"{plan['precision']}, micro batch {plan['micro_batch']}; peak memory "
                f"{compiled['peak_memory_gib']:.2f} GiB ({compiled['peak_memory_source']}) vs planned "
                f"{plan['memory_gib']['total']:.2f} GiB; step {compiled['step_seconds']:.3f} s (planned "
                f"{plan['step_seconds']:.3f} s); MFU {mfu:.1%} (planned {plan['mfu']:.0%})")
        if len(runs) == 2:
            entry["compiled_speedup"] = runs[1]["step_seconds"] / compiled["step_seconds"]
            line += f"; compiled/eager speed {entry['compiled_speedup']:.2f}x"
        print(line, flush=True)
        report[spec] = entry
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["kernel", "train"])
    parser.add_argument("workdir", nargs="?", type=Path)
    parser.add_argument("--cpu", action="store_true", help="reduced width on a CPU")
    args = parser.parse_args()
    if args.step == "kernel":
        result = kernel(args.cpu)
    else:
        if args.workdir is None:
            parser.error("train needs WORKDIR")
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = train_all(args.workdir.resolve(), args.cpu)
    if args.workdir is not None:
        (args.workdir / f"{args.step}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
