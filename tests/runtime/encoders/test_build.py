"""build_encoders: text encoders plus latent codec for a whole architecture, with a report of every
stand-in; VAE weights loaded from the model directory; latent normalisation from the spec or the weights;
a non-causal video space (Allegro) encodes videos k frames per latent frame and images as still clips."""

from types import SimpleNamespace

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLAllegro,
    AutoencoderKLQwenImage,
    AutoencoderKLWan,
)

import specs
from compiler.scale import scaled
from compiler.schema.architecture import LatentSpace, PixelSpace, TextEncoder
from runtime.encoders import MissingWeightsError, build_encoders
from runtime.encoders.model_directory import folder_name

PROMPTS = ["a cat", "a red bicycle"]
FLUX_LIKE = LatentSpace(vae="test/vae-kl", channels=4, spatial_compression=8, scaling_factor=0.5, shift_factor=0.25)
WAN_LIKE = LatentSpace(vae="test/vae-wan", channels=4, spatial_compression=8, temporal_compression=4, causal=True)
ALLEGRO_LIKE = LatentSpace(vae="test/vae-allegro", channels=4, spatial_compression=8, temporal_compression=4,
                           causal=False)
KL_BLOCKS = dict(block_out_channels=(8, 16, 16, 16), latent_channels=4, norm_num_groups=4, layers_per_block=1,
                 down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
WAN_SIZES = dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1)
MEAN, STD = [0.1, -0.2, 0.3, 0.0], [2.0, 1.0, 0.5, 4.0]


def architecture(space, encoders=()):
    """What build_encoders reads of an ArchitectureSpec: its text encoders and its space."""
    return SimpleNamespace(text_encoders=list(encoders), space=space)


@pytest.fixture(scope="module")
def vae_root(tmp_path_factory):
    """Tiny diffusers VAEs saved the way released ones are: config.json + diffusion_pytorch_model.safetensors."""
    root = tmp_path_factory.mktemp("vaes")
    torch.manual_seed(0)
    AutoencoderKL(**KL_BLOCKS, scaling_factor=0.5, shift_factor=0.25).save_pretrained(root / "test--vae-kl")
    AutoencoderKL(**KL_BLOCKS, scaling_factor=0.13).save_pretrained(root / "test--vae-kl-sd")
    AutoencoderKLWan(**WAN_SIZES, latents_mean=MEAN, latents_std=STD).save_pretrained(root / "test--vae-wan")
    AutoencoderKLQwenImage(**WAN_SIZES, latents_mean=MEAN, latents_std=STD).save_pretrained(root / "test--vae-qwen")
    AutoencoderKLAllegro(block_out_channels=(8, 16, 16, 16), norm_num_groups=4, layers_per_block=1,
                         latent_channels=4).save_pretrained(root / "test--vae-allegro")
    return root


