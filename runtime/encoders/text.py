"""Text encoders through transformers: T5 / UMT5 / ByT5 encoders, CLIP text, BERT-family sentence encoders and
decoder LLMs (Qwen-VL; any decoder-only causal LM) read at their last hidden state.

The loader family comes from models.yaml, else from an exact id in KNOWN_IDS, else from the model id
(`google/umt5-xxl` -> umt5); the class per family is the one the reference pipelines use (diffusers
FluxPipeline: CLIPTextModel + T5EncoderModel; WanPipeline: UMT5EncoderModel; QwenImagePipeline: Qwen2.5-VL's
last hidden state).

The llm family is a decoder-only LLM (Qwen2, Qwen3, Llama, ... *ForCausalLM checkpoints; AutoModel keeps the
decoder and drops the LM head). Its token embeddings are the last hidden state, as diffusers SanaPipeline
reads Gemma-2 (pipelines/sana/pipeline_sana.py: `text_encoder(...)[0]`) and QwenImagePipeline reads
Qwen2.5-VL; Lumina reads the penultimate layer instead (pipelines/lumina/pipeline_lumina.py:
`hidden_states[-2]`) and Seedream discloses neither. Prompts are padded on the right so that, under causal
attention, a prompt's states do not depend on how far it is padded.

Every encoder tokenizes to exactly `max_tokens` (padded, truncated) and returns a `TextEmbedding`:
tokens [B, L, dim] with padded positions zeroed (as WanPipeline does), mask [B, L] (True on real tokens),
and pooled [B, dim] for families with a pooled output (CLIP's pooler_output, or with `pooled_projection` its
CLIPTextModelWithProjection text_embeds as SD3 reads them; BERT's masked mean, the sentence-transformers
pooling of all-MiniLM-L6-v2), else None. Tokens are the last hidden state, or with `hidden_layer` -k an earlier
one (SD3's CLIPs: hidden_states[-2], diffusers pipeline_stable_diffusion_3.py _get_clip_prompt_embeds).
The encoder runs with the attention mask;
note that FluxPipeline and StableDiffusion3Pipeline run T5 and CLIP without one, so their padded-token
embeddings differ from ours.
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
    # Smoke stand-in: Qwen2, an open bilingual (Chinese/English) decoder-only LLM, the nearest public kind.
    "llm": Family("AutoModel", None, "Qwen2Config"),
    "generic": Family("AutoModel", None, "Qwen2Config"),  # smoke stand-in: a decoder LLM, like qwen
}

# Exact ids whose name does not say their architecture. Seedream 2.0-4.0's text encoder is ByteDance's own
# bilingual decoder-only LLM (specs/seedream.py: "the custom bilingual LLM is unpublished").
KNOWN_IDS: dict[str, str] = {"bytedance/bilingual-llm": "llm"}

# Ids whose weights were never released: what a user must do instead, said wherever the weights are looked for.
UNRELEASED: dict[str, str] = {
    "bytedance/bilingual-llm": (
        "Seedream's bilingual LLM is not public, so no folder of its weights exists: map "
        "'bytedance/bilingual-llm' in models.yaml to a substitute decoder-only LLM (a transformers folder of a "
        "*ForCausalLM checkpoint such as Qwen3-8B or Llama-3.1-8B, whose config.json hidden_size is 4096 like the "
        "spec's assumed dim, or set the encoder's dim to the substitute's width)"
    ),
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
    """The loader family of `model_id`: `declared` (from models.yaml), else its KNOWN_IDS entry, else its pattern."""
    if declared is not None:
        if declared not in FAMILIES:
            raise ValueError(f"{field}: models.yaml gives {model_id!r} family {declared!r}; "
                             f"known families: {', '.join(FAMILIES)}")
        return declared
    if model_id in KNOWN_IDS:
        return KNOWN_IDS[model_id]
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

    def __init__(self, name: str, family: str, model: torch.nn.Module, tokenizer, max_tokens: int, trainable: bool,
                 hidden_layer: int = -1, projected: bool = False):
        """hidden_layer: the hidden state the tokens are (-1: last_hidden_state, -2: hidden_states[-2]);
        projected: the pooled vector is CLIPTextModelWithProjection's text_embeds."""
        super().__init__()
        self.name, self.family, self.max_tokens, self.trainable = name, family, max_tokens, trainable
        self.model, self.tokenizer = model, tokenizer
        self.hidden_layer = hidden_layer
        self.pooling = "text_embeds" if projected else FAMILIES[family].pooling
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
            deeper = self.hidden_layer != -1
            out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=deeper)
            # hidden_states[-1] is CLIP's last layer before its final LayerNorm, so -1 reads last_hidden_state.
            states = out.hidden_states[self.hidden_layer] if deeper else out.last_hidden_state
            keep = mask.unsqueeze(-1).to(states.dtype)
            tokens = states * keep
            if self.pooling == "pooler_output":
                pooled = out.pooler_output
            elif self.pooling == "text_embeds":
                pooled = out.text_embeds
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
    if "pooled" in spec.inputs and FAMILIES[family].pooling is None:
        both = " with pooled true" if spec.pooled else ""
        raise ValueError(f"{field}.role is {spec.role!r}{both} but the {family} family has no pooled output; use a "
                         "clip or bert encoder, or role 'tokens' with pooled false")
    if spec.pooled_projection and family != "clip":
        raise ValueError(f"{field}.pooled_projection is true but the encoder is of the {family} family; only CLIP "
                         "has a text projection (CLIPTextModelWithProjection): set it to false")
    label = f"text encoder {spec.name} ({spec.model}, family {family})"
    unreleased = f" ({UNRELEASED[spec.model]})" if spec.model in UNRELEASED else ""
    if entry.path is not None and entry.path.is_dir() and not entry.present:
        raise MissingWeightsError(directory.missing_message(entry, field, TRANSFORMERS_FOLDER) + unreleased)
    if entry.present:
        if family == "llm":
            _check_decoder_llm(entry, field)
        width = _config_width(entry)
        if scale == "full" or width == spec.dim:
            encoder = _load(spec, family, entry, field, dtype)
            substitute = " (a substitute: the model's own weights are not public)" if unreleased else ""
            return encoder.to(device), f"{label}: loaded from {entry.path}{substitute}"
        why = f"the weights in {entry.path} are {width} wide, not the smoke dim {spec.dim}"
    elif scale == "full":
        raise MissingWeightsError(directory.missing_message(entry, field, TRANSFORMERS_FOLDER) + unreleased)
    else:
        why = f"no weights at {entry.path}" if entry.path else "no model directory was given"
    encoder = _tiny(spec, family, field)
    note = (f"{label}: RANDOMLY INITIALISED tiny {type(encoder.model).__name__} ({TINY_LAYERS} layers, width "
            f"{encoder.dim}) with a byte-level ByT5Tokenizer, because scale is smoke and {why}{unreleased}")
    return encoder.to(device=device, dtype=dtype), note


