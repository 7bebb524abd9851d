"""Text encoders through transformers: T5 / UMT5 / ByT5 encoders, CLIP text, BERT-family sentence encoders and
decoder LLMs (Qwen) read at their last hidden state.

The loader family comes from the model id (`google/umt5-xxl` -> umt5) or from models.yaml; the class per
family is the one the reference pipelines use (diffusers FluxPipeline: CLIPTextModel + T5EncoderModel;
WanPipeline: UMT5EncoderModel; QwenImagePipeline: Qwen2.5-VL's last hidden state).

Every encoder tokenizes to exactly `max_tokens` (padded, truncated) and returns a `TextEmbedding`:
tokens [B, L, dim] with padded positions zeroed (as WanPipeline does), mask [B, L] (True on real tokens),
and pooled [B, dim] for families with a pooled output (CLIP's pooler_output; BERT's masked mean, the
sentence-transformers pooling of all-MiniLM-L6-v2), else None. The encoder runs with the attention mask;
note that FluxPipeline runs T5 and CLIP without one, so FLUX's padded-token embeddings differ from ours.
Prompts are encoded as given: Qwen-Image's prompt template (a system prompt whose tokens QwenImagePipeline
drops after encoding) is not applied.

At smoke scale a missing model becomes a tiny randomly initialised one of the same class, width = the
spec's dim, with transformers' ByT5Tokenizer (byte-level: it needs no vocabulary file), and says so in
its report line.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch

from runtime.encoders.model_directory import (
    MissingWeightsError,
    ModelDirectory,
    ModelEntry,
)

if TYPE_CHECKING:
    from compiler.schema.architecture import TextEncoder

TINY_LAYERS = 2
TRANSFORMERS_FOLDER = "a transformers folder (config.json, weights, tokenizer files)"


@dataclass(frozen=True)
class Family:
    """How one family of text encoders is built, loaded and pooled."""

    model_class: str  # the transformers class; AutoModel picks it from config.json
    pooling: str | None  # "pooler_output", "mean" or None (no pooled vector)
    tiny_config: str  # the transformers config class of the smoke stand-in


FAMILIES: dict[str, Family] = {
    "t5": Family("T5EncoderModel", None, "T5Config"),
    "byt5": Family("T5EncoderModel", None, "T5Config"),
    "umt5": Family("UMT5EncoderModel", None, "UMT5Config"),
    "clip": Family("CLIPTextModel", "pooler_output", "CLIPTextConfig"),
    "bert": Family("AutoModel", "mean", "BertConfig"),
    "qwen": Family("AutoModel", None, "Qwen2Config"),
    "generic": Family("AutoModel", None, "Qwen2Config"),  # smoke stand-in: a decoder LLM, like qwen
}

# Substrings of a lower-cased model id, checked in order: umt5 and byt5 before t5.
ID_PATTERNS: tuple[tuple[str, str], ...] = (
    ("umt5", "umt5"),
    ("byt5", "byt5"),
    ("t5", "t5"),
    ("clip", "clip"),
    ("qwen", "qwen"),
    ("minilm", "bert"),
    ("sentence-transformers", "bert"),
    ("bert", "bert"),
)


class TextEmbedding(NamedTuple):
    """One encoder's output for a batch of prompts."""

    tokens: torch.Tensor  # [B, L, dim], zero where mask is False
    mask: torch.Tensor  # [B, L] bool
    pooled: torch.Tensor | None  # [B, dim]


def family_of(model_id: str, field: str, declared: str | None = None) -> str:
    """The loader family of `model_id`: `declared` (from models.yaml) if given, else matched on the id."""
    if declared is not None:
        if declared not in FAMILIES:
            raise ValueError(f"{field}: models.yaml gives {model_id!r} family {declared!r}; "
                             f"known families: {', '.join(FAMILIES)}")
        return declared
    lowered = model_id.lower()
    for pattern, family in ID_PATTERNS:
        if pattern in lowered:
            return family
    patterns = ", ".join(f"{family} (id contains {pattern!r})" for pattern, family in ID_PATTERNS)
    raise ValueError(
        f"{field} is {model_id!r}, which matches no text-encoder family: {patterns}. Name the family in "
        f"models.yaml, e.g. `{model_id}: {{path: <folder>, family: generic}}` (generic: AutoModel, last hidden state)"
    )


