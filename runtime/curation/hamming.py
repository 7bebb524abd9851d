"""Near-duplicate search in Hamming space without comparing all pairs: multi-index hashing.

Norouzi, Punjani and Fleet, "Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012. A code of
B bits is cut into m disjoint chunks, each indexed in its own hash table. If two codes differ in at most
r bits, some chunk differs in at most floor(r / m) bits (pigeonhole: m chunks each differing in more
would differ in at least m * (floor(r / m) + 1) > r bits). A query therefore probes, in every table, its
own chunk and the chunk values within floor(r / m) bit flips, and verifies the few candidates found with
a popcount. With r = 4 of 64 bits, m = 5 chunks of about 13 bits are probed exactly (no flips).
"""

from __future__ import annotations

from itertools import combinations

MIN_CHUNK_BITS = 10  # below this, buckets hold too many codes and probing degenerates to a scan


class HammingIndex:
    """Codes (ints of `bits` bits) added one by one; `find` returns an added code within `radius` bits."""

    def __init__(self, bits: int, radius: int) -> None:
        if bits <= 0 or radius < 0:
            raise ValueError(f"bits must be > 0 and radius >= 0, got bits={bits}, radius={radius}")
        self.bits, self.radius = bits, radius
        chunks = max(1, min(radius + 1, bits // MIN_CHUNK_BITS))
        self.flips = radius // chunks
        sizes = [bits // chunks + (1 if i < bits % chunks else 0) for i in range(chunks)]
        self._chunks: list[tuple[int, int]] = []  # (shift, mask)
        shift = 0
        for size in sizes:
            self._chunks.append((shift, (1 << size) - 1))
            shift += size
        # Every way to flip up to `flips` bits of each chunk: XOR masks probed around the query's chunk.
        self._probes = [
            [sum(1 << b for b in bits_) for n in range(self.flips + 1) for bits_ in combinations(range(size), n)]
            for size in sizes
        ]
        self._tables: list[dict[int, list[int]]] = [{} for _ in sizes]
        self.codes: list[int] = []

    def add(self, code: int) -> int:
        """Index `code`; returns its id (insertion order)."""
        ident = len(self.codes)
        self.codes.append(code)
        for (shift, mask), table in zip(self._chunks, self._tables):
            table.setdefault((code >> shift) & mask, []).append(ident)
        return ident

    def find(self, code: int) -> tuple[int, int] | None:
        """(id, distance) of the earliest-added code within `radius` bits of `code`, or None."""
        best: tuple[int, int] | None = None
        for (shift, mask), table, probes in zip(self._chunks, self._tables, self._probes):
            chunk = (code >> shift) & mask
            for probe in probes:
                for ident in table.get(chunk ^ probe, ()):
                    if best is not None and ident >= best[0]:
                        break  # buckets are in insertion order: later ids cannot beat the best
                    distance = (self.codes[ident] ^ code).bit_count()
                    if distance <= self.radius:
                        best = (ident, distance)
                        break
        return best

    def __len__(self) -> int:
        return len(self.codes)
