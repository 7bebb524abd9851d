"""Raw shard samples -> a training batch: precomputed latents and embeddings, or media and captions encoded
on the fly by runtime.encoders.

Shard members the trainer reads (per sample KEY):

    KEY.latents.npy    (C, H, W) or (C, F, H, W) float latents, normalised as the VAE codec does: x0
    KEY.text.npy       (T, D) token embeddings of the token / cross-attention text encoder
    KEY.pooled.npy     (P,) pooled text vector (FLUX: CLIP)
    KEY.text_mask.npy  (T,) nonzero for real tokens; made from the lengths when texts are padded here
    KEY.glyph.npy      (G, E) glyph-encoder tokens (an encoder with role glyph, Seedream)
    KEY.context.npy    (C, H', W') latents of a reference image (FLUX Kontext editing)
    KEY.mask.npy       loss mask on the latent grid or at pixel size, 1 where the loss counts
    KEY.rejected.npy   preference stages: latents of the rejected sample (latents.npy is the preferred one)
    KEY.lowres.npy     cascade super-resolution stages: the low-resolution image (C, h, w)
or, when latents.npy is absent, encoded on the fly (images only):
    KEY.jpg|jpeg|png|webp  the image, centre-cropped to the target aspect and resized
    KEY.txt or KEY.captions.json   the caption ("original", else the first synthetic caption)
    KEY.<mask_from>.mask.png       curation's defect mask: nonzero pixels are excluded from the loss
    (a super-resolution stage's low-res input is the same image resized to the stage's input_resolution)
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import torch

from compiler.schema.architecture import ArchitectureSpec
from runtime.objectives.conditioning import Conditioning, encoder_inputs
from runtime.objectives.masked import cell_mask
from runtime.train.data import Sample, load_npy

IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp")


@dataclass
class Batch:
    """One micro-batch: clean latents x0 (float32), conditioning, loss mask on the latent grid, extras."""

    latents: torch.Tensor
    cond: Conditioning
    mask: torch.Tensor | None = None
    rejected: torch.Tensor | None = None
    keys: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Samples in the batch."""
        return self.latents.shape[0]


def stack(samples: list[Sample], field: str) -> torch.Tensor | None:
    """The .npy member `field` of every sample stacked, None if no sample has it; all or none must."""
    present = [field in sample for sample in samples]
    if not any(present):
        return None
    if not all(present):
        missing = [sample["__key__"].decode() for sample in samples if field not in sample]
        raise ValueError(f"shard member {field} is missing for samples {missing[:5]}; every sample needs it or none")
    arrays = [load_npy(sample[field]) for sample in samples]
    shapes = {array.shape for array in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"{field} has shapes {sorted(shapes)} within one micro-batch; write shards per resolution bucket "
            "(one shape per shard) or lower the micro batch"
        )
    return torch.from_numpy(np.stack(arrays)).float()


