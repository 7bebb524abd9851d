"""Barriers over model outputs: semantic dedup and distribution balancing (embeddings, k-means) and active
learning (a classifier's uncertainty band).

Each scores in the workers like a map op (an embedding or a probability per record, cached), then decides
over every record at the barrier in one process. Items arrive sorted by key, so every decision below is a
deterministic function of the scores. Embeddings reach the barrier as rows of per-shard .npy files beside
the manifests (memory-mapped), and the clustering (faiss k-means on a sample, assignment in chunks) and
in-cluster search (faiss flat inner-product range search) hold at most one cluster's vectors at a time.
"""

from __future__ import annotations

import hashlib
import math
from functools import cached_property
from pathlib import Path

import numpy as np

from runtime.curation.api import (
    KEEP,
    BarrierItem,
    BarrierOp,
    OpConfigError,
    Resources,
    Score,
    Verdict,
)
from runtime.curation.ops.hamming import keep_first
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
from runtime.curation.ops.model_scorers import caption_of
from runtime.curation.records import Record
from runtime.curation.registry import register

CLIP_SIDE = 224
EMBED_FRAMES = 3  # a video's embedding is the renormalised mean over first, middle and last frame
KMEANS_POINTS_PER_CENTROID = 256  # k-means trains on a sample of this many rows per centroid (faiss's default)
ASSIGN_CHUNK = 65_536  # rows assigned to centroids at once
POSITIVE_LABELS = ("positive", "hard", "difficult", "challenging", "uncertain", "yes", "true", "1")


