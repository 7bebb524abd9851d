"""Activation checkpointing and from-scratch initialisation, on every family."""

import copy

import pytest
import torch

from runtime.models import (
    MMDiT,
    MMDiTConfig,
    QwenImageConfig,
    QwenImageMMDiT,
    UNetConfig,
    WanDiT,
    WanDiTConfig,
    compile_blocks,
)
from runtime.models.flux import DoubleStreamBlock
from runtime.models.qwen_image import QwenImageBlock
from runtime.models.unet import AttentionBlock

UNETS = {
    "unet": UNetConfig(
        resolution=16, channels=16, channel_mult=(1, 2), res_blocks=(1, 2), attention_resolutions=(8,), text_dim=12
    ),
    "efficient_unet": UNetConfig(
        resolution=16, channels=16, channel_mult=(1, 2), res_blocks=(2, 1), attention_resolutions=(8,), text_dim=12,
        efficient=True, skip_scale=2**-0.5, low_res_conditioning=True, noise_conditioning_augmentation=True,
    ),
}


def unet_inputs(config: UNetConfig) -> dict:
    generator = torch.Generator().manual_seed(4)
    values = dict(
        sample=torch.randn(2, 3, 16, 16, generator=generator),
        timestep=torch.tensor([3.0, 700.0]),
        text=torch.randn(2, 5, 12, generator=generator),
        text_mask=torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
    )
    if config.low_res_conditioning:
        values |= dict(low_res=torch.randn(2, 3, 8, 8, generator=generator), low_res_noise_level=torch.rand(2))
    return values


@pytest.fixture(params=["flux", "qwen_image", "wan", *UNETS])
def family(request):
    """(name, model with a fixed seed, inputs) for each family."""
    torch.manual_seed(0)
    name = request.param
    if name in UNETS:
        return name, UNETS[name].build(), unet_inputs(UNETS[name])
    model_cls, config_cls, prefix = {
        "flux": (MMDiT, MMDiTConfig, "flux"),
        "qwen_image": (QwenImageMMDiT, QwenImageConfig, "qwen_image"),
        "wan": (WanDiT, WanDiTConfig, "wan"),
    }[name]
    config = config_cls(**request.getfixturevalue(f"{prefix}_kwargs"))
    return name, model_cls(config), request.getfixturevalue(f"{prefix}_inputs")


def gradients(model, inputs) -> dict[str, torch.Tensor]:
    """Gradients of a regression to ones (not to zero: a zero-initialised model would get none)."""
    model.zero_grad(set_to_none=True)
    (model(**inputs) - 1).square().mean().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_activation_checkpointing_recomputes_blocks_and_keeps_gradients(family):
    _, model, inputs = family
    keys = list(model.state_dict())
    expected = gradients(model, inputs)
    model.enable_activation_checkpointing()
    model.enable_activation_checkpointing()  # a second call changes nothing
    calls = []
    first_block = getattr(model, model.repeated_blocks[0])[0]
    for submodule in list(first_block.modules())[1:]:
        submodule.register_forward_pre_hook(lambda module, args: calls.append(module))
    model.zero_grad(set_to_none=True)
    loss = (model(**inputs) - 1).square().mean()
    forward_calls = len(calls)
    loss.backward()
    assert forward_calls > 0 and len(calls) == 2 * forward_calls  # the backward pass reran the block
    actual = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    assert list(model.state_dict()) == keys
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)


def identity_pairs(module, args, output) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input, output) of each stream a block carries: both streams for the two-stream blocks."""
    if isinstance(module, (DoubleStreamBlock, QwenImageBlock)):
        return [(args[0], output[0]), (args[1], output[1])]
    return [(args[0], output)]


@torch.no_grad()
def test_init_weights_zero_the_output_and_make_residual_blocks_the_identity(family):
    name, model, inputs = family
    model.init_weights()
    blocks = [m for m in model.modules() if isinstance(m, AttentionBlock)] if name in UNETS else [
        block for attribute in model.repeated_blocks for block in getattr(model, attribute)
    ]
    pairs = []
    for block in blocks:
        block.register_forward_hook(lambda module, args, output: pairs.extend(identity_pairs(module, args, output)))
    assert model(**inputs).abs().max() == 0
    assert len(pairs) >= len(blocks)
    for block_input, block_output in pairs:
        torch.testing.assert_close(block_output, block_input, atol=0, rtol=0)


def test_zero_initialised_model_still_learns(family):
    """adaLN-Zero and zeroed outputs start the prediction at zero; the output layer's gradient is not zero."""
    _, model, inputs = family
    model.init_weights()
    grads = gradients(model, inputs)
    output_layer = "conv_out.weight" if "conv_out.weight" in grads else "proj_out.weight"
    assert grads[output_layer].abs().max() > 0


@pytest.mark.slow  # a cold inductor cache compiles forward and backward: about 40 s
@pytest.mark.parametrize("compile_first", [False, True], ids=["checkpoint-then-compile", "compile-then-checkpoint"])
def test_checkpointed_blocks_compile_with_fullgraph(wan_kwargs, wan_inputs, compile_first):
    """Dynamo traces the checkpoint inside each compiled block as one region, in either order."""
    torch.manual_seed(0)
    eager = WanDiT(WanDiTConfig(**wan_kwargs))
    expected = gradients(eager, wan_inputs)
    model = copy.deepcopy(eager)
    steps = [model.enable_activation_checkpointing, lambda: compile_blocks(model)]
    for step in steps[::-1] if compile_first else steps:
        step()
    actual = gradients(model, wan_inputs)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)
