"""Label noise from neighbour agreement on the kNN graph.

A sample whose nearest neighbours mostly carry another label is probably mislabelled:
each neighbour votes for its own label, weighted by its similarity to the sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.errors import InvalidArray
from curation.knn_graph import KnnGraph
from curation.validation import check_labels, check_same_length, check_unit_embeddings


@dataclass(frozen=True)
class KnnVotes:
    vote_probs: np.ndarray  # (N, K) float64: similarity-weighted share of neighbour votes per class
    label_quality: np.ndarray  # (N,) float64 in [0, 1]: share of the vote that agrees with the given label
    suggested_label: np.ndarray  # (N,) int64: the neighbourhood's weighted majority
    is_label_issue: np.ndarray  # (N,) bool: the majority disagrees with the given label


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
    candidates (not a new search per round) keeps a round at O(N k D).
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
        prod = np.asarray(emb[start:stop])[:, None, :] * np.asarray(emb)[safe_idx[start:stop]]
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
    valid = graph.indices >= 0
    weights = np.where(valid, np.clip(graph.similarities, 0.0, None), 0.0).astype(np.float64)
    neighbour_labels = np.where(valid, labels[np.clip(graph.indices, 0, None)], 0)
    votes = np.zeros((n, n_classes), dtype=np.float64)
    np.add.at(votes, (np.repeat(np.arange(n), k), neighbour_labels.ravel()), weights.ravel())
    totals = votes.sum(axis=1, keepdims=True)
    empty = totals[:, 0] <= 0
    votes[empty] = 1.0 / n_classes
    totals[empty] = 1.0
    return votes / totals
