"""Label noise from neighbour agreement on the kNN graph.

A sample whose nearest neighbours mostly carry another label is probably mislabelled:
each neighbour votes for its own label, weighted by its similarity to the sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.knn_graph import KnnGraph
from curation.validation import check_labels, check_same_length


@dataclass(frozen=True)
class KnnVotes:
    vote_probs: np.ndarray  # (N, K) float64: similarity-weighted share of neighbour votes per class
    label_quality: np.ndarray  # (N,) float64 in [0, 1]: share of the vote that agrees with the given label
    suggested_label: np.ndarray  # (N,) int64: the neighbourhood's weighted majority
    is_label_issue: np.ndarray  # (N,) bool: the majority disagrees with the given label


def find_knn_label_issues(labels, graph: KnnGraph, *, n_classes: int) -> KnnVotes:
    """Distance-weighted kNN vote for each sample's label.

    labels: (N,) int class indices; graph: the (N, k) kNN graph of the same samples.
    Weights are the similarities clipped at 0 (an anti-correlated neighbour says nothing);
    a sample with no usable neighbour gets a uniform vote. `is_label_issue` flags the
    samples whose weighted majority is another class.
    """
    labels = check_labels(labels, n_classes=n_classes)
    check_same_length(labels=labels, knn_graph=graph.indices)
    votes = vote_knn(labels, graph, n_classes=n_classes)
    n = len(labels)
    quality = votes[np.arange(n), labels]
    suggested = votes.argmax(axis=1)
    # Ties keep the given label: disagreement must be strict to flag.
    suggested = np.where(votes[np.arange(n), suggested] > quality, suggested, labels)
    return KnnVotes(
        vote_probs=votes,
        label_quality=quality,
        suggested_label=suggested.astype(np.int64),
        is_label_issue=suggested != labels,
    )


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
