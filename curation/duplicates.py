"""Exact and near duplicates, and leakage into a holdout catalog, on the shared kNN graph.

Exact duplicates share a content hash (byte-identical files). Near duplicates are pairs
joined by a kNN-graph edge whose cosine similarity is at least `min_similarity`; the
pairs (and the hash pairs) are grouped into connected components, and each component
keeps one representative. Nothing here is N x N: the work is linear in the N * k edges.

How the near-duplicate threshold is chosen
------------------------------------------
By default from the data (`near_duplicate_threshold`): the log distance of each sample
to its nearest neighbour is roughly normal over distinct samples, and a copy sits far in
its lower tail. The cut-off is median - z * sigma_MAD with z chosen so that a dataset
without copies would flag about one sample (the same model as the outlier cut-off,
mirrored), and never below cosine 0.9. The median and MAD stay put while fewer than half
the samples are copies. A fixed cosine, `DetectConfig.near_duplicate_min_similarity`,
overrides it: a fixed value means different things for different encoders (0.95 flags
most of sklearn's digits as copies under the `pixels` encoder, whose distinct digits
reach 0.99, while EfficientNet keeps re-encoded / resized copies above 0.97; see
tests/unit/curation/test_duplicates.py and benchmarks/duplicates_outliers.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from winnow.curation.errors import InvalidArray
from winnow.curation.knn_graph import KnnGraph, search_knn
from winnow.curation.validation import (
    check_labels,
    check_rows,
    check_same_length,
    check_unit_embeddings,
    rank_keys,
    scatter_rows,
)

REPRESENTATIVE_RULES = ("central", "label_quality")


@dataclass(frozen=True)
class DuplicateGroups:
    group: np.ndarray  # (N,) int64: duplicate group id (0..G-1); -1 for a sample with no duplicate
    representative: np.ndarray  # (N,) int64: row of the group's kept sample (itself for it); -1 outside groups
    exact: np.ndarray  # (N,) bool: byte-identical (same content hash) to its representative
    hash_code: np.ndarray  # (N,) int64: equal codes = equal content hashes; -1 unknown (for re-picked representatives)
    label_conflict: np.ndarray  # (N,) bool: in a group whose members carry different labels
    score: np.ndarray  # (N,) float64: representative rank within its group, higher = better kept
    similarity_to_representative: np.ndarray  # (N,) float32: kNN-edge cosine to it; 1 for it; nan if no direct edge

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if len(self.group) else 0

    @property
    def is_duplicate(self) -> np.ndarray:
        """(N,) bool: in a group and not its representative (the rows a policy drops)."""
        return (self.group >= 0) & (self.representative != np.arange(len(self.group)))

    def scatter(self, rows, n: int) -> DuplicateGroups:
        """These findings, made over a subset (rows (M,) of N, e.g. the embedded samples),
        as findings over all N rows; the other rows are in no group."""
        rows = check_rows(rows, len(self.group), n)
        rep = np.full(n, -1, dtype=np.int64)
        rep[rows] = np.where(self.representative >= 0, rows[np.maximum(self.representative, 0)], -1)
        return DuplicateGroups(
            group=scatter_rows(rows, self.group, n, -1), representative=rep, exact=scatter_rows(rows, self.exact, n, False),
            hash_code=scatter_rows(rows, self.hash_code, n, -1), label_conflict=scatter_rows(rows, self.label_conflict, n, False),
            score=scatter_rows(rows, self.score, n, 0.0),
            similarity_to_representative=scatter_rows(rows, self.similarity_to_representative, n, np.nan),
        )


@dataclass(frozen=True)
class Leaks:
    is_leak: np.ndarray  # (N,) bool: duplicates a holdout sample (same hash, or cosine >= threshold)
    holdout_index: np.ndarray  # (N,) int64: row of the nearest holdout sample (-1 when the holdout is empty)
    similarity: np.ndarray  # (N,) float32: cosine to that holdout sample

    def scatter(self, rows, n: int) -> Leaks:
        """Findings over a subset (rows (M,) of N) as findings over all N rows (others: no leak)."""
        rows = check_rows(rows, len(self.is_leak), n)
        return Leaks(is_leak=scatter_rows(rows, self.is_leak, n, False), holdout_index=scatter_rows(rows, self.holdout_index, n, -1),
                     similarity=scatter_rows(rows, self.similarity, n, -np.inf))


def find_duplicates(
    graph: KnnGraph,
    *,
    min_similarity: float = 0.95,
    content_hashes: Sequence[str | None] | None = None,
    labels=None,
    label_quality=None,
    keep: str = "central",
    keys=None,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> DuplicateGroups:
    """Group exact and near duplicates and pick one representative per group.

    graph: (N, k) kNN graph of the samples. content_hashes: N hashes of the files' bytes
    (None where unknown); equal hashes are duplicates whatever the graph says.
    labels: (N,) class indices, to report groups whose labels disagree.
    label_quality: (N,) in [0, 1], how well each given label is supported (e.g.
    `KnnVotes.label_quality`). keys: (N,) sortable unique ids (sample ids) for tie-breaks,
    so the result does not depend on row order; default the row number.

    keep: "central" keeps the member with the largest summed similarity to the rest of
    its group (label quality breaks ties); "label_quality" keeps the member whose label
    is best supported (centrality breaks ties). Without label_quality both are "central".

    pairs: (rows, cols, similarity) of further near-copy pairs found another way (texts:
    MinHash, curation/text_duplicates.py); joined like kNN edges at or above the cut.
    """
    n = len(graph)
    _check_similarity(min_similarity, "min_similarity")
    if keep not in REPRESENTATIVE_RULES:
        raise InvalidArray(f"keep must be one of {REPRESENTATIVE_RULES}, got {keep!r}")
    labels = None if labels is None else check_labels(labels)
    quality = None if label_quality is None else _check_unit_interval(label_quality, "label_quality")
    check_same_length(knn_graph=graph.indices, labels=labels, label_quality=quality,
                      content_hashes=content_hashes, keys=keys)
    key_rank = rank_keys(keys, n, unique=True)

    rows, cols, sims = _near_edges(graph, min_similarity)
    if pairs is not None:
        pr, pc, ps = (np.asarray(a) for a in pairs)
        if len(pr) and (pr.min() < 0 or pc.min() < 0 or max(pr.max(), pc.max()) >= n):
            raise InvalidArray(f"pairs must be rows in [0, {n}), got rows up to {max(pr.max(), pc.max())}")
        rows, cols = np.concatenate([rows, pr.astype(np.int64)]), np.concatenate([cols, pc.astype(np.int64)])
        sims = np.concatenate([sims, ps.astype(np.float32)])
    if content_hashes is not None:
        hr, hc = _hash_edges(content_hashes, key_rank)
        rows, cols = np.concatenate([rows, hr]), np.concatenate([cols, hc])
        sims = np.concatenate([sims, np.ones(len(hr), dtype=np.float32)])
    adjacency = _symmetric_max(rows, cols, sims, n)
    group = _components(adjacency, n)

    # Rounded so float summation order (which follows row order) cannot break a tie.
    centrality = np.round(np.asarray(adjacency.sum(axis=1)).ravel(), 6)
    q = np.zeros(n) if quality is None else np.round(quality, 9)
    first, second = (q, centrality) if keep == "label_quality" else (centrality, q)
    in_group = np.flatnonzero(group >= 0)
    if not len(in_group):
        none = np.full(n, -1, dtype=np.int64)
        return DuplicateGroups(group=none, representative=none.copy(), exact=np.zeros(n, dtype=bool),
                               hash_code=_hash_codes(content_hashes, n),
                               label_conflict=np.zeros(n, dtype=bool), score=np.zeros(n),
                               similarity_to_representative=np.full(n, np.nan, dtype=np.float32))
    order = in_group[np.lexsort((key_rank[in_group], -second[in_group], -first[in_group], group[in_group]))]
    representative = np.full(n, -1, dtype=np.int64)
    starts = np.r_[True, group[order][1:] != group[order][:-1]]
    reps_of_groups = order[starts]
    representative[in_group] = reps_of_groups[group[in_group]]
    score = np.zeros(n)
    # Rank within the group, 0 for the best: decide() uses it to re-pick a representative
    # when the first choice is dropped for another reason.
    first_of_group = np.flatnonzero(starts)
    position = np.arange(len(order)) - first_of_group[group[order]]
    score[order] = -position

    hash_code = _hash_codes(content_hashes, n)
    exact = np.zeros(n, dtype=bool)
    exact[in_group] = (hash_code[in_group] == hash_code[representative[in_group]]) & (hash_code[in_group] >= 0)
    conflict = np.zeros(n, dtype=bool)
    if labels is not None and len(in_group):
        g = group[in_group]
        lo = np.full(group.max() + 1, np.iinfo(np.int64).max)
        hi = np.full(group.max() + 1, -1)
        np.minimum.at(lo, g, labels[in_group])
        np.maximum.at(hi, g, labels[in_group])
        conflict[in_group] = lo[g] != hi[g]
    sim_rep = np.full(n, np.nan, dtype=np.float32)
    sim_rep[in_group] = np.asarray(adjacency[in_group, representative[in_group]]).ravel()
    sim_rep[sim_rep == 0] = np.nan
    sim_rep[reps_of_groups] = 1.0
    return DuplicateGroups(group=group, representative=representative, exact=exact, hash_code=hash_code,
                           label_conflict=conflict, score=score, similarity_to_representative=sim_rep)


def find_leaks(
    embeddings,
    holdout_embeddings,
    *,
    min_similarity: float = 0.95,
    content_hashes: Sequence[str | None] | None = None,
    holdout_hashes: Sequence[str | None] | None = None,
) -> Leaks:
    """Samples of a training catalog that duplicate a sample of a holdout (val/test) catalog.

    embeddings: (N, D) training rows; holdout_embeddings: (M, D), same encoder. A sample
    leaks when its nearest holdout sample has cosine >= `min_similarity` (the near-duplicate
    threshold: a leak is a duplicate that crosses the split) or the same content hash.
    """
    _check_similarity(min_similarity, "min_similarity")
    emb = check_unit_embeddings(embeddings)
    n = len(emb)
    check_same_length(embeddings=emb, content_hashes=content_hashes)
    hold = np.asarray(holdout_embeddings)
    if hold.ndim == 2 and hold.shape[0] == 0:
        return Leaks(np.zeros(n, dtype=bool), np.full(n, -1, dtype=np.int64), np.full(n, -np.inf, dtype=np.float32))
    hold = check_unit_embeddings(hold, name="holdout_embeddings")
    nn = search_knn(hold, emb, k=1)
    index, sim = nn.indices[:, 0], nn.similarities[:, 0]
    leak = sim >= min_similarity
    if content_hashes is not None and holdout_hashes is not None:
        where = {h: i for i, h in enumerate(holdout_hashes) if h is not None}
        for i, h in enumerate(content_hashes):
            if h is not None and h in where:
                leak[i] = True
                index[i] = where[h]
                sim[i] = max(float(sim[i]), 1.0)
    return Leaks(is_leak=leak, holdout_index=index.astype(np.int64), similarity=sim.astype(np.float32))


def _near_edges(graph: KnnGraph, min_similarity: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, k = graph.indices.shape
    ok = (graph.indices >= 0) & (graph.similarities >= min_similarity)
    rows = np.repeat(np.arange(n, dtype=np.int64), k)[ok.ravel()]
    return rows, graph.indices[ok].astype(np.int64), graph.similarities[ok].astype(np.float32)


def _hash_edges(hashes: Sequence[str | None], key_rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A chain through the rows of each hash, in key order (a star would do as well)."""
    h = np.asarray([("" if x is None else x) for x in hashes], dtype=object)
    known = np.flatnonzero(h != "")
    if not len(known):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, code = np.unique(h[known].astype(str), return_inverse=True)
    order = known[np.lexsort((key_rank[known], code))]
    code_sorted = np.sort(code)
    same = code_sorted[1:] == code_sorted[:-1]
    return order[:-1][same], order[1:][same]


