"""precompute_embeddings writes the trainer's members, equal to what the trainer encodes on the fly."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch

from compiler.schema.architecture import (
    ArchitectureSpec,
    LatentSpace,
    MMDiT,
    Rope,
    TextEncoder,
)
from compiler.schema.data import PrecomputeEmbeddings
from runtime.curation.api import OpConfigError, OpContext
from runtime.curation.ops_model_captions import PrecomputeConditioning
from runtime.curation.registry import build
from runtime.train.batch import BatchBuilder

OP = PrecomputeEmbeddings(text_encoders=["clip_l", "t5_xxl"], vae_latents=True)


def architecture() -> ArchitectureSpec:
    """A miniature FLUX: CLIP pooled, T5 tokens, an 8x VAE with 4 channels."""
    return ArchitectureSpec(
        backbone=MMDiT(hidden_size=32, num_heads=2, head_dim=16, in_channels=16, out_channels=16,
                       positions=Rope(axes=["index", "h", "w"], axes_dims=[4, 6, 6]), double_blocks=1,
                       single_blocks=1, context_dim=16, pooled_dim=8),
        text_encoders=[
            TextEncoder(name="clip_l", model="openai/clip-vit-large-patch14", role="pooled", dim=8, max_tokens=8),
            TextEncoder(name="t5_xxl", model="google/t5-v1_1-xxl", role="tokens", dim=16, max_tokens=12),
        ],
        space=LatentSpace(vae="black-forest-labs/FLUX.1-dev", channels=4, spatial_compression=8),
    )


def sample(record) -> dict[str, bytes]:
    """The record as the trainer reads it from the written shard."""
    return {"__key__": record.key.encode(), **record.to_members()}


def on_the_fly_builder(arch, ctx) -> BatchBuilder:
    from runtime.encoders import build_encoders

    return BatchBuilder(arch, mask_from=None, encoders=lambda: build_encoders(arch, "smoke", ctx.model_dir))


def test_members_equal_the_trainers_on_the_fly_encoding(kit, smoke):
    arch = architecture()
    smoke = replace(smoke, architecture=arch)
    op = PrecomputeConditioning(OP, smoke)
    assert "stored size" in op.notes()[0] and "stand-in" in op.notes()[1]
    record = kit.image_record("a", 1)  # 128 x 96
    record.captions["synthetic"] = [{"text": "a grey cat on a mat", "style": "long", "language": "en"}]
    raw = sample(record)
    run = kit.run_op(OP, [record, kit.image_record("bare", 2)], smoke, impl=op)
    assert run.dropped == {"bare": "no caption to encode"}
    (kept,) = run.kept
    members = {name: np.load(io.BytesIO(data)) for name, data in kept.columns.items()}
    assert sorted(members) == ["latents.npy", "pooled.npy", "text.npy", "text_mask.npy"]
    assert members["latents.npy"].shape == (4, 12, 16) and members["latents.npy"].std() > 0  # 96 x 128 stored, 8x
    assert members["text.npy"].shape == (12, 16) and members["pooled.npy"].shape == (8,)
    assert not members["text.npy"][~members["text_mask.npy"]].any()  # padding is zeroed

    # The trainer takes the members as they are (no encoders to fall back on) ...
    precomputed = BatchBuilder(arch, mask_from=None)([sample(kept)], size=(96, 128))
    # ... and they equal its own encoding of the same image and caption (the synthetic one: no original).
    expected = on_the_fly_builder(arch, smoke)([raw], size=(96, 128))
    torch.testing.assert_close(precomputed.latents, expected.latents)
    for field in ("text", "text_mask", "pooled"):
        torch.testing.assert_close(getattr(precomputed.cond, field), getattr(expected.cond, field))


def test_an_edit_triplet_gets_its_reference_latents_and_a_set_resolution_is_used(kit, smoke):
    arch = architecture()
    smoke = replace(smoke, architecture=arch, encode_size=(64, 64))
    op = PrecomputeConditioning(OP, smoke)
    assert "encoded at 64x64" in op.notes()[0]
    record = kit.image_record("edit", 3, caption="make the sky red")
    record.columns["source.png"] = kit.png(kit.texture(4))
    raw = sample(record)
    (kept,) = kit.run_op(OP, [record], smoke, impl=op).kept
    assert np.load(io.BytesIO(kept.columns["context.npy"])).shape == (4, 8, 8)
    precomputed = BatchBuilder(arch, mask_from=None)([sample(kept)], size=(64, 64))
    expected = on_the_fly_builder(arch, smoke)([raw], size=(64, 64))
    torch.testing.assert_close(precomputed.latents, expected.latents)
    torch.testing.assert_close(precomputed.cond.context_latents, expected.cond.context_latents)
    torch.testing.assert_close(precomputed.cond.text, expected.cond.text)
    assert not torch.equal(precomputed.cond.context_latents, precomputed.latents)


def test_without_the_architecture_smoke_runs_say_nothing_was_precomputed(kit, smoke, full):
    op = build(OP, smoke)
    assert "nothing was precomputed" in op.notes()[0]
    (kept,) = kit.run_op(OP, [kit.image_record("a", 1, caption="a cat")], smoke, impl=op).kept
    assert kept.columns == {}
    with pytest.raises(OpConfigError, match="needs the spec's architecture"):
        build(OP, full)
    with pytest.raises(OpConfigError, match="not in architecture.text_encoders"):
        PrecomputeConditioning(PrecomputeEmbeddings(text_encoders=["umt5"]),
                               OpContext(None, "smoke", architecture=architecture()))
    with pytest.raises(OpConfigError, match="nothing to precompute"):
        build(PrecomputeEmbeddings(text_encoders=[], vae_latents=False), smoke)


def test_missing_weights_at_full_scale_are_named_before_any_sample_is_read(tmp_path):
    with pytest.raises(OpConfigError) as error:
        PrecomputeConditioning(OP, OpContext(tmp_path, "full", architecture=architecture()))
    message = str(error.value)
    for model_id in ("openai/clip-vit-large-patch14", "google/t5-v1_1-xxl", "black-forest-labs/FLUX.1-dev"):
        assert repr(model_id) in message
    assert str(tmp_path) in message and "smoke" in message
    only_text = PrecomputeEmbeddings(text_encoders=["t5_xxl"], vae_latents=False)
    with pytest.raises(OpConfigError) as error:
        PrecomputeConditioning(only_text, OpContext(tmp_path, "full", architecture=architecture()))
    assert "t5-v1_1-xxl" in str(error.value) and "clip" not in str(error.value) and "FLUX" not in str(error.value)
