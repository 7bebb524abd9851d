"""runtime.models.sd3: the SD3-class MMDiT against diffusers SD3Transformer2DModel."""

import pytest
import torch
from diffusers import SD3Transformer2DModel

from runtime.models.sd3 import SD3Config, SD3MMDiT

ATOL = 1e-5
BATCH = 2

# SD3 in miniature: 3 blocks (the last context-pre-only), 2 heads x 16, a 6 x 6 positional table.
TINY = dict(
    sample_size=8,
    patch_size=2,
    in_channels=4,
    out_channels=4,
    num_layers=3,
    num_attention_heads=2,
    attention_head_dim=16,
    joint_attention_dim=24,
    caption_projection_dim=32,
    pooled_projection_dim=12,
    pos_embed_max_size=6,
)


@pytest.fixture(scope="module", params=[None, "rms_norm"], ids=["sd3-medium", "sd3.5-large"])
def models(request, make_reference, load_via_safetensors):
    kwargs = dict(TINY, qk_norm=request.param)
    reference = make_reference(SD3Config(**kwargs))
    assert type(reference) is SD3Transformer2DModel  # runtime.models.diffusers_config's class for the family
    return reference, load_via_safetensors(SD3MMDiT(SD3Config(**kwargs)), reference)


@pytest.fixture(scope="module")
def inputs():
    """An 8 x 6 latent (4 x 3 patches, not square: the crop is off-centre by rows and columns)."""
    generator = torch.Generator().manual_seed(6)
    return dict(
        hidden_states=torch.randn(BATCH, TINY["in_channels"], 8, 6, generator=generator),
        encoder_hidden_states=torch.randn(BATCH, 7, TINY["joint_attention_dim"], generator=generator),
        pooled_projections=torch.randn(BATCH, TINY["pooled_projection_dim"], generator=generator),
        timestep=torch.tensor([3.0, 700.0]),
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


def test_last_block_is_context_pre_only(models):
    _, ours = models
    names = set(ours.state_dict())
    assert "transformer_blocks.1.attn.to_add_out.weight" in names
    assert not any(name.startswith("transformer_blocks.2.ff_context") for name in names)
    assert "transformer_blocks.2.attn.to_add_out.weight" not in names


def test_sincos_table_matches_diffusers_construction():
    kwargs = dict(TINY, sample_size=16, pos_embed_max_size=12)
    reference = SD3Transformer2DModel(**kwargs)
    ours = SD3MMDiT(SD3Config(**kwargs))
    torch.testing.assert_close(ours.pos_embed.pos_embed, reference.pos_embed.pos_embed, atol=1e-6, rtol=0)


def test_the_positional_table_is_not_a_parameter():
    """diffusers counts it as a buffer, so the parameter counts agree."""
    model = SD3MMDiT(SD3Config(**TINY))
    assert "pos_embed.pos_embed" not in dict(model.named_parameters())


def test_rejects_latents_larger_than_the_table(models, inputs):
    _, ours = models
    with pytest.raises(ValueError, match="pos_embed_max_size 6 patches"):
        ours(**dict(inputs, hidden_states=torch.randn(BATCH, 4, 14, 6)))


def test_config_rejects_a_caption_width_other_than_the_model_width():
    with pytest.raises(ValueError, match="caption_projection_dim is 24 but the model width"):
        SD3Config(**dict(TINY, caption_projection_dim=24))


def test_forward_backward_reaches_every_parameter(inputs):
    torch.manual_seed(0)
    model = SD3MMDiT(SD3Config(**dict(TINY, qk_norm="rms_norm")))
    model(**inputs).square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
