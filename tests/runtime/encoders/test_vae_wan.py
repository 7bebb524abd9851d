"""The causal video VAE: diffusers AutoencoderKLWan's (and Qwen-Image's) state dict loads strictly and gives
the same moments and videos; 1 + 4k frames become 1 + k latent frames, other counts are refused; the first
frame is encoded alone."""

import pytest
import torch
from diffusers import AutoencoderKLQwenImage, AutoencoderKLWan

from runtime.encoders import CausalVAEConfig, CausalVideoVAE

TINY = dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1)


@pytest.fixture(scope="module")
def wan_pair():
    torch.manual_seed(0)
    reference = AutoencoderKLWan(**TINY).eval()
    ours = CausalVideoVAE(CausalVAEConfig.from_diffusers(dict(reference.config), "reference")).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def test_matches_diffusers_autoencoder_kl_wan(wan_pair):
    reference, ours = wan_pair
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    latents = torch.randn(1, 4, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_moments(video), reference._encode(video), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.decode(latents), reference.decode(latents).sample, atol=1e-5, rtol=1e-5)


def test_qwen_image_vae_has_the_same_keys():
    reference = AutoencoderKLQwenImage(**TINY)
    ours = CausalVideoVAE(CausalVAEConfig.from_diffusers(dict(reference.config), "reference"))
    ours.load_state_dict(reference.state_dict(), strict=True)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_one_plus_4k_frames_become_one_plus_k_latent_frames(wan_pair, k):
    _, vae = wan_pair
    with torch.no_grad():
        moments = vae.encode_moments(torch.zeros(1, 3, 1 + 4 * k, 16, 16))
        assert moments.shape == (1, 8, 1 + k, 2, 2)
        assert vae.decode(moments[:, :4]).shape == (1, 3, 1 + 4 * k, 16, 16)


@pytest.mark.parametrize("frames, fix", [(8, "use 5 or 9"), (4, "use 1 or 5"), (10, "use 9 or 13")])
def test_other_frame_counts_are_refused_with_the_nearest_valid_ones(wan_pair, frames, fix):
    _, vae = wan_pair
    with pytest.raises(ValueError, match=rf"frame counts must be 1 \+ 4k; got {frames} frames: {fix}"):
        vae.encode_moments(torch.zeros(1, 3, frames, 16, 16))


def test_the_first_latent_frame_sees_only_the_first_frame(wan_pair):
    _, vae = wan_pair
    video = torch.rand(1, 3, 9, 16, 16)
    changed = video.clone()
    changed[:, :, 1:] = torch.rand(1, 3, 8, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(vae.encode_moments(video)[:, :, 0], vae.encode_moments(changed)[:, :, 0])
        assert not torch.allclose(vae.encode_moments(video)[:, :, 1], vae.encode_moments(changed)[:, :, 1])


def test_config_reader_refuses_wan_2_2_residual_layout():
    with pytest.raises(ValueError, match="is_residual=True is not supported"):
        CausalVAEConfig.from_diffusers({**TINY, "is_residual": True}, "cfg")
