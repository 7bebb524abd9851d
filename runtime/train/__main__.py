"""python -m runtime.train --stage train/<stage>/stage.yaml --ds-config train/<stage>/ds_config.json
[--run-root DIR] [--max-steps N] [--model-factory module:function] [--model-dir DIR]"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch.distributed

from runtime.train.protocol import DEFAULT_FACTORY
from runtime.train.trainer import RunOptions, train


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the stage."""
    parser = argparse.ArgumentParser(prog="python -m runtime.train", description="Run one training stage of a bundle.")
    parser.add_argument("--stage", type=Path, required=True, help="train/<stage>/stage.yaml")
    parser.add_argument("--ds-config", type=Path, required=True, help="train/<stage>/ds_config.json")
    parser.add_argument("--run-root", type=Path, default=Path("."), help="directory the stage's paths are relative to")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this step (resume continues later)")
    parser.add_argument("--model-factory", default=DEFAULT_FACTORY, help="module:function building the denoiser")
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="text encoder and VAE weights (on-the-fly encoding)"
    )
    args = parser.parse_args(argv)
    try:
        train(RunOptions(args.stage, args.ds_config, args.run_root, args.max_steps, args.model_factory, args.model_dir))
    finally:
        # Join the process group's threads before the interpreter exits: left to static destructors, a gloo
        # worker thread still running ended a two-process test run with "terminate called without an active
        # exception" (exit code 250) after training had finished.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
