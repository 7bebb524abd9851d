"""Synthetic captions from an instruction-following VLM through transformers (`AutoProcessor` +
`AutoModelForImageTextToText`: Qwen2-VL, Qwen2.5-VL, LLaVA, ...), prompted through the processor's chat
template with one image part per frame.

Models released with their own modelling code (config.json `auto_map`, e.g. THUDM/cogvlm-chat-hf and
cogvlm2-llama3-chat-19B) run only when the op sets trust_remote_code (the code is arbitrary Python from the
folder). They load through AutoModelForCausalLM and are prompted the way their model card does, through
the model's `build_conversation_input_ids(tokenizer, query=..., images=[image])`, one image per request
(CogVLM takes one; a video shows its middle sampled frame).

Prompts are per style (PROMPTS) with a language instruction; `TEMPLATE_VERSION` is part of the score id,
so editing a prompt regenerates the captions instead of serving stale ones from the cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.curation.modelzoo.weights import Located, device, from_pretrained_strict, inference_dtype, quiet_transformers

TEMPLATE_VERSION = "1"
VLM_FOLDER = (
    "an instruction-following VLM folder for transformers AutoModelForImageTextToText (config.json, weights, "
    "processor and tokenizer files with a chat template)"
)
PROMPTS: dict[str, str] = {
    "short": "Describe this {media} in one short sentence.",
    "long": "Describe this {media} in detail: the subjects and what they do, the setting, the composition, the "
            "lighting and the style.",
    "dense": "Describe this {media} densely: every visible object with its position, colour and count, any "
             "visible text quoted exactly, the background, the camera view{motion}.",
    "multi_perspective": "Describe this {media} from several perspectives, one sentence each: the subject, the "
                         "scene, the camera (shot size, angle), the lighting and the artistic style.",
    "coarse": "Name the main subject and the setting of this {media} in a few words.",
    "fused": "Write one caption for this {media} that combines a precise description of its content with any "
             "visible text, quoted exactly.",
    "aesthetic": "Describe the aesthetic qualities of this {media}: composition, colour, lighting, mood and style.",
}
LANGUAGES = {
    "en": "English", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "de": "German", "fr": "French",
    "es": "Spanish", "it": "Italian", "pt": "Portuguese", "ru": "Russian", "ar": "Arabic", "hi": "Hindi",
}
MAX_FRAMES = 8  # frames of a video shown to the VLM, evenly subsampled from those at `fps`
STAND_IN_SIDE = 32
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


@dataclass(frozen=True)
class Request:
    """One caption to generate: the frames, the style and language, and whether to sample (a repeat)."""

    frames: tuple[np.ndarray, ...]
    style: str
    language: str
    sample: bool
    video: bool

    def prompt(self) -> str:
        text = PROMPTS[self.style].format(media="video" if self.video else "image",
                                          motion=" and how things move" if self.video else "")
        return f"{text} Answer in {LANGUAGES[self.language]}."


def caption_plan(key: str, styles: list[str], languages: list[str], count: int) -> list[tuple[str, str, bool]]:
    """(style, language, sample) of each of `count` captions of sample `key`.

    Styles cycle in order, so each style appears once before any repeats; languages cycle from an offset
    given by a hash of the key, so a dataset gets every language equally often even at one caption per
    sample. A repeated (style, language) pair is sampled rather than decoded greedily, to differ.
    """
    offset = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(languages)
    plan, seen = [], set()
    for i in range(count):
        pair = (styles[i % len(styles)], languages[(offset + i) % len(languages)])
        plan.append((*pair, pair in seen))
        seen.add(pair)
    return plan


def has_chat_template(path: Path) -> bool:
    """Whether a VLM folder ships a chat template (its own file, or inside the tokenizer/processor config)."""
    if any((path / name).is_file() for name in CHAT_TEMPLATE_FILES):
        return True
    for name in ("tokenizer_config.json", "processor_config.json"):
        file = path / name
        if file.is_file() and json.loads(file.read_text()).get("chat_template"):
            return True
    return False


def remote_code(path: Path) -> bool:
    """Whether a model folder ships its own modelling code (config.json auto_map)."""
    return bool(json.loads((path / "config.json").read_text()).get("auto_map"))


class RemoteCodeCaptioner:
    """A VLM with its own modelling code and CogVLM's prompting API (`build_conversation_input_ids`)."""

    def __init__(self, model, tokenizer) -> None:
        self.device = device()
        self.dtype = inference_dtype(self.device)
        self.model = model.to(self.device, self.dtype).eval()
        self.tokenizer = tokenizer
        if not hasattr(model, "build_conversation_input_ids"):
            raise ValueError(
                f"{type(model).__name__} has no build_conversation_input_ids: remote-code captioning follows "
                "CogVLM's API; use a folder that transformers' AutoModelForImageTextToText loads instead"
            )

    @classmethod
    def load(cls, located: Located) -> RemoteCodeCaptioner:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_transformers()
        tokenizer = AutoTokenizer.from_pretrained(located.path, local_files_only=True, trust_remote_code=True)
        model = AutoModelForCausalLM.from_pretrained(located.path, local_files_only=True, trust_remote_code=True)
        return cls(model, tokenizer)

    def generate(self, requests: list[Request], max_new_tokens: int, seed: int) -> list[str]:
        import torch
        from PIL import Image

        answers = []
        for request in requests:
            image = Image.fromarray(request.frames[len(request.frames) // 2])
            built = self.model.build_conversation_input_ids(self.tokenizer, query=request.prompt(), history=[],
                                                            images=[image])
            inputs = {
                "input_ids": built["input_ids"][None].to(self.device),
                "token_type_ids": built["token_type_ids"][None].to(self.device),
                "attention_mask": built["attention_mask"][None].to(self.device),
                "images": [[built["images"][0].to(self.device, self.dtype)]],
            }
            with torch.random.fork_rng(devices=[]), torch.inference_mode():
                torch.manual_seed(seed)
                output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=request.sample)
            answers.append(self.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
        return answers


class Captioner:
    """A VLM and its processor; `generate` answers a batch of requests."""

    def __init__(self, model, processor) -> None:
        self.device = device()
        self.dtype = inference_dtype(self.device)
        self.model = model.to(self.device, self.dtype).eval()
        self.processor = processor
        processor.tokenizer.padding_side = "left"  # decoder-only generation continues from the right end

    @classmethod
    def load(cls, located: Located) -> Captioner:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if located.stand_in:
            return cls(*tiny_vlm(located.seed))
        quiet_transformers()
        return cls(
            from_pretrained_strict(AutoModelForImageTextToText, located.path),
            AutoProcessor.from_pretrained(located.path, local_files_only=True),
        )

    def generate(self, requests: list[Request], max_new_tokens: int, seed: int) -> list[str]:
        """Greedy requests in one batch, sampled ones in another (generate takes one decoding mode)."""
        import torch

        answers: dict[int, str] = {}
        for sample in (False, True):
            indices = [i for i, r in enumerate(requests) if r.sample == sample]
            if not indices:
                continue
            texts = [self.processor.apply_chat_template(
                [{"role": "user", "content": [*({"type": "image"} for _ in requests[i].frames),
                                              {"type": "text", "text": requests[i].prompt()}]}],
                add_generation_prompt=True) for i in indices]
            images = [frame for i in indices for frame in requests[i].frames]
            inputs = self.processor(images=images, text=texts, return_tensors="pt", padding=True).to(self.device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            with torch.random.fork_rng(devices=[]), torch.inference_mode():
                torch.manual_seed(seed)
                output = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=sample)
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            for i, text in zip(indices, self.processor.batch_decode(new_tokens, skip_special_tokens=True)):
                answers[i] = text.strip()
        return [answers[i] for i in range(len(requests))]


STAND_IN_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def tiny_vlm(seed: int):
    """A randomly initialised LLaVA (2-layer CLIP vision tower, 2-layer Llama) with a byte tokenizer and a
    chat template, saved and loaded like a released VLM."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from runtime.curation.modelzoo.tokenizer import IMAGE, byte_tokenizer

    tokenizer = byte_tokenizer(end_of_text=False)
    image_token = tokenizer.convert_tokens_to_ids(IMAGE)
    layers = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = LlavaConfig(
        vision_config=dict(layers, model_type="clip_vision_model", image_size=STAND_IN_SIDE, patch_size=8),
        text_config=dict(layers, model_type="llama", vocab_size=len(tokenizer), num_key_value_heads=1,
                         max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None),
        image_token_index=image_token, vision_feature_layer=-1, vision_feature_select_strategy="default",
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": STAND_IN_SIDE},
                                           crop_size={"height": STAND_IN_SIDE, "width": STAND_IN_SIDE}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default", image_token=IMAGE,
        num_additional_image_tokens=1, chat_template=STAND_IN_CHAT_TEMPLATE,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, processor
