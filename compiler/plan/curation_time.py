"""How long curation jobs run: the `--time` of each Slurm curation job, from an estimate of its work.

A pipeline runs on Slurm as one array job per stage (its ops cut at the barriers), a barrier job before each
later stage, and a finalize job (compiler/emit/bundle.py, templates/submit_slurm.sh.j2). submit_slurm.sh sizes
each array to the input shards it finds (one task per `curation_shards_per_task` shards) and asks for
  --time = shards per task x seconds per shard + STARTUP_MINUTES, at most the partition's limit,
where the seconds per shard computed here are
  samples per shard (cluster.curation_samples_per_shard) x seconds per sample x MARGIN.

Seconds per sample of one stage, on the resources one array task asks for:
  CPU work / the task's CPUs (the executor runs one worker process per CPU) + GPU work / its GPUs, with
  - every op:             HEADER_SECONDS (reading its columns of the record, writing the manifest line);
  - one decode per stage: DECODE_SECONDS (the plan decodes a sample once per segment, compiler/graph/optimise.py);
  - each model op:        MODEL_SECONDS on a GPU, CPU_MODEL_SLOWDOWN times that on a CPU-only cluster;
                          a recaption op max_new_tokens / VLM_TOKENS_PER_SECOND instead;
  - the barrier that ends the stage is scored per sample like a map op (decode and model as its contract says).
The barrier job decides over every sample once: BARRIER_SECONDS per sample; finalize reads each sample's ledger
line: HEADER_SECONDS per sample. Images and videos have their own figures; where each comes from is beside it.
These are estimates for a time limit, not a performance model: MARGIN covers what they leave out.
"""

from __future__ import annotations

from dataclasses import dataclass

from compiler.graph.contracts import contract
from compiler.schema.data import Pipeline

# Seconds per sample on one worker. Measured here (../shared/reference/curation-ops.md): a 512x512 JPEG decodes
# fully with PIL at 620/s on one core.
DECODE_SECONDS = {"image": 1 / 620,
                  # NeMo Curator's nightly floor for video split + transcode + embed: >= 12 clips/s (scale.md).
                  "video": 1 / 12}
# NeMo Curator's image pipeline (read, CLIP embed, aesthetic, write) >= 350 img/s with Ray Data (scale.md,
# hardware not stated): a model op per image on a GPU. Videos: the same clip floor as decoding.
MODEL_SECONDS = {"image": 1 / 350, "video": 1 / 12}
# Assumed: metadata checks and manifest writes, a small fraction of a decode.
HEADER_SECONDS = 2e-4
# Assumed: a 7B VLM generating batched in bf16 on one GPU; Cosmos-Curate names caption tokens/s the bottleneck.
VLM_TOKENS_PER_SECOND = 1000
# Assumed: a scorer network on CPU cores instead of a GPU (CPU-only clusters; smoke-scale stand-ins are tiny).
CPU_MODEL_SLOWDOWN = 30
# Assumed: a barrier's decision per sample (faiss search or k-means assignment, reading its manifest line).
BARRIER_SECONDS = 1e-3
MARGIN = 2.0  # the figures' uncertainty and stragglers: a task past its --time is killed and fails the DAG
STARTUP_MINUTES = 10  # per job: imports, loading model weights, listing shards


@dataclass(frozen=True)
class CurationTimes:
    """Estimated seconds per input shard of each Slurm curation job of one pipeline (MARGIN included)."""

    stages: tuple[int, ...]  # array job of stage K, per shard one task reads
    barrier: int  # the barrier job before a stage, per shard of the whole input
    finalize: int  # the finalize job, per shard of the whole input


def curation_times(pipeline: Pipeline, video: bool, cpus: int, gpus: int, samples_per_shard: int) -> CurationTimes:
    """Seconds per shard of each curation job of `pipeline`, for tasks of `cpus` CPUs and `gpus` GPUs."""
    media = "video" if video else "image"
    stages: list[list] = [[]]
    for op in pipeline.ops:
        stages[-1].append(op)  # a barrier is scored in the stage it ends
        if op.shape == "barrier":
            stages.append([])
    per_stage = [_sample_seconds(ops, media, cpus, gpus) for ops in stages]
    return CurationTimes(
        stages=tuple(_per_shard(seconds, samples_per_shard) for seconds in per_stage),
        barrier=_per_shard(BARRIER_SECONDS, samples_per_shard),
        finalize=_per_shard(HEADER_SECONDS, samples_per_shard),
    )


def _sample_seconds(ops: list, media: str, cpus: int, gpus: int) -> float:
    cpu, gpu = HEADER_SECONDS * len(ops), 0.0
    terms = [contract(op) for op in ops]
    if any(t.decode is not None for t in terms):
        cpu += DECODE_SECONDS[media]
    for op, t in zip(ops, terms):
        if t.resource != "gpu":
            continue
        seconds = op.max_new_tokens / VLM_TOKENS_PER_SECOND if op.kind == "recaption" else MODEL_SECONDS[media]
        if gpus:
            gpu += seconds
        else:
            cpu += seconds * CPU_MODEL_SLOWDOWN
    return cpu / cpus + (gpu / gpus if gpus else 0.0)


def _per_shard(sample_seconds: float, samples_per_shard: int) -> int:
    return max(1, round(sample_seconds * samples_per_shard * MARGIN))
