"""synthetic_text: rendered-text images added beside the real samples (Qwen-Image's text curriculum).

Three levels, from simple to complex: pure_rendering (a few words on a plain background),
compositional (text on signs placed over a synthetic scene), complex_layout (a title, a two-column
paragraph and a bullet list). Each sample that reaches the op adds, on average, fraction / (1 - fraction)
rendered images, so they make up `fraction` of the op's output. Everything derives from the sample key
(text, level, font, layout), so reruns render the same bytes. Fonts are the DejaVu faces that matplotlib
ships, so rendering needs no system fonts; only English is built in.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import math
import textwrap
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from runtime.curation.api import OpConfigError, Score, SplitOp, Verdict, derive_key
from runtime.curation.records import Record
from runtime.curation.registry import register

SIZE = 512  # rendered images are SIZE x SIZE
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")
WORDS = (
    "open", "daily", "fresh", "coffee", "market", "river", "north", "station", "garden", "quiet", "morning",
    "light", "city", "library", "museum", "bakery", "welcome", "exit", "entrance", "platform", "ticket", "harbor",
    "bridge", "mountain", "trail", "summer", "winter", "festival", "orange", "blue", "green", "silver", "golden",
    "house", "school", "office", "hotel", "cinema", "pharmacy", "bicycle", "parking", "limited", "offer", "sale",
    "new", "classic", "modern", "simple", "bright", "warm", "cold", "fast", "slow", "east", "west", "south",
    "central", "park", "street", "avenue", "square", "tower", "castle", "island", "valley", "forest", "ocean",
    "bread", "cheese", "apple", "honey", "tea", "juice", "menu", "lunch", "dinner", "breakfast", "special",
    "today", "tomorrow", "always", "never", "every", "weekend", "holiday", "notice", "please", "thank", "you",
    "quality", "service", "repair", "design", "studio", "gallery", "music", "theater", "dance", "art", "craft",
    "books", "maps", "travel", "guide",
)
LANGUAGES = ("en",)


@cache
def font_path(name: str) -> Path:
    """A DejaVu font shipped inside matplotlib (found without importing it)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise OpConfigError("synthetic_text renders with the DejaVu fonts shipped by matplotlib; install matplotlib")
    return Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf" / name


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), size)


def _words(rng: np.random.Generator, count: int) -> str:
    return " ".join(rng.choice(WORDS, count))


def _colour(rng: np.random.Generator, light: bool) -> tuple[int, int, int]:
    low, high = (170, 256) if light else (0, 90)
    return tuple(int(c) for c in rng.integers(low, high, 3))


def render_pure(rng: np.random.Generator) -> tuple[Image.Image, str, str]:
    """A few words, one font, centred on a plain background."""
    text, font_name = _words(rng, int(rng.integers(1, 4))), str(rng.choice(FONTS))
    dark_on_light = bool(rng.integers(0, 2))
    image = Image.new("RGB", (SIZE, SIZE), _colour(rng, light=dark_on_light))
    draw = ImageDraw.Draw(image)
    size = 72
    while size > 16 and draw.textlength(text, font=_font(font_name, size)) > SIZE - 40:
        size -= 4
    ink = _colour(rng, light=not dark_on_light)
    draw.text((SIZE / 2, SIZE / 2), text, fill=ink, font=_font(font_name, size), anchor="mm")
    return image, text, font_name


