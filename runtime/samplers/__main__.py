"""python -m runtime.samplers --stage train/<stage>/stage.yaml --run-root R --prompts P [P ...] --out R/samples/S.png
[--steps N] [--cfg W] [--true-cfg W] [--seed S] [--sampler NAME] [--model-dir DIR] [--model-factory module:function]

Samples from a trained stage's final checkpoint (runtime/samplers/from_checkpoint.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtime.samplers import from_checkpoint


def parse_args(argv: list[str] | None = None) -> from_checkpoint.SampleOptions:
    """The command line as SampleOptions."""
    description = from_checkpoint.__doc__.split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m runtime.samplers", description=description)
    parser.add_argument(
        "--stage",
        type=Path,
        required=True,
        help="train/<stage>/stage.yaml of a compiled bundle",
    )
    parser.add_argument(
        "--run-root",
        type=Path,
        default=Path("."),
        help="the run root the stage trained under",
    )
    parser.add_argument("--prompts", nargs="+", required=True, help="one tile per prompt")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the PNG grid; the sidecar is <out>.json",
    )
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the spec's)")
    parser.add_argument(
        "--cfg",
        type=float,
        default=None,
        help="CFG weight, or the embedded guidance of a guidance-distilled model",
    )
    parser.add_argument(
        "--true-cfg",
        type=float,
        default=None,
        help="true classifier-free guidance weight (two passes per step), also for a model with a guidance input",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sampler",
        default=None,
        help=f"override the spec's sampler; supported: {from_checkpoint.SUPPORTED}",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="text encoder / VAE weights (as the trainer's)",
    )
    parser.add_argument("--model-factory", default="runtime.models:build_model", help="module:function")
    args = parser.parse_args(argv)
    return from_checkpoint.SampleOptions(
        stage=args.stage,
        prompts=args.prompts,
        out=args.out,
        run_root=args.run_root,
        steps=args.steps,
        cfg=args.cfg,
        true_cfg=args.true_cfg,
        seed=args.seed,
        sampler=args.sampler,
        model_dir=args.model_dir,
        model_factory=args.model_factory,
    )


def main(argv: list[str] | None = None) -> int:
    """Sample and print the grid's path; a missing file or a bad value is one line on stderr and exit 1."""
    options = parse_args(argv)
    try:
        out = from_checkpoint.sample(options)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
