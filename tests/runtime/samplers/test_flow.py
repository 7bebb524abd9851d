"""Heun sampling of flow matching against diffusers' FlowMatchHeunDiscreteScheduler, on a fixed toy model."""

import pytest
import torch
from diffusers import FlowMatchHeunDiscreteScheduler

from runtime.samplers import flow_euler, flow_heun

TIME_SCALE = 1000.0  # the model sees sigma * 1000, as diffusers' timesteps


def diffusers_heun(model, noise, cond, steps, shift, cfg_scale, pipeline_cfg):
    """The pipeline loop: one scheduler.step per entry of scheduler.timesteps (2 steps - 1 model calls)."""
    scheduler = FlowMatchHeunDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(steps)
    x = noise
    for timestep in scheduler.timesteps:
        batch_t = timestep.expand(x.shape[0])
        x = scheduler.step(pipeline_cfg(model, x, batch_t, cond, cfg_scale), timestep, x).prev_sample
    # The levels visited: sigmas is [s0, s1, s1, ..., s_{n-1}, s_{n-1}, 0].
    grid = torch.cat([scheduler.sigmas[:1], scheduler.sigmas[1::2]]).double()
    return x, grid


@pytest.mark.parametrize(("steps", "shift", "cfg_scale"), [(1, 1.0, None), (2, 1.0, None), (8, 3.0, None), (8, 1.0, 4.0)])
def test_flow_heun_matches_diffusers(steps, shift, cfg_scale, noise, cond, toy_denoiser, pipeline_cfg):
    model = toy_denoiser(frequency=1e-3)
    expected, grid = diffusers_heun(model, noise, cond, steps, shift, cfg_scale, pipeline_cfg)
    ours = flow_heun(model, noise, cond, grid, cfg_scale=cfg_scale, time_scale=TIME_SCALE)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    if steps > 1:  # the tolerance tells Heun from Euler on the same grid
        euler = flow_euler(model, noise, cond, grid, cfg_scale=cfg_scale, time_scale=TIME_SCALE)
        assert (euler - expected).abs().max() > 1e-3


def test_flow_heun_calls_the_model_twice_per_step_but_once_into_zero(noise, cond, toy_denoiser):
    model, calls = toy_denoiser(frequency=1e-3), []

    def counted(x, timestep, c, guidance):
        calls.append(timestep[0].item())
        return model(x, timestep, c, guidance)

    flow_heun(counted, noise, cond, torch.tensor([1.0, 0.6, 0.2, 0.0]))
    assert calls == pytest.approx([1.0, 0.6, 0.6, 0.2, 0.2])
