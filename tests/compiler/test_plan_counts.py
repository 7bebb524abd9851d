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


def test_ladd_counts_the_teachers_activations_beside_the_students():
    # runtime/train/losses.py LaddLoss: the teacher runs on the student's sample with gradients on, so its
    # activations (a frozen network's, whole: neither checkpointed nor sequence-parallel) live until the
    # student's backward.
    from compiler.plan.cost import activation_bytes

    spec = specs.load("flux1-schnell")
    stage = next(s for s in spec.schedule.stages if s.loss is not None and s.loss.kind in ("ladd", "timestep_distillation"))
    planned_stage = _stage(plan(spec, PRESETS["h100-64"]), stage.name)
    work = workload(spec, stage)
    student = activation_bytes(work, planned_stage.activation_checkpointing, planned_stage.sp_size)
    teacher = activation_bytes(work, False, 1, frozen=True)
    assert teacher > student / 10  # not a rounding error: the un-checkpointed teacher holds GiBs
    assert planned_stage.memory_gib.activations * GIB == pytest.approx((student + teacher) * planned_stage.micro_batch,
                                                                       rel=1e-9)
    plain = _stage(plan(spec, PRESETS["h100-64"]), spec.schedule.stages[0].name)
    first = workload(spec, spec.schedule.stages[0])
    assert plain.memory_gib.activations * GIB == pytest.approx(
        activation_bytes(first, plain.activation_checkpointing, plain.sp_size) * plain.micro_batch, rel=1e-9)


