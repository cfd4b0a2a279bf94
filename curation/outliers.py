"""Outliers: samples far from all others on the shared kNN graph.

Score: the mean cosine distance (1 - similarity) to the sample's k nearest neighbours.
The mean over k, not the distance to the first neighbour, so that a junk image with
one copy of itself is still far from everything else.

How the cut-off is chosen
-------------------------
From the data, with one interpretable knob instead of a magic constant. The bulk of
log-scores is summarised robustly by its median and MAD (scaled by 1.4826, so it
estimates the standard deviation of a normal bulk; the outliers themselves barely move
either). The cut-off is

    log(score) > median + z * 1.4826 * MAD,   z = Phi^-1(1 - expected_false / N)

i.e. the z at which a clean dataset of N samples whose log-scores are normal would flag
`expected_false` samples in expectation (default 1, `DecisionPolicy.outlier_expected_false`).
z grows slowly with N (2.6 at N = 200, 3.7 at 10k, 4.3 at 100k), so the number of false
flags on a clean folder stays about constant instead of growing with the dataset, as a
fixed percentile or a fixed z would make it. Log-scores because kNN distances are
positive and right-skewed; on the log scale the bulk is close to symmetric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.errors import InvalidArray
from curation.knn_graph import KnnGraph

# MAD of a normal distribution is 0.6745 sigma; this turns a MAD into a sigma estimate.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Outliers:
    score: np.ndarray  # (N,) float64: mean cosine distance to the k nearest neighbours; nan without neighbours
    is_outlier: np.ndarray  # (N,) bool: score above the cut-off
    threshold: float  # the cut-off on `score` (not on its log), for the summary
    z: float  # robust z the cut-off corresponds to


def score_knn_distance(graph: KnnGraph, *, k: int | None = None) -> np.ndarray:
    """(N,) mean cosine distance to the first `k` neighbours (all of the graph's by default).

    Missing neighbours (-1) are skipped; a sample with none scores nan.
    """
    kk = graph.k if k is None else int(k)
    if not 1 <= kk <= graph.k:
        raise InvalidArray(f"k must be in 1..{graph.k} (the graph's k), got {k!r}")
    idx = graph.indices[:, :kk]
    dist = 1.0 - graph.similarities[:, :kk].astype(np.float64)
    valid = idx >= 0
    count = valid.sum(axis=1)
    total = np.where(valid, dist, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    # Float error can put a self-similar pair a hair above cosine 1.
    return np.clip(score, 0.0, None)


def find_outliers(graph: KnnGraph, *, k: int | None = None, expected_false: float = 1.0) -> Outliers:
    """Flag samples whose kNN distance is beyond the robust cut-off (see the module docstring).

    graph: (N, k) kNN graph. k: neighbours to average over (default all). expected_false:
    how many samples a clean, log-normal dataset of this size would flag in expectation.
    """
    from scipy.special import ndtri

    if not 0.0 < float(expected_false) < len(graph):
        raise InvalidArray(f"expected_false must be in (0, N={len(graph)}), got {expected_false!r}")
    score = score_knn_distance(graph, k=k)
    ok = np.isfinite(score)
    n = int(ok.sum())
    if n < 3:
        return Outliers(score=score, is_outlier=np.zeros(len(score), dtype=bool), threshold=float("inf"), z=float("inf"))
    # An epsilon keeps exact copies (distance 0) finite on the log scale.
    log_score = np.log(score[ok] + 1e-6)
    median = float(np.median(log_score))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(log_score - median)))
    z = float(ndtri(1.0 - min(float(expected_false), n - 1) / n))
    if sigma <= 0:
        # More than half the samples share one score (copies of one image): no spread to
        # measure, so nothing is declared far from it.
        return Outliers(score=score, is_outlier=np.zeros(len(score), dtype=bool), threshold=float("inf"), z=z)
    cut = median + z * sigma
    threshold = float(np.exp(cut) - 1e-6)
    is_outlier = np.zeros(len(score), dtype=bool)
    is_outlier[ok] = log_score > cut
    return Outliers(score=score, is_outlier=is_outlier, threshold=threshold, z=z)
