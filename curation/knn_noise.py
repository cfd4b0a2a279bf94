"""Label noise from neighbour agreement on the kNN graph.

A sample whose nearest neighbours mostly carry another label is probably mislabelled:
each neighbour votes for its own label, weighted by its similarity to the sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from winnow.curation.blocks import take_rows, take_slice
from winnow.curation.errors import InvalidArray
from winnow.curation.knn_graph import KnnGraph
from winnow.curation.validation import check_labels, check_same_length, check_unit_embeddings


@dataclass(frozen=True)
class KnnVotes:
    vote_probs: np.ndarray  # (N, K) float64: similarity-weighted share of neighbour votes per class
    label_quality: np.ndarray  # (N,) float64 in [0, 1]: share of the vote that agrees with the given label
    suggested_label: np.ndarray  # (N,) int64: the neighbourhood's weighted majority
    is_label_issue: np.ndarray  # (N,) bool: the majority disagrees with the given label


def build_voter_graph(graph: KnnGraph, *, groups=None, exclude=None, embeddings=None,
                      block_size: int | None = None) -> KnnGraph:
    """The kNN graph as the label detectors' voters: (N, k), the same rows, three rules.

    1. A duplicate group is one voter: its members never vote for each other (a mislabelled
       image and its byte copy would otherwise shelter each other), and of a group's members
       among a row's neighbours only the nearest votes. All members share one list of voters
       (the union of their neighbours outside the group), so copies get one verdict.
    2. Excluded rows (e.g. rows of rare classes) vote for no one.
    3. A list these rules shorten is refilled from the neighbours' neighbours (their exact
       cosines from `embeddings`), so a row keeps k voters; without embeddings it stays
       shorter (-1 / -inf at the end).
    Rows that no rule touches keep their neighbours exactly (the same graph is returned
    when no row is touched). groups: (N,) int duplicate group ids, -1 = none (e.g.
    `find_duplicates(...).group`); exclude: (N,) bool; embeddings: (N, D) L2-normalised.
    """
    n, k = graph.indices.shape
    group = np.full(n, -1, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64).copy()
    excl = np.zeros(n, dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool)
    emb = None if embeddings is None else check_unit_embeddings(embeddings)
    check_same_length(knn_graph=graph.indices, groups=group, exclude=excl, embeddings=emb)
    group[excl] = -1
    if (group >= 0).any():  # a group left with one member (the others excluded) is no group
        sizes = np.bincount(group[group >= 0])
        group[(group >= 0) & (sizes[np.maximum(group, 0)] < 2)] = -1
    voter = np.where(group >= 0, n + group, np.arange(n))
    idx = graph.indices
    redo = np.empty(n, dtype=bool)
    # In row blocks: the checks' (N, k) int64 temporaries were ~350 bytes a row at once (issue 18 item 1).
    for start in range(0, n, _VOTE_ROWS):
        block = idx[start : start + _VOTE_ROWS]
        valid = block >= 0
        safe = np.maximum(block, 0)
        nb_voter = np.where(valid, voter[safe], -1 - np.arange(k)[None, :])  # invalid slots: distinct negatives
        srt = np.sort(nb_voter, axis=1)
        repeated = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        bad_neighbour = valid & (excl[safe] | (nb_voter == voter[start : start + len(block), None]))
        redo[start : start + len(block)] = bad_neighbour.any(axis=1) | repeated
    redo = (redo | (group >= 0)) & ~excl
    if not redo.any():
        return graph
    rows = np.flatnonzero(redo)
    if emb is not None:
        cand, sims = _two_hop_candidates(graph, rows, emb, block_size)
    else:
        cand, sims = idx[rows].copy(), graph.similarities[rows].astype(np.float32)
    cand_voter = np.where(cand >= 0, voter[np.maximum(cand, 0)], -1)
    dead = (cand < 0) | excl[np.maximum(cand, 0)] | (cand_voter == voter[rows][:, None])
    cand[dead], sims[dead] = -1, -np.inf
    out_i, out_s = idx.copy(), graph.similarities.copy()
    alone = group[rows] < 0
    out_i[rows[alone]], out_s[rows[alone]] = _top_distinct(cand[alone], sims[alone], cand_voter[alone], k)
    members = np.flatnonzero(~alone)
    if len(members):
        members = members[np.argsort(group[rows[members]], kind="stable")]
        g = group[rows[members]]
        bounds = np.flatnonzero(np.r_[True, g[1:] != g[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            part = members[a:b]  # one group: the union of its members' candidates
            top_i, top_s = _top_distinct(cand[part].reshape(1, -1), sims[part].reshape(1, -1),
                                         cand_voter[part].reshape(1, -1), k)
            out_i[rows[part]], out_s[rows[part]] = top_i, top_s
    return KnnGraph(indices=out_i, similarities=out_s, method=f"{graph.method}+voters", recall=graph.recall)


def _two_hop_candidates(graph: KnnGraph, rows: np.ndarray, emb: np.ndarray, block_size: int | None):
    """(R, k + k^2) candidates of `rows`: their neighbours (graph cosines) and, once each,
    their neighbours' neighbours (exact cosines from emb), in blocks of rows."""
    n, k = graph.indices.shape
    direct = graph.indices[rows]
    hop = np.full((len(rows), k * k), -1, dtype=np.int64)
    hop_sims = np.full(hop.shape, -np.inf, dtype=np.float32)
    step = block_size or max(1, (1 << 24) // max(1, k * k * emb.shape[1]))
    for start in range(0, len(rows), step):
        d = direct[start : start + step]
        h = graph.indices[np.maximum(d, 0)].reshape(len(d), k * k)
        h[np.repeat(d < 0, k, axis=1)] = -1
        # Not the row itself, not a direct neighbour (its graph cosine is kept), each once.
        h[(h == rows[start : start + step, None]) | (h[:, :, None] == d[:, None, :]).any(axis=2)] = -1
        order = np.argsort(h, axis=1, kind="stable")
        srt = np.take_along_axis(h, order, axis=1)
        again = np.zeros(h.shape, dtype=bool)
        np.put_along_axis(again, order[:, 1:], srt[:, 1:] == srt[:, :-1], axis=1)
        h[again] = -1
        q = take_rows(emb, rows[start : start + step])
        near = take_rows(emb, np.maximum(h, 0).ravel()).reshape(*h.shape, -1)
        hop[start : start + step] = h
        hop_sims[start : start + step] = np.where(h >= 0, np.einsum("rd,rmd->rm", q, near), -np.inf)
    cand = np.concatenate([direct, hop], axis=1)
    sims = np.concatenate([graph.similarities[rows].astype(np.float32), hop_sims], axis=1)
    return cand, sims


def _top_distinct(cand: np.ndarray, sims: np.ndarray, voters: np.ndarray, k: int):
    """Per row, the k most similar candidates with distinct voters (-1 / -inf pads)."""
    r, m = cand.shape
    order = np.argsort(-sims, axis=1, kind="stable")
    c, s, v = (np.take_along_axis(a, order, axis=1) for a in (cand, sims, voters))
    by_voter = np.argsort(v, axis=1, kind="stable")  # stable: the most similar of a voter first
    vs = np.take_along_axis(v, by_voter, axis=1)
    repeat = np.zeros((r, m), dtype=bool)
    np.put_along_axis(repeat, by_voter, np.c_[np.zeros((r, 1), dtype=bool), vs[:, 1:] == vs[:, :-1]], axis=1)
    s = np.where(repeat | (c < 0), -np.inf, s)
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    ti, ts = np.take_along_axis(c, top, axis=1), np.take_along_axis(s, top, axis=1)
    ti = np.where(np.isfinite(ts), ti, -1)
    if ti.shape[1] < k:
        ti = np.c_[ti, np.full((r, k - ti.shape[1]), -1, dtype=ti.dtype)]
        ts = np.c_[ts, np.full((r, k - ts.shape[1]), -np.inf, dtype=ts.dtype)]
    return ti.astype(np.int64), ts.astype(np.float32)


def find_knn_label_issues(labels, graph: KnnGraph, *, n_classes: int, noise_rate: float | None = None) -> KnnVotes:
    """Distance-weighted kNN vote for each sample's label.

    labels: (N,) int class indices; graph: the (N, k) kNN graph of the same samples.
    Weights are the similarities clipped at 0 (an anti-correlated neighbour says nothing);
    a sample with no usable neighbour gets a uniform vote. `is_label_issue` flags the
    samples whose weighted majority is another class; with `noise_rate` (e.g. the
    confident joint's estimate) it instead flags the round(noise_rate * N) samples of
    lowest label_quality, which is far more precise than the majority rule.
    """
    labels = check_labels(labels, n_classes=n_classes)
    check_same_length(labels=labels, knn_graph=graph.indices)
    votes = vote_knn(labels, graph, n_classes=n_classes)
    return _votes_to_issues(labels, votes, noise_rate=noise_rate)


def find_simifeat_label_issues(
    labels,
    embeddings,
    graph: KnnGraph,
    *,
    n_classes: int,
    n_rounds: int = 5,
    feature_fraction: float = 0.5,
    k_vote: int | None = None,
    seed: int = 0,
    noise_rate: float | None = None,
    block_size: int | None = None,
) -> KnnVotes:
    """SimiFeat-style voting: hard kNN votes over several random feature subsets.

    labels: (N,) int; embeddings: (N, D) the rows the graph was built from; graph: (N, k).
    Each round draws `feature_fraction` of the D features, re-ranks every sample's k
    graph neighbours by their similarity on those features alone, and lets the nearest
    `k_vote` (default k // 2 + 1) vote one each. vote_probs averages the rounds, so a
    label that survives every view of the features scores high. Re-ranking the graph's
    candidates (not a new search per round) keeps a round at O(N k D). The defaults
    (5 rounds, half the features) predate the benchmarks and were not tuned on them.
    """
    labels = check_labels(labels, n_classes=n_classes)
    emb = check_unit_embeddings(embeddings)
    check_same_length(labels=labels, embeddings=emb, knn_graph=graph.indices)
    if not 0.0 < feature_fraction <= 1.0:
        raise InvalidArray(f"feature_fraction must be in (0, 1], got {feature_fraction!r}")
    if n_rounds < 1:
        raise InvalidArray(f"n_rounds must be at least 1, got {n_rounds}")
    n, k = graph.indices.shape
    k_vote = min(k, k_vote if k_vote is not None else k // 2 + 1)
    if k_vote < 1:
        raise InvalidArray(f"k_vote must be at least 1, got {k_vote}")
    d = emb.shape[1]
    rng = np.random.default_rng(seed)
    # (D, R) 0/1 feature masks: one matmul gives every round's subset similarities.
    masks = np.zeros((d, n_rounds), dtype=np.float32)
    for r in range(n_rounds):
        masks[rng.choice(d, max(1, round(feature_fraction * d)), replace=False), r] = 1.0
    valid = graph.indices >= 0
    safe_idx = np.clip(graph.indices, 0, None)
    neighbour_labels = labels[safe_idx]
    votes = np.zeros((n, n_classes), dtype=np.float64)
    step = block_size or max(1, (1 << 23) // max(1, k * d))
    for start in range(0, n, step):
        stop = min(n, start + step)
        b = stop - start
        prod = take_slice(emb, start, stop)[:, None, :] * take_rows(emb, safe_idx[start:stop].ravel()).reshape(b, k, d)
        sims = (prod.reshape(b * k, d) @ masks).reshape(b, k, n_rounds)
        sims[~valid[start:stop]] = -np.inf
        # Rank of each candidate within its row, per round; the k_vote best vote.
        order = np.argsort(-sims, axis=1, kind="stable")
        chosen = np.zeros((b, k, n_rounds), dtype=bool)
        np.put_along_axis(chosen, order[:, :k_vote, :], True, axis=1)
        weight = (chosen & valid[start:stop, :, None]).sum(axis=2).astype(np.float64)  # (b, k)
        flat = (np.arange(b)[:, None] * n_classes + neighbour_labels[start:stop]).ravel()
        votes[start:stop] = np.bincount(flat, weights=weight.ravel(), minlength=b * n_classes).reshape(b, n_classes)
    totals = votes.sum(axis=1, keepdims=True)
    empty = totals[:, 0] <= 0
    votes[empty] = 1.0 / n_classes
    totals[empty] = 1.0
    return _votes_to_issues(labels, votes / totals, noise_rate=noise_rate)


def _votes_to_issues(labels: np.ndarray, votes: np.ndarray, *, noise_rate: float | None) -> KnnVotes:
    n = len(labels)
    quality = votes[np.arange(n), labels]
    suggested = votes.argmax(axis=1)
    # Ties keep the given label: disagreement must be strict to flag.
    suggested = np.where(votes[np.arange(n), suggested] > quality, suggested, labels)
    if noise_rate is None:
        flagged = suggested != labels
    else:
        flagged = flag_lowest(quality, noise_rate)
    return KnnVotes(
        vote_probs=votes,
        label_quality=quality,
        suggested_label=suggested.astype(np.int64),
        is_label_issue=flagged,
    )


def flag_lowest(quality: np.ndarray, noise_rate: float) -> np.ndarray:
    """(N,) bool: the round(noise_rate * N) samples of lowest quality (ties by row order)."""
    if not 0.0 <= noise_rate <= 1.0:
        raise InvalidArray(f"noise_rate must be in [0, 1], got {noise_rate!r}")
    n_flag = int(round(noise_rate * len(quality)))
    flagged = np.zeros(len(quality), dtype=bool)
    flagged[np.argsort(quality, kind="stable")[:n_flag]] = True
    return flagged


def vote_knn(labels: np.ndarray, graph: KnnGraph, *, n_classes: int) -> np.ndarray:
    """(N, K) similarity-weighted neighbour label distribution, rows summing to 1."""
    n, k = graph.indices.shape
    votes = np.empty((n, n_classes), dtype=np.float64)
    # In row blocks: the (N, k) weights, labels and cell numbers would be ~240 bytes a row at
    # once (issue 18 item 1). bincount adds each cell's weights in neighbour order, as
    # np.add.at did, so the sums are the same (and 5-10x faster).
    step = _VOTE_ROWS
    for start in range(0, n, step):
        idx = graph.indices[start : start + step]
        b = len(idx)
        valid = idx >= 0
        weights = np.where(valid, np.clip(graph.similarities[start : start + step], 0.0, None), 0.0)
        cells = np.where(valid, labels[np.clip(idx, 0, None)], 0) + np.arange(b)[:, None] * n_classes
        block = np.bincount(cells.ravel(), weights=weights.astype(np.float64).ravel(), minlength=b * n_classes)
        votes[start : start + b] = block.reshape(b, n_classes)
    totals = votes.sum(axis=1, keepdims=True)
    empty = totals[:, 0] <= 0
    votes[empty] = 1.0 / n_classes
    totals[empty] = 1.0
    votes /= totals
    return votes


# Rows per block of the vote: (rows, k) temporaries of a few MiB whatever N is.
_VOTE_ROWS = 1 << 16
