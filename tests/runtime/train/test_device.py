"""Every tensor a training step touches lives on the engine's device: one step of every shipped spec's models at
smoke scale, on a device that refuses to mix with CPU tensors (strict_device.py), through the trainer's own
parts: BatchBuilder (precomputed members read from shards, and media encoded on the fly by the frozen text
encoders and VAE built on the device in the stage's precision), the stage's loss with its CPU-generator draws,
a frozen teacher or DPO reference (runtime.train.device.frozen), backward, noise-aware compute, EMA, and the
validation loss.

Per spec, one stage per (model, loss kind, images or videos); each runs two micro-batches, one from
precomputed members (bf16, unpadded text, as precompute_embeddings writes them) and one from media."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import write_mp4
from PIL import Image
from strict_device import DEVICE, StrictDevice, on_device

import specs
from compiler.scale import scaled
from compiler.schema.architecture import Cascade
from compiler.schema.schedule import AdversarialDistillation, GuidanceDistillation, PreferenceLoss, TimestepDistillation
from runtime.curation.ops.precompute import bf16_bits
from runtime.encoders import build_encoders
from runtime.objectives import ConditioningDropout, build_objective
from runtime.objectives.conditioning import text_input_widths
from runtime.train.batch import BatchBuilder
from runtime.train.device import frozen
from runtime.train.ema import EMA
from runtime.train.launch import step_generator
from runtime.train.losses import Denoise, DenoisingLoss, GuidanceDistillationLoss, LaddLoss, PreferenceDPOLoss
from runtime.train.protocol import load_factory
from runtime.train.trainer import embeds_guidance, image_geometry
from runtime.train.validation import Validator, validation_parts

MICRO_BATCH = 2
CAPTIONS = (b"a red cube on a table", b"two birds")


def stages_to_step(spec) -> list:
    """The first stage of each (model, loss kind, video or not): every code path the spec's schedule takes."""
    chosen = {}
    for stage in spec.schedule.stages:
        chosen.setdefault((stage.model, stage.loss and stage.loss.kind, stage.frames is not None), stage)
    return list(chosen.values())


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def stored(shape, rng) -> bytes:
    """A bf16 member as precompute_embeddings writes it."""
    return npy(bf16_bits(torch.from_numpy(rng.standard_normal(shape).astype(np.float32))))


