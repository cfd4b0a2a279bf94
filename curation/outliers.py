"""Outliers: samples far from all others on the shared kNN graph.

Two scores, both read off the graph (nothing N x N):

- global: the mean cosine distance (1 - similarity) to the k nearest neighbours. The
  mean over k, not the first neighbour, so that junk with one copy of itself still
  scores high. It finds samples (and small clumps of them) far from everything.
- local: the global score divided by the median global score of the sample's
  neighbours (a simplified LOF). Real data mixes dense and sparse concepts; a point
  that is merely in a sparse concept has a local score near 1, while a stray point
  next to a dense concept stands out even when its global distance is ordinary.

By default only the global score flags (`local=False`): on real images (MNIST through
efficientnet-lite0 and pixels, tests/unit/curation/test_outliers.py) the global cut-off alone finds
the planted out-of-domain images with no false flag, while the local ratio has heavier
tails than the model below and adds a few false flags per few hundred images. Turn the
local test on (`DetectConfig.outlier_local`) for data whose concepts differ much in
density: on the 100k synthetic benchmark the global score alone misses most planted
outliers there (benchmarks/README.md).

How the cut-offs are chosen
---------------------------
From the data, with one interpretable knob instead of a magic constant. Each score is
taken on the log scale (distances are positive and right-skewed; their logs are close
to symmetric), and its bulk is summarised robustly by the median and the MAD, scaled by
1.4826 so that it estimates the standard deviation of a normal bulk; the outliers
themselves barely move either. The cut-off is

    log(score) > median + z * 1.4826 * MAD,   z = Phi^-1(1 - (expected_false / 2) / N)

i.e. the z at which a clean dataset of N samples with normal log-scores would flag
expected_false / 2 samples per score in expectation, so at most `expected_false` in all
(default 1, `DetectConfig.outlier_expected_false`). z grows slowly with N (2.8 at
N = 200, 3.9 at 10k, 4.4 at 100k), so the number of false flags on a clean folder stays
about constant instead of growing with the dataset, as a fixed percentile or a fixed z
would make it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from winnow.curation.errors import InvalidArray
from winnow.curation.knn_graph import KnnGraph
from winnow.curation.validation import check_rows, scatter_rows

# The cut-offs' z is not tuned: it follows from `expected_false` and N (see above). The one
# data-driven choice here is `local=False` by default, made on the images named above.
# MAD of a normal distribution is 0.6745 sigma; this turns a MAD into a sigma estimate.
MAD_TO_SIGMA = 1.4826
# Keeps zero distances (exact copies) finite on the log scale and in ratios.
EPS = 1e-6


@dataclass(frozen=True)
class Outliers:
    score: np.ndarray  # (N,) float64: mean cosine distance to the k nearest neighbours; nan without neighbours
    local_score: np.ndarray  # (N,) float64: score / median score of the neighbours; nan without neighbours
    is_outlier: np.ndarray  # (N,) bool: score (or, with local=True, local_score) above its cut-off
    threshold: float  # the cut-off on `score` (not on its log), for the summary
    local_threshold: float  # the cut-off on `local_score`; inf when the local test is off
    z: float  # robust z both cut-offs correspond to

    def scatter(self, rows, n: int) -> Outliers:
        """Findings over a subset (rows (M,) of N) as findings over all N rows (others: nan, False)."""
        rows = check_rows(rows, len(self.score), n)
        return Outliers(score=scatter_rows(rows, self.score, n, np.nan), local_score=scatter_rows(rows, self.local_score, n, np.nan),
                        is_outlier=scatter_rows(rows, self.is_outlier, n, False), threshold=self.threshold,
                        local_threshold=self.local_threshold, z=self.z)


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


def score_local(graph: KnnGraph, score: np.ndarray) -> np.ndarray:
    """(N,) `score` divided by the median `score` of each sample's neighbours (nan if none)."""
    valid = graph.indices >= 0
    neighbour = np.where(valid, score[np.clip(graph.indices, 0, None)], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows: no neighbour
        median = np.nanmedian(neighbour, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (score + EPS) / (median + EPS)


def find_outliers(
    graph: KnnGraph, *, k: int | None = None, expected_false: float = 1.0, local: bool = False
) -> Outliers:
    """Flag samples whose kNN distance (and, with `local`, its local ratio) is beyond the cut-off.

    graph: (N, k) kNN graph. k: neighbours to average over (default all). expected_false:
    how many samples a clean dataset of this size would flag in expectation (see the
    module docstring for the model behind it and for when to set `local`).
    """
    from scipy.special import ndtri

    if not 0.0 < float(expected_false) < len(graph):
        raise InvalidArray(f"expected_false must be in (0, N={len(graph)}), got {expected_false!r}")
    score = score_knn_distance(graph, k=k)
    local_score = score_local(graph, score)
    n_ok = int(np.isfinite(score).sum())
    if n_ok < 3:
        none = np.zeros(len(score), dtype=bool)
        return Outliers(score=score, local_score=local_score, is_outlier=none, threshold=float("inf"),
                        local_threshold=float("inf"), z=float("inf"))
    share = float(expected_false) / (2.0 if local else 1.0)
    z = float(ndtri(1.0 - min(share, n_ok - 1) / n_ok))
    flags, threshold = _robust_cut(score, z)
    local_threshold = float("inf")
    if local:
        flag_local, local_threshold = _robust_cut(local_score, z)
        flags = flags | flag_local
    return Outliers(score=score, local_score=local_score, is_outlier=flags,
                    threshold=threshold, local_threshold=local_threshold, z=z)


def _robust_cut(values: np.ndarray, z: float) -> tuple[np.ndarray, float]:
    """Flags log(values) > median + z * sigma_MAD, and the cut-off on the original scale."""
    ok = np.isfinite(values)
    # An epsilon keeps exact copies (distance 0) finite on the log scale.
    logs = np.log(values[ok] + EPS)
    median = float(np.median(logs))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(logs - median)))
    flags = np.zeros(len(values), dtype=bool)
    if sigma <= 0:
        # More than half the samples share one score (copies of one image): no spread to
        # measure, so nothing is declared far from it.
        return flags, float("inf")
    cut = median + z * sigma
    flags[ok] = logs > cut
    return flags, float(np.exp(cut) - EPS)
