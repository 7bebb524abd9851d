"""Mappers over captions and scores: caption_pii, score_conditioning, human_review."""

from __future__ import annotations

from runtime.curation.api import KEEP, MapOp, OpConfigError, Score, Verdict
from runtime.curation.ops.pii import redact
from runtime.curation.records import Record
from runtime.curation.registry import register


@register("caption_pii")
class CaptionPii(MapOp):
    """Replaces the spec's entities (e-mails, URLs, phone numbers, addresses, person names) in the original
    and every synthetic caption by tags (runtime/curation/ops/pii.py says how each is found). Samples are kept;
    the counts per entity go to metadata["pii_redacted"]."""

    def notes(self) -> list[str]:
        """What the run report should say about how names and addresses were found."""
        notes = []
        if "person_name" in self.spec.entities:
            notes.append(
                f"{self.name}: person names are found with a gazetteer of common English given names followed by "
                "a capitalised surname, and honorifics (Mr, Mrs, Ms, Mx, Dr, Prof) followed by a capitalised word, "
                "NOT a named-entity model: names outside the list, lower-case and non-English names are missed; "
                "each match is replaced by <PERSON_NAME> in every caption and the sample is kept"
            )
        if "address" in self.spec.entities:
            notes.append(
                f"{self.name}: addresses are found by regular expressions for US, UK and Canadian formats (house "
                "number + street + suffix, PO boxes, state + ZIP, UK and Canadian postcodes); other countries' "
                "addresses are missed; each match is replaced by <ADDRESS> in every caption and the sample is kept"
            )
        return notes

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
    """Routes samples whose `score_of` value lies inside `band` to the review shards. A score from a smoke
    stand-in (marked stand_in) routes nothing: the band means nothing on a random model's output."""

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        low, high = spec.band
        if low > high:
            raise OpConfigError(f"{spec.name}.band = {list(spec.band)}: the low end must not exceed the high end")

    def requires_scores(self) -> list[str]:
        return [self.spec.score_of]

    def notes(self) -> list[str]:
        """Says that stand-in scores are not routed."""
        if self.ctx is None or self.ctx.scale != "smoke":
            return []
        return [f"{self.name}: samples whose {self.spec.score_of!r} score comes from a smoke stand-in are kept, not "
                "routed to review (the band applies to the real scorer's values)"]

    def decide(self, record: Record, score: Score | None) -> Verdict:
        given = record.scores.get(self.spec.score_of) or {}
        if given.get("stand_in"):
            return KEEP
        value = given.get("value")
        low, high = self.spec.band
        if value is not None and low <= value <= high:
            return Verdict.review("in review band", f"{self.spec.score_of} = {value:.3f} in [{low:g}, {high:g}]")
        return KEEP
