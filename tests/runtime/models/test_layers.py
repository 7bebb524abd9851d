"""runtime.models.layers and runtime.models.attention against the diffusers blocks they mirror."""

import pytest
import torch
from diffusers import FluxPipeline
from diffusers.models.attention import FeedForward
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.normalization import AdaLayerNormContinuous, AdaLayerNormZero, AdaLayerNormZeroSingle

from runtime.models.attention import Attention, attention
from runtime.models.layers import (
    AdaLNOut,
    AdaLNZero,
    FP32LayerNorm,
    GeluMLP,
    SpacetimePatchEmbed,
    patchify_2d,
    timestep_embedding,
    unpatchify_2d,
    unpatchify_3d,
)

DIM = 32


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_timestep_embedding_matches_diffusers(scale):
    t = torch.tensor([0.0, 0.25, 0.999, 1.0]) * (1000.0 if scale == 1.0 else 1.0)
    expected = get_timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=0, scale=scale)
    torch.testing.assert_close(timestep_embedding(t, 256, scale=scale), expected, atol=0, rtol=0)


def test_mlp_loads_and_matches_diffusers_feed_forward():
    reference = FeedForward(DIM, dim_out=DIM, inner_dim=3 * DIM, activation_fn="gelu-approximate")
    ours = GeluMLP(DIM, 3 * DIM)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 5, DIM)
    torch.testing.assert_close(ours(x), reference(x), atol=1e-6, rtol=0)


def test_adaln_zero_chunk_order_matches_diffusers():
    x, cond = torch.randn(2, 5, DIM), torch.randn(2, DIM)
    for reference, chunks in [(AdaLayerNormZero(DIM), 6), (AdaLayerNormZeroSingle(DIM), 3)]:
        ours = AdaLNZero(DIM, chunks)
        ours.load_state_dict(reference.state_dict(), strict=True)
        expected_x, *expected_rest = reference(x, emb=cond)
        actual_x, actual_rest = ours(x, cond)
        torch.testing.assert_close(actual_x, expected_x, atol=1e-6, rtol=0)
        torch.testing.assert_close(actual_rest, expected_rest, atol=1e-6, rtol=0)


def test_final_adaln_takes_scale_before_shift_as_diffusers():
    reference = AdaLayerNormContinuous(DIM, DIM, elementwise_affine=False, eps=1e-6)
    ours = AdaLNOut(DIM)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x, cond = torch.randn(2, 5, DIM), torch.randn(2, DIM)
    torch.testing.assert_close(ours(x, cond), reference(x, cond), atol=1e-6, rtol=0)


def test_fp32_layer_norm_runs_in_float32_with_bf16_parameters():
    norm = FP32LayerNorm(DIM, eps=1e-6).to(torch.bfloat16)
    x = torch.randn(2, 5, DIM, dtype=torch.bfloat16)
    out = norm(x)
    assert out.dtype == torch.float32
    expected = torch.nn.functional.layer_norm(x.float(), (DIM,), norm.weight.float(), norm.bias.float(), 1e-6)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_2x2_packing_matches_the_flux_pipeline():
    latents = torch.randn(2, 16, 6, 8)
    tokens = patchify_2d(latents)
    torch.testing.assert_close(tokens, FluxPipeline._pack_latents(latents, 2, 16, 6, 8), atol=0, rtol=0)
    unpacked = FluxPipeline._unpack_latents(tokens, 6 * 8, 8 * 8, vae_scale_factor=8)
    torch.testing.assert_close(unpatchify_2d(tokens, 6, 8), unpacked, atol=0, rtol=0)
    torch.testing.assert_close(unpatchify_2d(tokens, 6, 8), latents, atol=0, rtol=0)


def test_packing_rejects_odd_latents():
    with pytest.raises(ValueError, match="latent size 5x8 is not divisible by the patch size 2"):
        patchify_2d(torch.randn(1, 16, 5, 8))


def test_spacetime_patches_invert():
    """With a Conv3d that copies each patch into channels (pt ph pw c), unpatchify_3d inverts the embedding."""
    patch, channels = (1, 2, 2), 3
    embed = SpacetimePatchEmbed(channels, 4 * channels, patch)
    with torch.no_grad():
        embed.bias.zero_()
        embed.weight.copy_(torch.eye(4 * channels).reshape(4 * channels, *patch, channels).permute(0, 4, 1, 2, 3))
    video = torch.randn(2, channels, 3, 4, 6)
    tokens = embed(video)
    assert tokens.shape == (2, 3 * 2 * 3, 4 * channels)
    torch.testing.assert_close(unpatchify_3d(tokens, (3, 2, 3), patch), video, atol=0, rtol=0)


def test_qk_norm_per_head_or_across_heads():
    assert Attention(DIM, 2, 16, qk_norm="per_head").norm_q.weight.shape == (16,)
    assert Attention(DIM, 2, 16, qk_norm="across_heads").norm_q.weight.shape == (32,)
    with pytest.raises(ValueError, match="qk_norm is 'layer_norm'"):
        Attention(DIM, 2, 16, qk_norm="layer_norm")


def test_attention_mask_hides_keys():
    q, k, v = torch.randn(3, 1, 4, 2, 8).unbind(0)
    mask = torch.tensor([True, True, False, True])[None, None, None, :]
    changed_v = v.clone()
    changed_v[:, 2] += 100.0
    torch.testing.assert_close(attention(q, k, v, mask), attention(q, k, changed_v, mask), atol=0, rtol=0)
