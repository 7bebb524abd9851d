"""The trainer and samplers with the default model factory, runtime.models.build_model, on miniature specs."""

import torch
from conftest import architecture, trained_losses, write_shards, write_stage

from compiler.schema.architecture import ArchitectureSpec
from compiler.schema.objective import MuLinearShift
from runtime.models import build_model
from runtime.objectives import Conditioning, sampling_sigmas
from runtime.samplers import denoiser_call, flow_euler
from runtime.train import RunOptions, train
from runtime.train.metrics import read_metrics


def test_build_model_follows_the_protocol_and_samples():
    denoiser = build_model(ArchitectureSpec(**architecture(guidance=True)))
    cond = Conditioning(text=torch.randn(1, 4, 16), pooled=torch.randn(1, 8))
    sigmas = sampling_sigmas(MuLinearShift(), 3, image_tokens=16)
    sample = flow_euler(denoiser_call(denoiser), torch.randn(1, 4, 8, 8), cond, sigmas, guidance=3.5)
    assert sample.shape == (1, 4, 8, 8) and torch.isfinite(sample).all()


def test_trainer_runs_the_runtime_flux_model(image_root):
    stage_path, ds_config = write_stage(image_root, name="flux", steps=3, micro=4, zero=2, precision="bf16")
    train(RunOptions(stage_path, ds_config, image_root))  # default factory: runtime.models:build_model
    records = read_metrics(image_root / "runs" / "flux")
    trained_losses(records, 3)
    assert records[-1]["val_loss"] != records[0]["val_loss"]  # the weights moved (same validation noise)


def test_trainer_runs_the_runtime_wan_model(tmp_path):
    write_shards(tmp_path / "data" / "clips", samples=4, per_shard=4, video=True)
    stage_path, ds_config = write_stage(tmp_path, name="wan", video=True, steps=2, micro=2, datasets=("clips",))
    train(RunOptions(stage_path, ds_config, tmp_path))
    records = read_metrics(tmp_path / "runs" / "wan")
    trained_losses(records, 2)
    assert records[-1]["val_loss"] != records[0]["val_loss"]  # the weights moved (same validation noise)
