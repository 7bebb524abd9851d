"""Noise-aware compute: sampling follows the running loss per bin, with a floor, and its state round-trips."""

import pytest
import torch

from compiler.schema.common import square
from compiler.schema.objective import FlowMatching, NoiseAwareCompute, UniformTimesteps
from compiler.schema.schedule import Stage
from runtime.objectives import build_objective
from runtime.objectives.noise_aware import NoiseAwareSampler

STAGE = Stage(name="s", kind="pretrain", datasets=[{"dataset": "d"}], resolutions=[square(64)])


def objective(**nac):
    config = FlowMatching(timesteps=UniformTimesteps(), noise_aware_compute=NoiseAwareCompute(bins=4, **nac))
    return build_objective(config, STAGE, 16)


def test_unobserved_sampler_is_the_base_sampler():
    t = objective().sample_timesteps(100_000, torch.Generator().manual_seed(0))
    assert t.mean().item() == pytest.approx(0.5, abs=0.005)


def test_sampling_moves_to_high_loss_bins_down_to_the_floor():
    obj = objective(floor=0.25, ema=0.5)
    t = torch.tensor([0.1, 0.4, 0.6, 0.9], dtype=torch.float64)
    obj.observe(t, torch.tensor([4.0, 1.0, 0.1, 2.0]))
    assert obj.noise_aware.weights().tolist() == pytest.approx([1.0, 0.25, 0.25, 0.5])
    sample = obj.sample_timesteps(200_000, torch.Generator().manual_seed(1))
    share = torch.bincount(obj.noise_aware.bin_of(sample), minlength=4).double() / len(sample)
    assert share.tolist() == pytest.approx([1 / 2, 1 / 8, 1 / 8, 1 / 4], abs=0.01)


def test_running_loss_is_an_ema_per_bin():
    sampler = NoiseAwareSampler(NoiseAwareCompute(bins=2, ema=0.9))
    sums, counts = sampler.bin_totals(torch.tensor([0.1, 0.2, 0.9]), torch.tensor([1.0, 3.0, 5.0]))
    assert sums.tolist() == [4.0, 5.0] and counts.tolist() == [2.0, 1.0]
    sampler.update(sums, counts)
    assert sampler.running.tolist() == [2.0, 5.0]  # first observation taken as is
    sampler.update(torch.tensor([4.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert sampler.running.tolist() == pytest.approx([0.9 * 2 + 0.1 * 4, 5.0])


def test_state_round_trips():
    obj = objective()
    obj.observe(torch.tensor([0.1, 0.9], dtype=torch.float64), torch.tensor([1.0, 3.0]))
    other = objective()
    other.load_state_dict(obj.state_dict())
    g = lambda: torch.Generator().manual_seed(5)
    assert torch.equal(obj.sample_timesteps(64, g()), other.sample_timesteps(64, g()))


def test_adaptive_flow_matching_runs_as_the_noise_aware_sampler_and_needs_its_config():
    adaptive = build_objective(FlowMatching(adaptive=True, noise_aware_compute=NoiseAwareCompute(bins=4)), STAGE, 16)
    assert isinstance(adaptive.noise_aware, NoiseAwareSampler)
    with pytest.raises(NotImplementedError, match="noise_aware_compute is not set"):
        build_objective(FlowMatching(adaptive=True), STAGE, 16)
