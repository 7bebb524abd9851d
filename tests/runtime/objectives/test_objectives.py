"""Flow matching, DDPM and EDM objectives: noising, targets, weights and schedules against known values."""

import math

import pytest
import torch
from diffusers import DDPMScheduler

from compiler.schema.common import square
from compiler.schema.objective import (
    ConstantShift,
    FlowMatching,
    MuLinearShift,
    NoisePrediction,
    ResolutionShift,
    ScoreMatching,
    UniformTimesteps,
    VPrediction,
)
from compiler.schema.schedule import Stage
from runtime.objectives import build_objective
from runtime.objectives.ddpm import alphas_cumprod


def stage(*sides):
    return Stage(name="s", kind="pretrain", datasets=[{"dataset": "d"}], resolutions=[square(s) for s in sides])


def batch(shape=(4, 3, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def test_flow_matching_noising_target_and_inverse():
    objective = build_objective(FlowMatching(), stage(256), 256)
    x0, noise = batch()
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    x_t = objective.add_noise(x0, noise, t)
    assert torch.allclose(x_t[0], x0[0]) and torch.allclose(x_t[3], noise[3])
    assert torch.allclose(x_t[1], 0.75 * x0[1] + 0.25 * noise[1])
    v = objective.target(x0, noise, t)
    assert torch.allclose(v, noise - x0)
    assert torch.allclose(objective.predict_x0(v, x_t, t), x0, atol=1e-6)
    assert torch.allclose(objective.loss(v, v, t), torch.zeros(4))


def test_flow_matching_model_timestep_scale():
    t = torch.tensor([0.1, 0.9], dtype=torch.float64)
    assert torch.allclose(build_objective(FlowMatching(), stage(256), 256).model_timestep(t), t.float())
    wan = build_objective(FlowMatching(), stage(256), 256, time_scale=1000.0)
    assert torch.allclose(wan.model_timestep(t), torch.tensor([100.0, 900.0]))


@pytest.mark.parametrize(
    "weighting, t, expected",
    [("none", 0.3, 1.0), ("sigma_sqrt", 0.5, 4.0), ("sigma_sqrt", 0.25, 16.0), ("cosmap", 0.5, 4 / math.pi)],
)
def test_flow_loss_weightings(weighting, t, expected):
    objective = build_objective(FlowMatching(loss_weighting=weighting), stage(256), 256)
    assert objective.loss_weight(torch.tensor([t], dtype=torch.float64)).item() == pytest.approx(expected, rel=1e-6)


def test_flow_training_shift_follows_applies():
    sampling_only = build_objective(FlowMatching(shift=MuLinearShift()), stage(1024), 4096)
    assert sampling_only.shift == 1.0
    both = build_objective(FlowMatching(shift=MuLinearShift(applies="both")), stage(1024), 4096)
    assert both.shift == pytest.approx(math.exp(1.15))
    resolution = build_objective(FlowMatching(shift=ResolutionShift(applies="training")), stage(1024), 4096)
    assert resolution.shift == pytest.approx(4.0)
    assert resolution.at_resolution(None, 512 * 512).shift == pytest.approx(2.0)


def test_flow_training_shift_moves_timesteps_towards_noise():
    g = torch.Generator().manual_seed(0)
    plain = build_objective(FlowMatching(timesteps=UniformTimesteps()), stage(256), 256)
    shifted = build_objective(
        FlowMatching(timesteps=UniformTimesteps(), shift=ConstantShift(shift=3.0)), stage(256), 256
    )
    assert plain.sample_timesteps(50_000, g).median().item() == pytest.approx(0.5, abs=0.01)
    assert shifted.sample_timesteps(50_000, g).median().item() == pytest.approx(0.75, abs=0.01)


def test_resolution_shift_needs_one_stage_resolution_or_pixels():
    with pytest.raises(ValueError, match="pixels"):
        build_objective(FlowMatching(shift=ResolutionShift()), stage(256, 512), 256)
    objective = build_objective(FlowMatching(shift=ResolutionShift()), stage(256, 512), 256, pixels=512 * 512)
    assert objective.shift == pytest.approx(2.0)


def test_weighting_must_fit_objective():
    with pytest.raises(ValueError, match="loss_weighting"):
        build_objective(FlowMatching(loss_weighting="min_snr"), stage(256), 256)
    with pytest.raises(ValueError, match="loss_weighting"):
        build_objective(NoisePrediction(loss_weighting="cosmap"), stage(256), 256)
    with pytest.raises(ValueError, match="shift"):
        build_objective(NoisePrediction(shift=ConstantShift(shift=2.0)), stage(256), 256)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ("cosine", dict(beta_schedule="squaredcos_cap_v2")),
        ("linear", dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02)),
        ("scaled_linear", dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)),
    ],
)
def test_ddpm_schedules_match_diffusers(ours, theirs):
    reference = DDPMScheduler(num_train_timesteps=1000, **theirs).alphas_cumprod.double()
    assert torch.allclose(alphas_cumprod(ours, 1000), reference, rtol=1e-5, atol=1e-9)


def test_ddpm_cosine_alpha_bar_closed_form():
    steps, s = 1000, 0.008
    f = lambda t: math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = alphas_cumprod("cosine", steps)
    for t in (0, 10, 250, 500, 900):
        assert alpha_bar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)


