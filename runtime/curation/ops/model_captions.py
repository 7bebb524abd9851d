"""Mappers that write model outputs into the record: VLM recaptioning and precomputed conditioning.

recaption adds synthetic captions beside the original (KEY.captions.json `synthetic`); the generated
captions are its cached score, so re-running with the same model, styles and prompts costs nothing.
precompute_embeddings writes the trainer's precomputed members (latents.npy, text.npy, pooled.npy, ...).
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from runtime.curation.api import (
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
    remote_code,
)
from runtime.curation.modelzoo.weights import ModelBacked, model_resources
from runtime.curation.ops.precompute import TrainerMembers
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
        self.remote = not self.weights.stand_in and remote_code(self.weights.path)
        if self.remote and not spec.trust_remote_code:
            raise OpConfigError(
                f"{spec.name}.model {spec.model!r} ({self.weights.path}) ships its own modelling code (config.json "
                f"auto_map, as CogVLM does), which runs arbitrary Python from that folder; set "
                f"{spec.name}.trust_remote_code = True if you trust it, or use a model transformers loads natively"
            )
        if not self.remote and not self.weights.stand_in and not has_chat_template(self.weights.path):
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
        from runtime.curation.modelzoo.captioner import Captioner, RemoteCodeCaptioner

        return RemoteCodeCaptioner.load(self.weights) if self.remote else Captioner.load(self.weights)

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
class PrecomputeConditioning(MapOp):
    """The trainer's precomputed members written into the shards (runtime/curation/ops/precompute.py): latents.npy
    (and context.npy for edit triplets) with vae_latents, and text.npy / text_mask.npy / pooled.npy / glyph.npy
    of the `text_encoders` named, with the architecture's encoders as the trainer builds them.

    It reads the run's context: `ctx.architecture`, the spec's architecture at the run's scale (the trainer's
    stage.yaml holds the same), `ctx.encode_size`, the (height, width) of the first training stage reading
    the pipeline's output (None: each image's stored size, cropped down to a multiple of the VAE's compression),
    and `ctx.encode_clip`, that stage's (frames, fps) when it trains videos (video latents are of that clip).
    A spec or a compiled bundle's pipeline.json supplies both; a bare pipeline or op list does not, and then
    the op refuses at full scale and, at smoke scale, writes nothing and says so in the run's notes (the
    trainer then encodes on the fly). Records without a caption are dropped when text encoders are asked for.
    """

    stateful = True
    batch_size = 4
    reads_architecture = True

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        if not spec.text_encoders and not spec.vae_latents:
            raise OpConfigError(f"{spec.name}: text_encoders is empty and vae_latents is False: nothing to precompute")
        self.members = None
        architecture = ctx.architecture if ctx is not None else None
        if architecture is None:
            if ctx is None or ctx.scale != "smoke":
                raise OpConfigError(
                    f"op {spec.name!r} (precompute_embeddings) needs the spec's architecture (its text encoders and "
                    "latent space) to encode as the trainer does, and curation was given none (a bare pipeline or "
                    "op list); curate the spec (genspec curate SPEC) or a bundle compiled by this genspec (its "
                    f"pipeline.json holds the architecture), run at --scale smoke, or remove {spec.name!r}"
                )
            return
        known = [encoder.name for encoder in architecture.text_encoders]
        if unknown := [name for name in spec.text_encoders if name not in known]:
            raise OpConfigError(f"{spec.name}.text_encoders has {unknown}, not in architecture.text_encoders {known}")
        self.members = TrainerMembers(architecture, ctx.scale, ctx.model_dir, list(spec.text_encoders),
                                      spec.vae_latents, ctx.encode_size, ctx.encode_clip)
        if missing := self.members.missing_weights():
            raise OpConfigError(f"op {spec.name!r} (precompute_embeddings): " + "; ".join(missing))

    def notes(self) -> list[str]:
        """Says when nothing is precomputed, the size latents are encoded at, and that smoke-scale encoders may
        be random stand-ins."""
        if self.members is None:
            return [(f"{self.name}: the spec's architecture did not reach curation (a bare pipeline or op list), "
                     "so nothing was precomputed; the trainer encodes latents and text on the fly")]
        notes = []
        if self.spec.vae_latents:
            size = self.members.resolution
            notes.append(
                f"{self.name}: latents encoded at {size[0]}x{size[1]} px, the first training stage reading the "
                "pipeline's output; stages at other sizes encode from the image" if size is not None else
                f"{self.name}: no training stage reads the pipeline's output, so latents are encoded at each "
                "image's stored size (cropped to a multiple of the VAE's compression)")
        if self.members.scale == "smoke":
            notes.append(f"{self.name}: at smoke scale a text encoder or VAE missing from the model directory is a "
                         "tiny RANDOMLY INITIALISED stand-in (seeded by model id: the one the trainer builds at smoke "
                         "scale)")
        return notes

    def resources(self) -> Resources:
        return model_resources(24.0)

    def decide(self, record: Record, score: Score | None) -> Verdict:
        if self.members is None:
            return KEEP
        captions = record.captions
        if self.spec.text_encoders and not (captions.get("original") or any(c.get("text") for c in captions.get("synthetic") or [])):
            return Verdict.drop("no caption to encode", f"text encoders {', '.join(self.spec.text_encoders)} need a caption")
        record.columns.update(self.members.members(record))
        return KEEP
