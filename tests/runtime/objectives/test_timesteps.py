"""Timestep samplers and shifts against the published formulas and values."""

import math

import pytest
import torch

from compiler.schema.objective import (
    ConstantShift,
    ExponentialShift,
    LogitNormal,
    ModeTimesteps,
    MuLinearShift,
    NoShift,
    ResolutionShift,
    UniformTimesteps,
)
from runtime.objectives.timesteps import (
    applies_at,
    draw_timesteps,
    flux_mu,
    mode_sample,
    sampling_sigmas,
    shift_factor,
    shift_timesteps,
)

N = 200_000


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "side, expected",
    [
        (256, math.exp(0.5)),  # 256 tokens: mu = base_shift = 0.5, a = 1.65
        (512, math.exp(0.63)),  # 1024 tokens: mu = 0.5 + 768 * 0.65 / 3840 = 0.63, a = 1.88
        (1024, math.exp(1.15)),  # 4096 tokens: mu = max_shift = 1.15, a = 3.16
        (2048, 25.3),  # 16384 tokens, extrapolated: mu = 3.23
    ],
)
def test_flux_shift_follows_mu_linear_in_image_tokens(side, expected):
    tokens = (side // 16) ** 2  # 8x VAE, 2x2 patches
    assert shift_factor(MuLinearShift(), image_tokens=tokens) == pytest.approx(expected, rel=2e-3)


def test_flux_shift_at_1024_is_3_16():
    assert round(shift_factor(MuLinearShift(), image_tokens=4096), 2) == 3.16


def test_qwen_exponential_mu_reaches_0_9_at_8192_tokens():
    assert flux_mu(8192, ExponentialShift()) == pytest.approx(0.9)
    assert flux_mu(256, ExponentialShift()) == pytest.approx(0.5)


def test_resolution_shift_is_sqrt_of_pixel_ratio():
    rule = ResolutionShift(base_pixels=256 * 256)
    assert shift_factor(rule, pixels=1024 * 1024) == pytest.approx(4.0)
    assert shift_factor(rule, pixels=512 * 512) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="pixels"):
        shift_factor(rule)


def test_shift_multiplies_the_noise_to_signal_ratio():
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    shifted = shift_timesteps(t, 3.0)
    assert torch.allclose(shifted / (1 - shifted), 3.0 * t / (1 - t))
    assert shift_timesteps(torch.tensor([0.5]), 3.0).item() == pytest.approx(0.75)
    assert torch.equal(shift_timesteps(t, 1.0), t)


def test_shift_phases():
    assert not applies_at(NoShift(), "training")
    assert applies_at(MuLinearShift(), "sampling") and not applies_at(MuLinearShift(), "training")
    assert applies_at(ConstantShift(shift=5.0), "training") and applies_at(ConstantShift(shift=5.0), "sampling")


def test_sampling_sigmas_flux_grid_is_shifted_linspace():
    sigmas = sampling_sigmas(MuLinearShift(), 4, image_tokens=4096)
    expected = shift_timesteps(torch.linspace(1, 0, 5, dtype=torch.float64), math.exp(1.15))
    assert torch.allclose(sigmas, expected)
    assert sigmas[0] == 1 and sigmas[-1] == 0


def test_sampling_sigmas_qwen_stretch_to_terminal():
    sigmas = sampling_sigmas(ExponentialShift(applies="sampling"), 10, image_tokens=4096)
    assert sigmas[0].item() == pytest.approx(1.0)
    assert sigmas[-2].item() == pytest.approx(0.02)
    assert sigmas[-1].item() == 0
    assert torch.all(sigmas[1:] < sigmas[:-1])


def test_sampling_sigmas_unshifted_when_shift_is_training_only():
    sigmas = sampling_sigmas(ConstantShift(shift=3.0, applies="training"), 4)
    assert torch.allclose(sigmas, torch.linspace(1, 0, 5, dtype=torch.float64))


def test_logit_normal_logit_has_requested_mean_and_std():
    t = draw_timesteps(LogitNormal(mean=0.5, std=0.8), N, generator())
    logit = torch.log(t / (1 - t))
    assert logit.mean().item() == pytest.approx(0.5, abs=0.01)
    assert logit.std().item() == pytest.approx(0.8, abs=0.01)


def test_mode_sampler_quantiles_follow_the_map():
    t = draw_timesteps(ModeTimesteps(scale=1.29), N, generator())
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        expected = mode_sample(torch.tensor(1 - q, dtype=torch.float64), 1.29).item()
        assert torch.quantile(t, q).item() == pytest.approx(expected, abs=0.005)
    # known value: f(0.25) = 0.75 - 1.29 (cos^2(pi / 8) - 0.75)
    assert mode_sample(torch.tensor(0.25), 1.29).item() == pytest.approx(
        0.75 - 1.29 * (math.cos(math.pi / 8) ** 2 - 0.75)
    )


def test_mode_sampler_concentrates_mass_in_the_middle():
    t = draw_timesteps(ModeTimesteps(scale=1.29), N, generator())
    middle = ((t > 0.4) & (t < 0.6)).double().mean().item()
    assert middle > 0.35  # uniform puts 0.2 there


def test_mode_sampler_with_zero_scale_is_uniform():
    t = draw_timesteps(ModeTimesteps(scale=0.0), N, generator())
    assert t.mean().item() == pytest.approx(0.5, abs=0.005)
    assert t.var().item() == pytest.approx(1 / 12, abs=0.002)


def test_uniform_sampler():
    t = draw_timesteps(UniformTimesteps(), N, generator())
    assert 0 <= t.min() and t.max() < 1
    assert t.mean().item() == pytest.approx(0.5, abs=0.005)