@pytest.mark.parametrize("name", list(specs.SHIPPED))
def test_shipped_specs_at_smoke_scale_encode_and_decode(name):
    arch = scaled(specs.load(name), "smoke").architecture
    conditioning = build_encoders(arch, "smoke", None)
    assert len(conditioning.report) >= len(arch.text_encoders) + 1
    assert all("RANDOMLY INITIALISED" in line for line in conditioning.report[: len(arch.text_encoders)])

    text = conditioning.encode_text(PROMPTS)
    assert set(text) == {encoder.name for encoder in arch.text_encoders}
    for encoder in arch.text_encoders:
        assert text[encoder.name].tokens.shape == (2, encoder.max_tokens, encoder.dim)
        assert (text[encoder.name].pooled is not None) == (encoder.role == "pooled")

    space = arch.space
    video = space.kind == "latent" and (space.causal or space.temporal_compression > 1)
    # Three latent frames: 1 + 2k frames for a causal VAE, 3k for a non-causal one.
    frames = (2 * space.temporal_compression + 1 if space.causal else 3 * space.temporal_compression) if video else 0
    pixels = torch.rand(1, 3, *((frames,) if video else ()), 32, 32) * 2 - 1
    with torch.no_grad():
        latents = conditioning.encode_images(pixels)
        decoded = conditioning.decode(latents)
    if space.kind == "pixel":
        assert latents is pixels and decoded is pixels
    else:
        s = space.spatial_compression
        assert latents.shape == (1, space.channels, *((3,) if video else ()), 32 // s, 32 // s)
        assert decoded.shape == pixels.shape


def test_kl_vae_loads_from_the_directory_and_applies_the_spec_factors(vae_root):
    conditioning = build_encoders(architecture(FLUX_LIKE), "full", vae_root)
    assert conditioning.report == [
        f"VAE test/vae-kl: AutoencoderKL2D loaded from {vae_root / 'test--vae-kl'}",
        "VAE test/vae-kl: latents = (z - 0.25) * 0.5, from architecture.space",
    ]
    reference = AutoencoderKL.from_pretrained(vae_root / "test--vae-kl").eval()
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        latents = conditioning.encode_images(pixels)
        mean = reference.encode(pixels).latent_dist.mode()
        torch.testing.assert_close(latents, (mean - 0.25) * 0.5, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(conditioning.decode(latents), reference.decode(mean).sample, atol=1e-5, rtol=1e-5)


def test_sampling_draws_around_the_mean(vae_root):
    conditioning = build_encoders(architecture(FLUX_LIKE), "full", vae_root)
    pixels = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        mean = conditioning.encode_images(pixels)
        draws = [conditioning.encode_images(pixels, sample=True, generator=torch.Generator().manual_seed(i))
                 for i in range(2)]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], mean)


def test_factors_come_from_the_weights_when_the_spec_has_none(vae_root):
    space = FLUX_LIKE.model_copy(update={"vae": "test/vae-kl-sd", "scaling_factor": None, "shift_factor": None})
    conditioning = build_encoders(architecture(space), "full", vae_root)
    assert conditioning.report[-1].endswith(f"(z - 0.0) * 0.13, from {vae_root / 'test--vae-kl-sd'}/config.json")


def test_spec_and_weights_that_disagree_on_the_scale_are_an_error(vae_root):
    space = FLUX_LIKE.model_copy(update={"vae": "test/vae-kl-sd"})
    with pytest.raises(ValueError, match=r"architecture.space.scaling_factor is 0.5 but .* states 0.13"):
        build_encoders(architecture(space), "full", vae_root)


def test_wan_vae_normalises_per_channel_with_the_weights_statistics(vae_root):
    conditioning = build_encoders(architecture(WAN_LIKE), "full", vae_root)
    assert "(z - latents_mean) / latents_std, per channel" in conditioning.report[-1]
    reference = AutoencoderKLWan.from_pretrained(vae_root / "test--vae-wan").eval()
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    mean, std = torch.tensor(MEAN).view(1, 4, 1, 1, 1), torch.tensor(STD).view(1, 4, 1, 1, 1)
    with torch.no_grad():
        latents = conditioning.encode_images(video)
        expected = (reference.encode(video).latent_dist.mode() - mean) / std
        torch.testing.assert_close(latents, expected, atol=1e-5, rtol=1e-5)
        assert conditioning.decode(latents).shape == video.shape


def test_an_image_spec_with_qwen_image_weights_encodes_images_as_single_frames(vae_root):
    space = LatentSpace(vae="test/vae-qwen", channels=4, spatial_compression=8)
    conditioning = build_encoders(architecture(space), "full", vae_root)
    assert "CausalVideoVAE loaded from" in conditioning.report[0]
    with torch.no_grad():
        latents = conditioning.encode_images(torch.rand(2, 3, 16, 16))
        assert latents.shape == (2, 4, 2, 2)
        assert conditioning.decode(latents).shape == (2, 3, 16, 16)


