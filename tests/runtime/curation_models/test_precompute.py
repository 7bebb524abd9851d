"""precompute_embeddings writes the trainer's members, bf16 and unpadded, equal to what the trainer encodes on the
fly (rounded to bf16), for images and for video clips."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch

from compiler.schema.architecture import (
    ArchitectureSpec,
    DiT,
    LatentSpace,
    MMDiT,
    Rope,
    TextEncoder,
)
from compiler.schema.data import PrecomputeEmbeddings
from runtime.curation.api import OpConfigError, OpContext
from runtime.curation.ops.model_captions import PrecomputeConditioning
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


def bf16(tensor: torch.Tensor) -> torch.Tensor:
    """What storing in bf16 makes of a float32 tensor."""
    return tensor.bfloat16().float()


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
    assert sorted(members) == ["latents.npy", "pooled.npy", "text.npy"]  # unpadded text needs no mask
    assert {array.dtype for array in members.values()} == {np.dtype(np.uint16)}  # bf16 bit patterns
    assert members["latents.npy"].shape == (4, 12, 16) and members["latents.npy"].std() > 0  # 96 x 128 stored, 8x
    assert members["pooled.npy"].shape == (8,)
    # ByT5's byte tokens: the caption's 19 bytes and EOS would fill max_tokens 12; a 2-token caption stays short.
    assert members["text.npy"].shape == (12, 16)

    # The trainer takes the members as they are (no encoders to fall back on) ...
    precomputed = BatchBuilder(arch, mask_from=None)([sample(kept)], size=(96, 128))
    # ... and they equal its own encoding of the same image and caption (the synthetic one: no original), in bf16.
    expected = on_the_fly_builder(arch, smoke)([raw], size=(96, 128))
    torch.testing.assert_close(precomputed.latents, bf16(expected.latents), rtol=0, atol=0)
    torch.testing.assert_close(precomputed.cond.pooled, bf16(expected.cond.pooled), rtol=0, atol=0)
    torch.testing.assert_close(precomputed.cond.text, bf16(expected.cond.text), rtol=0, atol=0)


def test_text_is_stored_unpadded_and_padded_to_the_batchs_longest_at_load(kit, smoke):
    arch = architecture()
    smoke = replace(smoke, architecture=arch)
    text_only = PrecomputeEmbeddings(text_encoders=["t5_xxl"], vae_latents=False)
    short, long = kit.image_record("short", 1, caption="a"), kit.image_record("long", 2, caption="a cat")
    kept = kit.run_op(text_only, [short, long], smoke, impl=PrecomputeConditioning(text_only, smoke)).kept
    texts = [np.load(io.BytesIO(record.columns["text.npy"])) for record in kept]
    assert [text.shape for text in texts] == [(2, 16), (6, 16)]  # bytes + EOS, not max_tokens 12
    assert all(text.dtype == np.uint16 for text in texts)
    samples = [sample(record) for record in kept]
    for s in samples:  # the trainer would encode these from the image and caption: give it precomputed ones
        s.update({"latents.npy": _npy(np.zeros((4, 8, 8), dtype=np.float32)), "pooled.npy": _npy(np.zeros(8))})
    batch = BatchBuilder(arch, mask_from=None)(samples, size=(64, 64))
    assert batch.cond.text.shape == (2, 6, 16)
    assert batch.cond.text_mask.tolist() == [[1, 1, 0, 0, 0, 0], [1] * 6]
    expected = on_the_fly_builder(arch, smoke)([sample(short), sample(long)], size=(64, 64)).cond
    torch.testing.assert_close(batch.cond.text, bf16(expected.text[:, :6]), rtol=0, atol=0)
    assert not expected.text[:, 6:].any() and not expected.text_mask[:, 6:].any()  # on the fly: zero padding


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def video_architecture() -> ArchitectureSpec:
    """A miniature Wan: UMT5 cross-attention, a causal 8x / 4x video VAE with 4 channels."""
    return ArchitectureSpec(
        backbone=DiT(hidden_size=32, num_heads=2, head_dim=16, in_channels=4, out_channels=4,
                     positions=Rope(axes=["t", "h", "w"], axes_dims=[4, 6, 6]), depth=1, text_dim=16),
        text_encoders=[TextEncoder(name="umt5", model="google/umt5-xxl", role="cross_attention", dim=16,
                                   max_tokens=12)],
        space=LatentSpace(vae="Wan-AI/Wan2.1-T2V-1.3B", channels=4, spatial_compression=8, temporal_compression=4,
                          causal=True),
    )


def test_video_latents_are_the_stages_clip_and_the_trainer_reads_them(kit, smoke):
    arch = video_architecture()
    frames, fps = 5, 8.0  # 1 + 4 * 1: two latent frames
    smoke = replace(smoke, architecture=arch, encode_size=(32, 32), encode_clip=(frames, fps))
    op = PrecomputeEmbeddings(text_encoders=["umt5"], vae_latents=True)
    clip = [kit.texture(seed, 48, 64) for seed in range(7)]
    record = kit.video_record("clip", clip)
    record.captions["original"] = "waves"
    raw = sample(record)
    (kept,) = kit.run_op(op, [record], smoke, impl=PrecomputeConditioning(op, smoke)).kept
    latents = np.load(io.BytesIO(kept.columns["latents.npy"]))
    assert latents.dtype == np.uint16 and latents.shape == (4, 2, 4, 4)
    stored = {"__key__": b"clip", **{name: kept.columns[name] for name in ("latents.npy", "text.npy")}}  # no media
    precomputed = BatchBuilder(arch, mask_from=None, frames=frames, fps=fps)([stored], size=(32, 32))
    expected = BatchBuilder(arch, mask_from=None, frames=frames, fps=fps,
                            encoders=on_the_fly_builder(arch, smoke).load_encoders)([raw], size=(32, 32))
    assert expected.latents.shape == (1, 4, 2, 4, 4)
    torch.testing.assert_close(precomputed.latents, bf16(expected.latents), rtol=0, atol=0)


def test_a_video_without_the_stages_clip_is_refused(kit, smoke):
    arch = video_architecture()
    smoke = replace(smoke, architecture=arch, encode_size=(32, 32))  # no encode_clip
    op = PrecomputeEmbeddings(text_encoders=[], vae_latents=True)
    record = kit.video_record("clip", [kit.texture(seed, 48, 64) for seed in range(5)])
    with pytest.raises(ValueError, match="no clip geometry"):
        kit.run_op(op, [record], smoke, impl=PrecomputeConditioning(op, smoke))


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
    torch.testing.assert_close(precomputed.latents, bf16(expected.latents), rtol=0, atol=0)
    torch.testing.assert_close(precomputed.cond.context_latents, bf16(expected.cond.context_latents), rtol=0, atol=0)
    length = precomputed.cond.text.shape[1]  # the caption's real tokens
    torch.testing.assert_close(precomputed.cond.text, bf16(expected.cond.text[:, :length]), rtol=0, atol=0)
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


def test_joint_tokens_are_stored_joined_with_their_mask_and_equal_the_trainers(kit, smoke):
    """SD3's layout: CLIP-L and CLIP-G (both roles, penultimate layer, projected pooled) side by side, padded to
    T5's width, then T5's tokens; text.npy keeps the CLIPs' padding, so text_mask.npy marks the real tokens."""
    clip_l = TextEncoder(name="clip_l", model="openai/clip-vit-large-patch14", role="tokens", pooled=True,
                         hidden_layer=-2, pooled_projection=True, dim=8, max_tokens=8)
    clip_g = clip_l.model_copy(update={"name": "clip_g", "model": "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"})
    t5 = TextEncoder(name="t5", model="google/t5-v1_1-xxl", role="tokens", dim=16, max_tokens=12)
    arch = architecture().model_copy(update={"text_encoders": [clip_l, clip_g, t5],
                                             "joint_tokens": [["clip_l", "clip_g"], ["t5"]]})
    arch = arch.model_copy(update={"backbone": arch.backbone.model_copy(update={"pooled_dim": 16})})
    smoke = replace(smoke, architecture=arch)
    op_spec = PrecomputeEmbeddings(text_encoders=["clip_l", "clip_g", "t5"], vae_latents=True)
    record = kit.image_record("a", 1, caption="a cat")
    raw = sample(record)  # before the op adds its members
    (kept,) = kit.run_op(op_spec, [record], smoke, impl=PrecomputeConditioning(op_spec, smoke)).kept
    members = {name: np.load(io.BytesIO(data)) for name, data in kept.columns.items()}
    assert members["text.npy"].shape == (8 + 6, 16)  # the CLIPs' 8 positions, then T5's 5 bytes + EOS
    assert members["text_mask.npy"].tolist() == [1] * 6 + [0, 0] + [1] * 6
    assert members["pooled.npy"].shape == (16,)
    precomputed = BatchBuilder(arch, mask_from=None)([sample(kept)], size=(96, 128))
    expected = on_the_fly_builder(arch, smoke)([raw], size=(96, 128))
    assert expected.cond.text.shape == (1, 8 + 12, 16)
    torch.testing.assert_close(precomputed.cond.text, bf16(expected.cond.text[:, :14]), rtol=0, atol=0)
    assert precomputed.cond.text_mask.tolist() == expected.cond.text_mask[:, :14].tolist()
    torch.testing.assert_close(precomputed.cond.pooled, bf16(expected.cond.pooled), rtol=0, atol=0)
