"""The learning run's settings (runtime/demo.py): what `make demo` changes from plain smoke scale so that its
samples can follow their prompts. The run itself is checked by test_demo.py (the final samples' colours)."""

from __future__ import annotations

from compiler.scale import scaled
from runtime import demo
from specs import load


def test_flux_learning_overrides_scale_the_shift_base_widen_the_backbone_and_read_whole_captions():
    spec = load("flux1-dev")
    overrides = demo.learn_overrides(spec, scaled(spec, "smoke"))
    # FLUX's 65536 px base at 1024 px, scaled like 1024 -> 64 px: the full-scale shift 4 at the last stages.
    assert "objective.shift.base_pixels=256" in overrides
    assert "architecture.backbone.hidden_size=64" in overrides
    assert "architecture.backbone.num_heads=4" in overrides  # head_dim 16 kept
    assert {o for o in overrides if o.endswith(".max_tokens=64")} == {
        "architecture.text_encoders[clip_l].max_tokens=64", "architecture.text_encoders[t5_xxl].max_tokens=64"}
    assert [o for o in overrides if "].steps=" in o] == [
        f"schedule.stages[pretrain].steps={demo.LEARN_FIRST_STEPS}",
        f"schedule.stages[highres_finetune].steps={demo.LEARN_STEPS}",
        f"schedule.stages[timestep_shifting].steps={demo.LEARN_STEPS}",
        # the distilled student starts from its teacher: little to learn
        f"schedule.stages[guidance_distillation].steps={demo.LEARN_TEACHER_STEPS}"]


def test_undistilled_stages_of_a_guidance_embedding_model_are_sampled_at_guidance_one_with_true_cfg():
    smoke = scaled(load("flux1-dev"), "smoke")
    cfg = smoke.inference.guidance_embedded
    assert [demo.sampling_guidance(smoke, s.name) for s in smoke.schedule.stages] == [
        (1.0, cfg), (1.0, cfg), (1.0, cfg), (None, None)]  # the distilled stage: the spec's embedded guidance
    schnell = scaled(load("flux1-schnell"), "smoke")  # no guidance embedding: the spec's sampling as is
    assert {demo.sampling_guidance(schnell, s.name) for s in schnell.schedule.stages} == {(None, None)}


def test_the_learning_run_shortens_the_recaptioners_meaningless_smoke_captions():
    spec = load("flux1-dev")
    overrides = demo.learn_overrides(spec, scaled(spec, "smoke"))
    assert f"data.pipelines[flux].ops[recaption].max_new_tokens={demo.LEARN_CAPTION_TOKENS}" in overrides
