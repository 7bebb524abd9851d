"""precompute_embeddings' encoder: one curated sample -> the shard members the trainer reads as precomputed.

The members and their shapes are the trainer's (runtime/train/batch.py docstring):

    KEY.latents.npy    (C, h, w) latents of the image, normalised by runtime.encoders' codec
    KEY.context.npy    (C, h, w) latents of an edit triplet's reference image (KEY.source.jpg|jpeg|png|webp)
    KEY.text.npy       (T, D) tokens of the token / cross-attention encoder, zero on padding
    KEY.text_mask.npy  (T,) True on real tokens
    KEY.pooled.npy     (P,) the pooled encoder's vector
    KEY.glyph.npy      (G, E) the glyph encoder's tokens

The encoders are the trainer's own: runtime.encoders' build_text_encoder and build_latent_space (what
build_conditioning calls) of the spec's architecture, at the run's scale, from the same model directory; only
the encoders the op names and, with latents, the VAE are built. At smoke scale a missing model is a tiny random stand-in seeded by
its model id, so curation and trainer build the same one. Which encoder feeds which member is
runtime.objectives.conditioning.encoder_inputs, as in the trainer. The caption is the one the trainer would
encode (runtime.train.media.caption: txt, else the original, else the first synthetic caption), and pixels are
cropped and resized by runtime.train.media.image_pixels, so a precomputed member equals what the trainer
computes on the fly for a stage at the same size. Arrays are float32 (text_mask bool). An image that cannot
be decoded raises UnreadableSample, so the runner quarantines that sample alone.

Size: the `resolution` given (curation's OpContext.encode_size: the first resolution of the first training
stage reading the pipeline's output), else the stored image cropped down to a multiple of the VAE's spatial
compression. The trainer uses precomputed latents only in stages whose size gives the same latent grid and
encodes the others from the image.
"""

from __future__ import annotations

import io
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from runtime.curation.api import UnreadableSample

if TYPE_CHECKING:
    from compiler.schema.architecture import ArchitectureSpec
    from runtime.curation.records import Record

SOURCE_FIELDS = tuple(f"source.{ext}" for ext in ("jpg", "jpeg", "png", "webp"))  # as runtime/train/media.py


def bf16_bits(tensor) -> np.ndarray:
    """A tensor rounded to bfloat16, as the uint16 array of its bit patterns (numpy has no bfloat16; the trainer's
    runtime.train.batch.stored_tensor reads uint16 members back as bfloat16)."""
    import torch

    return tensor.detach().to("cpu", torch.bfloat16).contiguous().view(torch.int16).numpy().view(np.uint16)


def npy_bytes(array: np.ndarray) -> bytes:
    """One array as an .npy member (runtime.train.data.load_npy reads it back)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class TrainerMembers:
    """Encodes records into the trainer's precomputed members with the architecture's encoders."""

    def __init__(self, architecture: ArchitectureSpec, scale: str, model_dir: Path | None,
                 text_encoders: list[str], latents: bool, resolution: tuple[int, int] | None = None) -> None:
        from runtime.objectives.conditioning import encoder_inputs

        self.architecture, self.scale, self.model_dir = architecture, scale, model_dir
        self.slots = {name: slot for name, slot in encoder_inputs(architecture.text_encoders).items()
                      if name in text_encoders}
        self.latents, self.resolution = latents, resolution
        space = architecture.space
        self.compression = space.spatial_compression if space.kind == "latent" else 1

    def missing_weights(self) -> list[str]:
        """At full scale, what the model directory lacks for the encoders this op runs (one message each);
        read without loading anything, so the op refuses before any sample is read."""
        from runtime.encoders import ModelDirectory

        if self.scale != "full":
            return []
        directory = ModelDirectory(self.model_dir)
        needed = [(spec.model, f"architecture.text_encoders[{spec.name}]")
                  for spec in self.architecture.text_encoders if spec.name in self.slots]
        if self.latents and self.architecture.space.kind == "latent":
            needed.append((self.architecture.space.vae, "architecture.space.vae"))
        entries = [(directory.entry(model_id), field) for model_id, field in needed]
        return [directory.missing_message(entry, field, "its released weights (config.json and weights)")
                for entry, field in entries if not entry.present]

    @cached_property
    def text_encoders(self) -> dict:
        """The named text encoders, each built as the trainer builds it (runtime.encoders.build_text_encoder)."""
        from runtime.encoders import ModelDirectory, build_text_encoder

        directory = ModelDirectory(self.model_dir)
        return {spec.name: build_text_encoder(spec, self.scale, directory)[0]
                for spec in self.architecture.text_encoders if spec.name in self.slots}

    @cached_property
    def codec(self):
        """The latent codec (VAE and normalisation), built as the trainer builds it."""
        from runtime.encoders import ModelDirectory, build_latent_space

        return build_latent_space(self.architecture.space, self.scale, ModelDirectory(self.model_dir))[0]

    def size(self, record: Record) -> tuple[int, int]:
        """(height, width) in pixels the record's latents are encoded at."""
        if self.resolution is not None:
            return self.resolution
        width, height = Image.open(io.BytesIO(record.media)).size  # reads the header only
        size = (height - height % self.compression, width - width % self.compression)
        if min(size) == 0:
            raise ValueError(f"image {width}x{height} is smaller than the VAE's compression {self.compression}")
        return size

    def members(self, record: Record) -> dict[str, bytes]:
        """The precomputed members of `record`, keyed by member name ("latents.npy", ...)."""
        import torch

        from runtime.train.media import caption, image_pixels

        sample = {"__key__": record.key.encode(), **record.to_members()}  # the sample as the trainer will read it
        arrays: dict[str, np.ndarray] = {}
        with torch.no_grad():
            if self.slots:
                prompt = caption(sample)
                for name, slot in self.slots.items():
                    embedding = self.text_encoders[name]([prompt])
                    if slot == "pooled":
                        if embedding.pooled is None:
                            raise ValueError(f"text encoder {name!r} has role 'pooled' but its model returns no pooled output")
                        arrays["pooled.npy"] = embedding.pooled[0].float().numpy()
                    elif slot == "glyph":
                        arrays["glyph.npy"] = embedding.tokens[0].float().numpy()
                    else:
                        arrays["text.npy"] = embedding.tokens[0].float().numpy()
                        arrays["text_mask.npy"] = embedding.mask[0].numpy()
            if self.latents:
                images = {"latents.npy": record.media_ext}
                source = next((field for field in SOURCE_FIELDS if field in sample), None)
                if source is not None:
                    images["context.npy"] = source
                for member, field in images.items():
                    try:
                        pixels = image_pixels(sample, field, self.size(record))[None]
                    except OSError as error:  # PIL: truncated or unidentified image bytes
                        raise UnreadableSample(f"{field} cannot be decoded to encode its latents: {error}") from error
                    arrays[member] = self.codec.encode(pixels)[0].float().numpy()
        return {member: npy_bytes(array) for member, array in arrays.items()}
