"""Barriers over model outputs: semantic dedup and distribution balancing (embeddings, k-means) and active
learning (a classifier's uncertainty band).

Each scores in the workers like a map op (an embedding or a probability per record, cached), then decides
over every record at the barrier in one process. Items arrive sorted by key, so every decision below is a
deterministic function of the scores.
"""

from __future__ import annotations

import hashlib
import math
from functools import cached_property
from pathlib import Path

import numpy as np

from runtime.curation.api import (
    BarrierItem,
    BarrierOp,
    OpConfigError,
    Resources,
    Score,
    Verdict,
)
from runtime.curation.modelzoo.classifier import (
    CLASSIFIER_FOLDER,
    CLASSIFIER_REQUIRED,
    folder_labels,
)
from runtime.curation.modelzoo.embedders import (
    EMBEDDER_FOLDER,
    decode_vector,
    encode_vector,
    packaged_minilm,
)
from runtime.curation.modelzoo.weights import (
    SMOKE_DROP_FRACTION,
    Located,
    ModelBacked,
    model_resources,
    processor_side,
)
from runtime.curation.ops_model_scorers import caption_of
from runtime.curation.records import Record
from runtime.curation.registry import register

CLIP_SIDE = 224
EMBED_FRAMES = 3  # a video's embedding is the renormalised mean over first, middle and last frame
MINIBATCH_KMEANS_ABOVE = 100_000  # full k-means (Lloyd) below, mini-batch k-means above (memory, time)
POSITIVE_LABELS = ("positive", "hard", "difficult", "challenging", "uncertain", "yes", "true", "1")


