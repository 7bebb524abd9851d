"""DPM-Solver++(2M) and UniPC for flow matching against diffusers' DPMSolverMultistepScheduler and
UniPCMultistepScheduler, configured for flow matching as diffusers' Wan 2.1 pipeline uses them
(prediction_type "flow_prediction", use_flow_sigmas, flow_shift; pipelines/wan/pipeline_wan.py docstring),
on a fixed toy model."""

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

from compiler.schema.objective import ConstantShift
from runtime.objectives import sampling_sigmas
from runtime.samplers import flow_dpm_solver, flow_euler, flow_unipc

TIME_SCALE = 1000.0
FLOW = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "num_train_timesteps": 1000}


def diffusers_loop(scheduler, model, noise, cond, cfg_scale, pipeline_cfg):
    """The pipeline loop over scheduler.timesteps. diffusers' flow timesteps are integers (sigma * 1000,
    truncated); the model here reads sigma * 1000 unrounded, as our samplers feed it."""
    scheduler.set_begin_index(0)
    x = noise
    for index, timestep in enumerate(scheduler.timesteps):
        model_t = (scheduler.sigmas[index].double() * TIME_SCALE).float().expand(x.shape[0])
        x = scheduler.step(pipeline_cfg(model, x, model_t, cond, cfg_scale), timestep, x).prev_sample
    return x


def parity_cases():
    return pytest.mark.parametrize(
        ("steps", "shift", "cfg_scale"), [(1, 5.0, None), (2, 5.0, None), (3, 3.0, None), (12, 5.0, None), (12, 5.0, 5.0)]
    )


@parity_cases()
def test_flow_dpm_solver_matches_diffusers(steps, shift, cfg_scale, noise, cond, toy_denoiser, pipeline_cfg):
    model = toy_denoiser(frequency=1e-3)
    scheduler = DPMSolverMultistepScheduler(**FLOW, flow_shift=shift)
    scheduler.set_timesteps(steps)
    grid = scheduler.sigmas.double()
    expected = diffusers_loop(scheduler, model, noise, cond, cfg_scale, pipeline_cfg)
    ours = flow_dpm_solver(model, noise, cond, grid, cfg_scale=cfg_scale, time_scale=TIME_SCALE)
    # diffusers' DPM-Solver steps in float32 (step(): "Upcast to avoid precision issues")
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    if steps > 2:
        euler = flow_euler(model, noise, cond, grid, cfg_scale=cfg_scale, time_scale=TIME_SCALE)
        assert (euler - expected).abs().max() > 1e-3


@parity_cases()
def test_flow_unipc_matches_diffusers(steps, shift, cfg_scale, noise, cond, toy_denoiser, pipeline_cfg):
    model = toy_denoiser(frequency=1e-3)
    scheduler = UniPCMultistepScheduler(**FLOW, flow_shift=shift)
    scheduler.set_timesteps(steps)
    grid = scheduler.sigmas.double()
    expected = diffusers_loop(scheduler, model, noise, cond, cfg_scale, pipeline_cfg)
    ours = flow_unipc(model, noise, cond, grid, cfg_scale=cfg_scale, time_scale=TIME_SCALE)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    if steps > 2:
        dpm = flow_dpm_solver(model, noise, cond, grid, cfg_scale=cfg_scale, time_scale=TIME_SCALE)
        assert (dpm - expected).abs().max() > 1e-4


@pytest.mark.parametrize("sampler", ["dpm_solver", "unipc"])
def test_flow_multistep_on_our_grid_starts_just_below_sigma_one(sampler, noise, cond, toy_denoiser, pipeline_cfg):
    """sampling_sigmas starts at sigma = 1 (lambda = -inf); the solvers start at 1 - 1e-6 as diffusers' UniPC
    does with its own flow grid, which is ours when given our unshifted levels."""
    steps, model = 10, toy_denoiser(frequency=1e-3)
    grid = sampling_sigmas(ConstantShift(shift=5.0), steps)
    solve = {"dpm_solver": flow_dpm_solver, "unipc": flow_unipc}[sampler]
    ours = solve(model, noise, cond, grid, time_scale=TIME_SCALE)
    assert torch.isfinite(ours).all()
    if sampler == "unipc":
        scheduler = UniPCMultistepScheduler(**FLOW, flow_shift=5.0)
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1])
        torch.testing.assert_close(scheduler.sigmas.double(), grid, rtol=1e-6, atol=2e-6)
        expected = diffusers_loop(scheduler, model, noise, cond, None, pipeline_cfg)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_flow_multistep_rejects_levels_outside_the_unit_interval(noise, cond, toy_denoiser):
    with pytest.raises(ValueError, match="flow levels lie in"):
        flow_unipc(toy_denoiser(frequency=1e-3), noise, cond, torch.tensor([2.0, 1.0, 0.0]))
