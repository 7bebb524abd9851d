"""Timestep spacing (inference.timestep_spacing, steps_offset) against diffusers' schedulers' timesteps, and
Euler-ancestral sampling at leading and trailing spacing against EulerAncestralDiscreteScheduler."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, EulerAncestralDiscreteScheduler
from pydantic import ValidationError

from compiler.schema.spec import InferenceSpec, Spec
from specs import load
from runtime.samplers import ancestral_schedule, euler_ancestral_sample, respaced_steps
from tests.runtime.samplers.test_euler_ancestral import DIFFUSERS_SCHEDULES, diffusers_euler_ancestral, objective_of

CASES = [
    (spacing, steps, offset)
    for steps in (1, 3, 7, 50, 999, 1000)
    for spacing, offset in (("linspace", 0), ("leading", 0), ("leading", 1), ("trailing", 0))
    if not (spacing == "leading" and offset and steps == 1000)  # the first step would pass T - 1
]


@pytest.mark.parametrize("scheduler_class", [DDIMScheduler, DDPMScheduler])
@pytest.mark.parametrize(("spacing", "steps", "offset"), CASES)
def test_ddim_steps_match_diffusers(scheduler_class, spacing, steps, offset):
    scheduler = scheduler_class(num_train_timesteps=1000, timestep_spacing=spacing, steps_offset=offset)
    scheduler.set_timesteps(steps)
    assert respaced_steps(1000, steps, spacing, offset) == scheduler.timesteps.tolist()


@pytest.mark.parametrize(("spacing", "steps", "offset"), [c for c in CASES if c[1] >= 2])
def test_euler_ancestral_timesteps_match_diffusers(spacing, steps, offset):
    scheduler = EulerAncestralDiscreteScheduler(
        timestep_spacing=spacing, steps_offset=offset, **DIFFUSERS_SCHEDULES["linear"]
    )
    scheduler.set_timesteps(steps)
    timesteps, _ = ancestral_schedule(objective_of("epsilon", "linear"), steps, spacing, offset)
    torch.testing.assert_close(timesteps, scheduler.timesteps.double(), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize(("spacing", "offset"), [("leading", 1), ("trailing", 0)])
def test_euler_ancestral_spaced_sampling_matches_diffusers(spacing, offset, noise, cond, toy_denoiser, pipeline_cfg):
    network, objective = toy_denoiser(frequency=1e-3), objective_of("epsilon", "scaled_linear")
    scheduler = EulerAncestralDiscreteScheduler(
        prediction_type="epsilon", timestep_spacing=spacing, steps_offset=offset, **DIFFUSERS_SCHEDULES["scaled_linear"]
    )
    scheduler.alphas_cumprod = objective.alpha_bar
    scheduler.set_timesteps(10)
    expected = diffusers_euler_ancestral(network, noise, cond, scheduler, 4.0, 7, pipeline_cfg)
    ours = euler_ancestral_sample(
        network, objective, noise, cond, 10, generator=torch.Generator().manual_seed(7), cfg_scale=4.0,
        spacing=spacing, offset=offset,
    )
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_spacing_changes_the_steps():
    steps = {spacing: respaced_steps(1000, 4, spacing) for spacing in ("linspace", "leading", "trailing")}
    assert steps == {"linspace": [999, 666, 333, 0], "leading": [750, 500, 250, 0], "trailing": [999, 749, 499, 249]}


def test_offset_past_the_last_step_is_refused():
    with pytest.raises(ValueError, match="steps_offset 1 puts the first"):
        respaced_steps(1000, 1000, "leading", 1)
    with pytest.raises(ValueError, match="only with 'leading'"):
        respaced_steps(1000, 10, "trailing", 1)


def test_schema_refuses_offset_without_leading_and_spacing_without_ddpm():
    assert InferenceSpec(sampler="ddim", steps=50, timestep_spacing="leading", steps_offset=1).steps_offset == 1
    with pytest.raises(ValidationError, match="steps_offset is 1 with timestep_spacing 'trailing'"):
        InferenceSpec(sampler="ddim", steps=50, timestep_spacing="trailing", steps_offset=1)
    flux = load("flux1-dev").model_dump()
    with pytest.raises(ValidationError, match="timestep_spacing is 'trailing' with the flow_matching objective"):
        Spec.model_validate({**flux, "inference": {**flux["inference"], "timestep_spacing": "trailing"}})
    allegro = load("allegro").model_dump()
    spaced = Spec.model_validate({**allegro, "inference": {**allegro["inference"], "timestep_spacing": "trailing"}})
    assert spaced.inference.timestep_spacing == "trailing"
