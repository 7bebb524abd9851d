"""Semantic dedup, hierarchical balancing and active learning: scores in workers, decisions at the barrier."""

from __future__ import annotations

import numpy as np

from compiler.schema.data import ActiveLearning, Balance, SemanticDedup
from runtime.curation.api import BarrierItem
from runtime.curation.modelzoo.embedders import encode_vector
from runtime.curation.registry import build


def items_of(vectors: dict[str, np.ndarray]) -> list[BarrierItem]:
    return [BarrierItem(key, "shard", {"embedding": encode_vector(v / np.linalg.norm(v))}) for key, v in sorted(vectors.items())]


def test_semantic_dedup_drops_near_duplicate_embeddings(full):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 64))
    vectors = {f"u{i}": base[i] for i in range(3)}
    vectors["u0_copy"] = base[0] + 0.01 * rng.normal(size=64)  # cosine ~0.9999 with u0
    vectors["u1_far"] = base[1] + 1.0 * rng.normal(size=64)  # same direction family, cosine ~0.7
    impl = build(SemanticDedup(embedder="all-minilm-l6-v2", clusters=2, eps=0.05), full)
    verdicts = dict(zip(sorted(vectors), impl.decide_all(items_of(vectors))))
    assert {k for k, v in verdicts.items() if v.fate == "drop"} == {"u0_copy"}
    assert "with u0" in verdicts["u0_copy"].detail


def test_semantic_dedup_in_cluster_search_matches_comparing_every_pair(full):
    """One cluster, 600 vectors with planted near-copies (chains included): the faiss range search plus
    keep-first drops exactly what comparing each record with every earlier kept one drops."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(600, 32)).astype(np.float32)
    for i in range(5, 600, 4):
        vectors[i] = vectors[int(rng.integers(0, i))] + rng.normal(scale=float(rng.uniform(0.05, 0.4)), size=32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    eps = 0.02
    kept, expected = [], []
    for i in range(len(unit)):
        match = next((k for k in kept if float(unit[i] @ unit[k]) >= 1 - eps), None)
        expected.append(match)
        if match is None:
            kept.append(i)
    keys = [f"k{i:04d}" for i in range(len(unit))]
    items = [BarrierItem(key, "shard", {"dim": 32}, vector=row) for key, row in zip(keys, unit)]
    impl = build(SemanticDedup(embedder="all-minilm-l6-v2", clusters=1, eps=eps), full)
    verdicts = impl.decide_all(items)
    dropped = [v.fate == "drop" for v in verdicts]
    assert dropped == [m is not None for m in expected]
    assert 20 < sum(dropped) < 150
    for verdict, match in zip(verdicts, expected):
        if match is not None:
            assert f"with {keys[match]};" in verdict.detail


def test_semantic_dedup_of_captions_with_the_packaged_minilm(kit, full):
    captions = ["a red car parked on a street", "a red car parked on the street", "a bowl of tomato soup"]
    records = [kit.image_record(f"r{i}", i, caption=c) for i, c in enumerate(captions)] + [kit.image_record("none", 9)]
    impl = build(SemanticDedup(embedder="sentence-transformers/all-MiniLM-L6-v2", clusters=2, eps=0.05), full)
    assert impl.notes() == []  # real weights, shipped in a package: nothing substituted
    scores = impl.score(records)
    assert scores[-1]["embedding"] is None
    verdicts = impl.decide_all([BarrierItem(r.key, "s", s) for r, s in zip(records, scores)])
    assert [v.fate for v in verdicts] == ["keep", "drop", "keep", "keep"]
    assert dict(verdicts[3].metadata) == {"semantic_dedup": "no caption to embed"}


def test_balance_downsamples_the_over_full_leaf(full):
    rng = np.random.default_rng(1)
    crowded = {f"c{i:02d}": np.array([10.0, 0, 0, 0]) + 0.1 * rng.normal(size=4) for i in range(12)}
    rare = {f"r{i}": np.array([0, 10.0, 0, 0]) + 0.1 * rng.normal(size=4) for i in range(2)}
    impl = build(Balance(embedder="clip-vit-b32", clusters_per_level=[2, 1], target_per_cluster=3), full)
    items = items_of({**crowded, **rare})
    verdicts = dict(zip([i.key for i in items], impl.decide_all(items)))
    kept = {k for k, v in verdicts.items() if v.fate == "keep"}
    assert {"r0", "r1"} <= kept and len(kept & set(crowded)) == 3
    assert {v.reason for v in verdicts.values() if v.fate == "drop"} == {"over-represented cluster"}
    assert verdicts["r0"].metadata["balance_cluster"].count("/") == 1  # a two-level leaf path


def test_active_learning_selects_the_uncertain_band_round_by_round(full):
    impl = build(ActiveLearning(scorer="difficulty-classifier", uncertainty_band=(0.4, 0.6), rounds=2, budget_fraction=0.1), full)
    values = {f"k{i:02d}": p for i, p in enumerate([0.05, 0.5, 0.45, 0.59, 0.95, 0.52, 0.3, 0.7, 0.41, 0.2,
                                                     0.1, 0.9, 0.15, 0.85, 0.25, 0.75, 0.35, 0.65, 0.02, 0.98])}
    items = [BarrierItem(k, "s", {"value": v}) for k, v in sorted(values.items())]
    verdicts = dict(zip(sorted(values), impl.decide_all(items)))
    selected = {k: v.metadata["active_learning_round"] for k, v in verdicts.items() if v.fate == "keep"}
    # 2 per round (10% of 20): the four closest to 0.5 of the band [0.4, 0.6]
    assert selected == {"k01": 1, "k05": 1, "k02": 2, "k03": 2}
    assert verdicts["k08"].reason == "uncertain but over budget"
    assert verdicts["k00"].reason == "confident: outside the uncertainty band"


def test_active_learning_scores_the_positive_class(kit, full):
    impl = build(ActiveLearning(scorer="difficulty-classifier"), full)
    assert impl.column == 1  # labels easy, hard
    scores = impl.score([kit.image_record("a", 1), kit.image_record("b", 2)])
    assert all(0 <= s["value"] <= 1 for s in scores)