def kmeans_labels(vectors: np.ndarray, clusters: int, seed: int = 0) -> np.ndarray:
    """Cluster index per row: scikit-learn k-means with k = min(clusters, rows), fixed seed."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    k = max(1, min(clusters, len(vectors)))
    if k == 1:
        return np.zeros(len(vectors), dtype=int)
    model = (MiniBatchKMeans if len(vectors) > MINIBATCH_KMEANS_ABOVE else KMeans)(n_clusters=k, random_state=seed, n_init=3)
    return model.fit_predict(vectors)


class EmbeddingBarrier(ModelBacked, BarrierOp):
    """Scores one embedding per record with `spec.embedder`: CLIP image embeddings (pixels) or sentence
    embeddings of the record's caption (original, else first synthetic), by the embedder folder's type."""

    stateful = True
    batch_size = 32
    thresholded = False  # whether decide_all compares against an absolute threshold (for the stand-in note)

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        from runtime.curation.modelzoo.embedders import is_image_embedder
        from runtime.encoders.model_directory import model_folder

        packaged = packaged_minilm(spec.embedder)
        if packaged is not None and not (ctx.model_dir and model_folder(Path(ctx.model_dir), spec.embedder)):
            self.weights = Located(spec.embedder, packaged)
        else:
            self.weights = self.locate(spec.embedder, EMBEDDER_FOLDER, (("config.json",),), thresholds=self.thresholded)
        self.images = is_image_embedder(self.weights)

    @cached_property
    def model(self):
        from runtime.curation.modelzoo.clip import ClipEmbedder
        from runtime.curation.modelzoo.embedders import SentenceEmbedder

        return ClipEmbedder.load(self.weights) if self.images else SentenceEmbedder(self.weights.path)

    def decode_side(self) -> int | None:
        return processor_side(self.weights, CLIP_SIDE) if self.images else None

    def resources(self) -> Resources:
        return model_resources(4.0)

    def scoring_params(self) -> dict:
        return {"embedder": self.spec.embedder, "weights": self.weights.fingerprint(), "frames": EMBED_FRAMES}

    def score(self, records: list[Record]) -> list[Score | None]:
        if self.images:
            side = self.decode_side()
            frames, slices = [], []
            for record in records:
                mine = record.pixels.keyframes(side, EMBED_FRAMES)
                slices.append(slice(len(frames), len(frames) + len(mine)))
                frames.extend(mine)
            per_frame = self.model.image_embeddings(frames)
            vectors = [per_frame[part].mean(axis=0) for part in slices]
            return [self._scored(v / max(np.linalg.norm(v), 1e-12), "image") for v in vectors]
        texts = [caption_of(r)[0] for r in records]
        present = [t for t in texts if t]
        vectors = iter(self.model.text_embeddings(present)) if present else iter(())
        return [self._scored(next(vectors), "caption") if text else {"embedding": None, "of": "caption"} for text in texts]

    def _scored(self, vector: np.ndarray, of: str) -> Score:
        score: Score = {"embedding": encode_vector(vector), "dim": len(vector), "of": of}
        if self.weights.stand_in:
            score["stand_in"] = self.weights.model_id
        return score

    def embedded(self, items: list[BarrierItem]) -> tuple[list[int], np.ndarray]:
        """Indices of the items with an embedding and their unit vectors, one row each."""
        indices = [i for i, item in enumerate(items) if item.score.get("embedding")]
        if not indices:
            return [], np.zeros((0, 0), dtype=np.float32)
        vectors = np.stack([decode_vector(items[i].score["embedding"]) for i in indices])
        return indices, vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


@register("semantic_dedup")
class SemDeDup(EmbeddingBarrier):
    """SemDeDup (Abbas et al., 2023): k-means over the embeddings, then inside each cluster a record is a
    duplicate of an earlier-keyed kept record when their cosine is >= 1 - eps; duplicates are dropped.
    Records without an embedding (no caption for a caption embedder) are kept and say so in metadata.
    With a smoke stand-in embedder, 1 - eps becomes the 90% quantile of each record's nearest in-cluster
    cosine (a random embedder's cosines say nothing about duplication)."""

    thresholded = True

    def decide_all(self, items: list[BarrierItem]) -> list[Verdict]:
        verdicts = [Verdict.keep(semantic_dedup="no caption to embed") for _ in items]
        indices, vectors = self.embedded(items)
        if not indices:
            return verdicts
        labels = kmeans_labels(vectors, self.spec.clusters)
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        similarities = [vectors[g] @ vectors[g].T for g in groups]
        threshold = 1 - self.spec.eps
        if self.weights.stand_in:
            nearest = np.concatenate([np.max(s - 2 * np.eye(len(s)), axis=1) for s in similarities if len(s) > 1] or [[1.0]])
            threshold = float(np.quantile(nearest, 1 - SMOKE_DROP_FRACTION))
        rule = (f"cosine >= {threshold:.4f}" + (f" (smoke stand-in: the {1 - SMOKE_DROP_FRACTION:.0%} quantile of "
                f"nearest in-cluster cosines replaces 1 - eps = {1 - self.spec.eps:g})" if self.weights.stand_in else ""))
        for group, sims in zip(groups, similarities):
            kept: list[int] = []
            for row, member in enumerate(group):
                index = indices[member]
                match = next((k for k in kept if sims[row, k] >= threshold), None)
                if match is None:
                    kept.append(row)
                    verdicts[index] = Verdict.keep()
                else:
                    original = items[indices[group[match]]].key
                    verdicts[index] = Verdict.drop(
                        "semantic duplicate", f"cosine {sims[row, match]:.4f} with {original}; duplicate when {rule}"
                    )
        return verdicts


@register("balance")
class HierarchicalBalance(EmbeddingBarrier):
    """Hierarchical k-means (clusters_per_level, top level first: each cluster of a level is split again),
    then every leaf cluster holding more than target_per_cluster records is downsampled to that many.
    Which records stay is a hash of their key (a uniform, reproducible sample). Without target_per_cluster
    the target is the median leaf size. Kept records carry their leaf as metadata `balance_cluster`."""

    def decide_all(self, items: list[BarrierItem]) -> list[Verdict]:
        verdicts = [Verdict.keep(balance_cluster="none: no caption to embed") for _ in items]
        indices, vectors = self.embedded(items)
        if not indices:
            return verdicts
        leaves = self.leaves(vectors)
        target = self.spec.target_per_cluster or int(np.median([len(m) for m in leaves.values()]))
        for leaf, members in leaves.items():
            order = sorted(members, key=lambda m: hashlib.sha256(items[indices[m]].key.encode()).hexdigest())
            for rank, member in enumerate(order):
                if rank < target:
                    verdicts[indices[member]] = Verdict.keep(balance_cluster=leaf)
                else:
                    verdicts[indices[member]] = Verdict.drop(
                        "over-represented cluster", f"leaf cluster {leaf} holds {len(members)} records > target {target}"
                    )
        return verdicts

    def leaves(self, vectors: np.ndarray) -> dict[str, list[int]]:
        """Leaf cluster path ("3/7") -> row indices, splitting level by level."""
        clusters = {"": list(range(len(vectors)))}
        for level_clusters in self.spec.clusters_per_level:
            split: dict[str, list[int]] = {}
            for path, rows in clusters.items():
                labels = kmeans_labels(vectors[rows], level_clusters)
                for row, label in zip(rows, labels):
                    split.setdefault(f"{path}/{label}" if path else str(label), []).append(row)
            clusters = split
        return clusters


@register("active_learning")
class UncertaintyBandSelection(ModelBacked, BarrierOp):
    """Active learning by uncertainty sampling: a classifier (MODEL_DIR/<scorer>) gives each record the
    probability of its positive class (label 1 of two, a positive/hard label, or one sigmoid logit).
    Records whose probability is inside uncertainty_band are candidates, most uncertain (closest to the
    band's centre) first; each of `rounds` rounds selects the next ceil(budget_fraction x pool) of them.
    Selected records are kept with metadata `active_learning_round`; the others are dropped with the
    reason (confident, or over budget). With a smoke stand-in the band is read as quantiles of the
    observed probabilities (a random classifier's probabilities are not calibrated)."""

    stateful = True
    batch_size = 32

    def __init__(self, spec, ctx) -> None:
        super().__init__(spec, ctx)
        low, high = spec.uncertainty_band
        if not 0 <= low < high <= 1:
            raise OpConfigError(f"{spec.name}.uncertainty_band = {spec.uncertainty_band}: need 0 <= low < high <= 1 (probabilities)")
        self.weights = self.locate(spec.scorer, CLASSIFIER_FOLDER, CLASSIFIER_REQUIRED)
        self.labels = ["negative", "positive"] if self.weights.stand_in else folder_labels(self.weights.path)
        self.column = self.positive_column(self.labels)

    def positive_column(self, labels: list[str]) -> int:
        if len(labels) == 1:
            return 0
        named = [i for i, label in enumerate(labels) if label.strip().lower() in POSITIVE_LABELS]
        if named:
            return named[0]
        if len(labels) == 2:
            return 1
        raise OpConfigError(
            f"{self.spec.name}: classifier {self.spec.scorer!r} has {len(labels)} labels {labels} and none names the "
            f"positive class ({', '.join(POSITIVE_LABELS)}); use a binary classifier or rename its positive label"
        )

    @cached_property
    def model(self):
        from runtime.curation.modelzoo.classifier import ImageClassifier

        return ImageClassifier.load(self.weights, self.labels)

    def decode_side(self) -> int | None:
        return processor_side(self.weights, CLIP_SIDE)

    def resources(self) -> Resources:
        return model_resources(8.0)

    def scoring_params(self) -> dict:
        return {"scorer": self.spec.scorer, "weights": self.weights.fingerprint(), "column": self.column}

    def score(self, records: list[Record]) -> list[Score | None]:
        side = self.decode_side()
        images = [r.pixels.keyframes(side, 1)[0] for r in records]
        probabilities = self.model.probabilities(images)[:, self.column]
        extra = {"stand_in": self.weights.model_id} if self.weights.stand_in else {}
        return [{"value": float(p), **extra} for p in probabilities]

    def decide_all(self, items: list[BarrierItem]) -> list[Verdict]:
        values = np.array([item.score["value"] for item in items], dtype=float)
        low, high = self.spec.uncertainty_band
        if self.weights.stand_in and len(values):
            low, high = (float(q) for q in np.quantile(values, [low, high]))
        centre = (low + high) / 2
        band = sorted((i for i, v in enumerate(values) if low <= v <= high), key=lambda i: (abs(values[i] - centre), items[i].key))
        per_round = math.ceil(self.spec.budget_fraction * len(items))
        verdicts = [
            Verdict.drop("confident: outside the uncertainty band", f"p = {v:.4f} outside [{low:.4g}, {high:.4g}]")
            for v in values
        ]
        for rank, index in enumerate(band):
            round_ = rank // per_round + 1
            if round_ <= self.spec.rounds:
                verdicts[index] = Verdict.keep(active_learning_round=round_, active_learning_p=round(float(values[index]), 5))
            else:
                verdicts[index] = Verdict.drop(
                    "uncertain but over budget",
                    f"rank {rank + 1} in the band; {self.spec.rounds} rounds x {per_round} ({self.spec.budget_fraction:g} of {len(items)})",
                )
        return verdicts
