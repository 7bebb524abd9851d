"""The LR schedule: linear warm-up, then constant, cosine or linear decay to min_lr_ratio."""

import pytest

from compiler.schema.schedule import LrSchedule
from runtime.train.optim import lr_factor


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