def test_flux1_dev_pretrain_forward_flops_match_the_hand_count_within_2_percent():
    """Issue 15's hand count for FLUX.1 dev at 256^2, term by term (2 FLOPs per multiply-add)."""
    spec = specs.load("flux1-dev")
    d, text_dim, pooled_dim, latent_channels = 3072, 4096, 768, 16
    image = (256 // 8 // 2) ** 2  # VAE /8, patch 2x2: 256 tokens
    text = 512  # T5-XXL tokens
    tokens = image + text  # single-stream blocks run text tokens too
    double, single = 19, 38
    # Per block and token, 12 d^2 weights: double stream qkv 3d^2 + out d^2 + MLP 8d^2 per stream;
    # single stream linear1 d -> 3d + 4d (7d^2) and linear2 5d -> d (5d^2). 2 FLOPs each: 24 d^2.
    blocks = (double + single) * tokens * 24 * d**2
    # Joint attention over all tokens, QK^T and AV: 4 N^2 x inner (inner = heads x head_dim = d).
    attention = (double + single) * 4 * tokens**2 * d
    patch = latent_channels * 4
    embedders = (2 * patch * d * image  # img_in
                 + 2 * text_dim * d * text  # txt_in
                 + 2 * d * patch * image)  # final projection
    # Per sample: adaLN modulation (double 2 x 6d x d, single 3d x d, final 2d x d) and the timestep,
    # guidance and pooled-text embedders (two d-wide linears each).
    modulation = 2 * (double * 12 + single * 3 + 2) * d**2
    conditioning = 2 * (2 * (256 * d + d * d) + (pooled_dim * d + d * d))
    hand = blocks + attention + embedders + modulation + conditioning
    assert hand == pytest.approx(10.35e12, rel=0.005)
    planned = workload(spec, spec.schedule.stages[0]).forward_flops
    assert planned == pytest.approx(hand, rel=0.02)


def test_plan_md_states_the_flop_convention_behind_mfu(tmp_path):
    from typer.testing import CliRunner

    from compiler.cli import app

    out = tmp_path / "flux"
    result = CliRunner().invoke(app, ["compile", "flux1-dev", "--cluster", "h100-64", "-o", str(out)])
    assert result.exit_code == 0, result.output
    plan_md = " ".join((out / "plan.md").read_text().split())
    convention = plan_md[plan_md.index("FLOPs and MFU:"):]
    for stated in ("2 per multiply-add", "text tokens included", "4 x queries x keys x heads x head_dim",
                   "times 3 for forward + backward", "times 4 with activation checkpointing",
                   "DPO reference's forwards", "Frozen text encoders and the VAE are not counted"):
        assert stated in convention, f"plan.md's FLOP convention does not say {stated!r}"


def test_an_imagen_1_step_on_512_gpus_is_not_shorter_than_its_gradient_all_reduce():
    from compiler.plan.comm import bandwidth_gbps_per_rank

    cluster = PRESETS["h100-512"]
    assert bandwidth_gbps_per_rank(cluster) == pytest.approx(8 * 400 / 8 / 8)  # 8 x 400 Gb/s per node, 8 GPUs
    planned = plan(specs.load("imagen-1"), cluster)
    assert planned.stages
    for stage in planned.stages:
        ranks = stage.dp_size
        # by hand: a ring all-reduce of 16-bit gradients moves 2 (N-1)/N x 2P bytes through each GPU's link
        all_reduce = 2 * (ranks - 1) / ranks * 2 * stage.params / 50e9
        assert stage.step_seconds >= all_reduce, (stage.stage, stage.step_seconds, all_reduce)


def test_communication_bandwidth_is_read_from_the_cluster_interconnect():
    from compiler.plan.comm import DEFAULT_GBPS_PER_GPU, bandwidth_gbps_per_rank

    assert bandwidth_gbps_per_rank(PRESETS["h100-8"]) == 900  # one node: NVLink
    assert bandwidth_gbps_per_rank(PRESETS["a100-64"]) == pytest.approx(8 * 200 / 8 / 8)
    unstated = PRESETS["h100-64"].model_copy(update={"interconnect": "a fast one"})
    assert bandwidth_gbps_per_rank(unstated) == DEFAULT_GBPS_PER_GPU


def test_a_progressive_stage_is_costed_per_resolution_for_an_equal_share_of_its_steps(flux_h100):
    spec, planned = flux_h100
    stage = next(s for s in spec.schedule.stages if len(s.resolutions) > 1)
    planned_stage = _stage(planned, stage.name)
    per_size = [workload(spec, stage.model_copy(update={"resolutions": [size]})).forward_flops
                for size in stage.resolutions]
    assert per_size[0] < per_size[-1] / 2  # 512^2 costs well under 1024^2
    student = 4 if planned_stage.activation_checkpointing else 3
    expected = student * sum(per_size) / len(per_size) * stage.batch_size
    assert planned_stage.flops_per_step == pytest.approx(expected, rel=1e-9)
    assert planned_stage.flops_per_step < student * workload(spec, stage).forward_flops * stage.batch_size


def test_zero_bucket_and_prefetch_buffers_are_counted_as_deepspeed_is_configured(flux_h100):
    from compiler.emit.deepspeed import ds_config
    from compiler.plan.memory import ZeroChoice, model_state_bytes

    qwen = specs.load("qwen-image")  # its 20B parameters take ZeRO-3 on h100-64; FLUX.1's stages ZeRO-1/2
    checked = set()
    for spec, planned in [flux_h100, (qwen, plan(qwen, PRESETS["h100-64"]))]:
        for stage, planned_stage in zip(spec.schedule.stages, planned.stages):
            zero = ZeroChoice(planned_stage.zero_stage, planned_stage.offload)
            config = ds_config(stage, planned_stage, True, "test")["zero_optimization"]
            element = 2  # bf16 gradients
            if zero.stage == 3:
                buffers = (config["reduce_bucket_size"] + config["stage3_prefetch_bucket_size"]) * element
            else:
                reduces = 2 if config["overlap_comm"] else 1
                buffers = (reduces * config["reduce_bucket_size"] + config["allgather_bucket_size"]) * element
            states = model_state_bytes(planned_stage.params, workload(spec, stage).params.largest_layer,
                                       planned_stage.dp_size, zero)
            assert planned_stage.memory_gib.model_states == pytest.approx((states + buffers) / GIB, rel=1e-9)
            checked.add(zero.stage)
    assert checked >= {2, 3}  # both kinds of buffer seen


def test_a_resident_frozen_encoder_without_a_size_is_refused_naming_it_and_the_fix():
    from compiler.plan import PlanError
    from compiler.resolve import apply_overrides

    spec = apply_overrides(specs.load("seedream-3.0"), ["architecture.text_encoders[bilingual_llm].params=null"])
    with pytest.raises(PlanError) as refused:
        plan(spec, PRESETS["h100-64"])
    message = str(refused.value)
    for named in ("architecture.text_encoders[0].params", "bilingual_llm", "bytedance/bilingual-llm",
                  "--set architecture.text_encoders[bilingual_llm].params=", "precompute"):
        assert named in message


def test_frozen_encoders_count_their_size_from_params_or_a_documented_size_by_name_or_model(tmp_path):
    from typer.testing import CliRunner

    from compiler.cli import app
    from compiler.plan.cost import KNOWN_ENCODER_PARAMS, KNOWN_MODEL_PARAMS, frozen_sizes
    from compiler.resolve import apply_overrides

    spec = specs.load("seedream-3.0")
    planned_stage = plan(spec, PRESETS["h100-64"]).stages[0]
    llm = spec.architecture.text_encoders[0].params  # the spec's assumption
    glyph = KNOWN_ENCODER_PARAMS["glyph_byt5"]
    assert planned_stage.memory_gib.frozen * GIB == pytest.approx(2 * (llm + glyph), rel=1e-9)  # 16-bit, no VAE size
    # By model id: FLUX.1's CLIP-L, under another name.
    flux = apply_overrides(specs.load("flux1-dev"), ["architecture.text_encoders[clip_l].name=clip"])
    assert frozen_sizes(flux)[0]["clip"] == KNOWN_MODEL_PARAMS["openai/clip-vit-large-patch14"]
    # A VAE of undisclosed size is named in plan.md (counted 0: a few hundred MB at most).
    assert planned_stage.unsized_frozen == ("architecture.space.params (VAE)",)
    out = tmp_path / "seedream"
    result = CliRunner().invoke(app, ["compile", "seedream-3.0", "--cluster", "h100-64", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "Frozen encoders without a size" in (out / "plan.md").read_text()
    assert "architecture.space.params (VAE)" in (out / "plan.md").read_text()
