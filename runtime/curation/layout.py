"""Where a curation run writes everything under its output directory.

    OUT/shards/STEM.tar                 kept samples, one shard per input shard
    OUT/review/STEM.stageK.tar          samples routed to human review in stage K
    OUT/quarantine/STEM.stageK.tar      unreadable samples, each with an error.json member
    OUT/report.json, OUT/report/*.png   the funnel and score histograms
    OUT/_work/stageK/STEM.json          manifest of STEM in stage K: every record's fate (the done-marker)
    OUT/_work/stageK/STEM.tar           records passed from stage K to K+1 (pipelines with barriers)
    OUT/_work/stageK/STEM.embeddings.npy  the embeddings the barrier ending stage K decides on (rows named
                                        by the manifest's barrier_score.embedding_row)
    OUT/_work/stageK/barrier.json       the verdicts of the barrier starting stage K, computed once
    OUT/report/rejects/                 a few dropped, review and quarantined samples per (op, reason)
    OUT/_cache/scores-HOST.sqlite       the score cache, one file per host (unless cache_dir is given)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    def kept(self, stem: str) -> Path:
        return self.root / "shards" / f"{stem}.tar"

    def review(self, stem: str, stage: int) -> Path:
        return self.root / "review" / f"{stem}.stage{stage}.tar"

    def quarantine(self, stem: str, stage: int) -> Path:
        return self.root / "quarantine" / f"{stem}.stage{stage}.tar"

    def intermediate(self, stage: int, stem: str) -> Path:
        return self.root / "_work" / f"stage{stage}" / f"{stem}.tar"

    def manifest(self, stage: int, stem: str) -> Path:
        return self.root / "_work" / f"stage{stage}" / f"{stem}.json"

    def embeddings(self, stage: int, stem: str) -> Path:
        return self.root / "_work" / f"stage{stage}" / f"{stem}.embeddings.npy"

    def barrier(self, stage: int) -> Path:
        return self.root / "_work" / f"stage{stage}" / "barrier.json"

    def rejects(self) -> Path:
        return self.root / "report" / "rejects"

    def cache(self) -> Path:
        return self.root / "_cache"

    def report(self) -> Path:
        return self.root / "report.json"

    def figures(self) -> Path:
        return self.root / "report"
