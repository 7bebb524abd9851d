"""Mappers that write model outputs into the record: VLM recaptioning and precomputed conditioning.

recaption adds synthetic captions beside the original (KEY.captions.json `synthetic`); the generated
captions are its cached score, so re-running with the same model, styles and prompts costs nothing.
precompute_embeddings writes frozen text-encoder outputs and VAE latent moments as .npz members.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from runtime.curation.api import (
    FULL,
    KEEP,
    MapOp,
    OpConfigError,
    Resources,
    Score,
    Verdict,
)
from runtime.curation.modelzoo.captioner import (
    LANGUAGES,
    MAX_FRAMES,
    TEMPLATE_VERSION,
    VLM_FOLDER,
    has_chat_template,
)
from runtime.curation.modelzoo.conditioning import (
    TEXT_ENCODER_FOLDER,
    VAE_FOLDER,
    VAE_ID,
    VAE_REQUIRED,
)
from runtime.curation.modelzoo.weights import ModelBacked, model_resources
from runtime.curation.records import Record
from runtime.curation.registry import register

VLM_SIDE = 448  # Qwen2-VL-class processors tile 448 px inputs; larger decodes cost time, not caption quality
STILL_FRAMES = 3  # frames of a video shown when the spec gives no fps
MIX_TOLERANCE = 1e-6


@register("recaption")
class VlmRecaption(ModelBacked, MapOp):
    """Synthetic captions from the VLM at MODEL_DIR/<model>, prompted per style and language.

    Each sample gets `captions_per_sample` captions, planned by `caption_plan` (styles in order, languages
    balanced over the dataset). Entries are {"text", "model", "style", "language", "op"}; a re-run replaces
    this op's earlier entries and keeps other ops'. keep_original False removes the original caption.
    `mix` (caption source -> probability at training time: "original", "synthetic" or a style) is written
    to KEY.captions.json as "mix". Videos show frames at `fps` (at most 8), else first, middle and last.
    """

    stateful = True
    batch_size = 8

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        unknown = [code for code in spec.languages if code not in LANGUAGES]
        if unknown:
            raise OpConfigError(f"{spec.name}.languages has {unknown}; prompts exist for {', '.join(LANGUAGES)}")
        self.check_mix()
        self.weights = self.locate(spec.model, VLM_FOLDER, (("config.json",),), thresholds=False)
        if not self.weights.stand_in and not has_chat_template(self.weights.path):
            raise OpConfigError(
                f"{spec.name}.model {spec.model!r} ({self.weights.path}) has no chat template: styles and languages "
                "are instructions, so recaption needs an instruction-following VLM (e.g. Qwen2-VL-Instruct), not a "
                "plain captioner"
            )

    def check_mix(self) -> None:
        spec = self.spec
        if not spec.mix:
            return
        allowed = {"original", "synthetic", *spec.styles}
        if unknown := sorted(set(spec.mix) - allowed):
            raise OpConfigError(f"{spec.name}.mix has sources {unknown}; use {sorted(allowed)}")
        if any(p < 0 for p in spec.mix.values()) or not math.isclose(sum(spec.mix.values()), 1.0, abs_tol=MIX_TOLERANCE):
            raise OpConfigError(f"{spec.name}.mix {spec.mix} must be probabilities summing to 1 (sum {sum(spec.mix.values()):g})")
        if spec.mix.get("original", 0) > 0 and not spec.keep_original:
            raise OpConfigError(
                f"{spec.name}.mix samples the original caption with p={spec.mix['original']:g} but keep_original is "
                "False; set keep_original = True or remove 'original' from mix"
            )

    @cached_property
    def model(self):
        from runtime.curation.modelzoo.captioner import Captioner

        return Captioner.load(self.weights)

    def decode_side(self) -> int | None:
        return VLM_SIDE

    def resources(self) -> Resources:
        return model_resources(24.0)

    def scoring_params(self) -> dict:
        spec = self.spec
        return {"model": spec.model, "weights": self.weights.fingerprint(), "styles": spec.styles,
                "languages": spec.languages, "captions_per_sample": spec.captions_per_sample,
                "max_new_tokens": spec.max_new_tokens, "fps": spec.fps, "prompts": TEMPLATE_VERSION}

    def frames(self, record: Record) -> tuple[np.ndarray, ...]:
        if not record.is_video:
            return (record.pixels.image(VLM_SIDE),)
        frames = record.pixels.frames(VLM_SIDE, self.spec.fps) if self.spec.fps else record.pixels.keyframes(VLM_SIDE, STILL_FRAMES)
        if len(frames) > MAX_FRAMES:
            frames = [frames[i] for i in np.linspace(0, len(frames) - 1, MAX_FRAMES).round().astype(int)]
        return tuple(frames)

    def score(self, records: list[Record]) -> list[Score | None]:
        from runtime.curation.modelzoo.captioner import Request, caption_plan

        spec = self.spec
        requests, owners = [], []
        for record in records:
            frames = self.frames(record)
            for style, language, sample in caption_plan(record.key, spec.styles, spec.languages, spec.captions_per_sample):
                requests.append(Request(frames, style, language, sample, record.is_video))
                owners.append(record.key)
        texts = self.model.generate(requests, spec.max_new_tokens, seed=self.weights.seed)
        captions: dict[str, list[dict]] = {r.key: [] for r in records}
        for key, request, text in zip(owners, requests, texts):
            captions[key].append({"text": text, "style": request.style, "language": request.language})
        extra = {"stand_in": self.weights.model_id} if self.weights.stand_in else {}
        return [{"captions": captions[r.key], **extra} for r in records]

    def decide(self, record: Record, score: Score | None) -> Verdict:
        model = self.spec.model + (" (random stand-in)" if self.weights.stand_in else "")
        others = [c for c in record.captions.get("synthetic") or [] if c.get("op") != self.spec.name]
        mine = [{**caption, "model": model, "op": self.spec.name} for caption in score["captions"]]
        record.captions["synthetic"] = others + mine
        if not self.spec.keep_original:
            record.captions["original"] = None
        if self.spec.mix:
            record.captions["mix"] = dict(self.spec.mix)
        return KEEP


@register("precompute_embeddings")
class PrecomputeConditioning(ModelBacked, MapOp):
    """FLUX-style frozen conditioning written into the shards.

    For each text encoder NAME (MODEL_DIR/NAME): KEY.NAME.text.npz with tokens [N, L, D] float16 (zero on
    padding), mask [N, L] and, for CLIP, pooled [N, D], over the record's N captions (original first,
    then the synthetic ones, in KEY.captions.json order; `sources` names each). With vae_latents: KEY.latents.npz
    holding the posterior mean and logvar [C, h, w] float16 of MODEL_DIR/vae (diffusers AutoencoderKL) and
    the centre crop. Records without a caption are dropped when text encoders are asked for.

    The op names encoders, not model ids: the architecture that maps them (compiler/schema/architecture.py
    TextEncoder.model, LatentSpace.vae) does not reach curation ops, so each NAME is its own folder.
    Video latents need the architecture's video VAE and are not implemented.
    """

    stateful = True
    batch_size = 4

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        if not spec.text_encoders and not spec.vae_latents:
            raise OpConfigError(f"{spec.name}: text_encoders is empty and vae_latents is False: nothing to precompute")
        self.encoders = {name: self.locate(name, TEXT_ENCODER_FOLDER, (("config.json",),), thresholds=False) for name in spec.text_encoders}
        self.vae = self.locate(VAE_ID, VAE_FOLDER, VAE_REQUIRED, thresholds=False) if spec.vae_latents else None

    @cached_property
    def text_models(self):
        from runtime.curation.modelzoo.conditioning import FrozenTextEncoder

        return {name: FrozenTextEncoder.load(located) for name, located in self.encoders.items()}

    @cached_property
    def latent_model(self):
        from runtime.curation.modelzoo.conditioning import LatentEncoder

        return LatentEncoder.load(self.vae)

    def decode_side(self) -> int | None:
        return FULL if self.spec.vae_latents else None  # latents are encoded at the stored size

    def resources(self) -> Resources:
        return model_resources(24.0)

    def decide(self, record: Record, score: Score | None) -> Verdict:
        from runtime.curation.modelzoo.conditioning import npz_bytes

        if self.encoders:
            texts, sources = captions_in_order(record)
            if not texts:
                return Verdict.drop("no caption to encode", f"text encoders {', '.join(self.encoders)} need a caption")
            for name, encoder in self.text_models.items():
                arrays = encoder.encode(texts)
                record.columns[f"{name}.text.npz"] = npz_bytes({**arrays, "sources": np.array(sources)})
        if self.vae is not None:
            if record.is_video:
                raise NotImplementedError(
                    f"{self.spec.name}: video latents need the architecture's video VAE (runtime/encoders/vae_wan.py), "
                    "which curation ops cannot name yet; set vae_latents = False for video pipelines"
                )
            record.columns["latents.npz"] = npz_bytes(self.latent_model.encode(record.pixels.image(FULL)))
        stand_ins = [located.model_id for located in [*self.encoders.values(), self.vae] if located and located.stand_in]
        if stand_ins:
            record.metadata["precomputed_with_stand_ins"] = stand_ins
        return KEEP


def captions_in_order(record: Record) -> tuple[list[str], list[str]]:
    """The record's caption texts (original first, then synthetic) and where each comes from."""
    texts, sources = [], []
    if record.captions.get("original"):
        texts.append(str(record.captions["original"]))
        sources.append("original")
    for caption in record.captions.get("synthetic") or []:
        if caption.get("text"):
            texts.append(str(caption["text"]))
            sources.append(f"synthetic:{caption.get('style', '')}:{caption.get('language', '')}")
    return texts, sources
