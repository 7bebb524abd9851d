"""runtime.models.rope: tables and position ids against diffusers' FLUX, Wan and Qwen-Image RoPE."""

import pytest
import torch
from diffusers import FluxPipeline
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import FluxPosEmbed
from diffusers.models.transformers.transformer_qwenimage import QwenEmbedRope
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

from runtime.models.rope import (
    apply_rope,
    flux_image_ids,
    grid_ids,
    qwen_image_ids,
    qwen_text_ids,
    rope_frequencies,
    wan_axes_dims,
)

FLUX_AXES = (16, 56, 56)  # FLUX.1 and Qwen-Image, head dim 128


def test_flux_image_ids_match_the_pipeline():
    expected = FluxPipeline._prepare_latent_image_ids(1, 6, 5, torch.device("cpu"), torch.float32)
    torch.testing.assert_close(flux_image_ids(6, 5), expected, atol=0, rtol=0)


def test_flux_tables_match_diffusers_at_full_size():
    ids = torch.cat([torch.zeros(512, 3), flux_image_ids(64, 64), flux_image_ids(32, 48, index=1)])
    expected_cos, expected_sin = FluxPosEmbed(theta=10000, axes_dim=list(FLUX_AXES))(ids)
    cos, sin = rope_frequencies(ids, FLUX_AXES, theta=10000.0)
    torch.testing.assert_close(cos, expected_cos, atol=0, rtol=0)
    torch.testing.assert_close(sin, expected_sin, atol=0, rtol=0)


def test_apply_rope_matches_diffusers_interleaved_pairs():
    x = torch.randn(2, 10, 3, 16)
    rope = rope_frequencies(grid_ids(1, 2, 5), (4, 6, 6), theta=10000.0)
    expected = apply_rotary_emb(x, rope, sequence_dim=1)
    torch.testing.assert_close(apply_rope(x, rope), expected, atol=1e-6, rtol=0)


def test_attention_scores_depend_only_on_relative_position():
    q, k = torch.randn(2, 1, 1, 16).unbind(0)
    axes = (4, 6, 6)

    def score(q_position, k_position):
        rope_q = rope_frequencies(torch.tensor([q_position], dtype=torch.float32), axes, 10000.0)
        rope_k = rope_frequencies(torch.tensor([k_position], dtype=torch.float32), axes, 10000.0)
        return (apply_rope(q[None], rope_q) * apply_rope(k[None], rope_k)).sum()

    torch.testing.assert_close(score([1, 2, 3], [0, 5, 1]), score([4, 12, 7], [3, 15, 5]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("head_dim, split", [(128, (44, 42, 42)), (32, (12, 10, 10)), (64, (24, 20, 20))])
def test_wan_split_of_the_head_dim(head_dim, split):
    assert wan_axes_dims(head_dim) == split


def test_wan_tables_match_diffusers():
    frames, height, width = 5, 6, 10  # latent video; patch (1, 2, 2) gives a 5 x 3 x 5 token grid
    reference = WanRotaryPosEmbed(attention_head_dim=128, patch_size=(1, 2, 2), max_seq_len=1024)
    expected_cos, expected_sin = reference(torch.zeros(1, 16, frames, height, width))
    cos, sin = rope_frequencies(grid_ids(5, 3, 5), wan_axes_dims(128), theta=10000.0)
    torch.testing.assert_close(cos, expected_cos[0, :, 0], atol=0, rtol=0)
    torch.testing.assert_close(sin, expected_sin[0, :, 0], atol=0, rtol=0)


def test_qwen_image_centred_ids():
    ids = qwen_image_ids([(1, 3, 4)])
    assert ids[:, 1].unique().tolist() == [-2, -1, 0]
    assert ids[:, 2].unique().tolist() == [-2, -1, 0, 1]
    assert qwen_text_ids([(1, 3, 4)], 2).tolist() == [[2, 2, 2], [3, 3, 3]]


def test_qwen_image_tables_match_diffusers_msrope():
    img_shapes = [(1, 9, 6), (1, 4, 7)]  # target plus an edit reference image, odd sizes included
    text_len = 11
    reference = QwenEmbedRope(theta=10000, axes_dim=list(FLUX_AXES), scale_rope=True)
    image_freqs, text_freqs = reference([img_shapes], device=torch.device("cpu"), max_txt_seq_len=text_len)
    expected = torch.cat([text_freqs, image_freqs])  # complex, one entry per channel pair

    ids = torch.cat([qwen_text_ids(img_shapes, text_len), qwen_image_ids(img_shapes)])
    cos, sin = rope_frequencies(ids, FLUX_AXES, theta=10000.0, dtype=torch.float32)
    torch.testing.assert_close(cos, expected.real.repeat_interleave(2, dim=-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(sin, expected.imag.repeat_interleave(2, dim=-1), atol=1e-6, rtol=0)


def test_ids_need_one_column_per_axis():
    with pytest.raises(ValueError, match=r"ids has shape \(4, 2\) but 3 RoPE axes"):
        rope_frequencies(torch.zeros(4, 2), (4, 6, 6), theta=10000.0)