def _hash_codes(hashes: Sequence[str | None] | None, n: int) -> np.ndarray:
    code = np.full(n, -1, dtype=np.int64)
    if hashes is None:
        return code
    h = np.asarray([("" if x is None else str(x)) for x in hashes], dtype=object)
    known = np.flatnonzero(h != "")
    if len(known):
        code[known] = np.unique(h[known].astype(str), return_inverse=True)[1]
    return code


def _symmetric_max(rows, cols, sims, n):
    from scipy import sparse

    # An edge can come twice (from the graph and from the hashes): keep its max, not its sum.
    pair, inverse = np.unique(rows * n + cols, return_inverse=True)
    weight = np.zeros(len(pair))
    np.maximum.at(weight, inverse, sims.astype(np.float64))
    a = sparse.csr_matrix((weight, (pair // n, pair % n)), shape=(n, n))
    # kNN edges are directed and may appear both ways: an undirected pair keeps its max.
    if a.nnz:
        a = a.maximum(a.T).tocsr()
        a.setdiag(0)
        a.eliminate_zeros()
    return a


def _components(adjacency, n: int) -> np.ndarray:
    """(N,) group ids; -1 for singletons. Ids follow the smallest member row (stable)."""
    from scipy.sparse.csgraph import connected_components

    if adjacency.nnz == 0:
        return np.full(n, -1, dtype=np.int64)
    _, comp = connected_components(adjacency, directed=False)
    sizes = np.bincount(comp)
    comp = np.where(sizes[comp] > 1, comp, -1)
    kept = np.unique(comp[comp >= 0])
    remap = np.full(comp.max() + 1 if len(kept) else 1, -1, dtype=np.int64)
    remap[kept] = np.arange(len(kept))
    return np.where(comp >= 0, remap[np.clip(comp, 0, None)], -1).astype(np.int64)


def _check_similarity(value: float, name: str) -> None:
    if not -1.0 <= float(value) <= 1.0:
        raise InvalidArray(f"{name} must be a cosine in [-1, 1], got {value!r}")


def _check_unit_interval(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise InvalidArray(f"{name} must be 1-D (N,), got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidArray(f"{name}[{i}] is {arr[i]!r}; must be finite and in [0, 1]")
    return arr


def near_duplicate_threshold(graph: KnnGraph, *, expected_false: float = 1.0, floor: float = 0.9) -> float:
    """A data-driven cosine above which a pair counts as a near duplicate.

    The distance of each sample to its nearest neighbour, on a log scale, is roughly
    normal for distinct samples; a near copy sits far in its lower tail. The cut-off is
    median - z * sigma (sigma from the MAD, robust to the copies themselves), with z set so
    a dataset without copies would have `expected_false` samples below it. It never drops
    below `floor`: whatever the spread, a pair less similar than that is not a copy.

    Provenance: `floor` (0.9) was set while comparing this cut with a fixed 0.95 on
    benchmarks/duplicates_outliers.py's 500-file MNIST folder and the bundled digits
    (efficientnet-lite0 and pixels); `expected_false` (1) mirrors the outlier cut (a design
    choice). Neither is validated on held-out data.
    """
    from scipy.special import ndtri

    nearest = graph.similarities[:, 0].astype(np.float64)
    ok = np.isfinite(nearest) & (graph.indices[:, 0] >= 0)
    if ok.sum() < 3:
        return 1.0
    eps = 1e-6
    logs = np.log(np.clip(1.0 - nearest[ok], 0.0, None) + eps)
    median = float(np.median(logs))
    sigma = 1.4826 * float(np.median(np.abs(logs - median)))
    z = float(ndtri(1.0 - min(float(expected_false), ok.sum() - 1) / ok.sum()))
    cut = 1.0 - (float(np.exp(median - z * sigma)) - eps)
    return float(min(1.0, max(floor, cut)))
