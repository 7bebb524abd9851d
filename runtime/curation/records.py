"""A sample as it flows through curation, and its webdataset members.

Members of sample KEY in a shard:

    KEY.jpg | .jpeg | .png | .webp | .mp4 | ...   the media (exactly one)
    KEY.json                                     metadata
    KEY.txt                                      the original caption (img2dataset convention)
    KEY.captions.json                            {"original": str | null,
                                                  "synthetic": [{"text", "model", "style", "language"}]}
    KEY.scores.json                              {op name: score object}
    KEY.NAME.mask.png                            one mask per NAME (e.g. defect)
    anything else                                passed through unchanged (e.g. precomputed embeddings)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from runtime.curation.decode import Decoded

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
VIDEO_EXTS = ("mp4", "webm", "mov", "avi", "mkv")
MEDIA_EXTS = IMAGE_EXTS + VIDEO_EXTS
MASK_SUFFIX = ".mask.png"

FateKind = Literal["kept", "pass", "dropped", "review", "quarantined", "split"]


@dataclass(frozen=True)
class Fate:
    """Where a record ended: kept (final output), pass (to the next stage), dropped, review, quarantined, split."""

    kind: FateKind
    op: str = ""
    reason: str = ""
    detail: str = ""
    children: tuple[str, ...] = ()


@dataclass(eq=False)
class Record:
    """One sample: key, media bytes and the columns curation reads and writes."""

    key: str
    media: bytes
    media_ext: str
    shard: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    captions: dict[str, Any] = field(default_factory=lambda: {"original": None, "synthetic": []})
    scores: dict[str, Any] = field(default_factory=dict)
    masks: dict[str, bytes] = field(default_factory=dict)
    columns: dict[str, bytes] = field(default_factory=dict)
    # Runtime state, never written: position in the shard (children extend their parent's, so
    # outputs keep input order), the op that created it ("" for input samples), where it ended,
    # seconds per op, the decode cache.
    seq: tuple[int, ...] = ()
    origin: str = ""
    fate: Fate | None = None
    trace: dict[str, float] = field(default_factory=dict)
    _pixels: Decoded | None = field(default=None, repr=False)
    _digest: str | None = field(default=None, repr=False)

    @property
    def is_video(self) -> bool:
        return self.media_ext in VIDEO_EXTS

    @property
    def digest(self) -> str:
        """sha256 of the media bytes (hex), computed once."""
        if self._digest is None:
            self._digest = hashlib.sha256(self.media).hexdigest()
        return self._digest

    @property
    def pixels(self) -> Decoded:
        """The decode cache; the runner attaches one sized for the stage, this default decodes at native size."""
        if self._pixels is None:
            self._pixels = Decoded(self.media, self.media_ext)
        return self._pixels

    def attach_decoder(self, plan_side: int, *, color: bool = True) -> None:
        """Decode at `plan_side`: the largest size any op of the stage reads; in colour unless no op of the
        stage needs colour (`color=False`: a luma-only decode, see runtime/curation/decode.py)."""
        self.release()
        self._pixels = Decoded(self.media, self.media_ext, plan_side, color)

    def replace_media(self, media: bytes, ext: str) -> None:
        """New media (a trimmed clip): the digest and decoded pixels of the old bytes are dropped."""
        old = self._pixels
        self.media, self.media_ext, self._digest = media, ext, None
        if old is not None:
            self.attach_decoder(old.plan_side, color=old.color)

    def release(self) -> None:
        """Free decoded pixels and scratch files."""
        if self._pixels is not None:
            self._pixels.close()
            self._pixels = None

    def child(self, key: str, media: bytes, ext: str, **metadata: Any) -> Record:
        """A derived record: same shard and captions, parent's metadata plus `metadata`, no scores yet."""
        return Record(
            key=key,
            media=media,
            media_ext=ext,
            shard=self.shard,
            metadata={**self.metadata, "parent": self.key, **metadata},
            captions=json.loads(json.dumps(self.captions)),
        )

    def to_members(self) -> dict[str, bytes]:
        """The webdataset members of this record, keyed by extension."""
        members = dict(self.columns)
        members[self.media_ext] = self.media
        members["json"] = _dump(self.metadata)
        members["captions.json"] = _dump(self.captions)
        if self.captions.get("original") is not None:
            members["txt"] = str(self.captions["original"]).encode()
        if self.scores:
            members["scores.json"] = _dump(self.scores)
        for name, png in self.masks.items():
            members[name + MASK_SUFFIX] = png
        return members

    @classmethod
    def from_members(cls, key: str, members: dict[str, bytes], shard: str) -> Record:
        """Parse one sample's members; raises ValueError naming what is missing or malformed."""
        media_exts = [ext for ext in members if ext.lower() in MEDIA_EXTS]
        if len(media_exts) != 1:
            found = ", ".join(sorted(members)) or "nothing"
            raise ValueError(f"expected exactly one media member ({', '.join(MEDIA_EXTS)}), found: {found}")
        ext = media_exts[0]
        record = cls(key=key, media=members[ext], media_ext=ext.lower(), shard=shard)
        for name, data in members.items():
            if name == ext:
                continue
            if name == "json":
                record.metadata = _load(data, key, name)
            elif name == "captions.json":
                record.captions = _load(data, key, name)
            elif name == "txt":
                record.captions.setdefault("original", None)
                if record.captions["original"] is None:
                    record.captions["original"] = data.decode("utf-8", errors="replace")
            elif name == "scores.json":
                record.scores = _load(data, key, name)
            elif name.endswith(MASK_SUFFIX):
                record.masks[name[: -len(MASK_SUFFIX)]] = data
            else:
                record.columns[name] = data
        record.captions.setdefault("synthetic", [])
        return record


def _dump(value: Any) -> bytes:
    # sort_keys: the same record always serialises to the same bytes, so reruns produce identical shards.
    return json.dumps(value, sort_keys=True, ensure_ascii=False).encode()


def _load(data: bytes, key: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"member {key}.{name} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise TypeError(f"member {key}.{name} must be a JSON object, got {type(value).__name__}")
    return value
