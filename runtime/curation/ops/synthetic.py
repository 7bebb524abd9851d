"""synthetic_text: rendered-text images added beside the real samples (Qwen-Image's text curriculum).

Three levels, from simple to complex: pure_rendering (a few words on a plain background),
compositional (text on signs placed over a synthetic scene), complex_layout (a title, a two-column
paragraph and a bullet list). Each sample that reaches the op adds, on average, fraction / (1 - fraction)
rendered images, so they make up `fraction` of the op's output. Everything derives from the sample key
(language, text, level, font, layout), so reruns render the same bytes.

Languages (vocabularies in runtime/curation/ops/vocabulary.py):

- en: the DejaVu faces that matplotlib ships, so English needs no system fonts;
- zh: Simplified Chinese in WenQuanYi Micro Hei, a CJK font from the Debian package fonts-wqy-microhei
  (`make setup` installs it); the op refuses to start when the font file is missing.

Captions are English sentences quoting the rendered text verbatim, in either language.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import math
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from runtime.curation.api import OpConfigError, Score, SplitOp, Verdict, derive_key
from runtime.curation.records import Record
from runtime.curation.registry import register
from runtime.curation.ops.vocabulary import CHINESE, ENGLISH

SIZE = 512  # rendered images are SIZE x SIZE
CJK_PACKAGE = "fonts-wqy-microhei"  # Debian / Ubuntu package of the CJK font
CJK_FONT_FILE = "wqy-microhei.ttc"
CJK_FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian / Ubuntu fonts-wqy-microhei
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",  # Fedora wqy-microhei-fonts
)
CJK_FACES = {"WenQuanYiMicroHei": 0, "WenQuanYiMicroHeiMono": 1}  # face index inside the .ttc collection


@dataclass(frozen=True)
class Script:
    """How one language is rendered: its words, how they join into text, and its fonts."""

    words: tuple[str, ...]
    separator: str  # between words: Chinese is written without spaces
    fonts: tuple[str, ...]  # faces for signs and short text
    title_font: str
    body_fonts: tuple[str, ...]
    line_length: int  # characters per line of a paragraph column (a CJK glyph is about two Latin glyphs wide)
    full_stop: str
    list_separator: str  # between bullet items in the caption

    def words_text(self, rng: np.random.Generator, count: int) -> str:
        """`count` words drawn from the vocabulary, joined as the language writes them."""
        return self.separator.join(rng.choice(self.words, count))


SCRIPTS = {
    "en": Script(ENGLISH, " ", ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf"),
                 "DejaVuSans-Bold.ttf", ("DejaVuSerif.ttf", "DejaVuSans.ttf"), 24, ".", "; "),
    "zh": Script(CHINESE, "", tuple(CJK_FACES), "WenQuanYiMicroHei", tuple(CJK_FACES), 13, "\u3002", "\uff1b"),
}
LANGUAGES = tuple(SCRIPTS)


@cache
def cjk_font_file() -> Path | None:
    """WenQuanYi Micro Hei: a known install path, else what fontconfig finds under that name; None if absent."""
    for candidate in CJK_FONT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    if shutil.which("fc-match"):
        # fc-match always answers with some font; only the WenQuanYi file itself counts.
        found = subprocess.run(["fc-match", "--format=%{file}", "WenQuanYi Micro Hei"], capture_output=True, text=True,
                               check=False)
        if found.returncode == 0 and Path(found.stdout).name == CJK_FONT_FILE and Path(found.stdout).is_file():
            return Path(found.stdout)
    return None


@cache
def font_path(name: str) -> Path:
    """The file of face `name`: the CJK collection for CJK faces, else a DejaVu font shipped inside matplotlib."""
    if name in CJK_FACES:
        path = cjk_font_file()
        if path is None:
            raise OpConfigError(f"font {name} ({CJK_FONT_FILE}) is not installed; apt-get install {CJK_PACKAGE}")
        return path
    spec = importlib.util.find_spec("matplotlib")  # found without importing matplotlib
    if spec is None or not spec.submodule_search_locations:
        raise OpConfigError("synthetic_text renders with the DejaVu fonts shipped by matplotlib; install matplotlib")
    return Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf" / name


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(name)), size, index=CJK_FACES.get(name, 0))


def _colour(rng: np.random.Generator, light: bool) -> tuple[int, int, int]:
    low, high = (170, 256) if light else (0, 90)
    return tuple(int(c) for c in rng.integers(low, high, 3))


def render_pure(rng: np.random.Generator, script: Script) -> tuple[Image.Image, str, str]:
    """A few words, one font, centred on a plain background."""
    text, font_name = script.words_text(rng, int(rng.integers(1, 4))), str(rng.choice(script.fonts))
    dark_on_light = bool(rng.integers(0, 2))
    image = Image.new("RGB", (SIZE, SIZE), _colour(rng, light=dark_on_light))
    draw = ImageDraw.Draw(image)
    size = 72
    while size > 16 and draw.textlength(text, font=_font(font_name, size)) > SIZE - 40:
        size -= 4
    ink = _colour(rng, light=not dark_on_light)
    draw.text((SIZE / 2, SIZE / 2), text, fill=ink, font=_font(font_name, size), anchor="mm")
    return image, text, font_name


def render_compositional(rng: np.random.Generator, script: Script) -> tuple[Image.Image, str, str]:
    """Two signs with text over a gradient scene with shapes."""
    top, bottom = np.array(_colour(rng, True)), np.array(_colour(rng, False))
    ramp = np.linspace(0, 1, SIZE)[:, None, None]
    image = Image.fromarray(np.broadcast_to(top * (1 - ramp) + bottom * ramp, (SIZE, SIZE, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 7))):
        x, y, w, h = (int(v) for v in rng.integers(0, SIZE, 2).tolist() + rng.integers(30, 160, 2).tolist())
        draw.ellipse((x, y, x + w, y + h), fill=_colour(rng, bool(rng.integers(0, 2))))
    texts, font_name = [], str(rng.choice(script.fonts))
    for row in range(2):
        text = script.words_text(rng, int(rng.integers(1, 3)))
        font = _font(font_name, int(rng.integers(28, 44)))
        width = draw.textlength(text, font=font)
        x = int(rng.integers(10, max(11, SIZE - int(width) - 30)))
        y = 60 + row * 220 + int(rng.integers(0, 80))
        sign = (x - 10, y - 10, x + width + 10, y + font.size + 14)
        draw.rectangle(sign, fill=_colour(rng, True), outline=(0, 0, 0), width=3)
        draw.text((x, y), text, fill=_colour(rng, False), font=font)
        texts.append(text)
    return image, " / ".join(texts), font_name


def _wrap(text: str, script: Script) -> list[str]:
    """Lines of a paragraph column: at spaces for spaced scripts, every `line_length` characters otherwise."""
    if script.separator:
        return textwrap.wrap(text, script.line_length)
    return [text[i : i + script.line_length] for i in range(0, len(text), script.line_length)]


def render_complex(rng: np.random.Generator, script: Script) -> tuple[Image.Image, str, str]:
    """A title, a paragraph in two columns and a bullet list on a page."""
    image = Image.new("RGB", (SIZE, SIZE), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    title = script.words_text(rng, 3)
    title = title.title() if script.separator else title
    draw.text((24, 20), title, fill=(20, 20, 20), font=_font(script.title_font, 34))
    body_font = str(rng.choice(script.body_fonts))
    paragraph = script.words_text(rng, 70)
    paragraph = (paragraph.capitalize() if script.separator else paragraph) + script.full_stop
    lines = _wrap(paragraph, script)
    half = math.ceil(len(lines) / 2)
    bottom = 80
    for column, chunk in enumerate((lines[:half], lines[half:])):
        position, body = (24 + column * 246, 80), "\n".join(chunk)
        draw.multiline_text(position, body, fill=(40, 40, 40), font=_font(body_font, 16), spacing=4)
        bottom = max(bottom, draw.multiline_textbbox(position, body, font=_font(body_font, 16), spacing=4)[3])
    bullets = [script.words_text(rng, 2) for _ in range(3)]
    y = bottom + 21
    for bullet in bullets:
        draw.text((30, y), f"\u2022 {bullet}", fill=(60, 30, 30), font=_font(script.fonts[0], 18))
        y += 26
    return image, f"{title}{script.full_stop} {paragraph} {script.list_separator.join(bullets)}", body_font


RENDERERS = {"pure_rendering": render_pure, "compositional": render_compositional, "complex_layout": render_complex}


@register("synthetic_text")
class SyntheticText(SplitOp):
    """Passes each sample through and adds rendered-text samples KEY_synthtextNNN after it, each in one of
    the spec's languages drawn uniformly."""

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        unsupported = [lang for lang in spec.languages if lang not in LANGUAGES]
        if unsupported:
            raise OpConfigError(
                f"{spec.name}.languages includes {unsupported}: only {list(LANGUAGES)} have a built-in vocabulary "
                f"and fonts; remove the others or add a vocabulary and a font covering their script"
            )
        for language in spec.languages:
            for name in {*SCRIPTS[language].fonts, SCRIPTS[language].title_font, *SCRIPTS[language].body_fonts}:
                self._check_font(language, name)
        self.per_sample = spec.fraction / (1 - spec.fraction)  # synthetic : real so synthetic is `fraction` of all

    def _check_font(self, language: str, name: str) -> None:
        try:
            path = font_path(name)
        except OpConfigError as error:
            raise OpConfigError(
                f"{self.spec.name}.languages includes {language!r}, which renders with {name}: {error} "
                f"(`make setup` installs it), or remove {language!r} from {self.spec.name}.languages"
            ) from None
        if not path.is_file():
            raise OpConfigError(f"{self.spec.name}: font {path} is missing from the matplotlib install")

    def split(self, record: Record, score: Score | None) -> list[Record] | Verdict:
        seed = int.from_bytes(hashlib.sha256(f"synthetic_text/{record.key}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
        whole = math.floor(self.per_sample)
        count = whole + int(rng.random() < self.per_sample - whole)
        return [record] + [self.render(record, i, rng) for i in range(count)]

    def render(self, record: Record, index: int, rng: np.random.Generator) -> Record:
        level = str(rng.choice(self.spec.curriculum))
        language = str(rng.choice(self.spec.languages))
        image, text, font = RENDERERS[level](rng, SCRIPTS[language])
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        caption = f'A {level.replace("_", " ")} image showing the text "{text}" in {font.removesuffix(".ttf")}.'
        return Record(
            key=derive_key(record.key, "synthtext", index),
            media=buffer.getvalue(),
            media_ext="png",
            shard=record.shard,
            metadata={"synthetic": "synthetic_text", "curriculum_level": level, "text": text, "font": font,
                      "language": language, "generated_after": record.key, "width": image.width,
                      "height": image.height},
            captions={"original": caption, "synthetic": []},
        )
