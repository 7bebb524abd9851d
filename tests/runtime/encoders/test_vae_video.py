"""The non-causal video VAE: every k frames make one latent frame (no lone first frame), other frame counts are
refused with the nearest valid ones, latent frames see frames on both sides, and a video round-trips in shape."""

import pytest
import torch

from runtime.encoders import NonCausalVideoVAE, VideoVAEConfig

# Allegro's compression at tiny width: 8x space, 4x time in the first two levels.
ALLEGRO_LIKE = VideoVAEConfig(block_out_channels=(8, 16, 16, 16), latent_channels=4,
                              temporal_downsample=(True, True, False), layers_per_block=1, norm_num_groups=4)


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return NonCausalVideoVAE(ALLEGRO_LIKE).eval()


def test_config_derives_the_compression_factors():
    assert (ALLEGRO_LIKE.spatial_compression, ALLEGRO_LIKE.temporal_compression) == (8, 4)
    space_only = VideoVAEConfig(block_out_channels=(8, 8), latent_channels=4, temporal_downsample=(False,),
                                norm_num_groups=4)
    assert (space_only.spatial_compression, space_only.temporal_compression) == (2, 1)


@pytest.mark.parametrize("latent_frames", [1, 2, 3])
def test_k_frames_become_one_latent_frame_and_decode_back(vae, latent_frames):
    video = torch.rand(2, 3, 4 * latent_frames, 16, 24) * 2 - 1
    with torch.no_grad():
        moments = vae.encode_moments(video)
        assert moments.shape == (2, 8, latent_frames, 2, 3)  # mean and log-variance of 4 channels
        assert vae.decode(moments[:, :4]).shape == video.shape


@pytest.mark.parametrize("frames, fix", [(9, "use 8 or 12"), (3, "use 4"), (6, "use 4 or 8")])
def test_frame_counts_that_are_not_multiples_of_k_are_refused(vae, frames, fix):
    with pytest.raises(ValueError, match=rf"multiples of 4; got {frames} frames: {fix}"):
        vae.encode_moments(torch.zeros(1, 3, frames, 16, 16))


def test_sides_that_are_not_multiples_of_the_spatial_compression_are_refused(vae):
    with pytest.raises(ValueError, match="multiples of 8; got 16x20"):
        vae.encode_moments(torch.zeros(1, 3, 4, 16, 20))


def test_images_and_wrong_latent_ranks_are_refused(vae):
    with pytest.raises(ValueError, match=r"takes videos \[B, C, F, H, W\]; got shape \(1, 3, 16, 16\)"):
        vae.encode_moments(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"decodes latents \[B, latent, n, h, w\]"):
        vae.decode(torch.zeros(1, 4, 2, 2))


def test_the_first_latent_frame_sees_later_frames(vae):
    """Non-causal: unlike Wan's VAE, changing frames after the first k changes the first latent frame."""
    video = torch.rand(1, 3, 8, 16, 16)
    changed = video.clone()
    changed[:, :, 4:] = torch.rand(1, 3, 4, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(vae.encode_moments(video)[:, :, 0], vae.encode_moments(changed)[:, :, 0])


def test_a_temporal_downsample_entry_per_level_is_required():
    with pytest.raises(ValueError, match=r"one entry per downsampling level: 3 for block_out_channels"):
        VideoVAEConfig(block_out_channels=(8, 16, 16, 16), latent_channels=4, temporal_downsample=(True,),
                       norm_num_groups=4)
