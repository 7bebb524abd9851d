"""Ulysses sequence parallelism: two gloo processes with sequence parallelism 2 give one process's loss and
gradients (fp32, 1e-5) for FLUX (with and without Kontext context tokens), Qwen-Image (text padding mask) and
Wan, through DeepSpeed's DistributedAttention and groups taken from deepspeed.utils.groups."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from runtime.models.flux import MMDiT, MMDiTConfig
from runtime.models.qwen_image import QwenImageConfig, QwenImageMMDiT
from runtime.models.sequence_parallel import data_parallel_rank, data_parallel_world_size
from runtime.models.wan import WanDiT, WanDiTConfig
from tests.runtime.models.conftest import FLUX_LATENT_GRID

SP = 2
TOLERANCE = 1e-5


def _loss(model: torch.nn.Module, inputs: dict, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(model(**inputs), target)


def _reference(model, inputs, target):
    """One process, no sequence parallelism: the loss and every parameter's gradient."""
    model.zero_grad()
    loss = _loss(model, inputs, target)
    loss.backward()
    return loss.detach(), _grads(model)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter's gradient; zeros for one the loss does not reach (Qwen-Image's last text MLP)."""
    return {name: torch.zeros_like(p) if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}


def _worker(rank: int, port: int, cases: dict, out_dir: str) -> None:
    import deepspeed
    import torch.distributed as dist
    from deepspeed.utils import groups

    from runtime.models.sequence_parallel import SequenceParallelGroups, enable_sequence_parallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=SP)
    deepspeed.init_distributed(dist_backend="gloo")  # deepspeed.comm wraps the process group made above
    try:
        SequenceParallelGroups(SP).register()
        assert groups._get_sequence_parallel_world_size() == SP
        results = {}
        for name, (model, inputs, target) in cases.items():
            enable_sequence_parallel(model)  # the group comes from deepspeed.utils.groups
            model.zero_grad()
            loss = _loss(model, inputs, target)
            loss.backward()
            # DeepSpeed's reduction with dp = 1: the sum over the sequence-parallel group.
            grads = _grads(model)
            for grad in grads.values():
                dist.all_reduce(grad, group=groups._get_sequence_parallel_group())
            results[name] = (loss.detach(), grads)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cases(flux_kwargs, flux_inputs, qwen_image_kwargs, qwen_image_inputs, wan_kwargs, wan_inputs):
    """name -> (model, inputs, target) with random (not zero-initialised) weights, so every gate is live."""
    torch.manual_seed(0)
    height, width = FLUX_LATENT_GRID
    kontext_inputs = dict(flux_inputs)
    kontext_inputs["context_latents"] = torch.randn_like(flux_inputs["hidden_states"])
    kontext_ids = flux_inputs["img_ids"].clone()
    kontext_ids[:, 0] = 1
    kontext_inputs["context_ids"] = kontext_ids
    built = {
        "flux": (MMDiT(MMDiTConfig(**flux_kwargs)), flux_inputs),
        "flux-kontext": (MMDiT(MMDiTConfig(**flux_kwargs)), kontext_inputs),
        "qwen-image": (QwenImageMMDiT(QwenImageConfig(**qwen_image_kwargs)), qwen_image_inputs),
        "wan": (WanDiT(WanDiTConfig(**wan_kwargs)), wan_inputs),
    }
    out = {}
    for name, (model, inputs) in built.items():
        with torch.no_grad():
            target = torch.randn_like(model(**inputs))
        out[name] = (model, inputs, target)
    return out


@pytest.fixture(scope="module")
def parallel_results(cases, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("sequence_parallel")
    mp.spawn(_worker, args=(_free_port(), cases, str(out_dir)), nprocs=SP, join=True)
    return [torch.load(out_dir / f"rank{rank}.pt") for rank in range(SP)]


@pytest.mark.parametrize("name", ["flux", "flux-kontext", "qwen-image", "wan"])
def test_two_ranks_match_one(name, cases, parallel_results):
    model, inputs, target = cases[name]
    ref_loss, ref_grads = _reference(model, inputs, target)
    assert ref_loss > 0
    for rank, results in enumerate(parallel_results):
        loss, grads = results[name]
        assert torch.allclose(loss, ref_loss, atol=TOLERANCE, rtol=0), (name, rank, loss, ref_loss)
        assert grads.keys() == ref_grads.keys()
        for param_name, ref in ref_grads.items():
            torch.testing.assert_close(grads[param_name], ref, atol=TOLERANCE, rtol=0, msg=f"{name} {param_name}")


def test_every_parameter_gets_a_gradient(cases, parallel_results):
    """The comparison above means something only if gradients reach the blocks' attention weights."""
    for name in cases:
        _, grads = parallel_results[0][name]
        attention_grads = [g for param_name, g in grads.items() if ".to_q." in param_name]
        assert attention_grads, name
        assert min(g.abs().max() for g in attention_grads) > 0, name


def test_data_parallel_rank_maps_a_group_to_one_reader():
    assert [data_parallel_rank(rank, 4) for rank in range(8)] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [data_parallel_rank(rank, 1) for rank in range(3)] == [0, 1, 2]
    assert data_parallel_world_size(64, 8) == 8
    with pytest.raises(ValueError, match="does not divide world size 6"):
        data_parallel_world_size(6, 4)
