"""compiler/plan/conditioning.py: which stages train from precomputed conditioning, and its bytes per sample."""

import specs
from compiler.plan.conditioning import stage_conditioning, stored_bytes_per_sample


def stage(spec, name):
    return next(stage for stage in spec.schedule.stages if stage.name == name)


def test_flux_pretrain_reads_precomputed_conditioning_and_later_sizes_encode_on_the_fly():
    spec = specs.load("flux1-dev")
    assert stage_conditioning(spec, stage(spec, "pretrain")) == "precomputed"  # 256^2, the size curation encodes at
    assert stage_conditioning(spec, stage(spec, "highres_finetune")) == "on_the_fly"  # 512^2 and 1024^2


def test_the_spec_decides_when_it_says():
    spec = specs.load("flux1-dev")
    pretrain = stage(spec, "pretrain").model_copy(update={"conditioning": "on_the_fly"})
    assert stage_conditioning(spec, pretrain) == "on_the_fly"
    wan = specs.load("wan2.1-t2v-1.3b")  # no precompute_embeddings op
    assert stage_conditioning(wan, wan.schedule.stages[0]) == "on_the_fly"
    assert stored_bytes_per_sample(wan, wan.data.pipelines[0].output) is None


def test_stored_bytes_are_bf16_latents_and_text_at_most_max_tokens():
    spec = specs.load("flux1-dev")
    space, side = spec.architecture.space, stage(spec, "pretrain").resolutions[0].height
    latents = space.channels * (side // space.spatial_compression) ** 2
    text = sum(e.dim * (1 if e.role == "pooled" else e.max_tokens) for e in spec.architecture.text_encoders)
    assert stored_bytes_per_sample(spec, "flux_training_set") == 2 * (latents + text)
    # T5-XXL's 512 x 4096 tokens dominate: about 4.2 MB, half the 8.4 MB of float32, before unpadding.
    assert 4.0e6 < stored_bytes_per_sample(spec, "flux_training_set") < 4.5e6
