"""Raw shard samples -> a training batch: each input precomputed where the shard carries it at the stage's
shape, else encoded on the fly from the sample's media and caption by runtime.encoders.

Shard members the trainer reads (per sample KEY), precomputed:

    KEY.latents.npy    (C, h, w) or (C, f, h, w) float latents, normalised as the VAE codec does: x0
    KEY.text.npy       (T, D) token embeddings of the token / cross-attention text encoders (several joined
                       by architecture.joint_tokens: SD3's CLIP-L + CLIP-G tokens, then T5's)
    KEY.text_mask.npy  (T,) nonzero for real tokens; made from the lengths when texts are padded here
    KEY.pooled.npy     (P,) pooled text vector (FLUX: CLIP; several encoders' concatenated: SD3's CLIPs)
    KEY.glyph.npy      (G, E) glyph-encoder tokens (an encoder with role glyph, Seedream)
    KEY.context.npy    (C, h, w) latents of an edit's reference image (FLUX Kontext), the target's size
    KEY.mask.npy       loss mask on the latent grid or at pixel size, 1 where the loss counts
    KEY.rejected.npy   preference stages: latents of the rejected sample (latents.npy is the preferred one)
    KEY.lowres.npy     cascade super-resolution stages: the low-resolution image (C, s, s)
and media, encoded on the fly:
    KEY.jpg|jpeg|png|webp          an image (an edit triplet's target)
    KEY.mp4|webm|mov|avi|mkv       a video clip (runtime/train/media.py: fps resampling, the first frames)
    KEY.source.jpg|jpeg|png|webp   an edit triplet's reference image, encoded as context latents
    KEY.rejected.<image or video>  a preference pair's rejected image or clip (the sample's media is preferred)
    KEY.txt or KEY.captions.json   the caption or edit instruction ("original", else the first synthetic one)
    KEY.<mask_from>.mask.png       curation's defect mask: nonzero pixels are excluded from the loss

Precomputed members are float32, or bfloat16 stored as uint16 bit patterns (what precompute_embeddings writes);
text may be unpadded, each sample its real tokens: a micro-batch is padded to its longest, with text_mask.
Every tensor of a batch is on the builder's device (the engine's): precomputed members move there as they are
loaded, and on-the-fly encoding runs there. A stage whose stage.conditioning is 'precomputed' gets no encoders:
an input without a fitting member is then an error.

Per input, per sample: a precomputed member is used when it fits the stage, else the input is encoded from
the media or caption, else the batch fails naming the key, the member, the shape needed and the one found.
Fitting: latents and context are (channels, [latent frames,] H / s, W / s) for the stage's size, s the VAE's
spatial compression; text and glyph tokens have the encoder's dim; pooled is (dim,); lowres is (3, side, side).
So a shard with precomputed text but latents at another resolution trains: text from text.npy, latents
encoded from the image. Loss masks are read as precomputed only (all samples or none). Rejected latents are
looked for only when some sample of the micro-batch has rejected.npy or rejected media; then every sample needs one.

Geometry: in an image stage (stage.frames unset) samples are images, pixels (3, H, W) -> latents (c, h, w).
In a video stage a video is stage.frames frames (3, F, H, W) -> (c, f, h, w) with F = 1 + k*(f - 1) for a
causal VAE of temporal compression k (Wan 2.1: 9 -> 3), and an image is a one-frame video (3, 1, H, W) ->
(c, 1, h, w), as Wan trains images. One micro-batch has one shape, so it may not mix videos with images, or
edit triplets with plain images: StageData fills each micro-batch from one dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from compiler.schema.architecture import ArchitectureSpec, LatentSpace, PixelSpace
from compiler.schema.bundle import DataInput
from runtime.objectives.conditioning import Conditioning, join_text, text_input_widths
from runtime.objectives.masked import cell_mask
from runtime.train.data import Sample, load_npy
from runtime.train.media import (
    IMAGE_FIELDS,
    REJECTED_FIELDS,
    SOURCE_FIELDS,
    caption,
    defect_keep,
    first_member,
    image_pixels,
    key_of,
    video_pixels,
)
from runtime.train.subset import VIDEO_FIELDS

if TYPE_CHECKING:
    from runtime.encoders.build import Encoders

MEDIA = "image (" + ", ".join(IMAGE_FIELDS) + ") or video (" + ", ".join(VIDEO_FIELDS) + ")"
CAPTION_FIELDS = ("txt", "captions.json")


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


@dataclass(frozen=True)
class Part:
    """One input of a batch: its precomputed member, what fits the stage, and the members it is encoded from."""

    member: str
    expected: str  # the shape the stage needs, for errors
    accept: Callable[[np.ndarray], np.ndarray | None]  # the array as the batch takes it, None if it does not fit
    sources: tuple[str, ...]  # members to encode it from, in order of preference
    described: str  # the sources in words, for errors


def latent_part(member: str, shape: tuple[int, ...], sources: tuple[str, ...], described: str) -> Part:
    """A latent-grid input of exactly `shape`; a one-frame video also takes its image layout (c, h, w)."""
    squeezed = shape[:1] + shape[2:] if len(shape) == 4 and shape[1] == 1 else None

    def accept(array: np.ndarray) -> np.ndarray | None:
        if array.shape == shape or array.shape == squeezed:
            return array.reshape(shape)
        return None

    return Part(member, str(shape), accept, sources, described)


def latent_frames(space: LatentSpace | PixelSpace, frames: int) -> int:
    """Latent frames of `frames` video frames. A causal VAE encodes frame 0 alone, then k frames per latent frame
    (runtime/encoders/vae_wan.py), so 1 + k*n frames give 1 + n; a non-causal one encodes k frames per latent frame."""
    k = getattr(space, "temporal_compression", 1)
    causal = getattr(space, "causal", False)
    first = 1 if causal else 0  # frames encoded before the k-frame groups
    if (frames - first) % k:
        below = first + (frames - first) // k * k
        valid = " or ".join(str(count) for count in (below, below + k) if count > 0)
        rule = f"1 + {k}n" if causal else f"a multiple of {k}"
        raise ValueError(
            f"stage.frames is {frames}, but architecture.space ({'causal, ' if causal else ''}temporal_compression "
            f"{k}) encodes {rule} frames; set stage.frames to {valid}"
        )
    return first + (frames - first) // k


def stored_tensor(array: np.ndarray) -> torch.Tensor:
    """A precomputed member as a tensor on the host: bfloat16 for uint16 arrays, which hold bfloat16 bit patterns
    (numpy has no bfloat16; runtime/curation/ops/precompute.py stores conditioning so, at half the bytes of float32),
    else float32. Batches are float32: convert after the move to the device, which then copies half the bytes."""
    if array.dtype == np.uint16:
        return torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.array(array, dtype=np.float32))


def stack(samples: list[Sample], field: str) -> torch.Tensor | None:
    """The .npy member `field` of every sample stacked, None if no sample has it; all or none must."""
    present = [field in sample for sample in samples]
    if not any(present):
        return None
    if not all(present):
        missing = [key_of(sample) for sample in samples if field not in sample]
        raise ValueError(f"shard member {field} is missing for samples {missing[:5]}; every sample needs it or none")
    arrays = [load_npy(sample[field]) for sample in samples]
    shapes = {array.shape for array in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"{field} has shapes {sorted(shapes)} within one micro-batch; write shards per resolution bucket "
            "(one shape per shard) or lower the micro batch"
        )
    return torch.stack([stored_tensor(array) for array in arrays]).float()


class BatchBuilder:
    """Builds micro-batches from raw samples for one stage."""

    def __init__(
        self,
        architecture: ArchitectureSpec,
        mask_from: str | None,
        encoders: Callable[[], Encoders] | None = None,
        lowres_side: int | None = None,
        frames: int | None = None,
        fps: float | None = None,
        device: torch.device | str = "cpu",
    ):
        """encoders: builds runtime.encoders' Conditioning, called once, when a batch first needs on-the-fly
        encoding (None: every input must be precomputed); lowres_side: a super-resolution stage's input side;
        frames, fps: the stage's video geometry (stage.frames, stage.fps), None in image stages; device: where
        batches go (the engine's device; encoders built by `encoders` run there too)."""
        self.architecture = architecture
        self.mask_from = mask_from
        self.load_encoders = encoders
        self._encoders: Encoders | None = None
        self.lowres_side = lowres_side
        self.frames, self.fps = frames, fps
        self.device = torch.device(device)
        if frames is not None:
            latent_frames(architecture.space, frames)  # a frame count the VAE cannot encode fails here, not mid-run
        self.text_inputs = text_input_widths(architecture)  # 'text' | 'pooled' | 'glyph' -> width

    def __call__(self, samples: list[Sample], size: tuple[int, int], frames: int | None = None) -> Batch:
        """A batch of `samples` at `size` (height, width) in pixels; `frames`: a bucket's frame count for its
        videos (runtime/train/buckets.py), else stage.frames."""
        keys = tuple(key_of(sample) for sample in samples)
        frames = self._frames(samples, frames)
        shape = self._latent_shape(frames, size)
        latents = torch.stack(self._latents(samples, shape, frames, size))
        cond = Conditioning(
            **self._text(samples),
            context_latents=self._context(samples, shape, size),
            lowres=self._lowres(samples),
        )
        rejected = self._rejected(samples, shape, frames, size)
        return Batch(latents, cond, self._loss_mask(samples, size, latents), rejected, keys)

    # --- geometry ----------------------------------------------------------------------------------------
    def _frames(self, samples: list[Sample], bucket_frames: int | None = None) -> int | None:
        """The micro-batch's frames per sample: None in an image stage, the bucket's frames (else stage.frames)
        for videos, 1 for images."""
        if self.frames is None:
            videos = [key_of(sample) for sample in samples if first_member(sample, VIDEO_FIELDS)]
            if videos:
                raise ValueError(
                    f"samples {videos[:5]} are videos but stage.frames is unset (an image stage); keep images only "
                    "with the dataset's where.modality: image, or set stage.frames"
                )
            return None
        kinds = {key_of(sample): self._is_video(sample) for sample in samples}
        if len(set(kinds.values())) > 1:
            videos = [key for key, video in kinds.items() if video]
            images = [key for key, video in kinds.items() if not video]
            raise ValueError(
                f"one micro-batch mixes videos {videos[:3]} with images {images[:3]}, which differ in frames; split "
                "them into datasets by where.modality (each micro-batch is filled from one dataset)"
            )
        if not any(kinds.values()):
            return 1
        if bucket_frames is not None and bucket_frames > 1:
            latent_frames(self.architecture.space, bucket_frames)  # a count the VAE cannot encode fails here
            return bucket_frames
        return self.frames

    @staticmethod
    def _is_video(sample: Sample) -> bool:
        """A video member, or (latents only) precomputed latents with more than one frame."""
        if first_member(sample, VIDEO_FIELDS):
            return True
        if first_member(sample, IMAGE_FIELDS) or "latents.npy" not in sample:
            return False
        latents = load_npy(sample["latents.npy"])
        return latents.ndim == 4 and latents.shape[1] > 1

    def _latent_shape(self, frames: int | None, size: tuple[int, int]) -> tuple[int, ...]:
        """(channels, [latent frames,] h, w) of a sample with `frames` frames at `size`."""
        space = self.architecture.space
        compression = space.spatial_compression if space.kind == "latent" else 1
        grid = (size[0] // compression, size[1] // compression)
        if frames is None:
            return (space.channels, *grid)
        return (space.channels, 1 if frames == 1 else latent_frames(space, frames), *grid)

    # --- inputs ------------------------------------------------------------------------------------------
    def _gather(self, samples: list[Sample], part: Part, encode) -> tuple[list, list[int]]:
        """Each sample's `part`: the precomputed member where it fits, else encoded from its source members by
        encode(samples, source members) -> one value per sample; also the indices that were encoded."""
        values: list = []
        pending: list[int] = []
        for index, sample in enumerate(samples):
            array = load_npy(sample[part.member]) if part.member in sample else None
            fitted = None if array is None else part.accept(array)
            if fitted is not None:
                values.append(stored_tensor(fitted).to(self.device).float())  # where encoded values are: they stack
                continue
            found = "is missing" if array is None else f"is {array.shape}"
            if first_member(sample, part.sources) is None:
                raise ValueError(
                    f"sample {key_of(sample)}: {part.member} {found}, the stage needs {part.expected}, and the sample "
                    f"has no {part.described} to encode it from; precompute {part.member} as {part.expected} or keep "
                    f"its {part.described} in the shards"
                )
            values.append(None)
            pending.append(index)
        if pending:
            chosen = [samples[i] for i in pending]
            first = chosen[0]
            why = f"sample {key_of(first)}'s {part.member} is missing or not {part.expected}"
            encoded = encode(chosen, [first_member(sample, part.sources) for sample in chosen], why)
            for index, value in zip(pending, encoded):
                values[index] = value
        return values, pending

    def _conditioning(self, why: str) -> Encoders:
        """The encoders, built on first use."""
        if self._encoders is None:
            if self.load_encoders is None:
                raise ValueError(
                    f"{why}, so it must be encoded on the fly, but the trainer has no encoders for this stage "
                    "(stage.conditioning is 'precomputed'); precompute it at the stage's shape (precompute_embeddings), "
                    "or set the stage's conditioning to 'on_the_fly'"
                )
            self._encoders = self.load_encoders()
        return self._encoders

    def _encode_media(self, chosen, fields, frames: int | None, size: tuple[int, int], why: str) -> list:
        """Latents of each sample's media member: an image (3, H, W) -> (c, h, w), or (c, 1, h, w) in a video
        stage (the codec encodes images as one latent frame, for causal and non-causal VAEs alike); a video
        (3, F, H, W) -> (c, f, h, w)."""
        encoders = self._conditioning(why)
        pixels = [
            video_pixels(sample, field, size, frames, self.fps) if field.rsplit(".", 1)[-1] in VIDEO_FIELDS
            else image_pixels(sample, field, size)
            for sample, field in zip(chosen, fields)
        ]
        with torch.no_grad():
            latents = encoders.encode_images(torch.stack(pixels)).float()
        return list(latents.unsqueeze(2) if frames == 1 else latents)

    def _latents(self, samples, shape, frames, size) -> list[torch.Tensor]:
        part = latent_part("latents.npy", shape, VIDEO_FIELDS + IMAGE_FIELDS, MEDIA)

        def encode(chosen, fields, why):
            return self._encode_media(chosen, fields, frames, size, why)

        return self._gather(samples, part, encode)[0]

    def _rejected(self, samples, shape, frames, size) -> torch.Tensor | None:
        """A preference pair's rejected latents, at the preferred sample's geometry; None for plain samples."""
        if not any(first_member(sample, REJECTED_FIELDS + ("rejected.npy",)) for sample in samples):
            return None
        part = latent_part("rejected.npy", shape, REJECTED_FIELDS, "rejected image or clip (rejected.<ext>)")

        def encode(chosen, fields, why):
            return self._encode_media(chosen, fields, frames, size, why)

        return torch.stack(self._gather(samples, part, encode)[0])

    def _context(self, samples, shape, size) -> torch.Tensor | None:
        """An edit triplet's reference-image latents at the target's size; None for plain samples."""
        edits = {key_of(sample): bool(first_member(sample, SOURCE_FIELDS + ("context.npy",))) for sample in samples}
        if not any(edits.values()):
            return None
        if not all(edits.values()):
            plain = [key for key, edit in edits.items() if not edit]
            raise ValueError(
                f"one micro-batch mixes edit triplets (a source image or context.npy) with plain samples {plain[:3]}; "
                "put edit triplets and plain images in separate datasets (each micro-batch is filled from one dataset)"
            )
        if len(shape) == 4 and shape[1] > 1:
            raise NotImplementedError(
                f"samples {list(edits)[:3]} are edit triplets with a video target; reference-image context is "
                "implemented for image targets only"
            )
        part = latent_part("context.npy", shape, SOURCE_FIELDS, "reference image (" + ", ".join(SOURCE_FIELDS) + ")")
        frames = None if len(shape) == 3 else 1

        def encode(chosen, fields, why):
            return self._encode_media(chosen, fields, frames, size, why)

        return torch.stack(self._gather(samples, part, encode)[0])

    def _lowres(self, samples) -> torch.Tensor | None:
        """A super-resolution stage's low-resolution input: lowres.npy, else the image resized to its side."""
        if self.lowres_side is None:
            return None
        side = self.lowres_side
        expected = (3, side, side)  # pixels: cascades run in pixel space
        part = Part(
            "lowres.npy", str(expected), lambda a: a if a.shape == expected else None, IMAGE_FIELDS,
            "image (" + ", ".join(IMAGE_FIELDS) + ")",
        )

        def encode(chosen, fields, why):
            return [image_pixels(sample, field, (side, side)).to(self.device) for sample, field in zip(chosen, fields)]

        return torch.stack(self._gather(samples, part, encode)[0])

    def _text(self, samples) -> dict[str, torch.Tensor]:
        """text (+ text_mask), pooled and glyph, for the inputs the architecture's encoders feed, each joined
        from the encoders' outputs as runtime.objectives.conditioning.join_text does."""
        embedded: dict[tuple[str, ...], dict] = {}

        def embed(chosen, why):
            keys = tuple(key_of(sample) for sample in chosen)
            if keys not in embedded:
                with torch.no_grad():
                    outputs = self._conditioning(why).encode_text([caption(sample) for sample in chosen])
                    embedded[keys] = join_text(self.architecture, outputs)
            return embedded[keys]

        fields: dict[str, torch.Tensor] = {}
        for slot, dim in self.text_inputs.items():
            if slot == "pooled":
                part = Part("pooled.npy", f"({dim},)", lambda a, d=dim: a if a.shape == (d,) else None,
                            CAPTION_FIELDS, "caption (txt or captions.json)")
            else:
                part = Part(f"{slot}.npy", f"(tokens, {dim})",
                            lambda a, d=dim: a if a.ndim == 2 and a.shape[1] == d else None,
                            CAPTION_FIELDS, "caption (txt or captions.json)")

            def encode(chosen, fields_, why, slot=slot):
                return list(embed(chosen, why)[slot])

            values, encoded = self._gather(samples, part, encode)
            if slot == "pooled":
                fields["pooled"] = torch.stack(values)
            elif slot == "glyph":
                if len({value.shape for value in values}) > 1:
                    raise ValueError(
                        f"glyph tokens of samples {[key_of(s) for s in samples][:5]} differ in length within one "
                        "micro-batch and glyph tokens carry no mask; precompute glyph.npy padded to one length"
                    )
                fields["glyph"] = torch.stack(values)
            else:
                masks = [self._given_mask(sample, value) for sample, value in zip(samples, values)]
                if encoded:
                    rows = embed([samples[i] for i in encoded], "")["text_mask"]  # cached by encode above
                    for index, row in zip(encoded, rows):
                        masks[index] = row
                fields["text"], fields["text_mask"] = padded(values, masks)
        return fields

    @staticmethod
    def _given_mask(sample: Sample, tokens: torch.Tensor) -> torch.Tensor | None:
        """text_mask.npy of a precomputed text, None if it has none (every token real)."""
        if "text_mask.npy" not in sample:
            return None
        mask = stored_tensor(load_npy(sample["text_mask.npy"])).to(tokens.device).float()
        if mask.shape != tokens.shape[:1]:
            raise ValueError(
                f"sample {key_of(sample)}: text_mask.npy is {tuple(mask.shape)} but text.npy has {tokens.shape[0]} "
                "tokens; write one mask value per token"
            )
        return mask

    def _loss_mask(self, samples, size, latents: torch.Tensor) -> torch.Tensor | None:
        """mask.npy, else curation's defect masks (when the objective names one), on the latent grid."""
        mask = stack(samples, "mask.npy")
        field = f"{self.mask_from}.mask.png"
        if mask is None and self.mask_from is not None and any(field in sample for sample in samples):
            mask = torch.stack([defect_keep(s, field, size) if field in s else torch.ones(size) for s in samples])
        if mask is None:
            return None
        grid = tuple(latents.shape[2:])
        if mask.ndim == latents.ndim:
            mask = mask.squeeze(1)
        if mask.ndim == len(grid):  # a per-image mask in a video stage: the same on every latent frame
            mask = mask.unsqueeze(1).expand(-1, grid[0], *mask.shape[1:])
        return cell_mask(mask, grid).to(self.device)  # made on the host from the shard's mask


def padded(
    tokens: list[torch.Tensor], masks: list[torch.Tensor | None]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token sequences (T_i, D) zero-padded to the longest, and their mask: None when every sequence is full
    length and none came with a mask."""
    longest = max(t.shape[0] for t in tokens)
    device = tokens[0].device
    batch = torch.zeros(len(tokens), longest, tokens[0].shape[1], device=device)
    mask = torch.zeros(len(tokens), longest, device=device)
    for i, (sequence, given) in enumerate(zip(tokens, masks)):
        batch[i, : sequence.shape[0]] = sequence
        mask[i, : sequence.shape[0]] = 1 if given is None else given
    needed = any(m is not None for m in masks) or any(t.shape[0] != longest for t in tokens)
    return batch, mask if needed else None


def check_task(batch: Batch, data: DataInput) -> None:
    """Refuse a micro-batch whose samples do not fit its dataset's task: an edit (a dataset of triplets)
    carries reference-image latents (context.npy, or a source image), a generation micro-batch none."""
    edit = batch.cond.context_latents is not None
    if edit == (data.task == "edit"):
        return
    found = "reference images (a source image or context.npy)" if edit else "no reference image"
    needs = "each sample needs one" if data.task == "edit" else "a generation dataset holds none"
    raise ValueError(
        f"dataset {data.dataset!r} trains the {data.task} task but its micro-batch {list(batch.keys)[:3]} has "
        f"{found}; {needs}: curate the dataset's samples accordingly, or correct its unit (triplets: edit)"
    )
