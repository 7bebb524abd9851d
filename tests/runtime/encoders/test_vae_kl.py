"""Our 2D KL VAE loads diffusers AutoencoderKL's state dict with strict=True and computes the same moments and
images; its config reader refuses what it does not build."""

import pytest
import torch
from diffusers import AutoencoderKL

from runtime.encoders import AutoencoderKL2D, AutoencoderKLConfig

TINY = dict(block_out_channels=(8, 16, 16, 16), latent_channels=4, norm_num_groups=4, layers_per_block=2)
BLOCKS = dict(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


@pytest.mark.parametrize("quant_convs", [True, False], ids=["sd-style", "flux-style"])
def test_matches_diffusers_autoencoder_kl(quant_convs):
    torch.manual_seed(0)
    reference = AutoencoderKL(**TINY, **BLOCKS, use_quant_conv=quant_convs, use_post_quant_conv=quant_convs).eval()
    ours = AutoencoderKL2D(AutoencoderKLConfig.from_diffusers(dict(reference.config), "reference")).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert (ours.quant_conv is None) == (not quant_convs)

    pixels = torch.rand(2, 3, 32, 24) * 2 - 1
    latents = torch.randn(2, 4, 4, 3)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_moments(pixels), reference._encode(pixels), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.decode(latents), reference.decode(latents).sample, atol=1e-5, rtol=1e-5)


def test_compresses_space_by_two_per_level_and_refuses_other_sizes():
    vae = AutoencoderKL2D(AutoencoderKLConfig(**TINY))
    assert vae.config.spatial_compression == 8
    with torch.no_grad():
        assert vae.encode_moments(torch.zeros(1, 3, 32, 16)).shape == (1, 8, 4, 2)
        assert vae.decode(torch.zeros(1, 4, 4, 2)).shape == (1, 3, 32, 16)
    with pytest.raises(ValueError, match="multiples of 8; got shape"):
        vae.encode_moments(torch.zeros(1, 3, 30, 16))


def test_config_reader_refuses_blocks_it_does_not_build():
    with pytest.raises(ValueError, match="AttnDownEncoderBlock2D.*only DownEncoderBlock2D"):
        AutoencoderKLConfig.from_diffusers({**TINY, "down_block_types": ["AttnDownEncoderBlock2D"] * 4}, "cfg")
    with pytest.raises(ValueError, match="unknown AutoencoderKL config key 'mystery'"):
        AutoencoderKLConfig.from_diffusers({**TINY, "mystery": 1}, "cfg")
