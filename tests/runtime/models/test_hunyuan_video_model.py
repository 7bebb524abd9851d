"""runtime.models.hunyuan_video: the video MMDiT against diffusers HunyuanVideoTransformer3DModel."""

import pytest
import torch
from diffusers import HunyuanVideoTransformer3DModel

from runtime.models.hunyuan_video import HunyuanVideoConfig, HunyuanVideoMMDiT

ATOL = 1e-5
BATCH = 2

# HunyuanVideo in miniature: 2 double + 2 single + 1 refiner blocks, 2 heads x 16, RoPE (4, 6, 6).
TINY = dict(
    in_channels=4,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=16,
    num_layers=2,
    num_single_layers=2,
    num_refiner_layers=1,
    text_embed_dim=20,
    pooled_projection_dim=12,
    guidance_embeds=True,
    rope_axes_dim=(4, 6, 6),
    patch_size=2,
    patch_size_t=1,
)


@pytest.fixture(scope="module")
def models(make_reference, load_via_safetensors):
    reference = make_reference(HunyuanVideoConfig(**TINY))
    assert type(reference) is HunyuanVideoTransformer3DModel  # runtime.models.diffusers_config's class for the family
    return reference, load_via_safetensors(HunyuanVideoMMDiT(HunyuanVideoConfig(**TINY)), reference)


@pytest.fixture(scope="module")
def inputs():
    """3 latent frames of 4 x 6; the second sample's last two of 5 text tokens are padding."""
    generator = torch.Generator().manual_seed(5)
    mask = torch.ones(BATCH, 5, dtype=torch.long)
    mask[1, -2:] = 0
    return dict(
        hidden_states=torch.randn(BATCH, TINY["in_channels"], 3, 4, 6, generator=generator),
        timestep=torch.tensor([3.0, 700.0]),
        encoder_hidden_states=torch.randn(BATCH, 5, TINY["text_embed_dim"], generator=generator),
        encoder_attention_mask=mask,
        pooled_projections=torch.randn(BATCH, TINY["pooled_projection_dim"], generator=generator),
        guidance=torch.tensor([3500.0, 6000.0]),
    )


def test_state_dict_matches_diffusers_key_for_key(models):
    reference, ours = models
    expected = {name: tuple(tensor.shape) for name, tensor in reference.state_dict().items()}
    assert {name: tuple(tensor.shape) for name, tensor in ours.state_dict().items()} == expected


@torch.no_grad()
def test_output_matches_diffusers(models, inputs):
    reference, ours = models
    expected = reference(**inputs).sample
    actual = ours(**inputs)
    assert actual.shape == inputs["hidden_states"].shape
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


@torch.no_grad()
def test_padded_text_tokens_do_not_change_the_prediction(models, inputs):
    _, ours = models
    text = inputs["encoder_hidden_states"].clone()
    text[1, -2:] = 100.0
    changed = ours(**dict(inputs, encoder_hidden_states=text))
    torch.testing.assert_close(changed[1], ours(**inputs)[1], atol=ATOL, rtol=0)


@torch.no_grad()
def test_without_guidance_matches_diffusers(inputs, make_reference, load_via_safetensors):
    kwargs = dict(TINY, guidance_embeds=False, num_layers=1, num_single_layers=1)
    reference = make_reference(HunyuanVideoConfig(**kwargs))
    ours = load_via_safetensors(HunyuanVideoMMDiT(HunyuanVideoConfig(**kwargs)), reference)
    plain = {name: value for name, value in inputs.items() if name != "guidance"}
    torch.testing.assert_close(ours(**plain), reference(**plain).sample, atol=ATOL, rtol=0)


def test_rejects_4d_latents(models, inputs):
    _, ours = models
    with pytest.raises(ValueError, match="5-D latents"):
        ours(**dict(inputs, hidden_states=inputs["hidden_states"][:, :, 0]))


def test_config_rejects_rope_axes_that_miss_the_head_dim():
    with pytest.raises(ValueError, match="summing to attention_head_dim 16"):
        HunyuanVideoConfig(**dict(TINY, rope_axes_dim=(4, 4, 6)))


def test_forward_backward_reaches_every_parameter(inputs):
    torch.manual_seed(0)
    model = HunyuanVideoMMDiT(HunyuanVideoConfig(**TINY))
    model(**inputs).square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
