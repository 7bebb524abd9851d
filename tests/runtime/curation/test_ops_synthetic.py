"""synthetic_text: its share of the output, determinism, and English and Chinese rendering."""

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from compiler.schema.data import SyntheticText
from runtime.curation import run
from runtime.curation.ops import synthetic as ops_synthetic
from runtime.curation.api import OpConfigError
from runtime.curation.ops.synthetic import RENDERERS, SCRIPTS, _font
from runtime.curation.registry import build
from runtime.curation.shards import member_keys, read_shard
from runtime.curation.ops.vocabulary import CHINESE

LEVELS = {"pure_rendering", "compositional", "complex_layout"}


def test_synthetic_text_adds_its_share_deterministically(shards, tmp_path):
    op = SyntheticText(fraction=0.5)  # one rendered image per real sample
    first = run([op], f"{shards}/images-000.tar", tmp_path / "a", workers=1)
    run([op], f"{shards}/images-000.tar", tmp_path / "b", workers=1)
    assert first.created == 10 and first.kept == 20
    a, b = (tmp_path / d / "shards" / "images-000.tar" for d in "ab")
    assert a.read_bytes() == b.read_bytes()
    keys = member_keys(a)
    assert keys[:2] == ["sharp0", "sharp0_synthtext000"]  # each follows the sample that triggered it
    rendered = [r for r in read_shard(str(a)) if "synthtext" in r.key]
    assert {r.metadata["curriculum_level"] for r in rendered} <= LEVELS
    assert {r.metadata["language"] for r in rendered} == {"en"}
    assert all(r.metadata["text"] in r.captions["original"] for r in rendered)
    assert all((r.metadata["width"], r.metadata["height"]) == (512, 512) for r in rendered)  # resolution subsets


def test_chinese_samples_are_deterministic_and_captioned_with_their_text(shards, tmp_path):
    op = SyntheticText(fraction=0.5, languages=["zh"])
    run([op], f"{shards}/images-000.tar", tmp_path / "a", workers=1)
    run([op], f"{shards}/images-000.tar", tmp_path / "b", workers=1)
    a, b = (tmp_path / d / "shards" / "images-000.tar" for d in "ab")
    assert a.read_bytes() == b.read_bytes()
    rendered = [r for r in read_shard(str(a)) if "synthtext" in r.key]
    assert len(rendered) == 10
    characters = set("".join(CHINESE))
    for record in rendered:
        text = record.metadata["text"]
        assert record.metadata["language"] == "zh" and record.metadata["font"] in ops_synthetic.CJK_FACES
        assert f'"{text}"' in record.captions["original"]
        assert set(text) - set(" /\u3002\uff1b") <= characters and len(set(text) & characters) >= 2


def test_languages_are_mixed_when_both_are_asked_for(shards, tmp_path):
    run([SyntheticText(fraction=0.5, languages=["en", "zh"])], f"{shards}/images-000.tar", tmp_path / "a", workers=1)
    rendered = [r for r in read_shard(str(tmp_path / "a" / "shards" / "images-000.tar")) if "synthtext" in r.key]
    assert {r.metadata["language"] for r in rendered} == {"en", "zh"}


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_chinese_text_is_drawn(level):
    """The text's pixels are there: the same layout drawn with other words differs, so the glyphs are not blank
    or one repeated missing-glyph box."""
    image, text, _ = RENDERERS[level](np.random.default_rng(7), SCRIPTS["zh"])
    other = dataclasses.replace(SCRIPTS["zh"], words=tuple(reversed(CHINESE)))
    image_other, text_other, _ = RENDERERS[level](np.random.default_rng(7), other)
    assert text != text_other
    pixels, pixels_other = np.asarray(image, dtype=int), np.asarray(image_other, dtype=int)
    changed = np.abs(pixels - pixels_other).sum(-1) > 60
    assert changed.sum() > 200
    png = io.BytesIO()
    image.save(png, "PNG")
    assert np.array_equal(np.asarray(Image.open(png)), pixels)


def test_every_vocabulary_character_has_its_own_glyph():
    """No character of the Chinese vocabulary falls back to the font's missing-glyph box."""
    font = _font("WenQuanYiMicroHei", 24)
    bitmaps = {}
    for character in sorted(set("".join(CHINESE)) | {"\u3002", "\uff1b", "\u2022"}):
        glyph = Image.new("L", (32, 32))
        ImageDraw.Draw(glyph).text((4, 2), character, font=font, fill=255)
        assert glyph.getbbox() is not None, character
        bitmaps.setdefault(glyph.tobytes(), []).append(character)
    assert all(len(shared) == 1 for shared in bitmaps.values()), [s for s in bitmaps.values() if len(s) > 1]


@pytest.fixture
def no_cjk_font(monkeypatch):
    monkeypatch.setattr(ops_synthetic, "cjk_font_file", lambda: None)
    ops_synthetic.font_path.cache_clear()
    yield
    ops_synthetic.font_path.cache_clear()


def test_a_missing_cjk_font_names_the_package_to_install(no_cjk_font):
    with pytest.raises(OpConfigError, match="languages includes 'zh'.*apt-get install fonts-wqy-microhei"):
        build(SyntheticText(languages=["en", "zh"]), None)
    build(SyntheticText(languages=["en"]), None)


def test_synthetic_text_refuses_languages_it_cannot_render():
    with pytest.raises(OpConfigError, match="only \\['en', 'zh'\\]"):
        build(SyntheticText(languages=["en", "ja"]), None)
