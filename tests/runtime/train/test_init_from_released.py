"""A stage whose init_from names released weights: a diffusers folder in the model directory, loaded into the
runtime's network (whole, or partitioned by ZeRO-3) and trained from there."""

import pytest
import torch
from conftest import architecture, trained_losses, write_stage
from safetensors.torch import load_file, save_file

from compiler.schema.architecture import ArchitectureSpec
from compiler.schema.schedule import ReleasedWeights
from runtime.models import build_network
from runtime.models.released import ReleasedWeightsError, load_released
from runtime.train import RunOptions, train
from runtime.train.launch import prepare_environment
from runtime.train.metrics import read_metrics

MODEL_ID = "tiny-lab/tiny-flux"
LR = 3e-3  # write_stage's learning rate: one AdamW step moves each weight by about this much


def write_released(model_dir, seed=5) -> dict[str, torch.Tensor]:
    """A diffusers folder of the conftest FLUX-like architecture, weights moved off any initialisation."""
    torch.manual_seed(seed)
    network = build_network(ArchitectureSpec(**architecture()))
    state = {name: (t + 0.1 * torch.randn_like(t)).contiguous() for name, t in network.state_dict().items()}
    folder = model_dir / MODEL_ID.replace("/", "--")
    folder.mkdir(parents=True)
    save_file(state, folder / "diffusion_pytorch_model.safetensors")
    return state


def test_a_stage_starts_from_a_released_diffusers_folder_and_trains(image_root, tmp_path):
    released = write_released(tmp_path / "models")
    stage_path, ds_config = write_stage(image_root, name="from_released", steps=1, micro=4,
                                       init_from=ReleasedWeights(released=MODEL_ID))

    train(RunOptions(stage_path, ds_config, image_root, model_dir=tmp_path / "models"))  # runtime.models:build_model

    trained_losses(read_metrics(image_root / "runs" / "from_released"), 1)
    final = load_file(str(image_root / "runs" / "from_released" / "final" / "model.safetensors"))
    assert sorted(final) == sorted(f"model.{name}" for name in released)  # the trainer's ModelAdapter prefix
    torch.manual_seed(5)
    scratch = build_network(ArchitectureSpec(**architecture())).state_dict()
    for name, tensor in released.items():
        # One optimizer step away from the released weights, far from a fresh initialisation.
        assert (final[f"model.{name}"] - tensor).abs().max() <= 2 * LR, name
        assert (scratch[name] - tensor).abs().max() > 20 * LR, name


def test_a_stage_without_the_released_weights_says_where_they_go(image_root, tmp_path):
    stage_path, ds_config = write_stage(image_root, name="no_weights", steps=1, micro=4,
                                        init_from=ReleasedWeights(released=MODEL_ID))
    with pytest.raises(ReleasedWeightsError, match=r"schedule.stages\[no_weights\].init_from: no weights for "
                                                   r"'tiny-lab/tiny-flux' .*tiny-lab--tiny-flux"):
        train(RunOptions(stage_path, ds_config, image_root, model_dir=tmp_path))


def test_released_weights_fill_zero3_partitioned_parameters(tmp_path):
    prepare_environment()
    import deepspeed

    deepspeed.init_distributed()
    released = write_released(tmp_path)
    network = build_network(ArchitectureSpec(**architecture()))
    config = {
        "train_batch_size": 1,
        "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},  # every parameter partitioned
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1_000_000,
    }
    engine, _, _, _ = deepspeed.initialize(model=network, optimizer=torch.optim.AdamW(network.parameters()),
                                           config=config)
    params = dict(engine.module.named_parameters())
    assert sorted(params) == sorted(released) and all(p.data.numel() == 0 for p in params.values())

    load_released(engine.module, ReleasedWeights(released=MODEL_ID), tmp_path)

    for name, param in params.items():
        assert param.data.numel() == 0, f"{name} is left gathered"
        with deepspeed.zero.GatheredParameters([param]):
            assert torch.equal(param.data, released[name]), name
