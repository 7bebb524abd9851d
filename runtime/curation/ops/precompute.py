"""precompute_embeddings' encoder: one curated sample -> the shard members the trainer reads as precomputed.

The members and their shapes are the trainer's (runtime/train/batch.py docstring):

    KEY.latents.npy    (C, h, w) latents of the image, or (C, f, h, w) of the video clip the stage trains on,
                       normalised by runtime.encoders' codec
    KEY.context.npy    (C, h, w) latents of an edit triplet's reference image (KEY.source.jpg|jpeg|png|webp)
    KEY.text.npy       (T, D) tokens of the token / cross-attention encoders (joined as the trainer joins them,
                       runtime.objectives.conditioning.join_text), up to the caption's last real token
    KEY.text_mask.npy  (T,) 1 on real tokens, written only when the kept tokens have padding (joint lists)
    KEY.pooled.npy     (P,) the pooled encoders' vectors, concatenated
    KEY.glyph.npy      (G, E) the glyph encoder's tokens, padded to max_tokens (glyph tokens carry no mask)

Stored size: every array is bfloat16, kept as the uint16 array of its bit patterns (numpy has no bfloat16;
runtime.train.batch.stored_tensor reads it back), and text keeps only the caption's real tokens: the trainer pads
a micro-batch to its longest caption and masks the rest (runtime.train.batch.padded). A 30-token caption through
T5-XXL is 30 x 4096 x 2 bytes = 246 kB instead of 512 x 4096 x 4 = 8.4 MB padded in float32. Bytes per sample of
a spec's stored conditioning: compiler/plan/conditioning.py.

The encoders are the trainer's own: runtime.encoders' build_text_encoder and build_latent_space (what
build_encoders calls) of the spec's architecture, at the run's scale, from the same model directory; only
the encoders the op names and, with latents, the VAE are built. At smoke scale a missing model is a tiny random stand-in seeded by
its model id, so curation and trainer build the same one. Which encoder feeds which member, and how
several are joined, is runtime.objectives.conditioning.join_text, as in the trainer. The caption is the one the
trainer would encode (runtime.train.media.caption: txt, else the original, else the first synthetic caption), and pixels are
cropped and resized by runtime.train.media.image_pixels (a video: runtime.train.media.video_pixels, the stage's
first `frames` frames at its `fps`), so a precomputed member equals what the trainer computes on the fly for a
stage at the same size, rounded to bfloat16. Media that cannot be decoded raise UnreadableSample, so the runner
quarantines that sample alone.

Size: the `resolution` given (curation's OpContext.encode_size: the first resolution of the first training
stage reading the pipeline's output), else the stored image cropped down to a multiple of the VAE's spatial
compression. Clips: the `clip` given (curation's OpContext.encode_clip: frames and fps of that stage); a video
without one cannot be precomputed and raises, saying so. The trainer uses precomputed latents only in stages whose
size (and frames) give the same latent grid and encodes the others from the media.
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
                 text_encoders: list[str], latents: bool, resolution: tuple[int, int] | None = None,
                 clip: tuple[int, float] | None = None) -> None:
        self.architecture, self.scale, self.model_dir = architecture, scale, model_dir
        self.slots = {encoder.name: encoder.inputs for encoder in architecture.text_encoders
                      if encoder.name in text_encoders}
        for slot in ("text", "pooled"):
            feeding = [encoder.name for encoder in architecture.text_encoders if slot in encoder.inputs]
            partial = [name for name in feeding if name not in self.slots]
            if partial and len(partial) < len(feeding):
                raise ValueError(
                    f"precompute_embeddings names text encoders {sorted(set(feeding) - set(partial))} but not "
                    f"{partial}, which feed the same {slot!r} input ({slot}.npy joins them all); name all of "
                    f"{feeding} or none"
                )
        self.latents, self.resolution, self.clip = latents, resolution, clip
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
        if record.is_video:
            raise ValueError(f"video {record.key}: no training stage reads the pipeline's output, so there is no clip "
                             "size to precompute its latents at; set vae_latents = False or train on the dataset")
        width, height = Image.open(io.BytesIO(record.media)).size  # reads the header only
        size = (height - height % self.compression, width - width % self.compression)
        if min(size) == 0:
            raise ValueError(f"image {width}x{height} is smaller than the VAE's compression {self.compression}")
        return size

    def members(self, record: Record) -> dict[str, bytes]:
        """The precomputed members of `record`, keyed by member name ("latents.npy", ...)."""
        import torch

        from runtime.objectives.conditioning import join_text
        from runtime.train.media import caption

        sample = {"__key__": record.key.encode(), **record.to_members()}  # the sample as the trainer will read it
        arrays: dict[str, np.ndarray] = {}
        with torch.no_grad():
            if self.slots:
                prompt = caption(sample)
                outputs = {name: encoder([prompt]) for name, encoder in self.text_encoders.items()}
                fed = {slot for inputs in self.slots.values() for slot in inputs}
                joined = join_text(self.architecture, outputs, fed)
                if "pooled" in joined:
                    arrays["pooled.npy"] = bf16_bits(joined["pooled"][0])
                if "glyph" in joined:
                    arrays["glyph.npy"] = bf16_bits(joined["glyph"][0])
                if "text" in joined:
                    tokens, mask = real_tokens(joined["text"][0], joined["text_mask"][0])
                    arrays["text.npy"] = bf16_bits(tokens)
                    if mask is not None:
                        arrays["text_mask.npy"] = mask
            if self.latents:
                images = {"latents.npy": record.media_ext}
                source = next((field for field in SOURCE_FIELDS if field in sample), None)
                if source is not None:
                    images["context.npy"] = source
                for member, field in images.items():
                    arrays[member] = bf16_bits(self.codec.encode(self.pixels(record, sample, field))[0])
        return {member: npy_bytes(array) for member, array in arrays.items()}

    def pixels(self, record: Record, sample: dict, field: str):
        """(1, 3, H, W) pixels of an image member, or (1, 3, F, H, W) of the record's video clip, as the trainer
        reads them; undecodable media raise UnreadableSample."""
        from runtime.train.media import image_pixels, video_pixels

        size = self.size(record)
        if field == record.media_ext and record.is_video:
            if self.clip is None:
                raise ValueError(
                    f"video {record.key}: precompute_embeddings encodes the clip the training stage reads, but "
                    "curation was given no clip geometry (the first consuming stage's frames and fps: "
                    "OpContext.encode_clip, from the spec or the bundle's pipeline.json); curate the spec or a "
                    "bundle compiled by this genspec, or set vae_latents = False"
                )
            frames, fps = self.clip
            try:
                return video_pixels(sample, field, size, frames, fps)[None]
            except ValueError as error:  # undecodable, or shorter than the stage's clip: the trainer could not read it
                raise UnreadableSample(f"{field} cannot be read as the stage's clip: {error}") from error
        try:
            return image_pixels(sample, field, size)[None]
        except OSError as error:  # PIL: truncated or unidentified image bytes
            raise UnreadableSample(f"{field} cannot be decoded to encode its latents: {error}") from error


def real_tokens(tokens, mask) -> tuple:
    """The tokens of one encoded prompt (T, D) up to its last real one, and their mask as a uint8 array, None
    when every kept token is real (one right-padded encoder: the caption's tokens are a prefix). Joint token
    lists (SD3) keep each earlier list's padding, so their mask has holes the trainer reads from text_mask.npy."""
    real = mask.bool().nonzero()
    length = int(real[-1]) + 1 if len(real) else 0
    kept = mask[:length].bool()
    return tokens[:length], None if bool(kept.all()) else kept.cpu().numpy().astype(np.uint8)
