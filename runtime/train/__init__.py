"""The trainer: one bundle stage through DeepSpeed (ZeRO 0-3, bf16 / fp32), EMA, exact resume, metrics.

- `python -m runtime.train --stage stage.yaml --ds-config ds_config.json [--run-root] [--max-steps]`
- `train(RunOptions(...))` does the same in-process
- protocol.py: the model-call protocol a model factory's denoiser follows (runtime.models.build_model does)

The names below load on first use (PEP 562): `python -m runtime.train` imports this package before its
__main__, which must install the preemption signal handlers before torch and DeepSpeed take their seconds
to import (a Slurm USR1 arriving then would otherwise kill the rank instead of stopping it after a step).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"DEFAULT_FACTORY": "protocol", "Denoiser": "protocol", "ModelFactory": "protocol",
            "load_factory": "protocol", "RunOptions": "trainer", "load_stage_file": "trainer", "train": "trainer"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"runtime.train.{_EXPORTS[name]}"), name)
