"""SemDeDup pruning: semantic duplicates against brute force, planted copies pruned first, difficulty."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.curation.errors import LengthMismatch
from winnow.curation.knn_graph import kmeans
from winnow.curation.prune import find_semantic_duplicates, plan_prune, score_prototypicality
from winnow.curation.rebalance import plan_rebalance


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _blobs(n=600, d=16, centres=6, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d))
    which = rng.integers(0, centres, n)
    return _unit(c[which] + spread * rng.standard_normal((n, d))), which


def test_semantic_duplicates_match_brute_force():
    x, _ = _blobs(n=300, spread=0.15)
    cent, assign = kmeans(x, 5)
    proto = score_prototypicality(x, cent, assign)
    sem = find_semantic_duplicates(x, assign, prototypicality=proto, min_similarity=0.9, block_size=7)
    for c in range(5):
        rows = np.flatnonzero(assign == c)
        rows = rows[np.lexsort((rows, -proto[rows]))]  # farthest from the centroid first
        s = x[rows] @ x[rows].T
        earlier = np.tril(np.ones_like(s, dtype=bool), k=0)  # s[i, j] with j >= i is not earlier
        best = np.where(earlier, -np.inf, s).max(axis=0) if len(rows) > 1 else np.array([-np.inf])
        # best[j] = max over i < j of s[i, j]
        assert np.allclose(sem.similarity[rows][1:], best[1:], atol=1e-5)
        assert np.array_equal(sem.duplicate_of[rows] >= 0, best >= 0.9)


def _with_planted_copies():
    """400 blob points and 40 planted near copies of the first 40 (cosine >= 0.998 to their
    originals; distinct points here reach 0.989 at most)."""
    x, _ = _blobs(n=400, spread=0.3)
    rng = np.random.default_rng(5)
    copies = _unit(x[:40] + 0.01 * rng.standard_normal((40, 16)))
    return np.vstack([x, copies])


def check_planted_copies_pruned_first(x, plan):
    """One of each planted pair, and nothing else, is redundant, names its twin, and goes first."""
    redundant = plan.semantic.duplicate_of >= 0
    assert (redundant[:40] ^ redundant[400:]).all(), "not exactly one member of every planted pair"
    assert not redundant[40:400].any(), f"{int(redundant[40:400].sum())} distinct points called redundant"
    flagged = np.flatnonzero(redundant)
    assert np.array_equal(plan.semantic.duplicate_of[flagged], np.where(flagged < 400, flagged + 400, flagged - 400))
    assert np.all(plan.priority[redundant] < 0) and np.all(plan.priority[~redundant] >= 0)
    sel = plan_rebalance(np.zeros(len(x), dtype=np.int64), target_size=400, priority=plan.priority)
    assert sel.selected.sum() == 400 and not sel.selected[redundant].any()


def test_prune_drops_semantic_duplicates_first_then_keeps_the_hard_end():
    x = _with_planted_copies()
    labels = np.zeros(len(x), dtype=np.int64)
    cent, assign = kmeans(x, 8)
    check_planted_copies_pruned_first(x, plan_prune(x, cent, assign, min_similarity=0.99))
    # Without copies to drop, "hard" keeps the atypical rows, "easy" the prototypical ones.
    plan = plan_prune(x, cent, assign, min_similarity=1.0)
    hard = plan_rebalance(labels, target_size=200, priority=plan.priority)
    easy = plan_rebalance(labels, target_size=200,
                          priority=plan_prune(x, cent, assign, min_similarity=1.0, keep_end="easy").priority)
    assert plan.prototypicality[hard.selected].mean() > plan.prototypicality[easy.selected].mean()


@pytest.mark.parametrize("fake", ["first_40", "random_40"])
def test_the_planted_copy_check_fails_with_a_trivial_detector(monkeypatch, fake):
    import winnow.curation.prune as prune

    def trivial(embeddings, clusters, *, prototypicality, min_similarity=0.9, eligible=None, keys=None, **_):
        n = len(embeddings)
        rows = np.arange(40) if fake == "first_40" else np.random.default_rng(0).choice(n, 40, replace=False)
        dup_of = np.full(n, -1, dtype=np.int64)
        dup_of[rows] = (rows + 1) % n
        sim = np.full(n, -np.inf, dtype=np.float32)
        sim[rows] = 0.99
        return prune.SemanticDuplicates(duplicate_of=dup_of, similarity=sim)

    x = _with_planted_copies()
    cent, assign = kmeans(x, 8)
    monkeypatch.setattr(prune, "find_semantic_duplicates", trivial)
    with pytest.raises(AssertionError):
        check_planted_copies_pruned_first(x, plan_prune(x, cent, assign, min_similarity=0.99))


def test_difficulty_enters_the_ranking():
    x, _ = _blobs(n=200)
    cent, assign = kmeans(x, 4)
    difficulty = np.arange(200, dtype=float)
    plan = plan_prune(x, cent, assign, difficulty=difficulty, min_similarity=1.0)
    assert np.corrcoef(plan.priority, difficulty)[0, 1] > 0.5
    with pytest.raises(LengthMismatch):
        plan_prune(x, cent, assign, difficulty=difficulty[:10])
