"""Scores kept apart from decisions: a sqlite table of (score id, sample key) -> (media sha256, score).

A score id names what was computed (op kind, implementation version, scoring parameters, decode size), so
a rerun that changes only thresholds finds every score here and calls no scorer. The media digest guards
against a key whose bytes changed (a clip trimmed differently): such an entry is ignored and rescored.

Safe across threads, processes and hosts:
- threads: each thread opens its own connection on first use (Ray runs an actor's batches on a thread
  pool, and a sqlite connection may only be used by the thread that created it);
- processes: sqlite in WAL mode lets the local executor's worker processes, or a host's Ray workers, read
  and write one file concurrently;
- hosts: each host writes its own file (scores-<hostname>.sqlite), so a cache directory on a shared
  filesystem never has two hosts locking one sqlite file (sqlite's locking is unreliable on network
  filesystems). A host does not see another host's scores; the cache is an optimisation, never needed
  for a correct result, so keeping it node-local is better still.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from runtime.curation.api import Score

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    score_id TEXT NOT NULL,
    key TEXT NOT NULL,
    digest TEXT NOT NULL,
    score TEXT NOT NULL,
    PRIMARY KEY (score_id, key)
)
"""


def score_id(kind: str, version: str, params: dict[str, Any], decode_side: int | str | None) -> str:
    """A short stable id for one scoring configuration; `decode_side` names the decode (size, luma-only)."""
    text = json.dumps([kind, version, params, decode_side], sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class ScoreCache:
    """Score lookups and inserts; one object may be shared by threads (connections are per thread)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"scores-{socket.gethostname()}.sqlite"
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._connection()  # create the file and table now: a broken cache directory fails before any work

    @property
    def _db(self) -> sqlite3.Connection:
        return self._connection()

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on its first use."""
        db = getattr(self._local, "db", None)
        if db is None:
            # Used by this thread only; check_same_thread=False lets `close` (the owner's thread) close it.
            db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            self._wal(db)
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
            db.execute(_SCHEMA)
            db.commit()
            self._local.db = db
            with self._lock:
                self._opened.append(db)
        return db

    @staticmethod
    def _wal(db: sqlite3.Connection) -> None:
        """Switch to WAL. Workers opening a fresh cache together race for the switch, and sqlite answers the
        loser 'database is locked' at once (no busy wait), so retry for up to a minute."""
        for attempt in range(600):
            try:
                db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == 599:
                    raise
                time.sleep(0.1)

    def get(self, sid: str, keys_digests: list[tuple[str, str]]) -> dict[str, Score]:
        """Cached scores of those keys whose stored digest matches."""
        found: dict[str, Score] = {}
        wanted = dict(keys_digests)
        for start in range(0, len(keys_digests), 500):  # sqlite caps the number of bound parameters
            chunk = [key for key, _ in keys_digests[start : start + 500]]
            rows = self._db.execute(
                f"SELECT key, digest, score FROM scores WHERE score_id = ? AND key IN ({','.join('?' * len(chunk))})",
                [sid, *chunk],
            )
            for key, digest, score in rows:
                if wanted[key] == digest:
                    found[key] = json.loads(score)
        return found

    def put(self, sid: str, entries: list[tuple[str, str, Score]]) -> None:
        """Store (key, digest, score) entries in one transaction."""
        if not entries:
            return
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO scores (score_id, key, digest, score) VALUES (?, ?, ?, ?)",
                [(sid, key, digest, json.dumps(score, sort_keys=True)) for key, digest, score in entries],
            )

    def close(self) -> None:
        """Close the connections of every thread (call from the owner once the threads are done)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for db in opened:
            db.close()
        self._local = threading.local()
