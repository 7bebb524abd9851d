"""DDPM schedule fields (issue 17): beta range, SNR shift and zero terminal SNR against diffusers' schedulers."""

import pytest
import torch
from diffusers import CogVideoXDDIMScheduler, DDPMScheduler

from compiler.schema.objective import NoisePrediction, VPrediction
from runtime.objectives.ddpm import objective_alphas_cumprod


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_cogvideox_schedule_matches_its_scheduler(shift):
    """CogVideoX: scaled_linear 0.00085..0.012, SNR shift, zero terminal SNR (its scheduler_config.json)."""
    config = VPrediction(schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, snr_shift=shift,
                         zero_terminal_snr=True)
    reference = CogVideoXDDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       snr_shift_scale=shift, rescale_betas_zero_snr=True)
    ours = objective_alphas_cumprod(config)
    torch.testing.assert_close(ours.float(), reference.alphas_cumprod.float(), atol=1e-6, rtol=0)
    assert ours[-1] == 0


def test_linear_beta_range_and_zero_snr_match_ddpm_scheduler():
    config = VPrediction(schedule="linear", beta_start=0.0001, beta_end=0.03, zero_terminal_snr=True)
    reference = DDPMScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.03, rescale_betas_zero_snr=True)
    torch.testing.assert_close(objective_alphas_cumprod(config).float(), reference.alphas_cumprod, atol=1e-6, rtol=0)


def test_defaults_keep_the_schedules():
    plain = objective_alphas_cumprod(NoisePrediction(schedule="scaled_linear"))
    reference = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    torch.testing.assert_close(plain.float(), reference.alphas_cumprod, atol=1e-6, rtol=0)


def test_zero_terminal_snr_needs_v_prediction():
    from runtime.objectives.ddpm import NoisePredictionObjective

    with pytest.raises(ValueError, match="use v_prediction"):
        NoisePredictionObjective(NoisePrediction(schedule="linear", zero_terminal_snr=True))


def test_a_beta_range_on_the_cosine_schedule_is_refused():
    with pytest.raises(ValueError, match="'cosine', which has no beta range"):
        VPrediction(schedule="cosine", beta_start=0.001)