def test_weights_that_disagree_with_the_space_are_an_error(vae_root):
    space = WAN_LIKE.model_copy(update={"channels": 16})
    with pytest.raises(ValueError, match=r"architecture.space.channels is 16 but the VAE in .* has 4"):
        build_encoders(architecture(space), "full", vae_root)


def test_smoke_scale_reports_a_stand_in_vae_with_the_spec_compression(tmp_path):
    conditioning = build_encoders(architecture(WAN_LIKE), "smoke", tmp_path)
    assert "RANDOMLY INITIALISED tiny CausalVideoVAE" in conditioning.report[0]
    assert str(tmp_path / folder_name("test/vae-wan")) in conditioning.report[0]
    with torch.no_grad():
        assert conditioning.encode_images(torch.rand(1, 3, 5, 16, 16)).shape == (1, 4, 2, 2, 2)
    with pytest.raises(ValueError, match=r"1 \+ 4k; got 6 frames: use 5 or 9"):
        conditioning.encode_images(torch.rand(1, 3, 6, 16, 16))


def test_full_scale_without_the_vae_names_it_and_its_folder(tmp_path):
    with pytest.raises(MissingWeightsError) as error:
        build_encoders(architecture(WAN_LIKE), "full", tmp_path)
    assert "'test/vae-wan'" in str(error.value) and str(tmp_path / "test--vae-wan") in str(error.value)


def test_text_encoders_and_vae_are_all_reported(model_root):
    encoders = [TextEncoder(name="clip_l", model="test/clip-tiny", role="pooled", dim=24, max_tokens=8),
                TextEncoder(name="t5", model="google/t5-v1_1-xxl", role="tokens", dim=32, max_tokens=8)]
    conditioning = build_encoders(architecture(PixelSpace(), encoders), "smoke", model_root)
    clip_line, t5_line, space_line = conditioning.report
    assert "clip_l" in clip_line and "loaded from" in clip_line
    assert "t5" in t5_line and "RANDOMLY INITIALISED" in t5_line
    assert space_line.startswith("space: pixel space")
    out = conditioning.encode_text(PROMPTS)
    assert out["clip_l"].pooled.shape == (2, 24) and out["t5"].pooled is None


def test_a_non_causal_video_space_encodes_k_frames_per_latent_frame(tmp_path):
    conditioning = build_encoders(architecture(ALLEGRO_LIKE), "smoke", tmp_path)
    assert "RANDOMLY INITIALISED tiny NonCausalVideoVAE" in conditioning.report[0]
    assert "8x space, 4x time, 4 channels" in conditioning.report[0]
    video = torch.rand(2, 3, 8, 16, 16) * 2 - 1
    with torch.no_grad():
        latents = conditioning.encode_images(video)
        assert latents.shape == (2, 4, 2, 2, 2)
        decoded = conditioning.decode(latents)
    assert decoded.shape == video.shape and torch.isfinite(decoded).all()
    with pytest.raises(ValueError, match=r"multiples of 4; got 9 frames: use 8 or 12"):
        conditioning.encode_images(torch.rand(1, 3, 9, 16, 16))


def test_the_non_causal_stand_in_is_the_same_on_every_build():
    video = torch.rand(1, 3, 4, 16, 16) * 2 - 1
    with torch.no_grad():
        first, second = (build_encoders(architecture(ALLEGRO_LIKE), "smoke", None).encode_images(video)
                         for _ in range(2))
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_a_non_causal_video_space_encodes_an_image_as_a_still_clip_of_k_frames():
    conditioning = build_encoders(architecture(ALLEGRO_LIKE), "smoke", None)
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    still = image.unsqueeze(2).repeat(1, 1, 4, 1, 1)
    with torch.no_grad():
        latents = conditioning.encode_images(image)
        assert latents.shape == (2, 4, 2, 2)
        torch.testing.assert_close(latents, conditioning.encode_images(still).squeeze(2))
        decoded = conditioning.decode(latents)
        torch.testing.assert_close(decoded, conditioning.decode(latents.unsqueeze(2)).mean(dim=2))
    assert decoded.shape == image.shape