class TextEncoderModel(torch.nn.Module):
    """A tokenizer and a transformers encoder that turn prompts into a `TextEmbedding`."""

    def __init__(self, name: str, family: str, model: torch.nn.Module, tokenizer, max_tokens: int, trainable: bool):
        super().__init__()
        self.name, self.family, self.max_tokens, self.trainable = name, family, max_tokens, trainable
        self.model, self.tokenizer = model, tokenizer
        self.pooling = FAMILIES[family].pooling
        self.dim = model.get_input_embeddings().embedding_dim
        model.requires_grad_(trainable)
        model.train(trainable)

    def train(self, mode: bool = True) -> TextEncoderModel:
        """Switch modes; a frozen encoder stays in eval mode (no dropout) when a parent module starts training."""
        super().train(mode)
        self.model.train(mode and self.trainable)
        return self

    def forward(self, prompts: list[str]) -> TextEmbedding:
        """Encode `prompts`, padded and truncated to max_tokens."""
        if isinstance(prompts, str):
            raise TypeError(f"text encoder {self.name}: pass a list of prompts, got the string {prompts!r}")
        device = next(self.model.parameters()).device
        batch = self.tokenizer(list(prompts), padding="max_length", max_length=self.max_tokens, truncation=True,
                               return_tensors="pt")
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            out = self.model(input_ids=ids, attention_mask=mask)
            keep = mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            tokens = out.last_hidden_state * keep
            if self.pooling == "pooler_output":
                pooled = out.pooler_output
            elif self.pooling == "mean":
                pooled = tokens.sum(1) / keep.sum(1).clamp(min=1)
            else:
                pooled = None
        return TextEmbedding(tokens, mask.bool(), pooled)


def build_text_encoder(spec: TextEncoder, scale: str, directory: ModelDirectory, device: str | torch.device = "cpu",
                       dtype: torch.dtype = torch.float32) -> tuple[TextEncoderModel, str]:
    """The encoder `spec` asks for and one report line saying where it came from."""
    field = f"architecture.text_encoders[{spec.name}]"
    entry = directory.entry(spec.model)
    family = family_of(spec.model, f"{field}.model", entry.family)
    if spec.max_tokens is None:
        raise ValueError(f"{field}.max_tokens is unset; the encoder pads and truncates to it: set it "
                         f"(e.g. --set {field}.max_tokens=512)")
    if spec.role == "pooled" and FAMILIES[family].pooling is None:
        raise ValueError(f"{field}.role is 'pooled' but the {family} family has no pooled output; "
                         f"use a clip or bert encoder, or role 'tokens'")
    label = f"text encoder {spec.name} ({spec.model}, family {family})"
    if entry.path is not None and entry.path.is_dir() and not entry.present:
        raise MissingWeightsError(directory.missing_message(entry, field, TRANSFORMERS_FOLDER))
    if entry.present:
        width = _config_width(entry)
        if scale == "full" or width == spec.dim:
            encoder = _load(spec, family, entry, field, dtype)
            note = f"{label}: loaded from {entry.path}"
            return encoder.to(device), note
        why = f"the weights in {entry.path} are {width} wide, not the smoke dim {spec.dim}"
    elif scale == "full":
        raise MissingWeightsError(directory.missing_message(entry, field, TRANSFORMERS_FOLDER))
    else:
        why = f"no weights at {entry.path}" if entry.path else "no model directory was given"
    encoder = _tiny(spec, family, field)
    note = (f"{label}: RANDOMLY INITIALISED tiny {type(encoder.model).__name__} ({TINY_LAYERS} layers, width "
            f"{encoder.dim}) with a byte-level ByT5Tokenizer, because scale is smoke and {why}")
    return encoder.to(device=device, dtype=dtype), note


