"""Conditioning and latent space: text encoders, VAEs, and the folder their released weights live in.

- `build_encoders(architecture, scale, model_dir, device)`: the `Encoders` of a spec, with `encode_text`,
  `encode_images`, `decode` and a `report` of what was loaded from where, or randomly initialised and why
- `ModelDirectory`, `MissingWeightsError`: model ids -> local folders (no hub downloads)
- `build_text_encoder`, `TextEncoderModel`, `TextEmbedding`, `family_of`: transformers text encoders and
  decoder-only LLMs
- `AutoencoderKL2D` / `AutoencoderKLConfig`: FLUX-style 2D VAE, diffusers AutoencoderKL key names
- `CausalVideoVAE` / `CausalVAEConfig`: Wan 2.1 causal video VAE, diffusers AutoencoderKLWan key names
- `NonCausalVideoVAE` / `VideoVAEConfig`: Allegro-style non-causal video VAE (own layout, smoke stand-ins only)
- `LatentCodec`, `PixelCodec`, `build_latent_space`: VAE plus latent normalisation, or identity on pixels
"""

from runtime.encoders.build import Encoders, build_encoders
from runtime.encoders.latent import LatentCodec, PixelCodec, build_latent_space
from runtime.encoders.model_directory import MissingWeightsError, ModelDirectory
from runtime.encoders.text import (
    TextEmbedding,
    TextEncoderModel,
    build_text_encoder,
    family_of,
)
from runtime.encoders.vae_kl import AutoencoderKL2D, AutoencoderKLConfig
from runtime.encoders.vae_video import NonCausalVideoVAE, VideoVAEConfig
from runtime.encoders.vae_wan import CausalVAEConfig, CausalVideoVAE

__all__ = [
    "AutoencoderKL2D",
    "AutoencoderKLConfig",
    "CausalVAEConfig",
    "CausalVideoVAE",
    "Encoders",
    "LatentCodec",
    "MissingWeightsError",
    "ModelDirectory",
    "NonCausalVideoVAE",
    "PixelCodec",
    "TextEmbedding",
    "TextEncoderModel",
    "VideoVAEConfig",
    "build_encoders",
    "build_latent_space",
    "build_text_encoder",
    "family_of",
]
