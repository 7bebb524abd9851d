"""The optimizers (torch's fused Adam and AdamW) and the LR schedule: linear warm-up, then constant, cosine or
linear decay to min_lr_ratio."""

import pytest
import torch

from compiler.schema.schedule import Adam, AdamW, DatasetUse, LrSchedule, Size, Stage
from runtime.train.optim import build_optimizer, lr_factor


@pytest.mark.parametrize(
    "kind, step, expected",
    [
        ("constant", 0, 0.25),
        ("constant", 3, 1.0),
        ("constant", 50, 1.0),
        ("cosine", 4, 1.0),
        ("cosine", 100, 0.1),
        ("linear", 100, 0.1),
        ("linear", 52, 0.1 + 0.9 * 0.5),
    ],
)
def test_lr_schedule(kind, step, expected):
    schedule = LrSchedule(kind=kind, warmup_steps=4, min_lr_ratio=0.1)
    assert lr_factor(schedule, step, 101) == pytest.approx(expected)


@pytest.mark.parametrize("config", [AdamW(lr=1e-2, weight_decay=0.1), Adam(lr=1e-2, weight_decay=0.1)])
def test_adam_optimizers_are_torchs_fused_ones_with_the_same_updates(config):
    """build_optimizer asks for the fused kernel; its steps match torch's per-tensor loop on the same grads."""
    stage = Stage(
        name="s", kind="pretrain", datasets=[DatasetUse(dataset="d")], resolutions=[Size(height=64, width=64)],
        batch_size=1, steps=3, optimizer=config,
    )
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(shape, generator=generator) for shape in [(4, 3), (3,), (2, 2, 2)]]
    grads = [[torch.randn(p.shape, generator=generator) for p in start] for _ in range(3)]
    fused_params = [torch.nn.Parameter(p.clone()) for p in start]
    loop_params = [torch.nn.Parameter(p.clone()) for p in start]
    fused = build_optimizer(stage, fused_params)
    loop_class = torch.optim.Adam if isinstance(config, Adam) else torch.optim.AdamW
    loop = loop_class(loop_params, lr=config.lr, weight_decay=config.weight_decay, foreach=False)
    assert type(fused) is loop_class and fused.defaults["fused"] is True
    for step_grads in grads:
        for optimizer, params in ((fused, fused_params), (loop, loop_params)):
            for param, grad in zip(params, step_grads):
                param.grad = grad.clone()
            optimizer.step()
    for fused_param, loop_param in zip(fused_params, loop_params):
        torch.testing.assert_close(fused_param, loop_param, rtol=1e-6, atol=1e-7)
