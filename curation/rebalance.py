"""Rebalancing: per-class caps, a target size and class distribution, concept balance, weights.

Concept balance follows the DINOv2 / Vo et al. 2024 curation recipe: hierarchical
k-means over the embeddings (k-means on the points, then k-means on the centroids of
the level below), and a budget spread over the clusters of the top level as evenly as
their sizes allow, then recursively inside each of them down to the finest clusters.
Big concepts give up samples first and rare concepts are kept whole. Inside the finest
clusters (and when concept balance is off) the samples with the highest priority are kept
(`plan_prune`'s priority; by default the row's key order, i.e. arbitrary but stable).

Every quota is an integer "water-filling" of a total over groups with capacities:
groups get shares proportional to their weight, a group that cannot fill its share is
taken whole and its surplus goes to the others, and the remainders go by largest
fraction. Quotas sum exactly to min(total, available), so targets are met exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from winnow.curation.errors import InvalidArray
from winnow.curation.knn_graph import kmeans
from winnow.curation.validation import (
    check_labels,
    check_same_length,
    check_unit_embeddings,
    rank_keys,
)

CLASS_DISTRIBUTIONS = ("original", "uniform", "sqrt")
WEIGHTINGS = ("none", "inverse_frequency", "effective_number")


@dataclass(frozen=True)
class Hierarchy:
    assignments: list[np.ndarray]  # one (N,) int64 per level, finest first: the sample's cluster at that level
    centroids: list[np.ndarray]  # one (C_l, D) float32 per level, finest first

    @property
    def finest(self) -> np.ndarray:
        return self.assignments[0]


@dataclass(frozen=True)
class Selection:
    selected: np.ndarray  # (N,) bool: kept by caps and the target size (False for ineligible rows)
    reason: np.ndarray  # (N,) object: "over_cap" | "pruned" for eligible rows left out, else None
    class_quota: np.ndarray  # (K,) int64: rows kept per class


def default_cluster_levels(n: int) -> tuple[int, ...]:
    """sqrt(N) clusters at the finest level, sqrt of that above it (two levels from N >= 16).

    sqrt(N) keeps clusters at about sqrt(N) members each (100k -> 316 clusters of ~316),
    big enough for a stable centroid and small enough to be one concept.
    """
    fine = max(1, int(round(np.sqrt(n))))
    top = int(round(np.sqrt(fine)))
    return (fine, top) if top >= 2 else (fine,)


def hierarchical_kmeans(
    embeddings, *, levels: Sequence[int] = (), niter: int = 20, seed: int = 0
) -> Hierarchy:
    """Hierarchical k-means of `embeddings` (N, D) (Vo et al. 2024), on FAISS.

    levels: clusters per level, finest first, strictly decreasing, e.g. (316, 18);
    empty = `default_cluster_levels(N)`. Level 0 clusters the points; level l clusters the
    centroids of level l-1 and a point belongs to the parent of its level-(l-1) cluster.
    """
    emb = check_unit_embeddings(embeddings)
    levels = tuple(int(c) for c in levels) or default_cluster_levels(len(emb))
    if any(c < 1 for c in levels) or any(b >= a for a, b in zip(levels, levels[1:], strict=False)):
        raise InvalidArray(f"levels must be positive and strictly decreasing (finest first), got {levels!r}")
    centroids, assign = kmeans(emb, levels[0], niter=niter, seed=seed)
    all_assign, all_cent = [assign], [centroids]
    for c in levels[1:]:
        if c >= len(all_cent[-1]):
            break
        cent, parent = kmeans(all_cent[-1], c, niter=niter, seed=seed)
        all_assign.append(parent[all_assign[-1]])
        all_cent.append(cent)
    return Hierarchy(assignments=all_assign, centroids=all_cent)


def resolve_target(keep: float | int | None, n: int) -> int | None:
    """The target number of kept rows: a fraction (float in (0, 1]) of N, or a count (int >= 0)."""
    if keep is None:
        return None
    if isinstance(keep, bool):
        raise InvalidArray(f"keep must be a fraction in (0, 1] or a count, got {keep!r}")
    if isinstance(keep, (int, np.integer)):
        if keep < 0:
            raise InvalidArray(f"keep must be a non-negative count, got {keep!r}")
        return int(keep)
    if isinstance(keep, (float, np.floating)) and 0.0 < keep <= 1.0:
        return int(np.floor(keep * n + 0.5))
    raise InvalidArray(f"keep must be a fraction in (0, 1] or a count, got {keep!r}")


def water_fill(capacity, total: int, *, shares=None) -> np.ndarray:
    """Integer quotas (G,) with quota <= capacity, summing to min(total, sum(capacity)).

    shares: (G,) non-negative weights (default equal). See the module docstring.
    """
    cap = np.asarray(capacity, dtype=np.int64)
    share = np.ones(len(cap)) if shares is None else np.asarray(shares, dtype=np.float64)
    if np.any(cap < 0) or np.any(share < 0) or not np.all(np.isfinite(share)):
        raise InvalidArray(f"capacity and shares must be non-negative, got {cap.tolist()!r} and {share.tolist()!r}")
    total = int(min(max(int(total), 0), int(cap.sum())))
    quota = np.zeros(len(cap), dtype=np.int64)
    open_ = (cap > 0) & (share > 0)
    if not open_.any() and total > 0:
        open_ = cap > 0
        share = np.ones(len(cap))
    left = total
    while left > 0 and open_.any():
        ideal = np.zeros(len(cap))
        ideal[open_] = left * share[open_] / share[open_].sum()
        room = cap - quota
        full = open_ & (room <= ideal)
        if full.any():
            left -= int(room[full].sum())
            quota[full] = cap[full]
            open_ &= ~full
            continue
        base = np.floor(ideal).astype(np.int64)
        quota += base
        left -= int(base.sum())
        frac = np.where(open_, ideal - base, -1.0)
        # Largest remainder; ties go to the lower group id (ids are content-derived).
        for g in np.lexsort((np.arange(len(cap)), -frac))[:left]:
            quota[g] += 1
        left = 0
    return quota


def plan_rebalance(
    labels,
    *,
    n_classes: int | None = None,
    eligible=None,
    target_size: int | None = None,
    class_cap: int | None = None,
    class_distribution: str = "original",
    hierarchy: Hierarchy | Sequence[np.ndarray] | None = None,
    cluster_balanced: bool = False,
    priority=None,
    keys=None,
) -> Selection:
    """Which eligible rows to keep under a per-class cap and a target size.

    labels: (N,) class indices (the final labels); eligible: (N,) bool rows in play
    (default all). First each class is cut to `class_cap` (reason "over_cap"); then the
    `target_size` rows are shared among classes by `class_distribution` ("original":
    proportional to the eligible counts, i.e. stratified; "uniform"; "sqrt": proportional
    to their square roots), water-filled so that small classes are kept whole, and the rest
    are "pruned". Inside a class the kept rows are the ones of highest `priority` (N,)
    (higher first; ties by `keys`; read on eligible rows only, so the others may hold NaN), or, with `cluster_balanced`, balanced over the clusters
    of `hierarchy` (a `Hierarchy` or (N,) arrays finest first; -1 = no cluster) as in the
    module docstring. Caps and the target are met exactly whenever enough rows exist.
    """
    labels = check_labels(labels, n_classes=n_classes)
    n = len(labels)
    k = int(n_classes if n_classes is not None else labels.max() + 1)
    ok = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    prio = np.zeros(n) if priority is None else np.asarray(priority, dtype=np.float64)
    levels = as_cluster_levels(hierarchy)
    check_same_length(labels=labels, eligible=ok, priority=prio, keys=keys, **{f"hierarchy[{i}]": a for i, a in enumerate(levels)})
    if class_distribution not in CLASS_DISTRIBUTIONS:
        raise InvalidArray(f"class_distribution must be one of {CLASS_DISTRIBUTIONS}, got {class_distribution!r}")
    if class_cap is not None and (isinstance(class_cap, bool) or int(class_cap) < 0):
        raise InvalidArray(f"class_cap must be a non-negative count, got {class_cap!r}")
    # Only rows in play are ranked: an ineligible row (unusable, or dropped for a finding)
    # has no priority to check, and its value (NaN, -inf) is never read.
    bad_prio = ok & ~np.isfinite(prio)
    if bad_prio.any():
        bad = int(np.flatnonzero(bad_prio)[0])
        raise InvalidArray(f"priority[{bad}] is {float(prio[bad])!r}; must be finite for eligible rows")
    if cluster_balanced and not levels:
        raise InvalidArray("cluster_balanced needs a hierarchy (cluster assignments), got none")
    key_rank = rank_keys(keys, n)
    chooser = _Chooser(prio, key_rank, levels if cluster_balanced else [])

    selected = np.zeros(n, dtype=bool)
    reason = np.full(n, None, dtype=object)
    counts = np.bincount(labels[ok], minlength=k)
    capped = counts if class_cap is None else np.minimum(counts, int(class_cap))
    total = int(capped.sum()) if target_size is None else min(int(target_size), int(capped.sum()))
    shares = {"original": counts, "uniform": (counts > 0).astype(float), "sqrt": np.sqrt(counts)}[class_distribution]
    quota = water_fill(capped, total, shares=shares)
    for c in np.flatnonzero(counts):
        rows = np.flatnonzero(ok & (labels == c))
        after_cap = chooser.choose(rows, int(capped[c]))
        reason[np.setdiff1d(rows, after_cap)] = "over_cap"
        kept = chooser.choose(after_cap, int(quota[c]))
        reason[np.setdiff1d(after_cap, kept)] = "pruned"
        selected[kept] = True
    return Selection(selected=selected, reason=reason, class_quota=quota)


def compute_weights(labels, *, selected=None, scheme: str = "inverse_frequency", beta: float = 0.999,
                    n_classes: int | None = None) -> np.ndarray:
    """(N,) sample weights from the class counts of the selected rows; 0 for the others.

    "inverse_frequency": w_c proportional to 1 / n_c. "effective_number" (Cui et al.
    2019): w_c proportional to (1 - beta) / (1 - beta^n_c), which flattens towards uniform
    for large classes (beta in [0, 1); 0.999 suits classes of 10^2 to 10^4). "none": 1.
    Weights are scaled so that their mean over the selected rows is 1: positive, finite.
    """
    labels = check_labels(labels, n_classes=n_classes)
    sel = np.ones(len(labels), dtype=bool) if selected is None else np.asarray(selected, dtype=bool)
    check_same_length(labels=labels, selected=sel)
    if scheme not in WEIGHTINGS:
        raise InvalidArray(f"weighting scheme must be one of {WEIGHTINGS}, got {scheme!r}")
    if not 0.0 <= beta < 1.0:
        raise InvalidArray(f"beta must be in [0, 1), got {beta!r}")
    weight = np.zeros(len(labels))
    if not sel.any():
        return weight
    counts = np.bincount(labels[sel], minlength=int(labels.max()) + 1).astype(np.float64)
    n_c = counts[labels[sel]]
    if scheme == "none":
        w = np.ones(int(sel.sum()))
    elif scheme == "inverse_frequency":
        w = 1.0 / n_c
    else:
        # (1 - beta) / (1 - beta^n) computed stably: -expm1(n log beta) is 1 - beta^n.
        w = (1.0 - beta) / -np.expm1(n_c * np.log(beta)) if beta > 0 else np.ones_like(n_c)
    weight[sel] = w / w.mean()
    return weight


class _Chooser:
    """Picks `q` of some rows: cluster-balanced top-down through the levels, then by priority."""

    def __init__(self, priority: np.ndarray, key_rank: np.ndarray, levels: list[np.ndarray]) -> None:
        self.priority, self.key_rank, self.levels = priority, key_rank, levels

    def choose(self, rows: np.ndarray, q: int) -> np.ndarray:
        return np.sort(self._choose(rows, q, len(self.levels) - 1))

    def _choose(self, rows: np.ndarray, q: int, level: int) -> np.ndarray:
        if q >= len(rows):
            return rows
        if q <= 0:
            return rows[:0]
        if level < 0:
            order = np.lexsort((self.key_rank[rows], -self.priority[rows]))
            return rows[order[:q]]
        groups, inverse = np.unique(self.levels[level][rows], return_inverse=True)
        quota = water_fill(np.bincount(inverse, minlength=len(groups)), q)
        picked = [self._choose(rows[inverse == g], int(quota[g]), level - 1) for g in range(len(groups))]
        return np.concatenate(picked)


def as_cluster_levels(hierarchy) -> list[np.ndarray]:
    """A Hierarchy, one (N,) array or a list of them -> (N,) int64 arrays, finest first."""
    if hierarchy is None:
        return []
    arrays = hierarchy.assignments if isinstance(hierarchy, Hierarchy) else list(hierarchy)
    if isinstance(hierarchy, np.ndarray) and hierarchy.ndim == 1:
        arrays = [hierarchy]
    out = []
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise InvalidArray(f"hierarchy level {i} must be a 1-D integer array (N,), got shape {a.shape} dtype {a.dtype}")
        out.append(a.astype(np.int64))
    return out