def render_compositional(rng: np.random.Generator) -> tuple[Image.Image, str, str]:
    """Two signs with text over a gradient scene with shapes."""
    top, bottom = np.array(_colour(rng, True)), np.array(_colour(rng, False))
    ramp = np.linspace(0, 1, SIZE)[:, None, None]
    image = Image.fromarray(np.broadcast_to(top * (1 - ramp) + bottom * ramp, (SIZE, SIZE, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 7))):
        x, y, w, h = (int(v) for v in rng.integers(0, SIZE, 2).tolist() + rng.integers(30, 160, 2).tolist())
        draw.ellipse((x, y, x + w, y + h), fill=_colour(rng, bool(rng.integers(0, 2))))
    texts, font_name = [], str(rng.choice(FONTS))
    for row in range(2):
        text = _words(rng, int(rng.integers(1, 3)))
        font = _font(font_name, int(rng.integers(28, 44)))
        width = draw.textlength(text, font=font)
        x = int(rng.integers(10, max(11, SIZE - int(width) - 30)))
        y = 60 + row * 220 + int(rng.integers(0, 80))
        sign = (x - 10, y - 10, x + width + 10, y + font.size + 14)
        draw.rectangle(sign, fill=_colour(rng, True), outline=(0, 0, 0), width=3)
        draw.text((x, y), text, fill=_colour(rng, False), font=font)
        texts.append(text)
    return image, " / ".join(texts), font_name


def render_complex(rng: np.random.Generator) -> tuple[Image.Image, str, str]:
    """A title, a paragraph in two columns and a bullet list on a page."""
    image = Image.new("RGB", (SIZE, SIZE), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    title = _words(rng, 3).title()
    draw.text((24, 20), title, fill=(20, 20, 20), font=_font("DejaVuSans-Bold.ttf", 34))
    body_font = str(rng.choice(("DejaVuSerif.ttf", "DejaVuSans.ttf")))
    paragraph = _words(rng, 70).capitalize() + "."
    lines = textwrap.wrap(paragraph, 24)
    half = math.ceil(len(lines) / 2)
    for column, chunk in enumerate((lines[:half], lines[half:])):
        position, body = (24 + column * 246, 80), "\n".join(chunk)
        draw.multiline_text(position, body, fill=(40, 40, 40), font=_font(body_font, 16), spacing=4)
    bullets = [_words(rng, 2) for _ in range(3)]
    y = 80 + (half + 1) * 21
    for bullet in bullets:
        draw.text((30, y), f"\u2022 {bullet}", fill=(60, 30, 30), font=_font("DejaVuSans.ttf", 18))
        y += 26
    return image, f"{title}. {paragraph} {'; '.join(bullets)}", body_font


RENDERERS = {"pure_rendering": render_pure, "compositional": render_compositional, "complex_layout": render_complex}


@register("synthetic_text")
class SyntheticText(SplitOp):
    """Passes each sample through and adds rendered-text samples KEY_synthtextNNN after it."""

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        unsupported = [lang for lang in spec.languages if lang not in LANGUAGES]
        if unsupported:
            raise OpConfigError(
                f"{spec.name}.languages includes {unsupported}: only {list(LANGUAGES)} has a built-in vocabulary "
                f"and fonts; remove the others or add a vocabulary and a font covering their script"
            )
        for name in FONTS:
            if not font_path(name).is_file():
                raise OpConfigError(f"{spec.name}: font {font_path(name)} is missing from the matplotlib install")
        self.per_sample = spec.fraction / (1 - spec.fraction)  # synthetic : real so synthetic is `fraction` of all

    def split(self, record: Record, score: Score | None) -> list[Record] | Verdict:
        seed = int.from_bytes(hashlib.sha256(f"synthetic_text/{record.key}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        whole = math.floor(self.per_sample)
        count = whole + int(rng.random() < self.per_sample - whole)
        return [record] + [self.render(record, i, rng) for i in range(count)]

    def render(self, record: Record, index: int, rng: np.random.Generator) -> Record:
        level = str(rng.choice(self.spec.curriculum))
        image, text, font = RENDERERS[level](rng)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        caption = f'A {level.replace("_", " ")} image showing the text "{text}" in {font.removesuffix(".ttf")}.'
        return Record(
            key=derive_key(record.key, "synthtext", index),
            media=buffer.getvalue(),
            media_ext="png",
            shard=record.shard,
            metadata={"synthetic": "synthetic_text", "curriculum_level": level, "text": text, "font": font,
                      "language": "en", "generated_after": record.key},
            captions={"original": caption, "synthetic": []},
        )
