"""runtime.models.cogvideox: the expert-adaLN video DiT against diffusers CogVideoXTransformer3DModel, with the
RoPE tables diffusers' pipeline computes (pipeline_cogvideox.py _prepare_rotary_positional_embeddings)."""

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

from runtime.models.cogvideox import CogVideoXConfig, CogVideoXDiT

ATOL = 1e-5
BATCH = 2

# CogVideoX-5B in miniature: 2 blocks, 2 heads x 16, conditioning width 24 (not the model width 32),
# norm eps 1e-5, base latent 8 x 12 (4 x 6 patches).
TINY = dict(
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=4,
    out_channels=4,
    time_embed_dim=24,
    text_embed_dim=20,
    num_layers=2,
    sample_height=8,
    sample_width=12,
    norm_eps=1e-5,
    use_rotary_positional_embeddings=True,
)


@pytest.fixture(scope="module")
def models(make_reference, load_via_safetensors):
    reference = make_reference(CogVideoXConfig(**TINY))
    assert type(reference) is CogVideoXTransformer3DModel  # runtime.models.diffusers_config's class for the family
    return reference, load_via_safetensors(CogVideoXDiT(CogVideoXConfig(**TINY)), reference)


def pipeline_rope(frames: int, grid_height: int, grid_width: int):
    """The tables diffusers' CogVideoX 1.0 pipeline passes as image_rotary_emb."""
    patch = 2
    crops = get_resize_crop_region_for_grid(
        (grid_height, grid_width), TINY["sample_width"] // patch, TINY["sample_height"] // patch
    )
    return get_3d_rotary_pos_embed(
        embed_dim=TINY["attention_head_dim"], crops_coords=crops, grid_size=(grid_height, grid_width),
        temporal_size=frames,
    )


def make_inputs(frames: int, height: int, width: int, seed: int = 7):
    generator = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(BATCH, frames, TINY["in_channels"], height, width, generator=generator),
        encoder_hidden_states=torch.randn(BATCH, 5, TINY["text_embed_dim"], generator=generator),
        timestep=torch.tensor([3.0, 700.0]),
    )


def test_state_dict_matches_diffusers_key_for_key(models):
    reference, ours = models
    expected = {name: tuple(tensor.shape) for name, tensor in reference.state_dict().items()}
    assert {name: tuple(tensor.shape) for name, tensor in ours.state_dict().items()} == expected


@pytest.mark.parametrize(
    "frames, height, width",
    [(3, 8, 12), (2, 8, 8)],
    ids=["base-grid", "other-aspect-ratio"],  # the second spreads positions over a cropped region (linspace)
)
@torch.no_grad()
def test_output_matches_diffusers_with_the_pipelines_rope(models, frames, height, width):
    reference, ours = models
    inputs = make_inputs(frames, height, width)
    expected = reference(**inputs, image_rotary_emb=pipeline_rope(frames, height // 2, width // 2)).sample
    actual = ours(**inputs)
    assert actual.shape == inputs["hidden_states"].shape
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


def test_norm_eps_reaches_the_norms():
    model = CogVideoXDiT(CogVideoXConfig(**dict(TINY, norm_eps=1e-3)))
    assert model.transformer_blocks[0].norm1.norm.eps == 1e-3
    assert model.norm_final.eps == 1e-3
    assert model.transformer_blocks[0].attn1.norm_q.eps == 1e-6  # diffusers fixes the QK norms' eps


def test_config_rejects_the_variants_not_built():
    with pytest.raises(ValueError, match="use_rotary_positional_embeddings is False"):
        CogVideoXConfig(**dict(TINY, use_rotary_positional_embeddings=False))


def test_rejects_4d_latents(models):
    _, ours = models
    inputs = make_inputs(1, 8, 12)
    with pytest.raises(ValueError, match="5-D latents"):
        ours(**dict(inputs, hidden_states=inputs["hidden_states"][:, 0]))


def test_forward_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = CogVideoXDiT(CogVideoXConfig(**TINY))
    model(**make_inputs(2, 8, 12)).square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
