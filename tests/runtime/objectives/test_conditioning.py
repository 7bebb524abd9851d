"""CFG dropout rates, masked loss, noise conditioning augmentation and the CFG formula."""

import math

import pytest
import torch

import specs
from compiler.schema.architecture import TextEncoder
from compiler.schema.objective import CfgDropout
from runtime.objectives import Conditioning, ConditioningDropout, augment_lowres, cell_mask, guided, masked_mean
from runtime.objectives.cfg import dropout_rates

N = 100_000
T5 = TextEncoder(name="t5", model="google/t5-v1_1-xxl", role="tokens", dim=2, max_tokens=3)
CLIP = TextEncoder(name="clip", model="openai/clip-vit-large-patch14", role="pooled", dim=4, max_tokens=3)


def architecture(*encoders, joint_tokens=()):
    """An architecture with these text encoders (the backbone is FLUX.1 dev's; ConditioningDropout reads only
    the encoders and how they are joined)."""
    base = specs.load("flux1-dev").architecture
    return base.model_copy(update={"text_encoders": list(encoders), "joint_tokens": [list(g) for g in joint_tokens]})


def conditioning(n=N):
    return Conditioning(
        text=torch.ones(n, 3, 2), pooled=torch.ones(n, 4), text_mask=torch.tensor([[1, 1, 0]]).repeat(n, 1)
    )


def test_joint_rate_splits_as_p_to_the_one_over_k():
    assert dropout_rates(CfgDropout(joint_rate=0.1), [T5, CLIP]) == pytest.approx({"t5": 0.1**0.5, "clip": 0.1**0.5})
    assert dropout_rates(CfgDropout(joint_rate=0.1), [T5]) == pytest.approx({"t5": 0.1})
    partial = dropout_rates(CfgDropout(joint_rate=0.1, per_encoder={"clip": 0.5}), [T5, CLIP])
    assert partial == pytest.approx({"clip": 0.5, "t5": 0.2})


def test_cfg_dropout_rates_are_met_empirically():
    dropout = ConditioningDropout(CfgDropout(joint_rate=0.1), architecture(T5, CLIP))
    out = dropout(conditioning(), torch.Generator().manual_seed(0))
    text_dropped = out.text.abs().sum(dim=(1, 2)) == 0
    pooled_dropped = out.pooled.abs().sum(dim=1) == 0
    assert text_dropped.double().mean().item() == pytest.approx(math.sqrt(0.1), abs=0.01)
    assert pooled_dropped.double().mean().item() == pytest.approx(math.sqrt(0.1), abs=0.01)
    assert (text_dropped & pooled_dropped).double().mean().item() == pytest.approx(0.1, abs=0.005)
    # a dropped sequence is fully visible; a kept one keeps its mask
    assert torch.all(out.text_mask[text_dropped] == 1)
    assert torch.all(out.text_mask[~text_dropped] == torch.tensor([1, 1, 0]))


def test_cfg_dropout_matches_null_conditioning():
    dropout = ConditioningDropout(CfgDropout(joint_rate=0.999999), architecture(T5, CLIP))
    out = dropout(conditioning(8), torch.Generator().manual_seed(0))
    null = conditioning(8).null()
    assert torch.equal(out.text, null.text) and torch.equal(out.pooled, null.pooled)
    assert torch.equal(out.text_mask, null.text_mask)


def test_cfg_dropout_errors_name_the_field():
    with pytest.raises(ValueError, match="per_encoder"):
        dropout_rates(CfgDropout(joint_rate=0.1, per_encoder={"umt5": 0.1}), [T5])
    with pytest.raises(ValueError, match="joint_rate"):
        dropout_rates(CfgDropout(joint_rate=0.5, per_encoder={"clip": 0.1}), [T5, CLIP])


def test_glyph_encoder_drops_on_its_own_input():
    glyph = TextEncoder(name="byt5", model="google/byt5-small", role="glyph", dim=2, max_tokens=2)
    dropout = ConditioningDropout(CfgDropout(joint_rate=0.5, per_encoder={"t5": 0.0, "byt5": 0.5}),
                                  architecture(T5, glyph))
    cond = Conditioning(text=torch.ones(N, 3, 2), glyph=torch.ones(N, 2, 2))
    out = dropout(cond, torch.Generator().manual_seed(0))
    assert torch.all(out.text == 1)
    assert (out.glyph.abs().sum(dim=(1, 2)) == 0).double().mean().item() == pytest.approx(0.5, abs=0.01)


