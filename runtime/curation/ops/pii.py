"""Personal information in caption text, found by patterns and a name list (no model) and replaced by tags.

Entities, in the order they are replaced (e-mails and URLs contain digit runs and capitalised words,
addresses contain names and digit groups, so each goes before the entities it could be mistaken for):

- email, url: the usual forms (name@host.tld; http(s):// or www.).
- address: US, UK and Canadian forms written in English:
  a street address, house number (221B, 10-12) + one to three capitalised words or an ordinal (5th) + a
  street suffix (Street, St, Avenue, Ave, Road, Lane, Drive, Way, Close, Mews, ...) + an optional direction
  (NW); a PO box ("P.O. Box 123", "Post Office Box 7"); a US state abbreviation + ZIP ("DC 20500",
  "CA 94043-1351"); a UK postcode ("SW1A 1AA"); a Canadian postal code ("K1A 0B1"). Addresses of other
  countries (German "Hauptstrasse 5, 10115 Berlin", a bare five-digit ZIP) are not found. Title-case
  phrases shaped like an address ("Top 10 Best Street Food") are redacted too: a pattern cannot tell them
  apart.
- phone: digit groups with optional country and area code, 7 to 15 digits in all (E.164 numbers have at
  most 15), not ISO dates, so years, dates and sizes ("1920 x 1080") survive.
- person_name: NOT a named-entity model. A given name from the gazetteer (runtime/curation/ops/gazetteer.py)
  followed by an optional initial and a capitalised surname ("John Smith", "Mary J. Blige"), unless the
  next word is a place word ("James Park", "Madison Square"); or an honorific (Mr, Mrs, Ms, Mx, Dr, Prof)
  followed by one or two capitalised words ("Dr. Patel"). Missed: names outside the list, lower-case
  names, a given name or a surname alone, non-English names.

Each match becomes <EMAIL>, <URL>, <ADDRESS>, <PHONE> or <PERSON_NAME>.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from runtime.curation.ops.gazetteer import GIVEN_NAMES

ENTITIES = ("email", "url", "address", "phone", "person_name")  # replacement order, see the module docstring

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)]")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){1,4}(?!\w)")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

_HOUSE_NUMBER = r"\d{1,5}[A-Za-z]?(?:-\d{1,5}[A-Za-z]?)?"
_STREET_WORD = r"(?:[A-Z][A-Za-z'.-]*|\d{1,3}(?:st|nd|rd|th))"
_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|Ter|Way|"
    r"Crescent|Cres|Close|Square|Sq|Highway|Hwy|Parkway|Pkwy|Circle|Cir|Gardens|Grove|Row|Mews)"
)
_STREET = re.compile(
    rf"\b{_HOUSE_NUMBER}\s+(?:{_STREET_WORD}\s+){{1,3}}{_STREET_SUFFIX}\b\.?(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b\.?)?"
)
_PO_BOX = re.compile(r"\b(?:P\.?\s?O\.?|Post\s+Office)\s+Box\s+\d+\b", re.IGNORECASE)
_US_STATES = (  # USPS two-letter codes of the 50 states and DC
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|"
    "OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
_US_ZIP = re.compile(rf"\b(?:{_US_STATES})\s+\d{{5}}(?:-\d{{4}})?\b")
# Royal Mail's outward code (area letters, district digit, optional digit or letter) + inward code (digit, two letters).
_UK_POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}\b")
# Canada Post: letter digit letter, digit letter digit; D, F, I, O, Q, U never occur (W, Z not first).
_CA_POSTCODE = re.compile(r"\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z]\s?\d[ABCEGHJ-NPRSTV-Z]\d\b")

_CAPITALISED = r"[A-Z](?:[a-z]+|'[A-Z][a-z]+)(?:[A-Z][a-z]+)?(?:-[A-Z][a-z]+)?"  # Smith, O'Brien, McDonald, Smith-Jones
_PLACE_WORDS = (
    "Street|Road|Avenue|Lane|Square|Park|Station|Bridge|River|Lake|Bay|Beach|Island|Mountain|Hill|Falls|Valley|"
    "Forest|Garden|Gardens|Hall|Church|Cathedral|Chapel|Palace|Castle|Tower|Museum|Gallery|Library|Hotel|"
    "Hospital|School|College|University|Airport|Center|Centre|Stadium|Theatre|Theater|Memorial|Monument"
)
_GIVEN_NAME_SURNAME = re.compile(
    rf"\b(?:{'|'.join(sorted(GIVEN_NAMES))})\s+(?:[A-Z]\.\s+)?(?!(?:{_PLACE_WORDS})\b){_CAPITALISED}\b"
)
_HONORIFIC_NAME = re.compile(rf"\b(?:Mr|Mrs|Ms|Mx|Dr|Prof)\.?\s+{_CAPITALISED}(?:\s+{_CAPITALISED})?\b")


def _phone_replacement(match: re.Match[str]) -> str:
    text = match.group()
    digits = sum(c.isdigit() for c in text)
    return "<PHONE>" if 7 <= digits <= 15 and not _ISO_DATE.fullmatch(text) else text


Replacement = Callable[[re.Match[str]], str] | str
_PATTERNS: dict[str, tuple[tuple[re.Pattern[str], Replacement], ...]] = {
    "email": ((_EMAIL, "<EMAIL>"),),
    "url": ((_URL, "<URL>"),),
    "address": tuple((pattern, "<ADDRESS>") for pattern in (_STREET, _PO_BOX, _US_ZIP, _UK_POSTCODE, _CA_POSTCODE)),
    "phone": ((_PHONE, _phone_replacement),),
    "person_name": ((_HONORIFIC_NAME, "<PERSON_NAME>"), (_GIVEN_NAME_SURNAME, "<PERSON_NAME>")),
}


def redact(text: str, entities: list[str]) -> tuple[str, dict[str, int]]:
    """`text` with every match of `entities` replaced by its tag, and the number replaced per entity."""
    counts: dict[str, int] = {}
    for entity in ENTITIES:
        if entity not in entities:
            continue
        tag = f"<{entity.upper()}>"
        before = text.count(tag)
        for pattern, replacement in _PATTERNS[entity]:
            text = pattern.sub(replacement, text)
        if found := text.count(tag) - before:
            counts[entity] = found
    return text, counts