def _check_decoder_llm(entry: ModelEntry, field: str) -> None:
    """Refuse a folder whose config.json is not a decoder-only LLM (the llm family reads a causal LM's decoder).

    A model type counts when transformers maps it to a *ForCausalLM class: Qwen2, Qwen3, Llama, Mistral,
    Gemma... qualify; BERT (BertLMHeadModel), T5 and multimodal Qwen-VL configs do not.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = AutoConfig.from_pretrained(entry.path, local_files_only=True)
    causal_lm = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type, "")
    if config.is_encoder_decoder or not causal_lm.endswith("ForCausalLM"):
        raise ValueError(
            f"{field} is {entry.model_id!r}, a decoder-only LLM (family llm), but {entry.path}/config.json "
            f"describes model_type {config.model_type!r} (architectures {config.architectures}), which is not a "
            f"decoder-only causal LM; point the id at a *ForCausalLM checkpoint (Qwen2, Qwen3, Llama, ...) or "
            f"name the right family in models.yaml")


def _load(spec: TextEncoder, family: str, entry: ModelEntry, field: str, dtype: torch.dtype) -> TextEncoderModel:
    import transformers

    model_class = getattr(transformers, _model_class(spec, family))
    try:
        model = model_class.from_pretrained(entry.path, local_files_only=True, dtype=dtype)
        tokenizer = _load_tokenizer(entry)
    except OSError as error:  # transformers' "no file named ..." for missing weights or tokenizer files
        raise MissingWeightsError(f"{field}: {entry.path} is incomplete for {spec.model!r}; it must hold "
                                  f"{TRANSFORMERS_FOLDER}: {error}") from error
    if family == "llm":
        tokenizer.padding_side = "right"
        if tokenizer.pad_token is None:  # Llama-style tokenizers define none; pads are masked out either way
            tokenizer.pad_token = tokenizer.eos_token
    encoder = _wrapped(spec, family, model, tokenizer)
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
        if family in ("qwen", "llm", "generic"):
            sizes["num_key_value_heads"] = 1
        if spec.pooled_projection:
            sizes["projection_dim"] = spec.dim  # SD3's CLIPs project to their own width (768, 1280)
    config = getattr(transformers, FAMILIES[family].tiny_config)(**sizes)
    model_class = getattr(transformers, _model_class(spec, family))
    # Seeded by the model id so every process (every data-parallel rank) builds the same stand-in.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(spec.model.encode()))
        model = model_class.from_config(config) if model_class is transformers.AutoModel else model_class(config)
    return _wrapped(spec, family, model, tokenizer)


def _model_class(spec: TextEncoder, family: str) -> str:
    """The transformers class of `spec`: the family's, or CLIP with its text projection."""
    return "CLIPTextModelWithProjection" if spec.pooled_projection else FAMILIES[family].model_class


def _wrapped(spec: TextEncoder, family: str, model: torch.nn.Module, tokenizer) -> TextEncoderModel:
    config = model.config.get_text_config()
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None)
    if layers is not None and -spec.hidden_layer > layers + 1:  # hidden_states: the embeddings, then each layer
        raise ValueError(f"architecture.text_encoders[{spec.name}].hidden_layer is {spec.hidden_layer} but the model "
                         f"has {layers} layers ({layers + 1} hidden states); set it between -1 and -{layers + 1}")
    return TextEncoderModel(spec.name, family, model, tokenizer, spec.max_tokens, trainable=not spec.frozen,
                            hidden_layer=spec.hidden_layer, projected=spec.pooled_projection)
