"""ZeRO-3 trains a model whose blocks are compiled (layout.compile), to the losses of the eager model, with
fullgraph=True and one graph for all blocks (per grad mode): compile_blocks compiles each block's forward and makes the block
a ZeRO-3 leaf, so DeepSpeed's parameter hooks (torch.compiler.disable) stay outside the graph."""

import json

import pytest
import tiny_model
import torch._dynamo
from conftest import write_stage
from ruamel.yaml import YAML

from runtime.models import compile_blocks
from runtime.train import RunOptions, train
from runtime.train.metrics import read_metrics


def build_compilable(architecture, model_name="main"):
    """tiny_model's denoiser with the compile_blocks() the trainer calls when layout.compile is on."""
    model = tiny_model.build(architecture, model_name)
    model.compile_blocks = lambda **options: compile_blocks(model, **options)
    return model


def train_losses(root, name: str, compiled: bool, zero: int) -> list[float]:
    stage_path, ds_config = write_stage(root, name=name, steps=3, zero=zero, micro=2, accum=2, ema=None)
    document = YAML(typ="safe").load(stage_path.read_text())
    document["layout"]["compile"] = compiled
    stage_path.write_text(json.dumps(document))  # JSON is YAML
    train(RunOptions(stage_path, ds_config, root, None, build_compilable))
    return [r["loss"] for r in read_metrics(root / "runs" / name) if "loss" in r]


@pytest.mark.slow
def test_zero3_trains_compiled_blocks_to_the_eager_losses(image_root):
    eager = train_losses(image_root, "zero3_eager", compiled=False, zero=3)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = train_losses(image_root, "zero3_compiled", compiled=True, zero=3)
    counters = torch._dynamo.utils.counters
    # three blocks, one graph per grad mode: validation (no_grad) and training
    assert counters["stats"]["unique_graphs"] == 2, dict(counters["stats"])
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert len(eager) == 3
    assert compiled == pytest.approx(eager, rel=1e-4)
