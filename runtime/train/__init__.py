"""The trainer: one bundle stage through DeepSpeed (ZeRO 0-3, bf16 / fp32), EMA, exact resume, metrics.

- `python -m runtime.train --stage stage.yaml --ds-config ds_config.json [--run-root] [--max-steps]`
- `train(RunOptions(...))` does the same in-process
- protocol.py: the model-call protocol a model factory's denoiser follows (runtime.models.build_model does)
"""

from runtime.train.protocol import DEFAULT_FACTORY, Denoiser, ModelFactory, load_factory
from runtime.train.trainer import RunOptions, load_stage_file, train

__all__ = ["DEFAULT_FACTORY", "Denoiser", "ModelFactory", "RunOptions", "load_factory", "load_stage_file", "train"]
