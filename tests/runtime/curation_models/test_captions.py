"""Recaptioning with a tiny saved VLM."""

from __future__ import annotations

import pytest

from compiler.schema.data import Recaption
from runtime.curation.api import OpConfigError
from runtime.curation.modelzoo.captioner import caption_plan
from runtime.curation.registry import build


def test_recaption_keeps_the_original_and_adds_planned_captions(kit, full, cache):
    op = Recaption(model="tiny-vlm", styles=["short", "long"], languages=["en", "zh"], captions_per_sample=3,
                   max_new_tokens=6, mix={"original": 0.5, "synthetic": 0.5})
    records = [kit.image_record("a", 1, caption="the alt text"), kit.image_record("b", 2, caption="other alt")]
    records[0].captions["synthetic"] = [{"text": "kept", "model": "earlier", "style": "long", "language": "en", "op": "x"}]
    run = kit.run_op(op, records, full, cache)
    first = run.kept[0].captions
    assert first["original"] == "the alt text"
    assert first["mix"] == {"original": 0.5, "synthetic": 0.5}
    assert first["synthetic"][0]["text"] == "kept"  # another op's caption stays
    mine = [c for c in first["synthetic"] if c["op"] == "recaption"]
    assert [(c["style"], c["language"]) for c in mine] == [(s, l) for s, l, _ in caption_plan("a", ["short", "long"], ["en", "zh"], 3)]
    assert all(isinstance(c["text"], str) and c["model"] == "tiny-vlm" for c in mine)

    # Captions are the cached score: a re-run generates nothing and does not duplicate entries.
    again = kit.run_op(op, run.kept, full, cache)
    assert again.scored == []
    assert len([c for c in again.kept[0].captions["synthetic"] if c["op"] == "recaption"]) == 3


def test_recaption_without_keep_original_removes_it(kit, full):
    op = Recaption(model="tiny-vlm", keep_original=False, max_new_tokens=4)
    (record,) = kit.run_op(op, [kit.image_record("a", 1, caption="weak alt text")], full).kept
    assert record.captions["original"] is None and len(record.captions["synthetic"]) == 1


def test_caption_plan_cycles_styles_and_balances_languages():
    plans = [caption_plan(f"key{i}", ["dense"], ["zh", "en"], 1) for i in range(200)]
    languages = [plan[0][1] for plan in plans]
    assert 70 < languages.count("zh") < 130
    plan = caption_plan("k", ["short", "long", "multi_perspective"], ["zh", "en"], 4)
    assert [s for s, _, _ in plan] == ["short", "long", "multi_perspective", "short"]
    assert plan[3][1] != plan[0][1]  # the second "short" caption is in the other language
    assert [sample for *_, sample in plan] == [False] * 4
    assert caption_plan("k", ["long"], ["en"], 2) == [("long", "en", False), ("long", "en", True)]  # a repeat samples


def test_recaption_rejects_bad_configuration(full):
    with pytest.raises(OpConfigError, match="keep_original"):
        build(Recaption(model="tiny-vlm", keep_original=False, mix={"original": 0.5, "synthetic": 0.5}), full)
    with pytest.raises(OpConfigError, match="summing to 1"):
        build(Recaption(model="tiny-vlm", mix={"original": 0.5, "synthetic": 0.2}), full)
    with pytest.raises(OpConfigError, match="languages"):
        build(Recaption(model="tiny-vlm", languages=["xx"]), full)
    with pytest.raises(OpConfigError, match="chat template"):
        build(Recaption(model="clip-vit-b32"), full)  # a folder without a chat template is no VLM


# A CogVLM-style folder: config.json auto_map points at modelling code shipped in the folder, and the model
# is prompted through build_conversation_input_ids (THUDM/cogvlm-chat-hf's API). The network is a 1-layer
# Llama that ignores the image: what is tested is the opt-in and the loading and prompting path.
REMOTE_CONFIG = '''
from transformers import LlamaConfig


class TinyCogVLMConfig(LlamaConfig):
    model_type = "tiny_cogvlm"
'''
REMOTE_MODEL = '''
import torch
from transformers import LlamaForCausalLM

from .configuration_tiny_cogvlm import TinyCogVLMConfig


class TinyCogVLMForCausalLM(LlamaForCausalLM):
    config_class = TinyCogVLMConfig

    def build_conversation_input_ids(self, tokenizer, *, query, history=None, images=None, template_version=None):
        ids = torch.tensor(tokenizer(query)["input_ids"][:16])
        return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": torch.ones_like(ids),
                "images": [torch.zeros(3, 8, 8)]}

    def forward(self, input_ids=None, images=None, token_type_ids=None, **kwargs):
        return super().forward(input_ids=input_ids, **kwargs)
'''


def _remote_code_folder(folder):
    import json

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from runtime.curation.modelzoo.tokenizer import byte_tokenizer

    tokenizer = byte_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "configuration_tiny_cogvlm.py").write_text(REMOTE_CONFIG)
    (folder / "modeling_tiny_cogvlm.py").write_text(REMOTE_MODEL)
    saved = json.loads((folder / "config.json").read_text())
    saved.update(model_type="tiny_cogvlm", architectures=["TinyCogVLMForCausalLM"], auto_map={
        "AutoConfig": "configuration_tiny_cogvlm.TinyCogVLMConfig",
        "AutoModelForCausalLM": "modeling_tiny_cogvlm.TinyCogVLMForCausalLM"})
    (folder / "config.json").write_text(json.dumps(saved))


def test_a_remote_code_vlm_needs_the_trust_remote_code_opt_in(kit, tmp_path):
    from runtime.curation.api import OpContext

    _remote_code_folder(tmp_path / "THUDM" / "cogvlm-chat-hf")
    ctx = OpContext(tmp_path, "full")
    with pytest.raises(OpConfigError, match=r"ships its own modelling code .* recaption.trust_remote_code = True"):
        build(Recaption(model="THUDM/cogvlm-chat-hf", max_new_tokens=3), ctx)

    op = Recaption(model="THUDM/cogvlm-chat-hf", max_new_tokens=3, trust_remote_code=True)
    (record,) = kit.run_op(op, [kit.image_record("a", 1)], ctx).kept
    (caption,) = record.captions["synthetic"]
    assert isinstance(caption["text"], str) and caption["model"] == "THUDM/cogvlm-chat-hf"
