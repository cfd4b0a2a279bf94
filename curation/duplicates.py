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

The run's rule (`calibrate_near_duplicates`, issue 15) is calibrated on made copies of the
data's own images and has three branches: the embedding cut, a pHash branch, and a thumbnail
branch for crops and tilts (`aligned_similarity` on the kNN graph's edges; see the section
at the end of this module). The thumbnail branch does not chain: its edges join groups only
when every pair across them is alike (complete linkage) and the edge stands out of both ends'
neighbourhoods (`_join_aligned`), since many distinct thin-stroke digits look alike at 16 x 16.
"""

from __future__ import annotations

import dataclasses
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
    rule: NearDuplicateRule | None = None,
    phash=None,
    embeddings=None,
    flat=None,
    aligned=None,
    thumbnails=None,
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
    rule: a calibrated NearDuplicateRule (`calibrate_near_duplicates`), overriding
    min_similarity; with phash (N,) int64 perceptual hashes and embeddings (N, D) its hash
    branch joins pairs the graph may not list. flat: (N,) bool, images that join others only
    by content hash (blank, one colour). phash / flat rows that were not measured: pass
    flat=False and a phash that matches nothing useful, or leave phash None. aligned: (N, k) the
    graph edges' `graph_aligned_similarity` (thumbnails): with the rule's min_aligned, an edge at or
    above it that stands out of both ends' neighbourhoods (ALIGNED_RATIO) joins two groups when every
    pair across them is a copy too (a clique, not a chain; `_join_aligned`), weighted by its cosine.
    thumbnails: (N, THUMB_SIZE^2) uint8, to check the pairs across two groups that the graph does not
    list (without them such a pair counts as not alike).
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

    if rule is not None:
        min_similarity = rule.min_similarity
    rows, cols, sims = _near_edges(graph, min_similarity)
    if pairs is not None:
        pr, pc, ps = (np.asarray(a) for a in pairs)
        if len(pr) and (pr.min() < 0 or pc.min() < 0 or max(pr.max(), pc.max()) >= n):
            raise InvalidArray(f"pairs must be rows in [0, {n}), got rows up to {max(pr.max(), pc.max())}")
        rows, cols = np.concatenate([rows, pr.astype(np.int64)]), np.concatenate([cols, pc.astype(np.int64)])
        sims = np.concatenate([sims, ps.astype(np.float32)])
    if rule is not None and rule.max_hamming >= 0 and phash is not None and embeddings is not None:
        hr, hc, hs = hash_edges(phash, embeddings, max_hamming=rule.max_hamming,
                                confirm_similarity=rule.confirm_similarity,
                                valid=None if flat is None else ~np.asarray(flat, dtype=bool))
        rows, cols, sims = np.concatenate([rows, hr]), np.concatenate([cols, hc]), np.concatenate([sims, hs])
    al = None
    if rule is not None and rule.min_aligned <= 1.0 and aligned is not None:
        al = np.asarray(aligned)
        if al.shape != graph.indices.shape:
            raise InvalidArray(f"aligned has shape {al.shape}, the graph {graph.indices.shape}")
        if thumbnails is not None and np.asarray(thumbnails).shape[0] != n:
            raise InvalidArray(f"thumbnails has {np.asarray(thumbnails).shape[0]} rows but the graph has {n}")
    if flat is not None:
        flat = np.asarray(flat, dtype=bool)
        keep_edge = ~(flat[rows] | flat[cols])
        rows, cols, sims = rows[keep_edge], cols[keep_edge], sims[keep_edge]
    if content_hashes is not None:
        hr, hc = _hash_edges(content_hashes, key_rank)
        rows, cols = np.concatenate([rows, hr]), np.concatenate([cols, hc])
        sims = np.concatenate([sims, np.ones(len(hr), dtype=np.float32)])
    adjacency = _symmetric_max(rows, cols, sims, n)
    group = _components(adjacency, n)
    if al is not None:
        # The thumbnail branch joins groups only as cliques (see `_join_aligned`): a chain of distinct
        # images, each pair of neighbours alike at 16 x 16, must not become one group.
        tr, tc = _join_aligned(graph, al, group, rule, key_rank, flat=flat, thumbnails=thumbnails,
                               embeddings=embeddings)
        if len(tr):
            rows, cols = np.concatenate([rows, tr]), np.concatenate([cols, tc])
            # Weighted by cosine like the other edges (kept above 0: a zero weight would drop the edge).
            ts = (np.einsum("ij,ij->i", np.asarray(embeddings)[tr], np.asarray(embeddings)[tc])
                  if embeddings is not None else np.ones(len(tr)))
            sims = np.concatenate([sims, np.maximum(ts, 1e-6).astype(np.float32)])
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


# --- near duplicates calibrated on made copies (issue 15) -----------------------------------------

# The share of the pHash bits a copy may differ in when the hash branch is used at all:
# beyond 16 of 64 bits two random images agree by chance often enough (random pairs average
# 32, sd 4). (A design bound, not tuned.)
MAX_HASH_BITS = 16
# Quantile of the made copies' similarities the cut must keep (5%: the hardest copies of
# each kind may be missed before a distinct pair is joined). Chosen on the scikit-learn
# digits (dev set) of benchmarks/duplicates_quality.py; MNIST is held out.
COPY_QUANTILE = 0.05
# Below this luminance entropy (bits) an image is flat (blank, one colour, a placeholder
# card): it is a copy only when byte-identical, as every flat image looks alike to any encoder.
FLAT_ENTROPY = 0.5


@dataclass(frozen=True)
class NearDuplicateRule:
    """When two samples are near copies: cosine >= min_similarity, or (pHash Hamming <=
    max_hamming and cosine >= confirm_similarity), or (kNN neighbours whose thumbnails'
    `aligned_similarity` >= min_aligned). Flat images join only by content hash."""

    min_similarity: float  # the embedding-only cut
    max_hamming: int = -1  # the hash branch's Hamming cut (bits of 64); -1: no hash branch
    confirm_similarity: float = 1.0  # the cosine a hash-close pair must also reach
    calibration: dict = None  # what the cut was placed between (JSON-ready, for summary.json)
    min_aligned: float = 2.0  # the thumbnail branch's cut on kNN-graph edges (> 1: no thumbnail branch)


def calibrate_near_duplicates(
    graph: KnnGraph,
    copy_similarity,
    *,
    copy_hamming=None,
    distinct_hamming=None,
    content_hashes: Sequence[str | None] | None = None,
    copy_kind=None,
    copy_aligned=None,
    graph_aligned=None,
    phash=None,
    expected_false: float = 1.0,
) -> NearDuplicateRule:
    """Place the near-duplicate cut between what a copy looks like and what distinct samples look like.

    copy_similarity: (C,) cosine of made copies (embeddings/copies.py: crops, resizes, JPEG,
    rotations, colour changes of the data's own images) to their originals. copy_hamming: (C,)
    their pHash Hamming distances; distinct_hamming: (S,) each sampled original's Hamming
    distance to its nearest distinct sample (different content hash). The distinct side of the
    embedding is the graph: each row's nearest neighbour with a different content hash, its
    upper tail estimated robustly (`near_duplicate_threshold`, about `expected_false` rows
    of a copy-free dataset above it), so copies in the data do not move it.

    Embedding cut: between the copies' COPY_QUANTILE and the distinct tail, in log distance,
    when the copies lie above the tail; else the distinct tail (precision first: those copies
    are left to the hash branch). Hash branch: the Hamming cut keeps (1 - COPY_QUANTILE) of the
    copies but stays below every sampled distinct neighbour (and MAX_HASH_BITS); its confirming
    cosine is the copies' COPY_QUANTILE (a hash-close pair must also look like a copy). Both
    distinct sides are robust tails (median and MAD), so copies already in the data do not move
    the cut while they are a minority.

    Thumbnail branch (copy_aligned (C,): the copies' `aligned_similarity` to their originals;
    graph_aligned (N, k): `graph_aligned_similarity` of the graph's edges; phash (N,) int64): the
    distinct side is each row's best aligned similarity to a neighbour that is not already its copy
    (same content hash, or joined by the embedding or hash branch above: copies in the data would
    otherwise fill the tail), its upper tail estimated from the far side of its distribution
    (ALIGNED_FIT); the cut sits between it and the copies' COPY_QUANTILE in log distance when the
    copies lie above the tail, else at the tail (precision first).
    """
    sims = np.asarray(copy_similarity, dtype=np.float64)
    distinct = _distinct_graph(graph, content_hashes)
    tail = near_duplicate_threshold(distinct, expected_false=expected_false, floor=-1.0)
    facts: dict = {"distinct_tail": round(tail, 4), "copies": int(len(sims))}
    if not len(sims):
        facts["method"] = "distinct tail (no copies to calibrate on)"
        return NearDuplicateRule(min_similarity=float(max(tail, 0.9)), calibration=facts)
    copy_lo = float(np.quantile(sims, COPY_QUANTILE))
    facts["copy_similarity_q05"] = round(copy_lo, 4)
    facts["copy_similarity_median"] = round(float(np.median(sims)), 4)
    if copy_kind is not None:
        kinds = np.asarray(copy_kind)
        facts["copy_similarity_q05_by_kind"] = {str(k): round(float(np.quantile(sims[kinds == k], COPY_QUANTILE)), 4)
                                                for k in sorted(set(kinds.tolist()))}
    nn = distinct.similarities[:, 0]
    nn = nn[np.isfinite(nn) & (distinct.indices[:, 0] >= 0)]
    if len(nn):
        facts["distinct_similarity_q50_q99"] = [round(float(q), 4) for q in np.quantile(nn, [0.5, 0.99])]
    if copy_lo > tail:
        cut = 1.0 - float(np.sqrt((1.0 - copy_lo + 1e-6) * (1.0 - tail + 1e-6)))
        facts["method"] = "between copies and the distinct tail"
    else:
        cut = tail
        facts["method"] = "distinct tail (copies overlap it)"
    rule = {"min_similarity": float(min(1.0, cut))}
    if copy_hamming is not None and distinct_hamming is not None and len(copy_hamming):
        ch = np.asarray(copy_hamming, dtype=np.int64)
        dh = np.asarray(distinct_hamming, dtype=np.int64)
        want = int(np.quantile(ch, 1.0 - COPY_QUANTILE))
        # The distinct side's low tail, robustly (the sampled originals' nearest distinct hash
        # may be a copy already in the data): median - z * sigma_MAD, z for about
        # `expected_false` of the M rows.
        from scipy.special import ndtri

        med = float(np.median(dh)) if len(dh) else float(MAX_HASH_BITS + 1)
        sigma = 1.4826 * float(np.median(np.abs(dh - med))) if len(dh) else 0.0
        z = float(ndtri(1.0 - min(expected_false, len(graph) - 1) / max(len(graph), 2)))
        below_distinct = int(np.floor(med - z * max(sigma, 1.0)))
        h = max(-1, int(min(want, below_distinct, MAX_HASH_BITS)))
        facts.update({"copy_hamming_q95": want, "distinct_hamming_median": med,
                      "distinct_hamming_tail": below_distinct, "max_hamming": h})
        if h >= 0:
            rule.update(max_hamming=h, confirm_similarity=float(min(copy_lo, rule["min_similarity"])))
    if copy_aligned is not None and graph_aligned is not None and len(copy_aligned):
        rule.update(_calibrate_aligned(np.asarray(copy_aligned, dtype=np.float64), graph_aligned, graph,
                                       content_hashes, copy_kind, expected_false, facts, rule, phash))
    facts.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rule.items()})
    return NearDuplicateRule(**rule, calibration=facts)


def _calibrate_aligned(copy_aligned: np.ndarray, graph_aligned, graph: KnnGraph, content_hashes, copy_kind,
                       expected_false: float, facts: dict, rule: dict, phash) -> dict:
    """The thumbnail branch's cut (see calibrate_near_duplicates), its facts added to `facts`."""
    aligned = np.asarray(graph_aligned, dtype=np.float64)
    if aligned.shape != graph.indices.shape:
        raise InvalidArray(f"graph_aligned has shape {aligned.shape}, the graph {graph.indices.shape}")
    code = _hash_codes(content_hashes, len(graph))
    idx = graph.indices
    nb = np.maximum(idx, 0)
    known = (idx < 0) | ((code[:, None] >= 0) & (code[nb] == code[:, None]))
    known |= graph.similarities >= rule["min_similarity"]
    if phash is not None and rule.get("max_hamming", -1) >= 0:
        ph = np.asarray(phash, dtype=np.int64)
        known |= (hamming(ph[:, None], ph[nb]) <= rule["max_hamming"]) & (graph.similarities >= rule["confirm_similarity"])
    best = np.where(known, -np.inf, aligned).max(axis=1)
    best = best[np.isfinite(best)]
    copy_lo = float(np.quantile(copy_aligned, COPY_QUANTILE))
    facts["copy_aligned_q05"] = round(copy_lo, 4)
    if copy_kind is not None:
        kinds = np.asarray(copy_kind)
        facts["copy_aligned_q05_by_kind"] = {str(k): round(float(np.quantile(copy_aligned[kinds == k], COPY_QUANTILE)), 4)
                                             for k in sorted(set(kinds.tolist()))}
    if len(best) < 3:
        facts["aligned_method"] = "no thumbnail branch (too few measured neighbours)"
        return {}
    from scipy.special import ndtri

    eps = 1e-6
    logs = np.log(np.clip(1.0 - best, 0.0, None) + eps)
    # A normal fitted to the far side of the log distances (quantiles ALIGNED_FIT): copies the other
    # branches did not catch sit in the near tail and would pull a median / MAD towards them.
    lo, hi = np.quantile(logs, ALIGNED_FIT)
    sigma = float(hi - lo) / float(ndtri(ALIGNED_FIT[1]) - ndtri(ALIGNED_FIT[0]))
    mu = float(lo) - float(ndtri(ALIGNED_FIT[0])) * sigma
    z = float(ndtri(1.0 - min(float(expected_false), len(best) - 1) / len(best)))
    tail = 1.0 - (float(np.exp(mu - z * sigma)) - eps)
    facts["distinct_aligned_q50_q99"] = [round(float(q), 4) for q in np.quantile(best, [0.5, 0.99])]
    facts["distinct_aligned_tail"] = round(tail, 4)
    if copy_lo <= tail:  # precision first: the copies below the tail are missed
        facts["aligned_method"] = "distinct tail (copies overlap it)"
        facts["aligned_ratio"] = ALIGNED_RATIO
        return {"min_aligned": float(tail)}
    facts["aligned_method"] = "between copies and the distinct tail"
    facts["aligned_ratio"] = ALIGNED_RATIO
    return {"min_aligned": 1.0 - float(np.sqrt((1.0 - copy_lo + eps) * (1.0 - tail + eps)))}


def _join_aligned(graph: KnnGraph, aligned: np.ndarray, group: np.ndarray, rule: NearDuplicateRule,
                  key_rank: np.ndarray, *, flat=None, thumbnails=None, embeddings=None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the thumbnail-branch edges kept, each inside one group of the result.

    An edge (i, j) of the graph is a candidate when its `aligned` similarity reaches rule.min_aligned
    and it stands out of both ends' neighbourhoods: 1 - aligned <= ALIGNED_RATIO * (1 - s), s the
    ALIGNED_RANK-th best aligned similarity of that end to a neighbour in neither end's group (a
    copy is much nearer than the images around it; a thin stroke among many alike is not).
    Candidates join the groups of the other branches (`group`, -1 = alone) in decreasing
    similarity, and two groups join only when every pair across them is alike too (aligned >=
    min_aligned, or cosine >= min_similarity): complete linkage, so a chain a ~ b ~ c of distinct
    images stays apart unless a ~ c. A join checking more than MAX_CLIQUE_PAIRS pairs is refused.
    """
    n, k = graph.indices.shape
    comp = np.where(group >= 0, group, n + np.arange(n))
    idx = graph.indices
    nb = np.maximum(idx, 0)
    al = np.where(idx >= 0, np.nan_to_num(np.asarray(aligned, dtype=np.float64), nan=-np.inf), -np.inf)
    if flat is not None:
        fl = np.asarray(flat, dtype=bool)
        al = np.where(fl[:, None] | fl[nb], -np.inf, al)
    ok = (al >= rule.min_aligned) & (comp[nb] != comp[:, None])
    r, c = np.nonzero(ok)
    if not len(r):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    j = idx[r, c].astype(np.int64)
    a = al[r, c]

    def scale(x, y):  # (E,) the ALIGNED_RANK-th best aligned similarity of x outside both groups, >= 0
        other = (comp[nb[x]] != comp[x][:, None]) & (comp[nb[x]] != comp[y][:, None])
        cand = -np.sort(-np.where(other, al[x], -np.inf), axis=1)
        s = cand[:, ALIGNED_RANK - 1] if k >= ALIGNED_RANK else np.full(len(x), -np.inf)
        return np.maximum(s, 0.0)

    stands_out = ((1.0 - a) <= ALIGNED_RATIO * (1.0 - scale(r, j))) & ((1.0 - a) <= ALIGNED_RATIO * (1.0 - scale(j, r)))
    r, j, a = r[stands_out], j[stands_out], a[stands_out]
    # Strongest first; ties by the rows' keys, so the result does not depend on row order.
    order = np.lexsort((np.maximum(key_rank[r], key_rank[j]), np.minimum(key_rank[r], key_rank[j]), -a))
    r, j, a = r[order], j[order], a[order]
    listed = None
    if thumbnails is None:  # the graph's own edges are all there is to check a pair with
        listed = {}
        for x, y, v in zip(np.repeat(np.arange(n), k)[(idx >= 0).ravel()].tolist(), idx[idx >= 0].tolist(),
                           al[idx >= 0].tolist(), strict=True):
            key = (min(x, y), max(x, y))
            listed[key] = max(listed.get(key, -np.inf), v)
    members: dict[int, list[int]] = {}
    # The other branches' groups, sorted once (a scan of `group` per group would be N per lookup).
    by_group = np.argsort(group, kind="stable")
    sorted_groups = group[by_group]

    def members_of(g: int) -> list[int]:
        if g not in members:
            if g >= n:
                members[g] = [g - n]
            else:
                lo, hi = np.searchsorted(sorted_groups, [g, g + 1])
                members[g] = np.sort(by_group[lo:hi]).tolist()
        return members[g]

    emb = None if embeddings is None else np.asarray(embeddings)
    for x, y in zip(r.tolist(), j.tolist(), strict=True):
        ga, gb = int(comp[x]), int(comp[y])
        if ga == gb:
            continue
        ma, mb = np.array(members_of(ga)), np.array(members_of(gb))
        if len(ma) * len(mb) > MAX_CLIQUE_PAIRS:
            continue
        pa, pb = np.repeat(ma, len(mb)), np.tile(mb, len(ma))
        if thumbnails is not None:
            alike = aligned_similarity(thumbnails, pa, pb) >= rule.min_aligned
        else:
            alike = np.array([listed.get((min(u, w), max(u, w)), -np.inf) >= rule.min_aligned
                              for u, w in zip(pa.tolist(), pb.tolist(), strict=True)], dtype=bool)
        if emb is not None:
            alike |= np.einsum("ij,ij->i", emb[pa], emb[pb]) >= rule.min_similarity
        if not alike.all():
            continue
        comp[mb] = ga
        members[ga] = members_of(ga) + members.pop(gb)
    keep = comp[r] == comp[j]
    return r[keep].astype(np.int64), j[keep]


def _distinct_graph(graph: KnnGraph, content_hashes: Sequence[str | None] | None) -> KnnGraph:
    """The graph with neighbours of the same content hash masked out (-1 / -inf), rows re-sorted."""
    if content_hashes is None:
        return graph
    code = _hash_codes(content_hashes, len(graph))
    idx = graph.indices.copy()
    sims = graph.similarities.astype(np.float32).copy()
    same = (idx >= 0) & (code[:, None] >= 0) & (code[np.maximum(idx, 0)] == code[:, None])
    idx[same] = -1
    sims[same] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")
    return dataclasses.replace(graph, indices=np.take_along_axis(idx, order, 1),
                               similarities=np.take_along_axis(sims, order, 1))


def nearest_distinct_hamming(phash, rows, *, content_hashes: Sequence[str | None] | None = None,
                             valid=None, block: int = 65536) -> np.ndarray:
    """(S,) the smallest pHash Hamming distance of each of `rows` to any other row with a different
    content hash (among `valid` rows), brute force over blocks of the M rows (S: a calibration sample)."""
    phash = np.asarray(phash, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    m = len(phash)
    valid = np.ones(m, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    code = _hash_codes(content_hashes, m)
    best = np.full(len(rows), 65, dtype=np.int64)
    for start in range(0, m, block):
        part = np.arange(start, min(m, start + block))
        d = hamming(phash[rows][:, None], phash[part][None, :])
        same = (part[None, :] == rows[:, None]) | ~valid[part][None, :]
        same |= (code[rows][:, None] >= 0) & (code[rows][:, None] == code[part][None, :])
        d[same] = 65
        best = np.minimum(best, d.min(axis=1) if d.size else best)
    return best


def hamming(a, b) -> np.ndarray:
    """Bitwise Hamming distance between int64 hash codes (broadcasting)."""
    x = np.asarray(np.bitwise_xor(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)))
    return np.bitwise_count(x.view(np.uint64)).astype(np.int64)


def hash_edges(phash, embeddings, *, max_hamming: int, confirm_similarity: float, valid=None,
               bands: int = 8, max_bucket: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (rows, cols, cosine) whose pHashes differ in <= max_hamming bits and whose embeddings
    reach confirm_similarity. Candidates: rows sharing one of `bands` equal slices of the hash
    (pigeonhole: any pair within bands - 1 bits shares a slice), buckets above `max_bucket`
    members skipped (a hash shared that widely is a flat or generic image, not a copy)."""
    phash = np.asarray(phash, dtype=np.int64)
    m = len(phash)
    valid = np.ones(m, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    u = phash.view(np.uint64)
    width = 64 // bands
    pairs = []
    ok = np.flatnonzero(valid)
    for b in range(bands):
        key = ((u[ok] >> np.uint64(b * width)) & np.uint64((1 << width) - 1)).astype(np.int64)
        order = np.argsort(key, kind="stable")
        ks = key[order]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        ends = np.r_[starts[1:], len(ks)]
        for s0, e0 in zip(starts, ends, strict=True):
            if 1 < e0 - s0 <= max_bucket:
                members = ok[order[s0:e0]]
                a, c = np.triu_indices(len(members), 1)
                pairs.append(np.stack([members[a], members[c]], 1))
    if not pairs:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    pair = np.unique(np.concatenate(pairs), axis=0)
    pair = pair[hamming(phash[pair[:, 0]], phash[pair[:, 1]]) <= max_hamming]
    emb = np.asarray(embeddings)
    cos = np.einsum("ij,ij->i", emb[pair[:, 0]], emb[pair[:, 1]]).astype(np.float32) if len(pair) else np.zeros(0, np.float32)
    keep = cos >= confirm_similarity
    return pair[keep, 0], pair[keep, 1], cos[keep]


# --- alignment-aware thumbnail similarity (issue 15: crops) -----------------------------------------
#
# A 2-10% crop shifts and magnifies everything in the picture, which moves a pixel embedding and
# the DCT pHash further than the gap between two distinct digits. The thumbnail signal
# (embeddings/signals.py: a 16x16 grayscale thumbnail per content hash, stored like the pHash)
# undoes that: one image is viewed through a small set of crops (scales, offsets) and tilts of
# its own thumbnail, and the pair's similarity is the best normalised cross-correlation of a view
# with the other's whole thumbnail, both high-passed (the thumbnail less its 3x3 local mean: two
# smooth blobs correlate whatever their shape; their edges do not).

THUMB_SIZE = 16  # the stored thumbnail's side (pixels); embeddings/signals.py writes it
_VIEW = 12  # a view's side: 3/4 of the thumbnail, so a 10% crop still fits inside it
# The views (chosen on scikit-learn's digits, the dev set of benchmarks/duplicates_quality.py;
# MNIST held out): crops keeping 100 / 95 / 90% of each side independently (a crop need not keep
# the aspect), each at 5 x 5 offsets over the slack, and tilts of 2 and 4 degrees either way of the whole image.
_VIEW_SCALES = (1.0, 0.95, 0.9)
_VIEW_OFFSETS = 5
_VIEW_TILTS = (2.0, -2.0, 4.0, -4.0)
# The quantiles of the distinct side's log distances its normal is fitted to (the far side, clear
# of copies in the data). Chosen on the scikit-learn digits (dev set); MNIST held out.
ALIGNED_FIT = (0.75, 0.95)
# A thumbnail-branch edge must stand out of both ends' neighbourhoods: its distance (1 - aligned) at
# most ALIGNED_RATIO times that end's ALIGNED_RANK-th nearest neighbour in neither group (rank 2: one
# more unjoined copy of the same image does not hide a pair). The idea is Lowe's ratio test (SIFT,
# 2004: nearest / second nearest < 0.8); 0.5 was set on scikit-learn's digits (dev set), whose
# thumbnail-joined copies reach at most 0.14, so it leaves them a margin of 3; no distinct dev pair
# passes the cut, so it was not fitted to false pairs. MNIST held out.
ALIGNED_RATIO = 0.5
ALIGNED_RANK = 2
# Two groups joined through the thumbnail branch are checked pair by pair; a join needing more
# checks than this is refused (precision first; a design bound, not tuned).
MAX_CLIQUE_PAIRS = 4096


def _bilinear_rows(ys: np.ndarray, xs: np.ndarray, size: int) -> np.ndarray:
    """(len(ys), size * size) weights sampling a size x size image at the points (ys, xs), bilinearly."""
    ys = np.clip(ys, 0, size - 1)
    xs = np.clip(xs, 0, size - 1)
    y0 = np.minimum(np.floor(ys).astype(np.int64), size - 2)
    x0 = np.minimum(np.floor(xs).astype(np.int64), size - 2)
    wy, wx = ys - y0, xs - x0
    w = np.zeros((len(ys), size * size))
    r = np.arange(len(ys))
    for dy, dx, weight in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx), (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        np.add.at(w, (r, (y0 + dy) * size + x0 + dx), weight)
    return w


def _highpass(side: int) -> np.ndarray:
    """(side^2, side^2): an image less its 3x3 box mean (edges replicated)."""
    n = side * side
    box = np.zeros((n, n))
    for y in range(side):
        for x in range(side):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = min(max(y + dy, 0), side - 1), min(max(x + dx, 0), side - 1)
                    box[y * side + x, yy * side + xx] += 1 / 9
    return np.eye(n) - box


def _view_matrix():
    """(V * _VIEW^2, THUMB_SIZE^2) float32: every view of a thumbnail, high-passed; view 0 is the whole image."""
    t, v = THUMB_SIZE, _VIEW
    grid = (np.arange(v) + 0.5) / v
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    blocks = []
    centre = (t - 1) / 2
    for angle in (0.0, *_VIEW_TILTS):  # the whole image, straight then tilted
        a = np.deg2rad(angle)
        y, x = yy * t - 0.5 - centre, xx * t - 0.5 - centre
        blocks.append(_bilinear_rows((centre + y * np.cos(a) - x * np.sin(a)).ravel(),
                                     (centre + y * np.sin(a) + x * np.cos(a)).ravel(), t))
    for sy in _VIEW_SCALES:
        for sx in _VIEW_SCALES:
            if sy == sx == 1.0:
                continue
            for oy in np.linspace(0, t * (1 - sy), _VIEW_OFFSETS if sy < 1 else 1):
                for ox in np.linspace(0, t * (1 - sx), _VIEW_OFFSETS if sx < 1 else 1):
                    blocks.append(_bilinear_rows((oy + yy * t * sy - 0.5).ravel(), (ox + xx * t * sx - 0.5).ravel(), t))
    hp = _highpass(v)
    return np.concatenate([hp @ b for b in blocks]).astype(np.float32)


_VIEWS = None


def _views(thumbnails: np.ndarray, *, whole_only: bool = False) -> np.ndarray:
    """(B, V, _VIEW^2) unit-norm zero-mean high-passed views of B thumbnails ((B, THUMB_SIZE^2) uint8);
    a view with no contrast is all zeros (it matches nothing)."""
    global _VIEWS
    if _VIEWS is None:
        _VIEWS = _view_matrix()
    d = _VIEW * _VIEW
    m = _VIEWS[:d] if whole_only else _VIEWS
    x = np.asarray(thumbnails, dtype=np.float32).reshape(len(thumbnails), -1) / 255.0
    out = (x @ m.T).reshape(len(x), -1, d)
    out -= out.mean(axis=2, keepdims=True)
    norm = np.linalg.norm(out, axis=2, keepdims=True)
    return np.where(norm > 1e-4, out / np.maximum(norm, 1e-12), 0.0).astype(np.float32)


def _directed_aligned(thumbnails: np.ndarray, a: np.ndarray, b: np.ndarray, block: int) -> np.ndarray:
    """(E,) best correlation of a view of a[e] with the whole of b[e]."""
    out = np.zeros(len(a), dtype=np.float32)
    order = np.argsort(a, kind="stable")
    for s in range(0, len(order), block):
        part = order[s:s + block]
        rows, inverse = np.unique(a[part], return_inverse=True)
        va = _views(thumbnails[rows])  # (R, V, d)
        wb = _views(thumbnails[b[part]], whole_only=True)[:, 0]  # (P, d)
        out[part] = np.einsum("pvd,pd->pv", va[inverse], wb).max(axis=1)
    return out


def aligned_similarity(thumbnails, rows, cols, *, block: int = 512) -> np.ndarray:
    """(E,) alignment-aware similarity of the pairs (rows[e], cols[e]) of `thumbnails` (N, THUMB_SIZE^2)
    uint8: the best normalised cross-correlation, high-passed, of either image's whole thumbnail with a
    view (a crop of 90-100% of each side at 5 x 5 offsets, or a tilt of 2 or 4 degrees) of the other's. In
    [-1, 1]; 0 where either thumbnail has no contrast (blank, or not measured)."""
    thumbs = np.asarray(thumbnails)
    if thumbs.ndim != 2 or thumbs.shape[1] != THUMB_SIZE * THUMB_SIZE:
        raise InvalidArray(f"thumbnails must be (N, {THUMB_SIZE * THUMB_SIZE}) uint8, got shape {thumbs.shape}")
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if not len(rows):
        return np.zeros(0, dtype=np.float32)
    # Both directions in one pass, so each image's views are computed once.
    both = _directed_aligned(thumbs, np.concatenate([rows, cols]), np.concatenate([cols, rows]), block)
    return np.maximum(both[:len(rows)], both[len(rows):])


def graph_aligned_similarity(graph: KnnGraph, thumbnails, *, valid=None) -> np.ndarray:
    """(N, k) float32 `aligned_similarity` of each kNN-graph edge; -inf for a missing edge or an invalid row."""
    n, k = graph.indices.shape
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    ok = (graph.indices >= 0) & valid[:, None] & valid[np.maximum(graph.indices, 0)]
    out = np.full((n, k), -np.inf, dtype=np.float32)
    r, c = np.nonzero(ok)
    if len(r):
        # Each undirected pair once (a kNN graph lists most pairs both ways).
        a, b = np.minimum(r, graph.indices[r, c]), np.maximum(r, graph.indices[r, c])
        pair, inverse = np.unique(a * n + b, return_inverse=True)
        out[r, c] = aligned_similarity(thumbnails, pair // n, pair % n)[inverse]
    return out


def thumbnails_from_columns(columns) -> np.ndarray:
    """(N, THUMB_SIZE^2) uint8 thumbnails from the signal columns thumb00..thumb31 ((N,) int64 each,
    8 bytes to a column, little-endian: embeddings/signals.py `thumbnail`)."""
    names = [f"thumb{i:02d}" for i in range(THUMB_SIZE * THUMB_SIZE // 8)]
    packed = np.stack([np.asarray(columns[c], dtype=np.int64) for c in names], axis=1).astype("<i8")
    return np.ascontiguousarray(packed).view(np.uint8).reshape(len(packed), THUMB_SIZE * THUMB_SIZE)