def padded_text(samples: list[Sample]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """text.npy padded with zeros to the longest sequence, and the text mask (given, or from the lengths)."""
    if "text.npy" not in samples[0]:
        return None, stack(samples, "text_mask.npy")
    texts = [load_npy(sample["text.npy"]) for sample in samples]
    longest = max(text.shape[0] for text in texts)
    padded = np.zeros((len(texts), longest, texts[0].shape[1]), dtype=np.float32)
    lengths = torch.zeros(len(texts), longest)
    for i, text in enumerate(texts):
        padded[i, : text.shape[0]] = text
        lengths[i, : text.shape[0]] = 1
    given = stack(samples, "text_mask.npy")
    if given is None and any(text.shape[0] != longest for text in texts):
        given = lengths
    return torch.from_numpy(padded), given


class BatchBuilder:
    """Builds micro-batches from raw samples for one stage."""

    def __init__(self, architecture: ArchitectureSpec, mask_from: str | None, encode=None, lowres_side=None):
        """encode: a runtime.encoders Conditioning, needed only for shards without latents.npy;
        lowres_side: a super-resolution stage's input side, whose low-res image is made from the image itself
        when encoding on the fly."""
        self.architecture = architecture
        self.mask_from = mask_from
        self.encode = encode
        self.lowres_side = lowres_side

    def __call__(self, samples: list[Sample], size: tuple[int, int] | None = None) -> Batch:
        """A batch of `samples`; `size` (height, width) in pixels for on-the-fly encoding."""
        keys = tuple(sample["__key__"].decode() for sample in samples)
        if "latents.npy" in samples[0]:
            latents = stack(samples, "latents.npy")
            text, text_mask = padded_text(samples)
            cond = Conditioning(
                text=text,
                pooled=stack(samples, "pooled.npy"),
                text_mask=text_mask,
                glyph=stack(samples, "glyph.npy"),
                context_latents=stack(samples, "context.npy"),
                lowres=stack(samples, "lowres.npy"),
            )
            mask = stack(samples, "mask.npy")
            rejected = stack(samples, "rejected.npy")
        else:
            latents, cond, mask = self._encode(samples, size)
            rejected = None
        if mask is not None:
            mask = cell_mask(mask.squeeze(1) if mask.ndim == latents.ndim else mask, tuple(latents.shape[2:]))
        return Batch(latents, cond, mask, rejected, keys)

    def _encode(self, samples: list[Sample], size: tuple[int, int] | None):
        if self.encode is None or size is None:
            raise ValueError(
                f"sample {samples[0]['__key__'].decode()} has no latents.npy (members: {sorted(samples[0])}); "
                "precompute latents, or run the trainer with on-the-fly encoding (a model directory)"
            )
        pixels = torch.stack([_image(sample, size) for sample in samples])
        with torch.no_grad():
            latents = self.encode.encode_images(pixels).float()
            embeddings = self.encode.encode_text([_caption(sample) for sample in samples])
        fields: dict[str, torch.Tensor] = {}
        for name, slot in encoder_inputs(self.architecture.text_encoders).items():
            embedding = embeddings[name]
            if slot == "pooled":
                if embedding.pooled is None:
                    raise ValueError(f"text encoder {name!r} has role 'pooled' but its model returns no pooled output")
                fields["pooled"] = embedding.pooled.float()
            elif slot == "glyph":
                fields["glyph"] = embedding.tokens.float()
            else:
                fields["text"], fields["text_mask"] = embedding.tokens.float(), embedding.mask.float()
        if self.lowres_side is not None:
            fields["lowres"] = torch.stack([_image(sample, (self.lowres_side,) * 2) for sample in samples])
        masks = [self._defect_keep(sample, size) for sample in samples]
        mask = (
            None
            if all(m is None for m in masks)
            else torch.stack([torch.ones(size) if m is None else m for m in masks])
        )
        return latents, Conditioning(**fields), mask

    def _defect_keep(self, sample: Sample, size: tuple[int, int]) -> torch.Tensor | None:
        field = f"{self.mask_from}.mask.png"
        if self.mask_from is None or field not in sample:
            return None
        return torch.from_numpy((_resized(sample[field], size, "L") == 0).astype(np.float32))


def _resized(data: bytes, size: tuple[int, int], mode: str) -> np.ndarray:
    """Decode, centre-crop to the aspect of `size` (height, width), resize; nearest for masks."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert(mode)
    height, width = size
    scale = max(width / image.width, height / image.height)
    resample = Image.Resampling.BICUBIC if mode == "RGB" else Image.Resampling.NEAREST
    image = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))), resample)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return np.asarray(image.crop((left, top, left + width, top + height)))


def _image(sample: Sample, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) pixels in [-1, 1]."""
    field = next((f for f in IMAGE_FIELDS if f in sample), None)
    if field is None:
        raise ValueError(
            f"sample {sample['__key__'].decode()} has neither latents.npy nor an image ({', '.join(IMAGE_FIELDS)}); "
            "on-the-fly encoding reads images only (video shards need precomputed latents)"
        )
    pixels = torch.from_numpy(_resized(sample[field], size, "RGB").copy()).permute(2, 0, 1).float()
    return pixels / 127.5 - 1


def _caption(sample: Sample) -> str:
    """The original caption, else the first synthetic one."""
    if "txt" in sample:
        return sample["txt"].decode()
    if "captions.json" in sample:
        captions = json.loads(sample["captions.json"])
        if captions.get("original"):
            return captions["original"]
        if captions.get("synthetic"):
            return captions["synthetic"][0]["text"]
    raise ValueError(f"sample {sample['__key__'].decode()} has no caption (txt or captions.json) to encode")
