"""Guidance distillation targets, Diffusion-DPO and the LADD pieces."""

import math

import pytest
import torch
from torch import nn

from runtime.objectives import Conditioning
from runtime.objectives.adversarial import (
    DiscriminatorHeads,
    FeatureTap,
    discriminator_timesteps,
    hinge_discriminator_loss,
    hinge_generator_loss,
    student_timesteps,
)
from runtime.objectives.distillation import guided_teacher_target, sample_guidance
from runtime.objectives.preference import diffusion_dpo_loss


def test_guided_teacher_target_is_cfg_of_the_teacher():
    # teacher output = x + pooled: cond pooled 2, uncond (null) pooled 0
    def teacher(x, timestep, cond):
        return x + cond.pooled[:, :1, None, None]

    x = torch.ones(2, 1, 2, 2)
    cond = Conditioning(pooled=torch.full((2, 3), 2.0))
    target = guided_teacher_target(teacher, x, torch.zeros(2), cond, torch.tensor([1.0, 3.5]))
    assert target[0].unique().tolist() == [3.0]  # w = 1: the conditional output
    assert target[1].unique().tolist() == [1.0 + 3.5 * 2.0]


def test_guidance_scales_cover_the_range():
    w = sample_guidance(10_000, (1.0, 5.0), torch.Generator().manual_seed(0))
    assert 1.0 <= w.min() and w.max() <= 5.0
    assert w.mean().item() == pytest.approx(3.0, abs=0.05)


def test_dpo_loss_values_and_direction():
    zero = torch.zeros(3)
    assert torch.allclose(diffusion_dpo_loss(zero, zero, zero, zero, 5000.0), torch.full((3,), math.log(2)))
    model_w = torch.zeros(1, requires_grad=True)
    loss = diffusion_dpo_loss(model_w, torch.zeros(1), torch.zeros(1), torch.zeros(1), 10.0)
    loss.sum().backward()
    assert model_w.grad.item() > 0  # lowering the preferred sample's error lowers the loss
    better = diffusion_dpo_loss(
        torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([0.5]), 10.0
    )
    assert better.item() == pytest.approx(-math.log(1 / (1 + math.exp(-5.0))))


class Blocks(nn.Module):
    repeated_blocks = ("blocks",)

    def __init__(self, depth=6, dim=8):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(dim, dim) for _ in range(depth))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_feature_tap_and_heads():
    model = Blocks()
    tap = FeatureTap(model, count=3)
    model(torch.randn(2, 5, 8))
    features = tap.take()
    assert len(features) == 3 and all(f.shape == (2, 5, 8) for f in features)
    assert tap.take() == []
    heads = DiscriminatorHeads([8, 8, 8], width=16)
    logits = heads(features, torch.tensor([0.3, 0.7]))
    assert logits.shape == (2,)


def test_feature_tap_needs_repeated_blocks():
    with pytest.raises(ValueError, match="repeated_blocks"):
        FeatureTap(nn.Linear(2, 2))


def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1.5) / 2)
    assert hinge_generator_loss(fake).tolist() == [2.0, -0.5]


def test_ladd_timesteps():
    g = torch.Generator().manual_seed(0)
    assert set(student_timesteps(4, 1000, g).tolist()) == {1.0, 0.75, 0.5, 0.25}
    t = discriminator_timesteps(100_000, g)
    assert torch.log(t / (1 - t)).mean().item() == pytest.approx(1.0, abs=0.02)
