"""Slurm array entry point: one array task curates its range of the input shards for one stage.

    python -m runtime.curation.slurm_task --bundle DIR --pipeline NAME --input SHARDS --output OUT --stage K
    python -m runtime.curation.slurm_task --bundle DIR --pipeline NAME --input SHARDS --output OUT --finalize

    python -m runtime.curation.slurm_task --bundle DIR --pipeline NAME --input SHARDS --output OUT --stage K --barrier

A pipeline with B barriers has B + 1 stages (`--print-stages` prints the number): submit one array job
per stage, each after the previous one succeeded (--dependency=afterok), then one `--finalize` task,
which checks the ledger, writes OUT/report.json and fails if nothing was read or kept. Task i of n
(SLURM_ARRAY_TASK_ID minus SLURM_ARRAY_TASK_MIN, of SLURM_ARRAY_TASK_COUNT) takes the i-th contiguous
slice of the sorted shards. Before the array of stage K > 0, one `--stage K --barrier` job (not an array)
lets the barrier decide over every shard's stage K-1 manifest, once, and stores the verdicts in
OUT/_work/stageK/barrier.json; the array tasks read them (a task that finds none computes the same file
itself, so a missing barrier job costs time, never correctness). A rerun of a task skips its finished shards.

The pipeline comes from a compiled bundle (BUNDLE/curation/<pipeline>/pipeline.json, which also holds the
architecture and encode size precompute_embeddings needs), --pipeline-file (a bare pipeline: none of those),
or --spec TARGET (a shipped spec name or spec file, which brings its own) with --pipeline NAME. --input may be
given once per source.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from compiler.schema.data import Pipeline
from runtime.curation.api import CurationError, OpConfigError, OpContext
from runtime.curation.curate import CurationRun, select_pipeline, spec_encoding
from runtime.curation.executors.local import run_jobs
from runtime.curation.stages import plan_stages


def array_slice(items: list[str], task: int, tasks: int) -> list[str]:
    """The task-th of `tasks` contiguous, nearly equal slices of `items`."""
    if not 0 <= task < tasks:
        raise CurationError(f"array task {task} is outside 0..{tasks - 1}")
    return items[task * len(items) // tasks : (task + 1) * len(items) // tasks]


def array_position(environ: os._Environ | dict = os.environ) -> tuple[int, int]:
    """(task index from 0, task count) from Slurm's array variables; (0, 1) outside an array job."""
    if "SLURM_ARRAY_TASK_ID" not in environ:
        return 0, 1
    first = int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
    return int(environ["SLURM_ARRAY_TASK_ID"]) - first, int(environ["SLURM_ARRAY_TASK_COUNT"])


def load_pipeline(args: argparse.Namespace) -> tuple[Pipeline, OpContext]:
    """The pipeline the task runs and the context its ops are built with: a bundle's pipeline.json and a spec
    bring the architecture and encode size precompute_embeddings needs; a --pipeline-file has neither."""
    model_dir = Path(args.model_dir) if args.model_dir else None
    if args.pipeline_file:
        return Pipeline.model_validate_json(Path(args.pipeline_file).read_text()), OpContext(model_dir, args.scale)
    if args.bundle:
        from compiler.schema.bundle import read_bundle_pipeline

        try:
            shipped = read_bundle_pipeline(Path(args.bundle), args.pipeline)
        except (OSError, ValueError) as error:
            raise CurationError(f"--bundle {args.bundle}: {error}") from error
        return shipped.pipeline, OpContext(model_dir, args.scale, shipped.architecture, shipped.encode_size,
                                           shipped.encode_clip)
    if args.spec:
        from compiler.targets import (
            load_target,  # loads the spec library: only when asked for
        )

        spec = load_target(args.spec)
        name, _ = select_pipeline(spec, args.pipeline)
        pipeline = next(p for p in spec.data.pipelines if p.name == name)
        return pipeline, OpContext(model_dir, args.scale, *spec_encoding(spec, name, args.scale))
    raise CurationError("give the pipeline with --bundle DIR --pipeline NAME, --pipeline-file FILE or --spec TARGET")


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m runtime.curation.slurm_task", description=__doc__.split("\n")[0])
    cli.add_argument("--bundle", help="compiled bundle directory (reads curation/<pipeline>/pipeline.json)")
    cli.add_argument("--pipeline", help="pipeline name")
    cli.add_argument("--pipeline-file", help="a Pipeline as JSON")
    cli.add_argument("--spec", help="a spec TARGET instead of a bundle")
    cli.add_argument("--input", action="append", help="shards: directory, glob or brace pattern (repeatable)")
    cli.add_argument("--output", help="output directory shared by all tasks")
    cli.add_argument("--stage", type=int, default=0, help="stage to run (0 .. stages-1)")
    cli.add_argument("--barrier", action="store_true",
                     help="decide the barrier that starts --stage over all shards, once, before its array")
    cli.add_argument("--finalize", action="store_true", help="check the ledger and write the report")
    cli.add_argument("--print-stages", action="store_true", help="print the number of stages and exit")
    cli.add_argument("--workers", type=int, default=int(os.environ.get("SLURM_CPUS_PER_TASK", "1")))
    cli.add_argument("--scale", choices=("smoke", "full"), default="full")
    cli.add_argument("--model-dir")
    cli.add_argument("--cache-dir", help="score cache; default OUTPUT/_cache (keep it off NFS)")
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.perf_counter()
    try:
        pipeline, ctx = load_pipeline(args)
        if args.print_stages:
            print(len(plan_stages(list(pipeline.ops), ctx)))
            return 0
        if not args.input or not args.output:
            raise CurationError("--input and --output are required")
        run = CurationRun.plan(pipeline, args.input, args.output, None, args.scale, args.model_dir, args.cache_dir,
                               ctx.architecture, ctx.encode_size, ctx.encode_clip)
        if args.finalize:
            print(run.finish("slurm", args.workers, time.perf_counter() - started).summary())
            return 0
        if not 0 <= args.stage < len(run.stages):
            raise CurationError(f"--stage {args.stage}: pipeline {run.name!r} has stages 0..{len(run.stages) - 1}")
        stage = run.stages[args.stage]
        if args.barrier:
            if stage.barrier_in is None:
                raise CurationError(f"--barrier --stage {args.stage}: stage {args.stage} of {run.name!r} starts with no "
                                    "barrier (stage 0 never does); submit --barrier only for stages 1 and later")
            verdicts = run.barrier(stage)
            decided = sum(len(keys) for keys in verdicts.values())
            print(f"{run.name} stage {stage.index}: barrier decided, {decided} records with a verdict other than a "
                  f"plain keep; {run.layout.barrier(stage.index)}")
            return 0
        task, tasks = array_position()
        mine = array_slice(run.shards, task, tasks)
        description = f"{run.name} stage {stage.index} task {task}/{tasks}"
        run_jobs(run.pending(run.jobs(stage, mine)), args.workers, description)
        print(f"{run.name} stage {stage.index}: task {task} of {tasks} finished {len(mine)} shards")
        return 0
    except (CurationError, OpConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
