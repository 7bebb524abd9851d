"""Webdataset shards: find them, read samples without ever losing one silently, write them atomically.

Reading uses tarfile directly rather than webdataset's iterators so that damage is accounted for: tarfile
in its default mode stops quietly at the first bad header, dropping every later sample. Here the tar is
read with `ignore_zeros`, which skips bad blocks and resynchronises on the next valid header, and every
byte range no member accounts for (a corrupt header, a truncated tail) is quarantined with its offset.

Writing is deterministic (sorted members, mtime 0, no owner) so a rerun produces byte-identical shards,
and atomic: a shard is written under a temporary name and renamed into place, so a killed run leaves
either the previous file or the complete new one, never a truncated tar.
"""

from __future__ import annotations

import glob
import io
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from braceexpand import braceexpand

from runtime.curation.api import CurationError
from runtime.curation.records import Record

_BLOCK = tarfile.BLOCKSIZE
_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's base_plus_ext: key up to the first dot


@dataclass
class Unreadable:
    """A sample (or a byte range of a shard) that could not be read, with whatever bytes were recovered."""

    key: str
    shard: str
    error: str
    members: dict[str, bytes] = field(default_factory=dict)
    op: str = "read"
    seq: tuple[int, ...] = ()


def expand_shards(spec: str | os.PathLike | list) -> list[str]:
    """Shard paths from a directory, a glob, a brace pattern (shards-{000..009}.tar), a file, or a list."""
    if isinstance(spec, (list, tuple)):
        paths = [p for item in spec for p in expand_shards(item)]
    else:
        text = str(spec)
        if os.path.isdir(text):
            paths = sorted(glob.glob(os.path.join(text, "*.tar")))
        elif "{" in text:
            paths = list(braceexpand(text))
            missing = [p for p in paths if not os.path.isfile(p)]
            if missing:
                raise CurationError(f"input {text!r}: {len(missing)} shards do not exist, e.g. {missing[0]}")
        elif any(c in text for c in "*?["):
            paths = sorted(glob.glob(text))
        elif os.path.isfile(text):
            paths = [text]
        else:
            raise CurationError(f"input {text!r} is not a shard file, a directory, a glob or a brace pattern")
    if not paths:
        raise CurationError(f"input {spec!r} matches no .tar shards: a run that reads nothing is a failure")
    stems: dict[str, str] = {}
    for path in paths:
        other = stems.setdefault(shard_stem(path), path)
        if other != path:
            raise CurationError(
                f"input shards {other} and {path} share the name {shard_stem(path)!r}; outputs are named by "
                "input shard, so rename one"
            )
    return paths


def shard_stem(path: str) -> str:
    """The name outputs of this input shard are written under (file name without .tar)."""
    name = os.path.basename(path)
    return name.removesuffix(".tar")


def read_shard(path: str) -> Iterator[Record | Unreadable]:
    """Every sample of a shard in order, as a Record or, when unreadable, an Unreadable with the error."""
    stem = shard_stem(path)
    try:
        size = os.path.getsize(path)
    except OSError as error:
        yield Unreadable(f"_shard_{stem}", stem, f"shard cannot be opened: {error}")
        return
    # Two handles: tarfile seeks its own; damaged byte ranges are read through the other.
    with open(path, "rb") as file, open(path, "rb") as raw:
        try:
            tar = tarfile.open(fileobj=file, mode="r:", ignore_zeros=True)  # noqa: SIM115 - closed by `with tar`
        except tarfile.TarError as error:
            yield Unreadable(f"_shard_{stem}", stem, f"not a tar archive: {error}", {"bin": raw.read()})
            return
        with tar:
            yield from _read_members(tar, raw, stem, size)


