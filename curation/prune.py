"""Pruning to a target size: which samples to give up first.

Order of sacrifice (the selection itself, with exact class quotas, is `plan_rebalance`):

1. Semantic duplicates (SemDeDup, Abbas et al. 2023): inside each k-means cluster the
   members are ordered from the least to the most prototypical (farthest from the
   centroid first, as in SemDeDup) and a member whose cosine to an earlier member is at
   least `min_similarity` is redundant. The most redundant (highest cosine) go first.
2. Then by a hardness ranking: the mean percentile rank of prototypicality (cosine
   distance to the cluster centroid, the self-supervised metric of Sorscher et al. 2022,
   "Beyond neural scaling laws") and, when given, difficulty (larger = harder: EL2N, or
   the negated probe margin from the label-issue detector).

Which end to keep (`DecisionPolicy.prune_keep`): "hard" (default) keeps the samples far
from their prototype / with small margins and drops the easy, prototypical ones. Sorscher
et al. show that keeping hard examples is right when data is abundant relative to the
model (the usual reason to prune at all) and keeping easy ones is right when it is scarce
(set "easy" when keeping under ~30% of a small dataset). Keeping the hard end is safe here
because label issues, outliers and duplicates, the usual "hard" junk, are decided before
pruning and never reach it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from winnow.curation.blocks import iter_blocks, take_rows
from winnow.curation.errors import InvalidArray
from winnow.curation.validation import (
    check_embeddings,
    check_same_length,
    check_unit_embeddings,
    rank_keys,
)

PRUNE_KEEP = ("hard", "easy")


@dataclass(frozen=True)
class SemanticDuplicates:
    duplicate_of: np.ndarray  # (N,) int64: the earlier (kept-first) cluster member it repeats; -1 if none
    similarity: np.ndarray  # (N,) float32: its highest cosine to an earlier member of its cluster; -inf if alone


@dataclass(frozen=True)
class PrunePlan:
    priority: np.ndarray  # (N,) float64: keep-first order, higher is kept first; semantic duplicates < 0 <= the rest
    prototypicality: np.ndarray  # (N,) float64: cosine distance to the sample's cluster centroid
    semantic: SemanticDuplicates  # the SemDeDup findings behind the negative priorities


def score_prototypicality(embeddings, centroids, clusters) -> np.ndarray:
    """(N,) cosine distance of each row of `embeddings` (N, D) to its centroid (C, D).

    clusters: (N,) the row's cluster in 0..C-1 (-1: no cluster, distance nan).
    Small = prototypical (easy), large = atypical (hard).
    """
    emb = check_unit_embeddings(embeddings)
    cent = check_embeddings(centroids, name="centroids")
    clusters = _check_clusters(clusters, len(cent))
    check_same_length(embeddings=emb, clusters=clusters)
    cent = cent / np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
    out = np.full(len(emb), np.nan)
    ok = clusters >= 0
    for start, block in iter_blocks(emb):  # out of core: float32 blocks of a float16 map
        part = ok[start : start + len(block)]
        out[start : start + len(block)][part] = 1.0 - np.einsum(
            "ij,ij->i", block[part], cent[clusters[start : start + len(block)][part]])
    return out


def find_semantic_duplicates(
    embeddings,
    clusters,
    *,
    prototypicality,
    min_similarity: float = 0.9,
    eligible=None,
    keys=None,
    block_size: int = 1024,
) -> SemanticDuplicates:
    """SemDeDup within k-means clusters (see the module docstring).

    embeddings: (N, D) L2-normalised; clusters: (N,) k-means assignment; prototypicality:
    (N,) from `score_prototypicality` (the within-cluster order). eligible: (N,) bool,
    rows that take part (default all). Cost is sum over clusters of m^2 * D, computed in
    column blocks of `block_size`, so memory is m * block_size per cluster, never N x N.
    """
    emb = check_unit_embeddings(embeddings)
    n = len(emb)
    clusters = _check_clusters(clusters, None)
    proto = np.asarray(prototypicality, dtype=np.float64)
    check_same_length(embeddings=emb, clusters=clusters, prototypicality=proto, eligible=eligible, keys=keys)
    if not -1.0 <= min_similarity <= 1.0:
        raise InvalidArray(f"min_similarity must be a cosine in [-1, 1], got {min_similarity!r}")
    ok = (clusters >= 0) if eligible is None else ((clusters >= 0) & np.asarray(eligible, dtype=bool))
    key_rank = rank_keys(keys, n)
    dup_of = np.full(n, -1, dtype=np.int64)
    best = np.full(n, -np.inf, dtype=np.float32)
    rows = np.flatnonzero(ok)
    # Farthest from the centroid first (SemDeDup keeps the least prototypical copy).
    rows = rows[np.lexsort((key_rank[rows], -np.round(proto[rows], 9), clusters[rows]))]
    bounds = np.flatnonzero(np.r_[True, clusters[rows][1:] != clusters[rows][:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        members = rows[a:b]
        x = take_rows(emb, members)
        for c0 in range(1, len(members), block_size):
            c1 = min(c0 + block_size, len(members))
            s = x[:c1] @ x[c0:c1].T  # (c1, b): earlier rows against this column block
            s[np.arange(c1)[:, None] >= np.arange(c0, c1)[None, :]] = -np.inf
            arg = s.argmax(axis=0)
            best[members[c0:c1]] = s[arg, np.arange(c1 - c0)]
            dup_of[members[c0:c1]] = members[arg]
    redundant = best >= min_similarity
    dup_of[~redundant] = -1
    return SemanticDuplicates(duplicate_of=dup_of, similarity=best)


def plan_prune(
    embeddings,
    centroids,
    clusters,
    *,
    difficulty=None,
    eligible=None,
    min_similarity: float = 0.9,
    keep_end: str = "hard",
    keys=None,
) -> PrunePlan:
    """Keep-first priority for pruning: SemDeDup within clusters, then hardness.

    embeddings: (N, D); centroids: (C, D) and clusters: (N,) from `kmeans` (or the finest
    level of `hierarchical_kmeans`); difficulty: (N,) larger = harder, optional; NaN where
    unknown (e.g. rows of a class too rare for the probe): those rank by prototypicality alone. eligible:
    (N,) bool, the rows still in play (not dropped for another reason). Pass the priority
    to `plan_rebalance` / `decide`, which take exactly the target size by it.
    """
    if keep_end not in PRUNE_KEEP:
        raise InvalidArray(f"keep_end must be one of {PRUNE_KEEP}, got {keep_end!r}")
    proto = score_prototypicality(embeddings, centroids, clusters)
    semantic = find_semantic_duplicates(embeddings, clusters, prototypicality=proto,
                                        min_similarity=min_similarity, eligible=eligible, keys=keys)
    hardness = _percentile_rank(proto)
    if difficulty is not None:
        diff = np.asarray(difficulty, dtype=np.float64)
        check_same_length(embeddings=proto, difficulty=diff)
        if diff.ndim != 1 or np.isinf(diff).any():
            bad = int(np.flatnonzero(np.isinf(diff))[0]) if diff.ndim == 1 else -1
            raise InvalidArray(f"difficulty must be a finite (N,) array (NaN = unknown); difficulty[{bad}] is {diff[bad] if bad >= 0 else diff.shape!r}")
        diff_rank = _percentile_rank(diff)
        hardness = np.where(np.isfinite(diff_rank), (hardness + diff_rank) / 2.0, hardness)
    # In [0, 1]; nan (no cluster) ranks as the middle.
    hardness = np.where(np.isfinite(hardness), hardness, 0.5)
    priority = hardness if keep_end == "hard" else 1.0 - hardness
    redundant = semantic.duplicate_of >= 0
    # Below every non-redundant row; the most similar copy is the first to go.
    priority = np.where(redundant, -semantic.similarity.astype(np.float64), priority)
    return PrunePlan(priority=priority, prototypicality=proto, semantic=semantic)


def _percentile_rank(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] with ties averaged (order independent); nan stays nan."""
    from scipy.stats import rankdata

    out = np.full(len(values), np.nan)
    ok = np.isfinite(values)
    if ok.sum() == 1:
        out[ok] = 0.5
    elif ok.any():
        out[ok] = (rankdata(values[ok]) - 1) / (ok.sum() - 1)
    return out


def _check_clusters(clusters, n_clusters: int | None) -> np.ndarray:
    arr = np.asarray(clusters)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidArray(f"clusters must be a 1-D integer array (N,), got shape {arr.shape} dtype {arr.dtype}")
    if n_clusters is not None and len(arr) and arr.max() >= n_clusters:
        bad = int(np.argmax(arr))
        raise InvalidArray(f"clusters[{bad}] is {arr[bad]}, but there are only {n_clusters} centroids")
    return arr.astype(np.int64)
