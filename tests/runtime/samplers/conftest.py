"""A fixed toy denoiser for sampler parity tests: a deterministic, nonlinear function of x, the timestep and
the conditioning (a tiny channel-mixing net with seeded weights, float64)."""

import pytest
import torch

from runtime.objectives import Conditioning

CHANNELS = 4


class ToyDenoiser:
    """out = tanh(W x + b) (1 + cos(timestep * frequency) / 2) - x / 4 + pooled[:, 0], over channel dim 1.

    frequency: how fast the output turns with the timestep (pick it so the timestep range spans about a radian).
    """

    def __init__(self, frequency: float, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(CHANNELS, CHANNELS, generator=generator, dtype=torch.float64) / CHANNELS**0.5
        self.bias = torch.randn(CHANNELS, generator=generator, dtype=torch.float64) / 4
        self.frequency = frequency

    def __call__(self, x, timestep, cond, guidance=None):
        shape = (-1, CHANNELS, *([1] * (x.ndim - 2)))
        mixed = torch.einsum("oc,bc...->bo...", self.weight, x.double()) + self.bias.view(shape)
        time = (1 + torch.cos(timestep.double() * self.frequency) / 2).view(-1, *([1] * (x.ndim - 1)))
        offset = cond.pooled[:, :1].double().view(-1, *([1] * (x.ndim - 1)))
        return torch.tanh(mixed) * time - x.double() / 4 + offset


@pytest.fixture
def noise():
    """(2, C, 3, 5) standard normal, float64."""
    return torch.randn(2, CHANNELS, 3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.fixture
def cond():
    """Two prompts' conditioning, read by ToyDenoiser as an offset; its null() is zeros."""
    return Conditioning(pooled=torch.tensor([[0.3, 0.0], [-0.2, 0.0]], dtype=torch.float64))


@pytest.fixture
def toy_denoiser():
    """ToyDenoiser(frequency, seed=0)."""
    return ToyDenoiser


@pytest.fixture
def pipeline_cfg():
    """CFG as a diffusers pipeline writes it, with separate calls: (model, x, timestep, cond, w) ->
    uncond + w (cond - uncond), or the conditional output when w is None."""

    def guided(model, x, timestep, cond, cfg_scale):
        if cfg_scale is None:
            return model(x, timestep, cond)
        uncond = model(x, timestep, cond.null())
        return uncond + cfg_scale * (model(x, timestep, cond) - uncond)

    return guided