def _read_members(tar: tarfile.TarFile, raw: io.BufferedReader, stem: str, size: int) -> Iterator[Record | Unreadable]:
    """Group members into samples by key; quarantine every byte range no member accounts for."""
    seen: set[str] = set()
    key, members, expected = None, {}, 0
    while True:
        try:
            info = tar.next()
        except tarfile.TarError as error:
            yield from _flush(key, members, stem, seen)
            yield from _region(raw, stem, expected, size, f"tar unreadable from here: {error}")
            return
        if info is None:
            break
        if info.offset > expected:
            yield from _region(raw, stem, expected, info.offset, "corrupt tar header(s) skipped")
        expected = info.offset_data + -(-info.size // _BLOCK) * _BLOCK
        if not info.isfile():
            continue
        match = _KEY_EXT.match(info.name)
        if match is None:
            yield Unreadable(f"_member_{info.offset}", stem, f"member name {info.name!r} has no extension")
            continue
        member_key, ext = match.groups()
        if member_key != key:
            yield from _flush(key, members, stem, seen)
            key, members = member_key, {}
        try:
            members[ext] = tar.extractfile(info).read()
        except (tarfile.TarError, OSError) as error:
            members.pop(ext, None)
            yield Unreadable(key, stem, f"member {info.name} unreadable: {error}", dict(members))
            key, members = None, {}
            seen.add(member_key)
    if key is not None and size - expected < _BLOCK:
        # Writers end a tar with zero blocks; without them the file was cut at a member boundary
        # and the last sample may be missing members.
        yield Unreadable(key, stem, "shard ends without an end-of-archive marker (truncated?)", members)
    else:
        yield from _flush(key, members, stem, seen)
    yield from _region(raw, stem, expected, size, "trailing bytes after the last member")


def _flush(key: str | None, members: dict[str, bytes], stem: str, seen: set[str]) -> Iterator[Record | Unreadable]:
    if key is None:
        return
    if key in seen:
        yield Unreadable(key, stem, "duplicate sample key in shard (members not adjacent)", members)
        return
    seen.add(key)
    try:
        yield Record.from_members(key, members, stem)
    except (ValueError, TypeError) as error:
        yield Unreadable(key, stem, str(error), members)


def _region(raw: io.BufferedReader, stem: str, start: int, stop: int, error: str) -> Iterator[Unreadable]:
    """Quarantine bytes [start, stop) unless they are tar padding (all zeros)."""
    if stop <= start:
        return
    raw.seek(start)
    data = raw.read(stop - start)
    if data.strip(b"\0"):
        yield Unreadable(f"_bytes_{start}_{stop}", stem, f"{error} (bytes {start}..{stop})", {"bin": data})


class ShardWriter:
    """Writes samples to PATH.tmp-PID and renames it to PATH on close; nothing appears if never written."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.count = 0
        self._tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        self._tar: tarfile.TarFile | None = None

    def write(self, key: str, members: dict[str, bytes]) -> None:
        if self._tar is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Closed by close() or abort(), never left open: a context manager cannot span write() calls.
            self._tar = tarfile.open(self._tmp, "w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        for ext in sorted(members):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(members[ext]), 0, 0o644
            self._tar.addfile(info, io.BytesIO(members[ext]))
        self.count += 1

    def close(self) -> None:
        """Finish the tar and rename it into place (fsync first: a crash must not leave an empty rename).

        With nothing written, a file left at PATH by an earlier run of this shard is removed."""
        if self._tar is None:
            self.path.unlink(missing_ok=True)
            return
        self._tar.close()
        with open(self._tmp, "rb") as file:
            os.fsync(file.fileno())
        os.replace(self._tmp, self.path)
        self._tar = None

    def abort(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tmp.unlink(missing_ok=True)
            self._tar = None


def remove_stale_temporaries(paths: list[Path]) -> None:
    """Delete temporary files a killed run left for these outputs (only these: other tasks may be running)."""
    for path in paths:
        if path.parent.is_dir():
            for stale in path.parent.glob(f"{glob.escape(path.name)}.tmp-*"):
                stale.unlink(missing_ok=True)


def member_keys(path: Path) -> list[str]:
    """Sample keys of a shard, in order, from headers only."""
    keys: list[str] = []
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            match = _KEY_EXT.match(info.name)
            if match and (not keys or keys[-1] != match.group(1)):
                keys.append(match.group(1))
    return keys
