"""Confident learning (Northcutt et al., 2021) on out-of-fold predicted probabilities.

The confident joint counts, for each given label i, the samples whose predicted
probability of some class j clears j's average self-confidence; calibrated to the
label counts it estimates the joint distribution of (given, true) labels, and its
off-diagonal mass is the noise rate. Pruning then removes that many samples per class.
Our own implementation; cleanlab is the test oracle (tests/unit/curation/test_confident_learning.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from winnow.curation.errors import InvalidArray
from winnow.curation.validation import check_labels, check_pred_probs, check_same_length

FILTER_BY = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning")
RANK_BY = ("self_confidence", "normalized_margin")
_EPS = 1e-6  # fuzzy comparison, the same tolerance cleanlab uses so flagged sets agree


@dataclass(frozen=True)
class ConfidentLearning:
    confident_joint: np.ndarray  # (K, K) int64: calibrated counts, row = given label, column = true label
    noise_rate: float  # estimated share of samples whose given label is wrong (off-diagonal mass)
    label_quality: np.ndarray  # (N,) float64 in [0, 1]: the `rank_by` score, low = likely wrong
    suggested_label: np.ndarray  # (N,) int64: argmax of pred_probs
    is_label_issue: np.ndarray  # (N,) bool: flagged by `filter_by`


def find_confident_learning_issues(
    labels,
    pred_probs,
    *,
    filter_by: str = "prune_by_noise_rate",
    rank_by: str = "self_confidence",
) -> ConfidentLearning:
    """Flag label issues with confident learning.

    labels: (N,) int class indices; pred_probs: (N, K) out-of-fold probabilities (a model
    must not have trained on the sample it predicts). `filter_by` picks the pruning rule
    (see FILTER_BY, as in cleanlab.filter.find_label_issues); `rank_by` picks the
    per-sample score returned as label_quality.
    """
    if filter_by not in FILTER_BY:
        raise InvalidArray(f"filter_by must be one of {FILTER_BY}, got {filter_by!r}")
    if rank_by not in RANK_BY:
        raise InvalidArray(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")
    pred_probs = check_pred_probs(pred_probs)
    labels = check_labels(labels, n_classes=pred_probs.shape[1])
    check_same_length(labels=labels, pred_probs=pred_probs)
    cj, off_diagonal = compute_confident_joint(labels, pred_probs, return_off_diagonal=True)
    if filter_by == "confident_learning":
        mask = off_diagonal
    else:
        mask = _prune(labels, pred_probs, cj, filter_by=filter_by)
    # A sample the model predicts as its given label is never an issue.
    mask &= ~_predicts_given(labels, pred_probs)
    score = rank_label_quality(labels, pred_probs, rank_by=rank_by)
    return ConfidentLearning(
        confident_joint=cj,
        noise_rate=estimate_noise_rate(cj),
        label_quality=score,
        suggested_label=pred_probs.argmax(axis=1).astype(np.int64),
        is_label_issue=mask,
    )


def compute_confident_joint(labels: np.ndarray, pred_probs: np.ndarray, *, calibrate: bool = True,
                            return_off_diagonal: bool = False, weights: np.ndarray | None = None):
    """(K, K) confident joint, rows = given label, columns = guessed true label.

    labels (N,) int64 and pred_probs (N, K) must already be validated. With
    `return_off_diagonal`, also returns the (N,) bool mask of confidently counted samples
    whose guessed true label differs from the given one. weights: (N,) positive sample
    weights (e.g. 1 / size of a duplicate group, so copies count once) for the thresholds
    and the counts; the calibrated joint is then in units of weight. None: every sample 1.
    """
    n, k = pred_probs.shape
    thresholds = confident_thresholds(labels, pred_probs, weights=weights)
    confident = pred_probs >= thresholds - _EPS
    n_confident = confident.sum(axis=1)
    # Among several confident classes take the most probable; with one, that one.
    guess = np.where(n_confident > 1, pred_probs.argmax(axis=1), confident.argmax(axis=1))
    counted = n_confident > 0
    cj = np.zeros((k, k), dtype=np.int64 if weights is None else np.float64)
    np.add.at(cj, (labels[counted], guess[counted]), 1 if weights is None else weights[counted])
    # Every class keeps at least one correctly labelled sample.
    np.fill_diagonal(cj, np.maximum(cj.diagonal(), 1))
    if calibrate:
        cj = calibrate_confident_joint(cj, labels, weights=weights)
    if return_off_diagonal:
        return cj, counted & (guess != labels)
    return cj


def confident_thresholds(labels: np.ndarray, pred_probs: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
    """(K,) per-class average self-confidence: mean p_k over samples labelled k (weighted by `weights`)."""
    k = pred_probs.shape[1]
    counts = np.bincount(labels, weights=weights, minlength=k)
    sums = np.zeros(k)
    own = pred_probs[np.arange(len(labels)), labels]
    np.add.at(sums, labels, own if weights is None else own * weights)
    # A class nobody carries gets an unreachable threshold: nothing is counted into it.
    thresholds = np.where(counts > 0, sums / np.maximum(counts, 1), 2.0)
    return np.maximum(thresholds, 2 * _EPS)


def calibrate_confident_joint(cj: np.ndarray, labels: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
    """Rescale rows to the given label counts (summed `weights`), then round keeping row totals."""
    k = cj.shape[0]
    label_counts = np.bincount(labels, weights=weights, minlength=k).astype(np.float64)
    row_sums = np.clip(cj.sum(axis=1), 1e-100, None)
    cal = (cj.T / row_sums * label_counts).T
    cal = cal / np.clip(cal.sum(), 1e-100, None) * label_counts.sum()
    return _round_rows_preserving_totals(cal)


def estimate_noise_rate(confident_joint: np.ndarray) -> float:
    """Off-diagonal share of the calibrated confident joint: the estimated noise rate."""
    total = confident_joint.sum()
    return float(1.0 - np.trace(confident_joint) / total) if total > 0 else 0.0


def rank_label_quality(labels: np.ndarray, pred_probs: np.ndarray, *, rank_by: str = "self_confidence") -> np.ndarray:
    """(N,) score in [0, 1], low = likely mislabelled: p[label], or (p[label] - max other + 1) / 2."""
    n = len(labels)
    own = pred_probs[np.arange(n), labels]
    if rank_by == "self_confidence":
        return own.copy()
    if rank_by == "normalized_margin":
        others = pred_probs.copy()
        others[np.arange(n), labels] = -np.inf
        return (own - others.max(axis=1) + 1.0) / 2.0
    raise InvalidArray(f"rank_by must be one of {RANK_BY}, got {rank_by!r}")


def _prune(labels: np.ndarray, pred_probs: np.ndarray, cj: np.ndarray, *, filter_by: str) -> np.ndarray:
    n, k = pred_probs.shape
    prune_counts = _keep_at_least_one_per_class(cj.T)  # rows = true label, columns = given label
    by_class = np.zeros(n, dtype=bool)
    by_noise = np.zeros(n, dtype=bool)
    for given in range(k):
        rows = np.flatnonzero(labels == given)
        if len(rows) <= 1:
            continue
        probs = pred_probs[rows]
        if filter_by in ("prune_by_class", "both"):
            n_issues = len(rows) - prune_counts[given, given]
            if n_issues >= 1:
                order = np.argsort(probs[:, given], kind="quicksort")
                by_class[rows[order[:n_issues]]] = True
        if filter_by in ("prune_by_noise_rate", "both"):
            for true in range(k):
                n_prune = prune_counts[true, given]
                if true != given and n_prune > 0:
                    margin = probs[:, true] - probs[:, given]
                    order = np.argsort(-margin, kind="quicksort")
                    by_noise[rows[order[:n_prune]]] = True
    if filter_by == "prune_by_class":
        return by_class
    if filter_by == "prune_by_noise_rate":
        return by_noise
    return by_class & by_noise


def _keep_at_least_one_per_class(prune_counts: np.ndarray) -> np.ndarray:
    # Raise each diagonal to >= 1 and take the difference evenly off that column's noise cells.
    diag = prune_counts.diagonal().astype(np.float64)
    new_diag = np.maximum(diag, 1)
    per_col = np.maximum(np.count_nonzero(prune_counts, axis=0) - 1.0, 1.0)
    out = prune_counts - (new_diag - diag) / per_col
    out[out < 0] = 0
    np.fill_diagonal(out, new_diag)
    return _round_rows_preserving_totals(out)


def _round_rows_preserving_totals(matrix: np.ndarray) -> np.ndarray:
    out = np.empty(matrix.shape, dtype=np.int64)
    for r, row in enumerate(np.asarray(matrix, dtype=np.float64)):
        ints = row.round()
        diff = int(round(row.sum().round() - ints.sum().round()))
        while diff != 0:
            step = 1 if diff > 0 else -1
            changes = min(abs(diff), len(row))
            idx = np.argsort(row - ints)[::-step][:changes]
            ints[idx] += step
            diff = int(round(row.sum().round() - ints.sum().round()))
        out[r] = ints.astype(np.int64)
    return out


def _predicts_given(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    # In row blocks: a whole (N, K) float64 copy is 80 bytes a row at 10 classes (issue 18 item 1).
    out = np.empty(len(labels), dtype=bool)
    for start in range(0, len(labels), _ROWS):
        lab = labels[start : start + _ROWS]
        bumped = pred_probs[start : start + _ROWS].copy()
        bumped[np.arange(len(lab)), lab] += _EPS
        out[start : start + len(lab)] = bumped.argmax(axis=1) == lab
    return out


_ROWS = 1 << 16  # rows per block of a (rows, K) temporary
