"""Mappers over captions and scores: caption_pii, score_conditioning, human_review."""

from __future__ import annotations

import re
from collections.abc import Callable

from runtime.curation.api import KEEP, MapOp, OpConfigError, Score, Verdict
from runtime.curation.records import Record
from runtime.curation.registry import register

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)]")
# Digit groups with optional country code and area code in parentheses; the replacement keeps only
# runs of 7 to 15 digits (E.164 numbers have at most 15) that are not ISO dates, so years, dates and
# sizes ("1920 x 1080") survive.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?!\w)")
_REGEX_ENTITIES = ("email", "url", "phone")  # order matters: e-mails and URLs contain digit runs


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _phone_replacement(match: re.Match[str]) -> str:
    text = match.group()
    digits = sum(c.isdigit() for c in text)
    return "<PHONE>" if 7 <= digits <= 15 and not _ISO_DATE.fullmatch(text) else text


_REDACTORS: dict[str, tuple[re.Pattern[str], Callable[[re.Match[str]], str] | str]] = {
    "email": (_EMAIL, "<EMAIL>"),
    "url": (_URL, "<URL>"),
    "phone": (_PHONE, _phone_replacement),
}


def redact(text: str, entities: list[str]) -> tuple[str, dict[str, int]]:
    """`text` with each e-mail, URL and phone number of `entities` replaced by a tag, and counts per entity."""
    counts: dict[str, int] = {}
    for entity in _REGEX_ENTITIES:
        if entity in entities:
            pattern, replacement = _REDACTORS[entity]
            text, count = pattern.subn(replacement, text)
            tag = f"<{entity.upper()}>"
            counts[entity] = text.count(tag) if callable(replacement) else count
    return text, {k: v for k, v in counts.items() if v}


@register("caption_pii")
class CaptionPii(MapOp):
    """Redacts e-mail addresses, URLs and phone numbers from original and synthetic captions."""

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        unsupported = [e for e in spec.entities if e not in _REGEX_ENTITIES]
        if unsupported:
            raise OpConfigError(
                f"{spec.name}.entities includes {unsupported}: person names and addresses need a named-entity "
                f"model, which the core runtime does not have; keep {spec.name}.entities within "
                f"{list(_REGEX_ENTITIES)} or register a model-backed caption_pii"
            )

    def decide(self, record: Record, score: Score | None) -> Verdict:
        totals: dict[str, int] = {}
        captions = record.captions
        if isinstance(captions.get("original"), str):
            captions["original"], counts = redact(captions["original"], self.spec.entities)
            _add(totals, counts)
        for synthetic in captions.get("synthetic", []):
            if isinstance(synthetic.get("text"), str):
                synthetic["text"], counts = redact(synthetic["text"], self.spec.entities)
                _add(totals, counts)
        if totals:
            record.metadata["pii_redacted"] = totals
        return KEEP


def _add(totals: dict[str, int], counts: dict[str, int]) -> None:
    for entity, count in counts.items():
        totals[entity] = totals.get(entity, 0) + count


@register("score_conditioning")
class ScoreConditioning(MapOp):
    """Copies the named ops' score values into metadata["conditioning"] (and, for `caption_suffix`,
    appends them to every caption, as Open-Sora does); a sample missing one of the scores is dropped."""

    def requires_scores(self) -> list[str]:
        return list(self.spec.scores)

    def decide(self, record: Record, score: Score | None) -> Verdict:
        values = {}
        for name in self.spec.scores:
            value = (record.scores.get(name) or {}).get("value")
            if value is None:
                return Verdict.drop("missing conditioning score", f"no score from op {name!r}")
            values[name] = value
        record.metadata["conditioning"] = values
        if self.spec.encoding == "caption_suffix":
            suffix = "; ".join(f"{name} score: {value:.2f}" for name, value in values.items())
            if isinstance(record.captions.get("original"), str):
                record.captions["original"] = f"{record.captions['original']} ({suffix})"
            for synthetic in record.captions.get("synthetic", []):
                synthetic["text"] = f"{synthetic.get('text', '')} ({suffix})"
        return KEEP


@register("human_review")
class HumanReview(MapOp):
    """Routes samples whose `score_of` value lies inside `band` to the review shards."""

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        low, high = spec.band
        if low > high:
            raise OpConfigError(f"{spec.name}.band = {list(spec.band)}: the low end must not exceed the high end")

    def requires_scores(self) -> list[str]:
        return [self.spec.score_of]

    def decide(self, record: Record, score: Score | None) -> Verdict:
        value = (record.scores.get(self.spec.score_of) or {}).get("value")
        low, high = self.spec.band
        if value is not None and low <= value <= high:
            return Verdict.review("in review band", f"{self.spec.score_of} = {value:.3f} in [{low:g}, {high:g}]")
        return KEEP