class Embeddings:
    """The unit vectors of some of a barrier's items, gathered on demand: each item's vector is a row of
    its shard's memory-mapped .npy (written beside the manifests) or decoded from its score, so a barrier
    holds in memory only the rows it is working on."""

    def __init__(self, items: list[BarrierItem]) -> None:
        self.items = items
        self.indices = [i for i, item in enumerate(items) if item.vector is not None or item.score.get("embedding")]

    def __len__(self) -> int:
        return len(self.indices)

    def rows(self, positions: np.ndarray | list[int]) -> np.ndarray:
        """Unit vectors (float32, one row each) of the embedded items at `positions` (0 .. len - 1)."""
        vectors = np.stack([self._vector(self.items[self.indices[p]]) for p in positions]).astype(np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    @staticmethod
    def _vector(item: BarrierItem) -> np.ndarray:
        return np.asarray(item.vector) if item.vector is not None else decode_vector(item.score["embedding"])


def kmeans_labels(embeddings: Embeddings, positions: np.ndarray, clusters: int, seed: int = 0) -> np.ndarray:
    """Cluster index per position: faiss k-means with k = min(clusters, rows) and a fixed seed, trained on
    at most KMEANS_POINTS_PER_CENTROID rows per centroid (a seeded sample), then every row assigned to its
    nearest centroid in chunks: memory stays bounded by the sample and one chunk."""
    import faiss

    k = max(1, min(clusters, len(positions)))
    if k == 1:
        return np.zeros(len(positions), dtype=np.int64)
    sample = positions
    if len(positions) > k * KMEANS_POINTS_PER_CENTROID:
        chosen = np.random.default_rng(seed).choice(len(positions), k * KMEANS_POINTS_PER_CENTROID, replace=False)
        sample = positions[np.sort(chosen)]
    train = embeddings.rows(sample)
    kmeans = faiss.Kmeans(train.shape[1], k, niter=20, seed=seed, verbose=False,
                          max_points_per_centroid=KMEANS_POINTS_PER_CENTROID)
    kmeans.train(train)
    labels = np.empty(len(positions), dtype=np.int64)
    for start in range(0, len(positions), ASSIGN_CHUNK):
        _, nearest = kmeans.index.search(embeddings.rows(positions[start : start + ASSIGN_CHUNK]), 1)
        labels[start : start + ASSIGN_CHUNK] = nearest[:, 0]
    return labels


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

@register("semantic_dedup")
class SemDeDup(EmbeddingBarrier):
    """SemDeDup (Abbas et al., 2023): k-means over the embeddings, then inside each cluster a record is a
    duplicate of an earlier-keyed kept record when their cosine is >= 1 - eps; duplicates are dropped.
    Records without an embedding (no caption for a caption embedder) are kept and say so in metadata.
    With a smoke stand-in embedder, 1 - eps becomes the 90% quantile of each record's nearest in-cluster
    cosine (a random embedder's cosines say nothing about duplication)."""

    thresholded = True

    def decide_all(self, items: list[BarrierItem]) -> list[Verdict]:
        """Per cluster (memory bounded by the largest one): a faiss inner-product range search of its
        members against themselves gives every pair at cosine >= 1 - eps; keep-first over those pairs in key
        order decides, as comparing each record with every kept earlier one would."""
        verdicts = [Verdict.keep(semantic_dedup="no caption to embed") for _ in items]
        embeddings = Embeddings(items)
        if not len(embeddings):
            return verdicts
        everyone = np.arange(len(embeddings))
        labels = kmeans_labels(embeddings, everyone, self.spec.clusters)
        groups = [everyone[labels == c] for c in np.unique(labels)]  # each in key order
        threshold = 1 - self.spec.eps
        if self.weights.stand_in:
            nearest = np.concatenate([_nearest_other(embeddings.rows(g)) for g in groups if len(g) > 1] or [[1.0]])
            threshold = float(np.quantile(nearest, 1 - SMOKE_DROP_FRACTION))
        rule = (f"cosine >= {threshold:.4f}" + (f" (smoke stand-in: the {1 - SMOKE_DROP_FRACTION:.0%} quantile of "
                f"nearest in-cluster cosines replaces 1 - eps = {1 - self.spec.eps:g})" if self.weights.stand_in else ""))
        for group in groups:
            for verdict_index in (embeddings.indices[p] for p in group):
                verdicts[verdict_index] = KEEP
            originals, cosines = keep_first(len(group), *_pairs_above(embeddings.rows(group), threshold))
            for row in np.flatnonzero(originals >= 0).tolist():
                original = items[embeddings.indices[group[originals[row]]]].key
                verdicts[embeddings.indices[group[row]]] = Verdict.drop(
                    "semantic duplicate", f"cosine {cosines[row]:.4f} with {original}; duplicate when {rule}"
                )
        return verdicts


def _pairs_above(vectors: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (i, j), j < i, with cosine >= threshold among unit `vectors`, sorted by i then j, with cosines."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    # faiss keeps inner products strictly above its radius: step just below the threshold to keep equality.
    lims, cosines, ids = index.range_search(vectors, float(np.nextafter(np.float32(threshold), np.float32(-2))))
    query = np.repeat(np.arange(len(vectors)), np.diff(lims).astype(np.int64))
    earlier = ids < query
    query, neighbour, cosines = query[earlier], ids[earlier], cosines[earlier]
    order = np.lexsort((neighbour, query))
    return query[order], neighbour[order], cosines[order]


def _nearest_other(vectors: np.ndarray) -> np.ndarray:
    """Each row's highest cosine with another row (faiss flat search, two nearest: itself and the next)."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    cosines, ids = index.search(vectors, 2)
    other = np.where(ids[:, 0] == np.arange(len(vectors)), cosines[:, 1], cosines[:, 0])
    return other


@register("balance")
class HierarchicalBalance(EmbeddingBarrier):
    """Hierarchical k-means (clusters_per_level, top level first: each cluster of a level is split again),
    then every leaf cluster holding more than target_per_cluster records is downsampled to that many.
    Which records stay is a hash of their key (a uniform, reproducible sample). Without target_per_cluster
    the target is the median leaf size. Kept records carry their leaf as metadata `balance_cluster`."""

    def decide_all(self, items: list[BarrierItem]) -> list[Verdict]:
        verdicts = [Verdict.keep(balance_cluster="none: no caption to embed") for _ in items]
        embeddings = Embeddings(items)
        if not len(embeddings):
            return verdicts
        leaves = self.leaves(embeddings)
        target = self.spec.target_per_cluster or int(np.median([len(m) for m in leaves.values()]))
        for leaf, members in leaves.items():
            indices = [embeddings.indices[m] for m in members]
            order = sorted(indices, key=lambda i: hashlib.sha256(items[i].key.encode()).hexdigest())
            for rank, index in enumerate(order):
                if rank < target:
                    verdicts[index] = Verdict.keep(balance_cluster=leaf)
                else:
                    verdicts[index] = Verdict.drop(
                        "over-represented cluster", f"leaf cluster {leaf} holds {len(members)} records > target {target}"
                    )
        return verdicts

    def leaves(self, embeddings: Embeddings) -> dict[str, np.ndarray]:
        """Leaf cluster path ("3/7") -> embedding positions, splitting level by level with faiss k-means."""
        clusters = {"": np.arange(len(embeddings))}
        for level_clusters in self.spec.clusters_per_level:
            split: dict[str, np.ndarray] = {}
            for path, positions in clusters.items():
                labels = kmeans_labels(embeddings, positions, level_clusters)
                for label in np.unique(labels).tolist():
                    split[f"{path}/{label}" if path else str(label)] = positions[labels == label]
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
