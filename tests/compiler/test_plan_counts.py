"""The planner counts what the runtime runs: teacher and reference forwards, DPO's pairs, the teacher's copy."""

import pytest

import specs
from compiler.plan import plan
from compiler.plan.cost import workload
from compiler.plan.memory import GIB
from compiler.schema.cluster import PRESETS


def _stage(planned, name):
    return next(s for s in planned.stages if s.stage == name)


def _by_name(spec, name):
    return next(s for s in spec.schedule.stages if s.name == name)


@pytest.fixture(scope="module")
def flux_h100():
    spec = specs.load("flux1-dev")
    return spec, plan(spec, PRESETS["h100-64"])


def test_guidance_distillation_counts_two_teacher_forwards_per_sample(flux_h100):
    # runtime/train/losses.py GuidanceDistillationLoss: the teacher runs once on [cond, uncond] (2 samples'
    # forwards, no backward); the student's forward + backward is 3 forwards, 4 with checkpointing.
    spec, planned = flux_h100
    stage = _by_name(spec, "guidance_distillation")
    planned_stage = _stage(planned, "guidance_distillation")
    forward = workload(spec, stage).forward_flops
    student = 4 if planned_stage.activation_checkpointing else 3
    teacher = 2
    assert planned_stage.flops_per_step == pytest.approx((student + teacher) * forward * stage.batch_size, rel=1e-9)


def test_the_teacher_is_a_full_16_bit_copy_on_every_rank_whatever_the_zero_stage(flux_h100):
    # runtime/train/device.py `frozen`: the teacher is not a DeepSpeed module, so ZeRO-3 does not shard it.
    spec, planned = flux_h100
    planned_stage = _stage(planned, "guidance_distillation")
    teacher = 2 * planned_stage.params / GIB
    ema = 0.0 if not _by_name(spec, "guidance_distillation").ema_decay else 4 * planned_stage.params / GIB
    if planned_stage.zero_stage == 3:
        ema /= planned_stage.dp_size
    assert planned_stage.memory_gib.extra_copies == pytest.approx(teacher + ema, rel=1e-9)


def test_a_stage_without_a_loss_counts_no_teacher(flux_h100):
    spec, planned = flux_h100
    stage = spec.schedule.stages[0]
    planned_stage = planned.stages[0]
    assert stage.loss is None and stage.teacher is None
    student = 4 if planned_stage.activation_checkpointing else 3
    assert planned_stage.flops_per_step == pytest.approx(student * workload(spec, stage).forward_flops * stage.batch_size)


def test_dpo_counts_both_samples_of_a_pair_and_the_reference_forwards():
    # runtime/train/losses.py PreferenceDPOLoss: preferred and rejected concatenated through the student
    # (forward + backward) and through the frozen reference (forward only).
    spec = specs.load("seedream-3.0")
    stage = next(s for s in spec.schedule.stages if s.loss is not None and s.loss.kind == "diffusion_dpo")
    planned_stage = _stage(plan(spec, PRESETS["h100-64"]), stage.name)
    forward = workload(spec, stage).forward_flops
    student = 4 if planned_stage.activation_checkpointing else 3
    assert planned_stage.flops_per_step == pytest.approx((2 * student + 2) * forward * stage.batch_size, rel=1e-9)
    assert planned_stage.memory_gib.extra_copies >= 2 * planned_stage.params / GIB  # the reference, unsharded


def test_ladd_counts_teacher_forwards():
    spec = specs.load("flux1-schnell")
    stage = next(s for s in spec.schedule.stages if s.loss is not None and s.loss.kind in ("ladd", "timestep_distillation"))
    planned_stage = _stage(plan(spec, PRESETS["h100-64"]), stage.name)
    forward = workload(spec, stage).forward_flops
    student = 4 if planned_stage.activation_checkpointing else 3
    # 1 grad-enabled teacher forward + its input-gradient backward (about 1 forward) + the discriminator
    # step's 2 no-grad forwards
    assert planned_stage.flops_per_step == pytest.approx((student + 4) * forward * stage.batch_size, rel=1e-9)
