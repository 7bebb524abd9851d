"""runtime.models.unet: Imagen's base U-Net and Efficient U-Net (layout, conditioning, input checks, size)."""

import pytest
import torch

from runtime.models.unet import EfficientUNet, ResBlock, UNet, UNetConfig

BATCH, TEXT_LEN, TEXT_DIM = 2, 6, 12


def tiny_base(**overrides) -> UNetConfig:
    """A two-level base U-Net: 16 px, attention at the 8 px level."""
    values = dict(
        resolution=16, channels=16, channel_mult=(1, 2), res_blocks=(1, 2), attention_resolutions=(8,),
        text_dim=TEXT_DIM,
    )
    return UNetConfig(**(values | overrides))


def tiny_sr(**overrides) -> UNetConfig:
    """A three-level Efficient U-Net super-resolving 16 -> 32 px with noise conditioning augmentation."""
    values = dict(
        resolution=32, channels=16, channel_mult=(1, 2, 4), res_blocks=(1, 2, 2), attention_resolutions=(8,),
        text_dim=TEXT_DIM, efficient=True, skip_scale=2**-0.5, low_res_conditioning=True,
        noise_conditioning_augmentation=True,
    )
    return UNetConfig(**(values | overrides))


def inputs(config: UNetConfig, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    side = config.resolution
    text_mask = torch.ones(BATCH, TEXT_LEN, dtype=torch.bool)
    text_mask[1, -2:] = False
    values = dict(
        sample=torch.randn(BATCH, 3, side, side, generator=generator),
        timestep=torch.tensor([10.0, 900.0]),
        text=torch.randn(BATCH, TEXT_LEN, TEXT_DIM, generator=generator),
        text_mask=text_mask,
    )
    if config.low_res_conditioning:
        values["low_res"] = torch.randn(BATCH, 3, side // 2, side // 2, generator=generator)
    if config.noise_conditioning_augmentation:
        values["low_res_noise_level"] = torch.tensor([0.1, 0.3])
    return values


def build(config: UNetConfig, seed: int = 0):
    torch.manual_seed(seed)
    return config.build().eval()


def test_base_levels_halve_and_attend_at_the_listed_sides():
    """Imagen base 64: attention (self and text) at 32, 16 and 8, none at 64."""
    config = UNetConfig(
        resolution=64, channels=32, channel_mult=(1, 2, 3, 4), res_blocks=(3, 3, 3, 3),
        attention_resolutions=(32, 16, 8), text_dim=TEXT_DIM,
    )
    assert config.level_sides == (64, 32, 16, 8)
    assert [config.attention_at(level) for level in range(4)] == [(False, False)] + [(True, True)] * 3


def test_efficient_levels_downsample_before_their_resblocks():
    """Imagen SR 256 (NeMo sr256-600m): every level but the deepest halves first, so sides are 128 ... 16, 16,
    and attention at side 16 lands on the two deepest levels, as NeMo's atnn_enabled_at [0, 0, 0, 1, 1]."""
    config = UNetConfig(
        resolution=256, channels=16, channel_mult=(1, 2, 4, 8, 8), res_blocks=(2, 4, 8, 8, 8),
        attention_resolutions=(16,), text_dim=TEXT_DIM, efficient=True,
    )
    assert config.level_sides == (128, 64, 32, 16, 16)
    assert [config.attention_at(level) for level in range(5)] == [(False, False)] * 3 + [(True, True)] * 2


def test_cross_attention_only_stage_attends_to_text_at_its_deepest_levels():
    """Imagen SR 1024 has no self-attention but keeps text cross-attention (NeMo sr1024-600m.yaml:
    attention_type cross at the two deepest levels)."""
    config = UNetConfig(
        resolution=1024, channels=16, channel_mult=(1, 2, 4, 8, 8), res_blocks=(1,) * 5,
        attention_resolutions=(), text_dim=TEXT_DIM, efficient=True,
    )
    assert [config.attention_at(level) for level in range(5)] == [(False, False)] * 3 + [(False, True)] * 2


def test_attention_heads_follow_nemo():
    """A head width wins (heads = width / head_dim), else num_heads, else 64-wide heads; a head is never
    wider than a narrow (smoke-scale) level."""
    assert tiny_base(num_heads=4, head_dim=64).attention_heads(512) == (8, 64)
    assert tiny_base(num_heads=4).attention_heads(512) == (4, 128)
    assert tiny_base().attention_heads(256) == (4, 64)
    assert tiny_base(head_dim=64).attention_heads(16) == (1, 16)


def test_attention_sides_must_be_level_sides():
    with pytest.raises(ValueError, match=r"sides \[12\] that no level has; the levels' feature sides are \[16, 8\]"):
        tiny_base(attention_resolutions=(12,))


def test_noise_augmentation_needs_a_low_res_image():
    with pytest.raises(ValueError, match="noise_conditioning_augmentation needs low_res_conditioning"):
        tiny_base(noise_conditioning_augmentation=True)


@pytest.mark.parametrize("make, cls", [(tiny_base, UNet), (tiny_sr, EfficientUNet)], ids=["base", "efficient-sr"])
def test_forward_backward_reaches_every_parameter(make, cls):
    config = make()
    model = build(config).train()
    assert isinstance(model, cls)
    values = inputs(config)
    out = model(**values)
    assert out.shape == values["sample"].shape
    out.square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


@torch.no_grad()
def test_noise_augmentation_level_changes_the_prediction():
    config = tiny_sr()
    model, values = build(config), inputs(config)
    low = model(**values)
    torch.testing.assert_close(model(**values), low, atol=0, rtol=0)
    high = model(**dict(values, low_res_noise_level=torch.tensor([0.7, 0.9])))
    assert (high - low).abs().amax(dim=(1, 2, 3)).min() > 1e-4  # every sample moves


@torch.no_grad()
def test_low_res_image_conditions_the_prediction():
    config = tiny_sr(noise_conditioning_augmentation=False)
    model, values = build(config), inputs(config)
    values.pop("low_res_noise_level", None)
    other = dict(values, low_res=torch.randn_like(values["low_res"]))
    assert (model(**other) - model(**values)).abs().max() > 1e-4


@torch.no_grad()
@pytest.mark.parametrize("make", [tiny_base, tiny_sr], ids=["base", "efficient-sr"])
def test_padded_text_tokens_do_not_change_the_prediction(make):
    config = make()
    model, values = build(config), inputs(config)
    text = values["text"].clone()
    text[1, -2:] = 100.0  # the masked tokens of sample 1
    torch.testing.assert_close(model(**dict(values, text=text)), model(**values), atol=1e-6, rtol=0)


@torch.no_grad()
def test_fully_masked_text_is_well_defined():
    """CFG's unconditional input may mask every token: the null key keeps attention finite."""
    config = tiny_sr(attention_resolutions=())  # text-only attention, the case with no image keys
    model, values = build(config), inputs(config)
    out = model(**dict(values, text_mask=torch.zeros(BATCH, TEXT_LEN, dtype=torch.bool)))
    assert torch.isfinite(out).all()


def test_inputs_are_checked():
    sr, base = build(tiny_sr()), build(tiny_base())
    values = inputs(tiny_sr())
    with pytest.raises(ValueError, match="needs a low-resolution image"):
        sr(**dict(values, low_res=None))
    with pytest.raises(ValueError, match="needs low_res_noise_level"):
        sr(**dict(values, low_res_noise_level=None))
    with pytest.raises(ValueError, match="takes no low_res_noise_level"):
        base(**dict(inputs(tiny_base()), low_res_noise_level=torch.zeros(BATCH)))
    with pytest.raises(ValueError, match="sample is 18x18 but the U-Net halves it 2 times: use sides that are multip"):
        sr(**dict(values, sample=torch.randn(BATCH, 3, 18, 18)))


def resblock_sides(model, values) -> set[int]:
    """The feature sides the model's ResBlocks run at."""
    sides = set()
    hooks = [
        module.register_forward_pre_hook(lambda module, args: sides.add(args[0].shape[-1]))
        for module in model.modules()
        if isinstance(module, ResBlock)
    ]
    with torch.no_grad():
        model(**values)
    for hook in hooks:
        hook.remove()
    return sides


def test_only_the_efficient_unet_keeps_resblocks_off_the_output_resolution():
    """The Efficient U-Net's point: downsample before the convolutions, upsample after them."""
    efficient, base = tiny_sr(), tiny_sr(efficient=False)
    assert resblock_sides(build(efficient), inputs(efficient)) == {16, 8}
    assert resblock_sides(build(base), inputs(base)) == {32, 16, 8}


def test_skip_scale_scales_the_residual_shortcut():
    block = ResBlock(8, 8, temb_dim=4, skip_scale=2**-0.5)
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(block(x, torch.randn(2, 4)), x * 2**-0.5)


def test_crops_and_other_sizes_run_through_the_same_network():
    """SR 1024 trains on 256 crops of its 1024 output: any side the U-Net can halve works."""
    config = tiny_sr()
    values = inputs(config)
    values |= dict(sample=torch.randn(BATCH, 3, 16, 24), low_res=torch.randn(BATCH, 3, 8, 12))
    with torch.no_grad():
        assert build(config)(**values).shape == (BATCH, 3, 16, 24)


@pytest.mark.parametrize(
    "config, documented",
    [
        (UNetConfig(resolution=64, channels=512, channel_mult=(1, 2, 3, 4), res_blocks=(3, 3, 3, 3),
                    attention_resolutions=(32, 16, 8), text_dim=4096, num_heads=4, head_dim=64), 2e9),
        (UNetConfig(resolution=256, channels=128, channel_mult=(1, 2, 4, 8, 8), res_blocks=(2, 4, 8, 8, 8),
                    attention_resolutions=(16,), text_dim=4096, efficient=True, skip_scale=2**-0.5,
                    low_res_conditioning=True, noise_conditioning_augmentation=True), 600e6),
    ],
    ids=["base64-2B", "sr256-600M"],
)
def test_full_size_unets_have_about_the_documented_size(config, documented):
    """Within 15% of Imagen's sizes (NeMo's base64-2b and sr256-600m configs; ours are 2.26B and 639M:
    NeMo projects T5 to 2048 before attention, we attend to the 4096-wide tokens directly)."""
    with torch.device("meta"):
        model = config.build()
    assert abs(sum(p.numel() for p in model.parameters()) / documented - 1) < 0.15
