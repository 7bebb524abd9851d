"""One training step of a small FLUX-like MMDiT, each contender in one group of one run (`make bench`).

A step is forward, the flow-matching loss (MSE against a fixed velocity target), backward and an AdamW step,
at a fixed config: 2 double + 2 single blocks, 4 heads x 32, 2 x 256 image tokens (a 32 x 32 latent grid
packed 2 x 2, 16 channels), 32 text tokens. Contenders, with the same weights and inputs:
  ours_eager        runtime.models MMDiT
  ours_compiled     the same with compile_blocks (torch.compile per block, fullgraph); compile time falls in
                    the warm-up rounds, which are not timed
  diffusers_eager   diffusers FluxTransformer2DModel, the baseline
Before timing, each contender's first-step loss must equal the baseline's, so all three do the same work.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(__file__).resolve().parents[2] / ".cache" / "inductor"))

import pytest
import torch
import torch.nn.functional as F
from diffusers import FluxTransformer2DModel

from runtime.models import MMDiT, MMDiTConfig, compile_blocks
from runtime.models.rope import flux_image_ids

CONFIG = dict(
    in_channels=64,
    num_layers=2,
    num_single_layers=2,
    num_attention_heads=4,
    attention_head_dim=32,
    joint_attention_dim=128,
    pooled_projection_dim=64,
    guidance_embeds=True,
    axes_dims_rope=(8, 12, 12),
)
BATCH, GRID, TEXT = 2, 16, 32  # 16 x 16 packed tokens = a 32 x 32 latent grid
LR = 1e-4


def step_inputs() -> tuple[dict, torch.Tensor]:
    """Fixed keyword inputs (diffusers and ours share the names) and the velocity target."""
    g = torch.Generator().manual_seed(0)
    inputs = dict(
        hidden_states=torch.randn(BATCH, GRID * GRID, CONFIG["in_channels"], generator=g),
        encoder_hidden_states=torch.randn(BATCH, TEXT, CONFIG["joint_attention_dim"], generator=g),
        pooled_projections=torch.randn(BATCH, CONFIG["pooled_projection_dim"], generator=g),
        timestep=torch.rand(BATCH, generator=g),
        img_ids=flux_image_ids(GRID, GRID),
        txt_ids=torch.zeros(TEXT, 3),
        guidance=torch.full((BATCH,), 3.5),
    )
    return inputs, torch.randn(BATCH, GRID * GRID, CONFIG["in_channels"], generator=g)


@pytest.fixture(scope="module")
def reference() -> FluxTransformer2DModel:
    torch.manual_seed(0)
    return FluxTransformer2DModel(**CONFIG)


def training_step(model: torch.nn.Module, diffusers_output: bool):
    """A closure running one optimizer step of `model`; returns the loss."""
    inputs, target = step_inputs()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)

    def step() -> float:
        output = model(**inputs)
        loss = F.mse_loss(output.sample if diffusers_output else output, target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def contender_step(name: str, reference: FluxTransformer2DModel):
    if name == "diffusers_eager":
        return training_step(copy.deepcopy(reference), diffusers_output=True)
    ours = MMDiT(MMDiTConfig(**CONFIG))
    ours.load_state_dict(reference.state_dict())
    if name == "ours_compiled":
        compile_blocks(ours)
    return training_step(ours, diffusers_output=False)


@pytest.mark.parametrize("name", ["ours_eager", "ours_compiled", "diffusers_eager"])
def test_training_step(benchmark, reference, name):
    benchmark.group = "train step: FLUX-like MMDiT"
    benchmark.extra_info["baseline"] = "diffusers_eager"
    baseline_loss = training_step(copy.deepcopy(reference), diffusers_output=True)()
    step = contender_step(name, reference)
    assert step() == pytest.approx(baseline_loss, rel=1e-4)
    benchmark.pedantic(step, rounds=10, iterations=1, warmup_rounds=2)