def test_released_allegro_weights_are_refused_with_what_is_missing(vae_root):
    with pytest.raises(NotImplementedError, match=r"AutoencoderKLAllegro, which this runtime cannot load.*own layout"):
        build_encoders(architecture(ALLEGRO_LIKE), "full", vae_root)


def test_a_non_causal_space_at_full_scale_without_weights_says_none_would_load(tmp_path):
    with pytest.raises(NotImplementedError, match=r"'test/vae-allegro' is a non-causal video VAE; no released one"):
        build_encoders(architecture(ALLEGRO_LIKE), "full", tmp_path)


def test_causal_weights_for_a_non_causal_space_are_an_error(vae_root):
    space = ALLEGRO_LIKE.model_copy(update={"vae": "test/vae-wan"})
    with pytest.raises(ValueError, match=r"non-causal video space .* but .* names AutoencoderKLWan"):
        build_encoders(architecture(space), "full", vae_root)


def test_an_unknown_scale_is_refused():
    with pytest.raises(ValueError, match="scale 'tiny': choose one of full, smoke"):
        build_encoders(architecture(PixelSpace()), "tiny", None)


def test_spec_per_channel_statistics_normalise_and_must_agree_with_the_weights(vae_root):
    space = WAN_LIKE.model_copy(update={"latents_mean": MEAN, "latents_std": STD})
    conditioning = build_encoders(architecture(space), "full", vae_root)
    assert conditioning.report[-1].endswith("(z - latents_mean) / latents_std, per channel, from architecture.space")
    reference = AutoencoderKLWan.from_pretrained(vae_root / "test--vae-wan").eval()
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    mean, std = torch.tensor(MEAN).view(1, 4, 1, 1, 1), torch.tensor(STD).view(1, 4, 1, 1, 1)
    with torch.no_grad():
        expected = (reference.encode(video).latent_dist.mode() - mean) / std
        torch.testing.assert_close(conditioning.encode_images(video), expected, atol=1e-5, rtol=1e-5)
    wrong = WAN_LIKE.model_copy(update={"latents_mean": MEAN, "latents_std": [1.0, 1.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match=r"architecture.space.latents_std is \[1.0, 1.0, 1.0, 1.0\] but .* states"):
        build_encoders(architecture(wrong), "full", vae_root)


def test_spec_per_channel_statistics_apply_to_the_smoke_stand_in(tmp_path):
    space = WAN_LIKE.model_copy(update={"latents_mean": MEAN, "latents_std": STD})
    conditioning = build_encoders(architecture(space), "smoke", tmp_path)
    plain = build_encoders(architecture(WAN_LIKE), "smoke", tmp_path)
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    mean, std = torch.tensor(MEAN).view(1, 4, 1, 1, 1), torch.tensor(STD).view(1, 4, 1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(conditioning.encode_images(video), (plain.encode_images(video) - mean) / std)
        latents = conditioning.encode_images(video)
        torch.testing.assert_close(conditioning.decode(latents), plain.decode(plain.encode_images(video)))


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"latents_mean": MEAN}, "come together"),
        ({"latents_mean": MEAN[:3], "latents_std": STD[:3]}, "latents_mean has 3 values for 4 latent channels"),
        ({"latents_mean": MEAN, "latents_std": [1.0, 0.0, 1.0, 1.0]}, "every standard deviation must be above 0"),
        ({"latents_mean": MEAN, "latents_std": STD, "scaling_factor": 0.5}, "drop the factors"),
    ],
)
def test_per_channel_statistics_are_validated(update, message):
    with pytest.raises(ValueError, match=message):
        LatentSpace.model_validate({**WAN_LIKE.model_dump(), **update})
