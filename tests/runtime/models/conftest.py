"""Tiny configurations and inputs shared by the model tests, and the checkpoint round trip.

Each tiny config is one dict of keyword arguments of our config dataclass; the diffusers reference is built from
that config through runtime.models.diffusers_config, so a parity test also checks the mapping the export uses.
"""

import os
from pathlib import Path

# Before torch is imported anywhere in these tests: compiled blocks are cached across runs.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(__file__).resolve().parents[3] / ".cache" / "inductor"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from runtime.models.diffusers_config import diffusers_model  # noqa: E402
from runtime.models.rope import flux_image_ids  # noqa: E402

BATCH = 2
FLUX_LATENT_GRID = (4, 4)  # packed tokens: (height, width) of the 2x2-packed latent
QWEN_IMG_SHAPES = [(1, 5, 4)]  # odd height exercises the centred (scale_rope) positions


@pytest.fixture(scope="session")
def flux_kwargs():
    """FLUX.1 dev in miniature: 2 double + 2 single blocks, 2 heads x 16, RoPE axes summing to 16."""
    return dict(
        in_channels=16,
        num_layers=2,
        num_single_layers=2,
        num_attention_heads=2,
        attention_head_dim=16,
        joint_attention_dim=24,
        pooled_projection_dim=12,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )


@pytest.fixture(scope="session")
def qwen_image_kwargs():
    """Qwen-Image in miniature: 2 blocks, 2 heads x 16, packed in 16, out 4 per pixel."""
    return dict(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=16,
        joint_attention_dim=24,
        axes_dims_rope=(4, 6, 6),
    )


@pytest.fixture(scope="session")
def wan_kwargs():
    """Wan 2.1 in miniature: 2 blocks, 2 heads x 32 (RoPE split 12/10/10, uneven like 44/42/42)."""
    return dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=32,
        in_channels=4,
        out_channels=4,
        text_dim=20,
        freq_dim=32,
        ffn_dim=96,
        num_layers=2,
        cross_attn_norm=True,
        eps=1e-6,
    )


@pytest.fixture(scope="session")
def unet_kwargs():
    """An Efficient U-Net super-resolving 8 -> 16 px in miniature: two levels, attention at the deepest."""
    return dict(
        resolution=16,
        channels=16,
        channel_mult=(1, 2),
        res_blocks=(1, 1),
        attention_resolutions=(8,),
        text_dim=12,
        efficient=True,
        skip_scale=2**-0.5,
        low_res_conditioning=True,
        noise_conditioning_augmentation=True,
    )


@pytest.fixture(scope="session")
def unet_inputs(unet_kwargs):
    """Keyword inputs of the U-Nets' forward; the second sample's last two text tokens are padding."""
    generator = torch.Generator().manual_seed(4)
    mask = torch.ones(BATCH, 5, dtype=torch.bool)
    mask[1, -2:] = False
    return dict(
        sample=torch.randn(BATCH, 3, 16, 16, generator=generator),
        timestep=torch.tensor([3.0, 700.0]),
        text=torch.randn(BATCH, 5, unet_kwargs["text_dim"], generator=generator),
        text_mask=mask,
        low_res=torch.randn(BATCH, 3, 8, 8, generator=generator),
        low_res_noise_level=torch.tensor([0.1, 0.4]),
    )


@pytest.fixture(scope="session")
def flux_inputs(flux_kwargs):
    """Keyword inputs of FluxTransformer2DModel.forward and MMDiT.forward (the names agree)."""
    generator = torch.Generator().manual_seed(1)
    height, width = FLUX_LATENT_GRID
    text_len = 5
    return dict(
        hidden_states=torch.randn(BATCH, height * width, flux_kwargs["in_channels"], generator=generator),
        encoder_hidden_states=torch.randn(BATCH, text_len, flux_kwargs["joint_attention_dim"], generator=generator),
        pooled_projections=torch.randn(BATCH, flux_kwargs["pooled_projection_dim"], generator=generator),
        timestep=torch.rand(BATCH, generator=generator),
        img_ids=flux_image_ids(height, width),
        txt_ids=torch.zeros(text_len, 3),
        guidance=torch.tensor([3.5, 5.0]),
    )


@pytest.fixture(scope="session")
def qwen_image_inputs(qwen_image_kwargs):
    """Keyword inputs of QwenImageMMDiT.forward; the second sample's last two text tokens are padding."""
    generator = torch.Generator().manual_seed(2)
    image_len = sum(f * h * w for f, h, w in QWEN_IMG_SHAPES)
    text_len = 6
    mask = torch.ones(BATCH, text_len, dtype=torch.long)
    mask[1, -2:] = 0
    return dict(
        hidden_states=torch.randn(BATCH, image_len, qwen_image_kwargs["in_channels"], generator=generator),
        encoder_hidden_states=torch.randn(
            BATCH, text_len, qwen_image_kwargs["joint_attention_dim"], generator=generator
        ),
        timestep=torch.rand(BATCH, generator=generator),
        img_shapes=QWEN_IMG_SHAPES,
        encoder_hidden_states_mask=mask,
    )


@pytest.fixture(scope="session")
def wan_inputs(wan_kwargs):
    """Keyword inputs of WanTransformer3DModel.forward and WanDiT.forward: 3 latent frames of 4 x 6."""
    generator = torch.Generator().manual_seed(3)
    return dict(
        hidden_states=torch.randn(BATCH, wan_kwargs["in_channels"], 3, 4, 6, generator=generator),
        timestep=torch.rand(BATCH, generator=generator) * 1000,
        encoder_hidden_states=torch.randn(BATCH, 7, wan_kwargs["text_dim"], generator=generator),
    )


@pytest.fixture(scope="session")
def make_reference():
    """Build the diffusers model equivalent to one of our configs (runtime.models.diffusers_config, the mapping the
    final export writes config.json with, so every parity test checks it) in eval mode, every parameter moved
    off its initial value.

    Norm weights start at one; perturbing them makes a swapped or misplaced norm show in the outputs.
    """

    def make(config, seed=0):
        equivalent = diffusers_model(config)
        torch.manual_seed(seed)
        model = equivalent.diffusers_class().from_config(equivalent.config).eval()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
        return model

    return make


@pytest.fixture(scope="session")
def load_via_safetensors(tmp_path_factory):
    """Save a reference state dict as safetensors, read it back, and load it into ours with strict=True."""

    def load(ours: torch.nn.Module, reference: torch.nn.Module) -> torch.nn.Module:
        path = tmp_path_factory.mktemp("checkpoint") / "model.safetensors"
        save_file(reference.state_dict(), str(path))
        ours.load_state_dict(load_file(str(path)), strict=True)
        return ours.eval()

    return load