@pytest.mark.parametrize("config", [NoisePrediction(), VPrediction()])
def test_ddpm_noising_targets_and_inverse(config):
    objective = build_objective(config, stage(64), None)
    x0, noise = batch()
    t = torch.tensor([0, 100, 500, 999])
    abar = alphas_cumprod("cosine", 1000)[t].float().view(-1, 1, 1, 1)
    x_t = objective.add_noise(x0, noise, t)
    assert torch.allclose(x_t, abar.sqrt() * x0 + (1 - abar).sqrt() * noise, atol=1e-6)
    target = objective.target(x0, noise, t)
    expected = noise if config.kind == "noise_prediction" else abar.sqrt() * noise - (1 - abar).sqrt() * x0
    assert torch.allclose(target, expected, atol=1e-6)
    assert torch.allclose(objective.predict_x0(target, x_t, t)[:3], x0[:3], atol=1e-3)
    assert torch.equal(objective.model_timestep(t), t.float())


def test_min_snr_weights():
    t = torch.tensor([10, 500, 990])
    eps = build_objective(NoisePrediction(loss_weighting="min_snr"), stage(64), None)
    v = build_objective(VPrediction(loss_weighting="min_snr"), stage(64), None)
    snr = eps.snr(t)
    assert torch.allclose(eps.loss_weight(t).double(), snr.clamp(max=5) / snr, rtol=1e-6)
    assert torch.allclose(v.loss_weight(t).double(), snr.clamp(max=5) / (snr + 1), rtol=1e-6)
    assert eps.loss_weight(t)[0].item() < 1 and eps.loss_weight(t)[2].item() == pytest.approx(1.0)


def test_ddpm_timesteps_are_uniform_integers():
    objective = build_objective(NoisePrediction(), stage(64), None)
    t = objective.sample_timesteps(100_000, torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and t.min() >= 0 and t.max() <= 999
    assert t.double().mean().item() == pytest.approx(499.5, abs=3)


def test_edm_preconditioning_at_sigma_data():
    objective = build_objective(ScoreMatching(), stage(64), None)
    c_skip, c_out, c_in, c_noise = objective.preconditioning(torch.tensor([0.5], dtype=torch.float64))
    assert c_skip.item() == pytest.approx(0.5)
    assert c_out.item() == pytest.approx(0.5 / math.sqrt(2))
    assert c_in.item() == pytest.approx(1 / (0.5 * math.sqrt(2)))
    assert c_noise.item() == pytest.approx(math.log(0.5) / 4)


def test_edm_weight_times_c_out_squared_is_one():
    objective = build_objective(ScoreMatching(loss_weighting="edm"), stage(64), None)
    sigma = torch.tensor([0.002, 0.1, 0.5, 2.0, 80.0], dtype=torch.float64)
    _, c_out, _, _ = objective.preconditioning(sigma)
    edm_lambda = (sigma**2 + 0.5**2) / (sigma * 0.5) ** 2  # EDM's lambda(sigma) in D space, sigma_data 0.5
    assert torch.allclose(edm_lambda * c_out**2, torch.ones(5, dtype=torch.float64))
    assert torch.equal(objective.loss_weight(sigma), torch.ones(5))
    plain = build_objective(ScoreMatching(), stage(64), None)
    assert torch.allclose(plain.loss_weight(sigma).double(), c_out**2, rtol=1e-6)


def test_edm_sigma_is_lognormal_and_target_recovers_x0():
    objective = build_objective(ScoreMatching(), stage(64), None)
    sigma = objective.sample_timesteps(200_000, torch.Generator().manual_seed(0))
    assert sigma.log().mean().item() == pytest.approx(-1.2, abs=0.01)
    assert sigma.log().std().item() == pytest.approx(1.2, abs=0.01)
    x0, noise = batch()
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0], dtype=torch.float64)
    x = objective.add_noise(x0, noise, sigma)
    target = objective.target(x0, noise, sigma)
    assert torch.allclose(objective.predict_x0(target, x, sigma), x0, atol=1e-5)
    assert torch.allclose(objective.model_input(x, sigma), x / torch.sqrt(sigma**2 + 0.25).float().view(-1, 1, 1, 1))


def test_edm_shift_multiplies_sigma():
    g = lambda: torch.Generator().manual_seed(3)
    plain = build_objective(ScoreMatching(), stage(64), None)
    shifted = build_objective(ScoreMatching(shift=ConstantShift(shift=2.0)), stage(64), None)
    assert torch.allclose(shifted.sample_timesteps(8, g()), 2 * plain.sample_timesteps(8, g()))


def test_validation_timesteps_are_stratified():
    flow = build_objective(FlowMatching(), stage(64), 64)
    assert torch.allclose(flow.validation_timesteps(8), (torch.arange(8, dtype=torch.float64) + 0.5) / 8)
    ddpm = build_objective(NoisePrediction(), stage(64), None)
    assert ddpm.validation_timesteps(4).tolist() == [125, 375, 625, 875]
    edm = build_objective(ScoreMatching(), stage(64), None)
    assert edm.validation_timesteps(3)[1].item() == pytest.approx(math.exp(-1.2))
