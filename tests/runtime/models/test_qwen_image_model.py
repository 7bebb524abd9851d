"""runtime.models.qwen_image: Qwen-Image against diffusers QwenImageTransformer2DModel."""

import pytest
import torch
from diffusers import QwenImageTransformer2DModel

from runtime.models import QwenImageConfig, QwenImageMMDiT

ATOL = 1e-5


@pytest.fixture(scope="module")
def qwen_image(qwen_image_kwargs, make_reference, load_via_safetensors):
    reference = make_reference(QwenImageConfig(**qwen_image_kwargs))
    assert type(reference) is QwenImageTransformer2DModel  # runtime.models.diffusers_config's class for the family
    ours = load_via_safetensors(QwenImageMMDiT(QwenImageConfig(**qwen_image_kwargs)), reference)
    return reference, ours


def reference_forward(reference, inputs):
    """diffusers takes one list of image shapes per sample; ours takes one list for the batch."""
    batch = inputs["hidden_states"].shape[0]
    return reference(**dict(inputs, img_shapes=[list(inputs["img_shapes"])] * batch)).sample


def test_state_dict_matches_diffusers_key_for_key(qwen_image):
    reference, ours = qwen_image
    expected = {name: tuple(tensor.shape) for name, tensor in reference.state_dict().items()}
    assert {name: tuple(tensor.shape) for name, tensor in ours.state_dict().items()} == expected


@pytest.mark.parametrize("masked", [True, False], ids=["padded-text", "no-mask"])
@torch.no_grad()
def test_matches_diffusers(qwen_image, qwen_image_inputs, masked):
    reference, ours = qwen_image
    inputs = dict(qwen_image_inputs)
    if not masked:
        inputs["encoder_hidden_states_mask"] = None
    torch.testing.assert_close(ours(**inputs), reference_forward(reference, inputs), atol=ATOL, rtol=0)


@torch.no_grad()
def test_edit_style_second_image_matches_diffusers(qwen_image, qwen_image_inputs, qwen_image_kwargs):
    """Qwen-Image-Edit appends a reference image as a second segment with frame index 1."""
    reference, ours = qwen_image
    img_shapes = [*qwen_image_inputs["img_shapes"], (1, 3, 3)]
    batch, _, channels = qwen_image_inputs["hidden_states"].shape
    reference_image = torch.randn(batch, 9, channels, generator=torch.Generator().manual_seed(5))
    inputs = dict(
        qwen_image_inputs,
        hidden_states=torch.cat([qwen_image_inputs["hidden_states"], reference_image], dim=1),
        img_shapes=img_shapes,
    )
    torch.testing.assert_close(ours(**inputs), reference_forward(reference, inputs), atol=ATOL, rtol=0)


@torch.no_grad()
def test_padded_text_tokens_do_not_influence_the_image(qwen_image, qwen_image_inputs):
    _, ours = qwen_image
    changed_text = qwen_image_inputs["encoder_hidden_states"].clone()
    changed_text[1, -2:] += 10.0  # the tokens the mask marks as padding
    changed = ours(**dict(qwen_image_inputs, encoder_hidden_states=changed_text))
    torch.testing.assert_close(changed, ours(**qwen_image_inputs), atol=ATOL, rtol=0)


def test_img_shapes_must_cover_the_tokens(qwen_image, qwen_image_inputs):
    _, ours = qwen_image
    with pytest.raises(ValueError, match=r"describe 16 tokens but hidden_states has 20"):
        ours(**dict(qwen_image_inputs, img_shapes=[(1, 4, 4)]))


def test_config_rejects_rope_axes_that_miss_the_head_dim(qwen_image_kwargs):
    with pytest.raises(ValueError, match=r"sums to 18 but attention_head_dim is 16"):
        QwenImageConfig(**dict(qwen_image_kwargs, axes_dims_rope=(6, 6, 6)))


def test_forward_backward_reaches_every_parameter_that_feeds_the_image(qwen_image_kwargs, qwen_image_inputs):
    """Only image tokens are read out, so the last block's text output path gets no gradient (as in diffusers)."""
    torch.manual_seed(0)
    model = QwenImageMMDiT(QwenImageConfig(**qwen_image_kwargs))
    model(**qwen_image_inputs).square().mean().backward()
    last = f"transformer_blocks.{qwen_image_kwargs['num_layers'] - 1}"
    unused = {f"{last}.attn.to_add_out", f"{last}.txt_mlp"}
    for name, parameter in model.named_parameters():
        if any(name.startswith(prefix + ".") for prefix in unused):
            assert parameter.grad is None, name
        else:
            assert parameter.grad is not None, name
            assert torch.isfinite(parameter.grad).all(), name


def test_full_size_qwen_image_has_the_documented_parameter_count():
    """20.43B (shared/reference/architectures.md); built on the meta device, so no memory."""
    with torch.device("meta"):
        model = QwenImageMMDiT(
            QwenImageConfig(
                in_channels=64,
                out_channels=16,
                num_layers=60,
                num_attention_heads=24,
                attention_head_dim=128,
                joint_attention_dim=3584,
                axes_dims_rope=(16, 56, 56),
            )
        )
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == 20.43
