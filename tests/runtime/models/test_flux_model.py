"""runtime.models.flux: FLUX dev, schnell and Kontext against diffusers FluxTransformer2DModel."""

import dataclasses

import pytest
import torch
from diffusers import FluxTransformer2DModel

from runtime.models import MMDiT, MMDiTConfig
from runtime.models.rope import flux_image_ids

ATOL = 1e-5
CONTEXT_GRID = (3, 3)  # a Kontext context image of another size than the 4 x 4 target


@pytest.fixture(scope="module")
def flux_dev(flux_kwargs, make_reference, load_via_safetensors):
    reference = make_reference(MMDiTConfig(**flux_kwargs))
    assert type(reference) is FluxTransformer2DModel  # runtime.models.diffusers_config's class for the family
    ours = load_via_safetensors(MMDiT(MMDiTConfig(**flux_kwargs)), reference)
    return reference, ours


def test_state_dict_matches_diffusers_key_for_key(flux_dev):
    reference, ours = flux_dev
    expected = {name: tuple(tensor.shape) for name, tensor in reference.state_dict().items()}
    assert {name: tuple(tensor.shape) for name, tensor in ours.state_dict().items()} == expected


@torch.no_grad()
def test_dev_with_guidance_matches_diffusers(flux_dev, flux_inputs):
    reference, ours = flux_dev
    expected = reference(**flux_inputs).sample
    torch.testing.assert_close(ours(**flux_inputs), expected, atol=ATOL, rtol=0)


@torch.no_grad()
def test_guidance_changes_the_prediction(flux_dev, flux_inputs):
    _, ours = flux_dev
    other = dict(flux_inputs, guidance=flux_inputs["guidance"] + 1.0)
    assert not torch.allclose(ours(**flux_inputs), ours(**other))


@torch.no_grad()
def test_kontext_matches_diffusers_pipeline_convention(flux_dev, flux_inputs, flux_kwargs):
    """diffusers pipeline_flux_kontext.py: concat latents and ids on the sequence axis, slice the output."""
    reference, ours = flux_dev
    target = flux_inputs["hidden_states"]
    height, width = CONTEXT_GRID
    context_latents = torch.randn(target.shape[0], height * width, flux_kwargs["in_channels"])
    context_ids = flux_image_ids(height, width, index=1)

    joint = dict(
        flux_inputs,
        hidden_states=torch.cat([target, context_latents], dim=1),
        img_ids=torch.cat([flux_inputs["img_ids"], context_ids]),
    )
    expected = reference(**joint).sample[:, : target.shape[1]]
    actual = ours(**flux_inputs, context_latents=context_latents, context_ids=context_ids)

    assert actual.shape == target.shape
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)
    assert not torch.allclose(actual, ours(**flux_inputs)), "the context image must influence the target"


@torch.no_grad()
def test_schnell_without_guidance_matches_diffusers(flux_kwargs, flux_inputs, make_reference, load_via_safetensors):
    kwargs = dict(flux_kwargs, guidance_embeds=False, num_layers=1, num_single_layers=1)
    reference = make_reference(MMDiTConfig(**kwargs))
    ours = load_via_safetensors(MMDiT(MMDiTConfig(**kwargs)), reference)
    inputs = {name: value for name, value in flux_inputs.items() if name != "guidance"}

    assert not any("guidance" in name for name in ours.state_dict())
    torch.testing.assert_close(ours(**inputs), reference(**inputs).sample, atol=ATOL, rtol=0)


def test_guidance_is_required_exactly_when_embedded(flux_dev, flux_inputs):
    _, ours = flux_dev
    without = {name: value for name, value in flux_inputs.items() if name != "guidance"}
    with pytest.raises(ValueError, match="guidance_embeds is True"):
        ours(**without)


def test_kontext_needs_latents_and_ids_together(flux_dev, flux_inputs):
    _, ours = flux_dev
    with pytest.raises(ValueError, match="pass both or neither"):
        ours(**flux_inputs, context_latents=flux_inputs["hidden_states"])


def test_ids_must_give_one_position_per_token(flux_dev, flux_inputs):
    _, ours = flux_dev
    with pytest.raises(ValueError, match=r"img_ids has shape \(9, 3\) but its tokens need \(16, 3\)"):
        ours(**dict(flux_inputs, img_ids=flux_image_ids(3, 3)))


def test_config_rejects_rope_axes_that_miss_the_head_dim(flux_kwargs):
    with pytest.raises(ValueError, match=r"sums to 14 but attention_head_dim is 16"):
        MMDiTConfig(**dict(flux_kwargs, axes_dims_rope=(4, 4, 6)))


def test_config_is_frozen(flux_kwargs):
    with pytest.raises(dataclasses.FrozenInstanceError):
        MMDiTConfig(**flux_kwargs).num_layers = 3


def test_forward_backward_reaches_every_parameter(flux_kwargs, flux_inputs):
    torch.manual_seed(0)
    model = MMDiT(MMDiTConfig(**flux_kwargs))
    model(**flux_inputs).square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


def test_full_size_flux_dev_has_the_documented_parameter_count():
    """11.90B for FLUX.1 dev (shared/reference/architectures.md); built on the meta device, so no memory."""
    with torch.device("meta"):
        model = MMDiT(
            MMDiTConfig(
                in_channels=64,
                num_layers=19,
                num_single_layers=38,
                num_attention_heads=24,
                attention_head_dim=128,
                joint_attention_dim=4096,
                pooled_projection_dim=768,
                guidance_embeds=True,
                axes_dims_rope=(16, 56, 56),
            )
        )
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == 11.90