def _load(spec: TextEncoder, family: str, entry: ModelEntry, field: str, dtype: torch.dtype) -> TextEncoderModel:
    import transformers

    model_class = getattr(transformers, FAMILIES[family].model_class)
    model = model_class.from_pretrained(entry.path, local_files_only=True, dtype=dtype)
    tokenizer = _load_tokenizer(entry)
    encoder = TextEncoderModel(spec.name, family, model, tokenizer, spec.max_tokens, trainable=not spec.frozen)
    if spec.dim is not None and encoder.dim != spec.dim:
        raise ValueError(f"{field}.dim is {spec.dim} but {entry.path} holds a {encoder.dim}-wide model; "
                         f"set the dim to {encoder.dim} or point {spec.model!r} at the right weights")
    positions = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    if family in ("clip", "bert") and positions is not None and spec.max_tokens > positions:
        raise ValueError(f"{field}.max_tokens is {spec.max_tokens} but {entry.path} has {positions} learned "
                         f"positions; set max_tokens <= {positions}")
    return encoder


def _load_tokenizer(entry: ModelEntry):
    """The tokenizer class the folder's tokenizer_config.json names, else AutoTokenizer's choice.

    transformers 5's AutoTokenizer replaces the named class by the model type's default for some types
    (umt5 -> TokenizersBackend), which cannot load a folder without tokenizer.json (e.g. a ByT5 tokenizer).
    """
    import transformers

    config_file = entry.path / "tokenizer_config.json"
    named = json.loads(config_file.read_text()).get("tokenizer_class") if config_file.is_file() else None
    tokenizer_class = getattr(transformers, named, None) if named else None
    return (tokenizer_class or transformers.AutoTokenizer).from_pretrained(entry.path, local_files_only=True)


def _config_width(entry: ModelEntry) -> int:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(entry.path, local_files_only=True).get_text_config()
    return getattr(config, "d_model", None) or config.hidden_size


def _tiny(spec: TextEncoder, family: str, field: str) -> TextEncoderModel:
    """A 2-layer randomly initialised encoder of the family's class, `spec.dim` wide, with a byte tokenizer."""
    import transformers

    if spec.dim is None:
        raise ValueError(f"{field}.dim is unset; the smoke stand-in is built that wide: set it")
    tokenizer = transformers.ByT5Tokenizer()  # ids: pad 0, eos 1, unk 2, bytes from 3
    heads = 2 if spec.dim % 2 == 0 else 1
    # ByT5 has no BOS token; None keeps the configs' defaults (CLIP: 49406) from pointing past the vocabulary.
    sizes = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                 bos_token_id=None)
    if family in ("t5", "byt5", "umt5"):
        sizes.update(d_model=spec.dim, d_kv=spec.dim // heads, d_ff=2 * spec.dim, num_layers=TINY_LAYERS,
                     num_heads=heads, relative_attention_num_buckets=8, decoder_start_token_id=0,
                     feed_forward_proj="gated-gelu")  # T5 v1.1 and UMT5 use the gated GELU MLP
    else:
        sizes.update(hidden_size=spec.dim, intermediate_size=2 * spec.dim, num_hidden_layers=TINY_LAYERS,
                     num_attention_heads=heads, max_position_embeddings=spec.max_tokens)
        if family in ("qwen", "generic"):
            sizes["num_key_value_heads"] = 1
    config = getattr(transformers, FAMILIES[family].tiny_config)(**sizes)
    model_class = getattr(transformers, FAMILIES[family].model_class)
    # Seeded by the model id so every process (every data-parallel rank) builds the same stand-in.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(spec.model.encode()))
        model = model_class.from_config(config) if model_class is transformers.AutoModel else model_class(config)
    return TextEncoderModel(spec.name, family, model, tokenizer, spec.max_tokens, trainable=not spec.frozen)