def png(height: int, width: int, rng, channels: int = 3) -> bytes:
    pixels = rng.integers(0, 255, (height, width, channels) if channels > 1 else (height, width), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


class Samples:
    """Shard samples for one stage: precomputed members, or media to encode."""

    def __init__(self, spec, stage, builder: BatchBuilder, scratch, rng):
        self.spec, self.stage, self.builder, self.scratch, self.rng = spec, stage, builder, scratch, rng
        self.size = (stage.resolutions[0].height, stage.resolutions[0].width)
        self.shape = builder._latent_shape(stage.frames, self.size)
        self.edit = getattr(spec.architecture.backbone, "context_images", None) == "sequence"
        self.preference = isinstance(stage.loss, PreferenceLoss)
        self.mask_from = spec.objective.masked_loss and spec.objective.masked_loss.mask_from

    def precomputed(self) -> list[dict]:
        samples = []
        for index in range(MICRO_BATCH):
            sample = {"__key__": f"pre{index}".encode(), "latents.npy": stored(self.shape, self.rng)}
            for slot, dim in text_input_widths(self.spec.architecture).items():
                if slot == "pooled":
                    sample["pooled.npy"] = stored((dim,), self.rng)
                elif slot == "glyph":
                    sample["glyph.npy"] = stored((3, dim), self.rng)
                else:
                    length = 2 + 3 * index  # unpadded: each sample its own length
                    sample["text.npy"] = stored((length, dim), self.rng)
                    sample["text_mask.npy"] = npy(np.ones(length, dtype=bool))
            if self.edit:
                sample["context.npy"] = stored(self.shape, self.rng)
            if self.preference:
                sample["rejected.npy"] = stored(self.shape, self.rng)
            if self.builder.lowres_side:
                sample["lowres.npy"] = npy(self.rng.uniform(-1, 1, (3, *(self.builder.lowres_side,) * 2)).astype(np.float32))
            if self.mask_from:
                sample["mask.npy"] = npy((self.rng.random(self.size) > 0.2).astype(np.float32))
            samples.append(sample)
        return samples

    def media(self) -> list[dict]:
        samples = []
        for index in range(MICRO_BATCH):
            key = f"raw{index}"
            sample = {"__key__": key.encode(), "txt": CAPTIONS[index]}
            sample.update(self._picture("", key))
            if self.edit:
                sample["source.png"] = png(*self.size, self.rng)
            if self.preference:
                sample.update(self._picture("rejected.", key + "r"))
            if self.mask_from:
                sample[f"{self.mask_from}.mask.png"] = png(*self.size, self.rng, channels=1)
            samples.append(sample)
        return samples

    def _picture(self, prefix: str, name: str) -> dict:
        if self.stage.frames is None:
            return {f"{prefix}png": png(*self.size, self.rng)}
        levels = [int(level) for level in self.rng.integers(0, 255, self.stage.frames)]
        clip = write_mp4(self.scratch / f"{name}.mp4", levels, self.stage.fps, self.size)
        return {f"{prefix}mp4": clip}


def stage_loss(spec, stage, factory, dtype, objective, probe):
    """The stage's loss as Run._stage_loss builds it, its frozen model built on the device."""
    config = spec.objective.cfg_dropout
    dropout = None if config is None else ConditioningDropout(config, spec.architecture)
    loss = stage.loss
    cascade_augment = isinstance(spec.architecture.backbone, Cascade) and any(
        unet.name == stage.model and unet.noise_conditioning_augmentation for unet in spec.architecture.backbone.stages
    )
    if loss is None:
        return DenoisingLoss(dropout, augment_lowres=cascade_augment)
    other = Denoise(frozen(factory(spec.architecture, stage.model), DEVICE, dtype), dtype,
                    embeds_guidance(spec.architecture))
    if isinstance(loss, PreferenceLoss):
        return PreferenceDPOLoss(dropout, other, loss)
    if isinstance(loss, GuidanceDistillation):
        return GuidanceDistillationLoss(dropout, other, loss)
    assert isinstance(loss, (AdversarialDistillation, TimestepDistillation)), loss
    return LaddLoss(dropout, other, loss, objective, probe, lr=1e-4)


def tensors_of(batch) -> dict[str, torch.Tensor]:
    found = {"latents": batch.latents, "mask": batch.mask, "rejected": batch.rejected, **batch.cond.kwargs()}
    return {name: value for name, value in found.items() if value is not None}


def step_on_the_device(spec, stage, scratch) -> list[str]:
    """One step of `stage` (two micro-batches) on the strict device; returns what it checked."""
    dtype = torch.bfloat16 if stage.precision == "bf16" else torch.float32
    architecture = spec.architecture
    cascade = isinstance(architecture.backbone, Cascade)
    unet = next((u for u in architecture.backbone.stages if u.name == stage.model), None) if cascade else None
    factory = load_factory()
    rng = np.random.default_rng(0)
    checked = []
    with StrictDevice():
        torch.manual_seed(0)
        model = factory(architecture, stage.model).to(device=DEVICE, dtype=dtype)  # what DeepSpeed does
        builder = BatchBuilder(
            architecture,
            spec.objective.masked_loss and spec.objective.masked_loss.mask_from,
            lambda: build_encoders(architecture, "smoke", None, DEVICE, dtype),  # as Run._encoder
            lowres_side=unet and unet.input_resolution,
            frames=stage.frames,
            fps=stage.fps,
            device=DEVICE,
        )
        samples = Samples(spec, stage, builder, scratch, rng)
        batches = [builder(samples.precomputed(), samples.size), builder(samples.media(), samples.size)]
        tokens, pixels = image_geometry(SimpleNamespace(architecture=architecture), batches[0].latents)
        objective = build_objective(spec.objective, stage, tokens, pixels=pixels, time_scale=float(model.time_scale))
        loss = stage_loss(spec, stage, factory, dtype, objective, batches[0])
        student = Denoise(model, dtype, embeds_guidance(architecture))
        ema = EMA(model, 0.99)
        for micro, batch in enumerate(batches):
            out = loss(student, objective, batch, step_generator(0, 1, 0, micro))  # a CPU input raises here
            off = [name for name, value in tensors_of(batch).items() if not on_device(value)]
            assert not off, f"batch {micro}: {off} not on the device"
            assert on_device(out.loss) and on_device(out.per_sample), micro
            out.loss.backward()
            loss.after_step()
            objective.observe(out.t, out.per_sample)
            checked.append(f"{stage.name}[{micro}]")
        ema.update()
        augment = unet is not None and unet.noise_conditioning_augmentation
        data = SimpleNamespace(shards=[[]], first_samples=lambda count, dataset: samples.media())  # one dataset
        parts = validation_parts(data, builder, samples.size, MICRO_BATCH, 0, 0, 1, 0.1 if augment else None)
        losses = Validator(parts, ["media"], lambda batch: objective, 2)(student)
        assert losses["val_loss"] >= 0, losses
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(on_device(grad) for grad in grads)
        assert all(on_device(shadow) for shadow in ema.shadow)
    return checked


@pytest.mark.parametrize("name", list(specs.SHIPPED))
def test_a_training_step_keeps_every_tensor_on_the_device(name, tmp_path):
    spec = scaled(specs.load(name), "smoke")
    checked = [part for stage in stages_to_step(spec) for part in step_on_the_device(spec, stage, tmp_path)]
    assert len(checked) >= 2


def test_the_strict_device_refuses_a_cpu_tensor():
    """The check above can fail: a CPU batch meets the device's weights."""
    from strict_device import MixedDevices

    with StrictDevice():
        layer = torch.nn.Linear(4, 2).to(DEVICE)
        with pytest.raises(MixedDevices, match="tensor on device cpu"):
            layer(torch.ones(3, 4))
        assert on_device(layer(torch.ones(3, 4).to(DEVICE)))
