"""One entry point for a spec's conditioning and latent space: text encoders, VAE, and what was loaded from where."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from runtime.encoders.latent import LatentCodec, PixelCodec, build_latent_space
from runtime.encoders.model_directory import ModelDirectory
from runtime.encoders.text import TextEmbedding, TextEncoderModel, build_text_encoder

if TYPE_CHECKING:
    from compiler.schema.architecture import ArchitectureSpec

SCALES = ("full", "smoke")  # as compiler/scale.py


class Conditioning:
    """The text encoders and the latent codec of one architecture, and a report of where each came from."""

    def __init__(self, text_encoders: dict[str, TextEncoderModel], codec: LatentCodec | PixelCodec, report: list[str]):
        self.text_encoders = text_encoders
        self.codec = codec
        self.report = report

    def encode_text(self, prompts: list[str]) -> dict[str, TextEmbedding]:
        """Per encoder name, (tokens [B, L, dim], mask [B, L], pooled [B, dim] or None) of `prompts`."""
        return {name: encoder(prompts) for name, encoder in self.text_encoders.items()}

    def encode_images(self, pixels: torch.Tensor, sample: bool = False,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised latents of pixels in [-1, 1]: images [B, C, H, W] or videos [B, C, F, H, W]."""
        return self.codec.encode(pixels, sample=sample, generator=generator)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] of normalised latents."""
        return self.codec.decode(latents)


def build_conditioning(architecture: ArchitectureSpec, scale: str, model_dir: str | Path | None,
                       device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Conditioning:
    """Load (or, at smoke scale, stand in for) every text encoder and the VAE `architecture` names.

    `model_dir` holds the weights, one sub-folder per model id (see ModelDirectory). At scale "full" a
    missing weight is an error saying where to put it; at "smoke" it becomes a tiny random model, reported.
    """
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r}: choose one of {', '.join(SCALES)}")
    directory = ModelDirectory(model_dir)
    names = [encoder.name for encoder in architecture.text_encoders]
    if len(set(names)) != len(names):
        raise ValueError(f"architecture.text_encoders: names {names} repeat; each encoder's output is keyed by name")
    encoders, report = {}, []
    for spec in architecture.text_encoders:
        encoders[spec.name], line = build_text_encoder(spec, scale, directory, device, dtype)
        report.append(line)
    codec, lines = build_latent_space(architecture.space, scale, directory, device, dtype)
    return Conditioning(encoders, codec, report + lines)
