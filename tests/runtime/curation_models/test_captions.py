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
