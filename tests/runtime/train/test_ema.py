"""EMA follows DeepSpeed's fp32 master weights under every ZeRO stage with bf16: an optimizer update smaller
than bf16's resolution leaves the bf16 weights as they were but moves the masters, and the EMA with them."""

import pytest
import torch

from runtime.train.ema import EMA
from runtime.train.launch import prepare_environment


def engine(zero: int):
    prepare_environment()
    import deepspeed

    deepspeed.init_distributed()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 4))
    config = {
        "train_batch_size": 2,
        "train_micro_batch_size_per_gpu": 2,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": zero},
        "bf16": {"enabled": True},
        "steps_per_print": 1_000_000,
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.0)  # ~2e-4 per element per step
    return deepspeed.initialize(model=model, optimizer=optimizer, config=config)[0]


def masters(model) -> dict[str, torch.Tensor]:
    """The fp32 masters as DeepSpeed's own accessors give them."""
    from deepspeed.utils import safe_get_full_fp32_param
    from torch._utils import _unflatten_dense_tensors

    if model.zero_optimization_stage() == 0:  # FP16_(Unfused)Optimizer: whole fp32 copies of each group
        optimizer, named = model.optimizer, dict(model.module.named_parameters())
        names = {id(p): name for name, p in named.items()}
        found = {}
        fused = hasattr(optimizer, "fp32_groups_flat")
        copies = optimizer.fp32_groups_flat if fused else optimizer.fp32_groups
        for group, fp32 in zip(optimizer.fp16_groups, copies):
            for param, master in zip(group, _unflatten_dense_tensors(fp32, group) if fused else fp32):
                found[names[id(param)]] = master.detach().clone()
        return found
    return {name: safe_get_full_fp32_param(p).detach().clone() for name, p in model.module.named_parameters()}


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_ema_follows_the_fp32_masters(zero):
    model = engine(zero)
    ema = EMA(model.module, decay=0.5, optimizer=model.optimizer)
    before = masters(model)
    assert all(torch.equal(ema.full_state_dict()[k], v) for k, v in before.items())
    for _ in range(2):
        x = torch.randn(2, 16, dtype=torch.bfloat16)
        loss = model(x).float().pow(2).mean()
        model.backward(loss)
        model.step()
        ema.update()
        after = masters(model)
        expected = {k: 0.5 * before[k] + 0.5 * after[k] for k in after}
        full = ema.full_state_dict()
        for name in expected:
            torch.testing.assert_close(full[name], expected[name], rtol=0, atol=1e-7)
        before = expected
    # the updates were below bf16's resolution for most elements: an EMA of the bf16 weights would not move
    weight = after["0.weight"]
    still = weight.bfloat16() == masters_at_start(zero)["0.weight"].bfloat16()
    assert still.float().mean() > 0.5
    assert (full["0.weight"][still] != masters_at_start(zero)["0.weight"][still]).all()


_START: dict[int, dict] = {}


def masters_at_start(zero):
    if zero not in _START:
        _START[zero] = masters(engine(zero))  # the same seed builds the same initial weights
    return _START[zero]
