"""Tiny text encoders of every family and tiny diffusers VAEs, saved to a temporary model directory the way
released weights are laid out (one folder per model id, '/' -> '--'), so tests go through the real loading code."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from runtime.encoders.model_directory import folder_name  # noqa: E402

WIDTH = 24  # not the smoke width (32), so a test can tell a loaded model from a stand-in
MAX_TOKENS = 12

# model id -> (config class, model class, extra config values); `generic` is named in models.yaml.
TINY_ENCODERS = {
    "test/t5-tiny": ("T5Config", "T5EncoderModel", {}),
    "test/umt5-tiny": ("UMT5Config", "UMT5EncoderModel", {}),
    "test/byt5-tiny": ("T5Config", "T5EncoderModel", {}),
    "test/clip-tiny": ("CLIPTextConfig", "CLIPTextModel", {}),
    "test/bert-tiny": ("BertConfig", "BertModel", {}),
    "test/qwen-tiny": ("Qwen2Config", "Qwen2Model", {"num_key_value_heads": 1}),
    "test/custom-encoder": ("Qwen2Config", "Qwen2Model", {"num_key_value_heads": 2}),
}
FAMILY_OF_TEST_ID = {"test/t5-tiny": "t5", "test/umt5-tiny": "umt5", "test/byt5-tiny": "byt5",
                     "test/clip-tiny": "clip", "test/bert-tiny": "bert", "test/qwen-tiny": "qwen",
                     "test/custom-encoder": "generic"}


def tiny_encoder(model_id: str) -> tuple[torch.nn.Module, transformers.PreTrainedTokenizerBase]:
    """A one-layer, WIDTH-wide encoder of `model_id`'s class with a byte-level tokenizer."""
    config_name, model_name, extra = TINY_ENCODERS[model_id]
    tokenizer = transformers.ByT5Tokenizer()
    common = dict(vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=1, bos_token_id=None)
    if config_name in ("T5Config", "UMT5Config"):
        sizes = dict(d_model=WIDTH, d_kv=12, d_ff=48, num_layers=1, num_heads=2, relative_attention_num_buckets=8)
    else:
        sizes = dict(hidden_size=WIDTH, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                     max_position_embeddings=64)
    config = getattr(transformers, config_name)(**common, **sizes, **extra)
    torch.manual_seed(0)
    return getattr(transformers, model_name)(config).eval(), tokenizer


@pytest.fixture(scope="session")
def model_root(tmp_path_factory):
    """A model directory holding every tiny encoder; `test/custom-encoder` is mapped in models.yaml."""
    root = tmp_path_factory.mktemp("models")
    for model_id in TINY_ENCODERS:
        model, tokenizer = tiny_encoder(model_id)
        folder = root / ("custom" if model_id == "test/custom-encoder" else folder_name(model_id))
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    (root / "models.yaml").write_text("test/custom-encoder: {path: custom, family: generic}\n")
    return root
