"""EDM Heun sampling (Karras et al. 2022 Algorithm 1) against diffusers on a fixed toy network: the Karras
schedule and the preconditioning from EDMEulerScheduler (sigma_min, sigma_max, rho, sigma_data), the Heun
update from HeunDiscreteScheduler fed the denoised sample D (prediction_type "sample") on those sigmas."""

import pytest
import torch
from diffusers import EDMEulerScheduler, HeunDiscreteScheduler

from compiler.schema.objective import ScoreMatching
from runtime.objectives.edm import EDMObjective
from runtime.samplers import edm_heun, karras_sigmas


def diffusers_edm_heun(network, noise, cond, steps, sigma_data, cfg_scale, pipeline_cfg):
    """x = sigma_max eps, then D(x; sigma) = EDM-preconditioned network, stepped by Heun on Karras sigmas."""
    edm = EDMEulerScheduler(sigma_data=sigma_data)
    edm.set_timesteps(steps)
    heun = HeunDiscreteScheduler(prediction_type="sample")
    heun.set_timesteps(steps)
    levels = edm.sigmas.double()  # [sigma_0 .. sigma_{n-1}, 0], float32 values; stepped in float64 below
    heun.sigmas = torch.cat([levels[:1], levels[1:-1].repeat_interleave(2), levels[-1:]])
    heun.set_begin_index(0)
    x = noise * levels[0]
    for index, timestep in enumerate(heun.timesteps):
        sigma = heun.sigmas[index]
        c_noise = edm.precondition_noise(sigma).float().expand(x.shape[0])
        output = pipeline_cfg(network, edm.precondition_inputs(x, sigma), c_noise, cond, cfg_scale)
        x = heun.step(edm.precondition_outputs(x, output, sigma), timestep, x).prev_sample
    return x, levels


@pytest.mark.parametrize(("steps", "sigma_data", "cfg_scale"), [(1, 0.5, None), (2, 0.5, None), (10, 0.5, None), (10, 1.0, 3.0)])
def test_edm_heun_matches_diffusers(steps, sigma_data, cfg_scale, noise, cond, toy_denoiser, pipeline_cfg):
    network = toy_denoiser(frequency=1.0)
    expected, levels = diffusers_edm_heun(network, noise, cond, steps, sigma_data, cfg_scale, pipeline_cfg)
    torch.testing.assert_close(karras_sigmas(steps), levels, rtol=1e-6, atol=0)  # the EDM defaults 0.002, 80, 7
    objective = EDMObjective(ScoreMatching(sigma_data=sigma_data), image_tokens=None, pixels=None)
    # diffusers' float32 grid, so that the 80 -> 0.002 step of a 2-step run compares the update, not rounding
    ours = edm_heun(network, objective, noise, cond, levels, cfg_scale=cfg_scale)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_karras_sigmas_run_from_sigma_max_to_sigma_min_then_zero():
    sigmas = karras_sigmas(5, sigma_min=0.01, sigma_max=10.0, rho=3.0)
    assert sigmas[0].item() == pytest.approx(10.0) and sigmas[-2].item() == pytest.approx(0.01)
    assert sigmas[-1].item() == 0 and bool((sigmas.diff() < 0).all())
    roots = sigmas[:-1] ** (1 / 3)
    torch.testing.assert_close(roots.diff(), roots.diff()[:1].expand(4))  # even in sigma^(1/rho)
    with pytest.raises(ValueError, match="sigma_min"):
        karras_sigmas(5, sigma_min=20.0, sigma_max=10.0)
