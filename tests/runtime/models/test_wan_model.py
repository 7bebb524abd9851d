"""runtime.models.wan: Wan 2.1 text-to-video against diffusers WanTransformer3DModel."""

import pytest
import torch
from diffusers import WanTransformer3DModel

from runtime.models import WanDiT, WanDiTConfig

ATOL = 1e-5


@pytest.fixture(scope="module")
def wan(wan_kwargs, make_reference, load_via_safetensors):
    reference = make_reference(WanDiTConfig(**wan_kwargs))
    assert type(reference) is WanTransformer3DModel  # runtime.models.diffusers_config's class for the family
    ours = load_via_safetensors(WanDiT(WanDiTConfig(**wan_kwargs)), reference)
    return reference, ours


def test_state_dict_matches_diffusers_key_for_key(wan):
    reference, ours = wan
    expected = {name: tuple(tensor.shape) for name, tensor in reference.state_dict().items()}
    assert {name: tuple(tensor.shape) for name, tensor in ours.state_dict().items()} == expected


@torch.no_grad()
def test_matches_diffusers(wan, wan_inputs):
    reference, ours = wan
    actual = ours(**wan_inputs)
    assert actual.shape == wan_inputs["hidden_states"].shape
    torch.testing.assert_close(actual, reference(**wan_inputs).sample, atol=ATOL, rtol=0)


@torch.no_grad()
def test_without_cross_attention_norm_matches_diffusers(wan_kwargs, wan_inputs, make_reference, load_via_safetensors):
    kwargs = dict(wan_kwargs, cross_attn_norm=False, num_layers=1)
    reference = make_reference(WanDiTConfig(**kwargs))
    ours = load_via_safetensors(WanDiT(WanDiTConfig(**kwargs)), reference)
    torch.testing.assert_close(ours(**wan_inputs), reference(**wan_inputs).sample, atol=ATOL, rtol=0)


def test_video_must_divide_into_patches(wan, wan_inputs):
    _, ours = wan
    odd = wan_inputs["hidden_states"][..., :5]
    with pytest.raises(ValueError, match="video width is 5, not divisible by the patch size 2"):
        ours(**dict(wan_inputs, hidden_states=odd))


def test_one_timestep_per_sample(wan, wan_inputs):
    _, ours = wan
    with pytest.raises(ValueError, match="one timestep per sample"):
        ours(**dict(wan_inputs, timestep=wan_inputs["timestep"][:, None]))


def test_forward_backward_reaches_every_parameter(wan_kwargs, wan_inputs):
    torch.manual_seed(0)
    model = WanDiT(WanDiTConfig(**wan_kwargs))
    model(**wan_inputs).square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


@pytest.mark.parametrize(
    "heads, ffn_dim, layers, billions", [(12, 8960, 30, 1.42), (40, 13824, 40, 14.29)], ids=["1.3B", "14B"]
)
def test_full_size_wan_has_the_documented_parameter_count(heads, ffn_dim, layers, billions):
    """Wan 2.1 T2V 1.3B and 14B totals (shared/reference/architectures.md); meta device, so no memory."""
    config = WanDiTConfig(
        patch_size=(1, 2, 2),
        num_attention_heads=heads,
        attention_head_dim=128,
        in_channels=16,
        out_channels=16,
        text_dim=4096,
        freq_dim=256,
        ffn_dim=ffn_dim,
        num_layers=layers,
    )
    with torch.device("meta"):
        model = WanDiT(config)
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == billions