def test_cfg_dropout_of_joined_encoders_nulls_each_encoders_own_region():
    """SD3's layout at toy widths: CLIP-L (2) and CLIP-G (3) tokens side by side for 2 positions, padded to
    T5's 4 and followed by T5's 3 tokens; both CLIPs also feed the pooled vector (2 + 3)."""
    clip_l = TextEncoder(name="clip_l", model="openai/clip-vit-large-patch14", role="tokens", pooled=True, dim=2,
                         max_tokens=2)
    clip_g = clip_l.model_copy(update={"name": "clip_g", "dim": 3})
    t5 = TextEncoder(name="t5", model="google/t5-v1_1-xxl", role="tokens", dim=4, max_tokens=3)
    joined = architecture(clip_l, clip_g, t5, joint_tokens=[["clip_l", "clip_g"], ["t5"]])
    rates = {"clip_l": 0.0, "clip_g": 1.0, "t5": 0.0}
    dropout = ConditioningDropout(CfgDropout(joint_rate=0.0, per_encoder=rates), joined)
    mask = torch.tensor([[1, 0, 1, 1, 0]])
    cond = Conditioning(text=torch.ones(1, 5, 4), pooled=torch.ones(1, 5), text_mask=mask)
    out = dropout(cond, torch.Generator().manual_seed(0))
    expected = torch.ones(5, 4)
    expected[:2, 2:5] = 0  # CLIP-G's tokens: positions 0-1, features 2-4
    assert torch.equal(out.text[0], expected)
    assert out.pooled[0].tolist() == [1, 1, 0, 0, 0]  # CLIP-G's pooled share
    assert out.text_mask[0].tolist() == [1, 1, 1, 1, 0]  # the dropped positions are visible, as in null()


def test_masked_loss_ignores_masked_cells():
    error = torch.ones(2, 4, 4, 4)
    error[:, :, :2] = 1000.0  # huge error in the top half
    mask = torch.ones(2, 1, 4, 4)
    mask[:, :, :2] = 0
    assert torch.equal(masked_mean(error, mask), torch.ones(2))
    assert masked_mean(error).tolist() == pytest.approx([500.5, 500.5])
    assert masked_mean(error, torch.zeros(2, 1, 4, 4)).tolist() == [0.0, 0.0]


def test_cell_mask_keeps_a_cell_only_if_all_its_pixels_count():
    pixels = torch.ones(1, 16, 16)
    pixels[0, 3, 5] = 0  # one defect pixel in latent cell (0, 0) at 8x compression
    cells = cell_mask(pixels, (2, 2))
    assert cells.shape == (1, 1, 2, 2)
    assert cells[0, 0].tolist() == [[0.0, 1.0], [1.0, 1.0]]
    video = cell_mask(torch.ones(1, 4, 16, 16), (2, 2, 2))
    assert video.shape == (1, 1, 2, 2, 2)
    with pytest.raises(ValueError, match="multiples"):
        cell_mask(torch.ones(1, 15, 16), (2, 2))


def test_noise_augmentation_levels():
    x = torch.randn(4, 3, 8, 8)
    noise = torch.randn_like(x)
    out = augment_lowres(x, torch.tensor([0.0, 1.0, 0.5, 0.5]), noise)
    assert torch.allclose(out[0], x[0]) and torch.allclose(out[1], noise[1], atol=1e-6)
    half = math.cos(math.pi / 4)
    assert torch.allclose(out[2], half * x[2] + half * noise[2], atol=1e-6)


def test_cfg_formula():
    cond, uncond = torch.full((2, 3), 2.0), torch.full((2, 3), 1.0)
    assert torch.equal(guided(cond, uncond, 1.0), cond)
    assert torch.equal(guided(cond, uncond, 0.0), uncond)
    assert torch.allclose(guided(cond, uncond, 4.0), torch.full((2, 3), 5.0))
    per_sample = guided(cond, uncond, torch.tensor([1.0, 3.0]))
    assert per_sample[:, 0].tolist() == [2.0, 4.0]
