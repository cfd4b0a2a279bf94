"""Label issues in multi-label data: every sample carries a set of labels (possibly empty).

One-vs-rest, as cleanlab's multi-label filter does: for each class k the question is binary
("is k among this sample's labels?"), with evidence [1 - p_k, p_k] from out-of-fold
pred_probs (N, K) whose rows need not sum to 1. Each class is cut by the
evidence-following rule of single-label data (`ensemble.cut_by_noise_estimate`) with the
joint's counts: the calibrated confident joint of the binary problem estimates how many "has
k" and how many "lacks k" cells are wrong, and that many cells of lowest quality are flagged
on each side. (The single-label cut's expected-F1 count maximises each cell's F1, not the
sample's: on tests/unit/curation/test_multilabel.py's planted cells it fell below cleanlab's
multi-label filter, sample F1 0.862 vs 0.880; on the development split's synthetic data the
two counts tie, 0.460 / 0.267 vs 0.460 / 0.265.) A sample is
an issue when any of its cells is; its label_quality aggregates its cells' qualities with
cleanlab's exponential moving average (sorted high to low, alpha 0.8), so the worst cell
dominates. As in confident learning, a cell the model agrees with (p_k on the given side of 1/2) is
never flagged (the cut's own guard): without it the per-class counts of a weak model flag
far too many
cells (on the development split's synthetic data the sample-level F1 fell from 0.46 to
0.39). cut="confident_learning" runs confident learning's prune-by-noise-rate per class
instead, which flags exactly what cleanlab.multilabel_classification.filter.find_label_issues
flags (its test oracle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from winnow.curation.confident_learning import find_confident_learning_issues
from winnow.curation.ensemble import cut_by_noise_estimate
from winnow.curation.errors import InvalidArray, LengthMismatch

MULTILABEL_CUTS = ("evidence", "confident_learning")
# cleanlab's default forgetting factor of its exponential-moving-average aggregator (not tuned here).
EMA_ALPHA = 0.8


@dataclass(frozen=True)
class MultilabelIssues:
    is_label_issue: np.ndarray  # (N,) bool: some class of the sample looks wrongly annotated
    label_quality: np.ndarray  # (N,) float64 in [0, 1]: aggregate of the cells' qualities, low = likely wrong
    class_issues: np.ndarray  # (N, K) bool: cell (sample, class) looks wrong (a label to drop or one missing)
    class_quality: np.ndarray  # (N, K) float64 in [0, 1]: quality of each cell, low = likely wrong
    suggested_labels: np.ndarray  # (N, K) bool: the given sets with every flagged cell flipped
    class_noise_rates: np.ndarray  # (K,) float64: estimated share of samples whose class-k cell is wrong
    noise_rate: float  # estimated share of samples with a wrong cell (classes taken as independent)


def multilabel_matrix(labels, n_classes: int) -> np.ndarray:
    """(N, K) bool from a list of label sets (iterables of class indices) or an (N, K) 0/1 array."""
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        arr = labels
        if arr.shape[1] != n_classes:
            raise InvalidArray(f"labels has {arr.shape[1]} columns but pred_probs has {n_classes}")
        if arr.dtype != bool:
            if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
                bad = np.argwhere(~np.isin(arr, (0, 1)))[0] if np.issubdtype(arr.dtype, np.number) else (0, 0)
                raise InvalidArray(f"labels[{bad[0]}, {bad[1]}] is {arr[bad[0], bad[1]].item()!r}; "
                                   "a label matrix holds 0 or 1")
        return arr.astype(bool)
    out = np.zeros((len(labels), n_classes), dtype=bool)
    for i, row in enumerate(labels):
        if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
            raise InvalidArray(f"labels[{i}] is {row!r}; each sample's labels must be a list of class indices")
        for c in row:
            if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)) or not 0 <= c < n_classes:
                raise InvalidArray(f"labels[{i}] holds {c!r}, not a class index in 0..{n_classes - 1}")
            out[i, int(c)] = True
    return out


def find_multilabel_issues(labels, pred_probs, *, cut: str = "evidence", alpha: float = EMA_ALPHA) -> MultilabelIssues:
    """Label issues per sample and per (sample, class) in multi-label data.

    labels: N label sets (lists of class indices, possibly empty) or an (N, K) 0/1 matrix;
    pred_probs: (N, K) out-of-fold probabilities that each class applies (rows need not sum
    to 1). cut: "evidence" (the per-class noise estimate, see the module docstring) or
    "confident_learning" (cleanlab's multi-label filter, sample for sample). alpha: the
    aggregator's forgetting factor in (0, 1].
    """
    if cut not in MULTILABEL_CUTS:
        raise InvalidArray(f"cut must be one of {MULTILABEL_CUTS}, got {cut!r}")
    if not 0.0 < alpha <= 1.0:
        raise InvalidArray(f"alpha must be in (0, 1], got {alpha!r}")
    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise InvalidArray(f"pred_probs must be (N, K) with K >= 2, got shape {probs.shape}")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        r, c = np.argwhere(~np.isfinite(probs) | (probs < 0) | (probs > 1))[0]
        raise InvalidArray(f"pred_probs[{r}, {c}] is {float(probs[r, c])!r}; probabilities must be in [0, 1]")
    n, k = probs.shape
    if not isinstance(labels, np.ndarray) and len(labels) != n:
        raise LengthMismatch(f"labels has {len(labels)} rows but pred_probs has {n}")
    y = multilabel_matrix(labels, k)
    if len(y) != n:
        raise LengthMismatch(f"labels has {len(y)} rows but pred_probs has {n}")
    issues = np.zeros((n, k), dtype=bool)
    quality = np.ones((n, k))
    rates = np.zeros(k)
    for c in range(k):
        given = y[:, c].astype(np.int64)
        binary = np.column_stack([1.0 - probs[:, c], probs[:, c]])
        quality[:, c] = binary[np.arange(n), given]
        if given.min() == given.max():
            continue  # every sample agrees on class c: nothing to compare it with
        if cut == "confident_learning":
            cl = find_confident_learning_issues(given, binary)
            issues[:, c] = cl.is_label_issue
            rates[c] = cl.noise_rate
        else:
            flagged, cj, _, q = cut_by_noise_estimate(given, binary, count="joint")
            issues[:, c] = flagged
            quality[:, c] = q
            rates[c] = float((cj.sum() - np.trace(cj)) / max(cj.sum(), 1))
    return MultilabelIssues(
        is_label_issue=issues.any(axis=1),
        label_quality=ema_aggregate(quality, alpha=alpha),
        class_issues=issues,
        class_quality=quality,
        suggested_labels=y ^ issues,
        class_noise_rates=rates,
        noise_rate=float(1.0 - np.prod(1.0 - rates)),
    )


def ema_aggregate(scores: np.ndarray, *, alpha: float = EMA_ALPHA) -> np.ndarray:
    """(N,) exponential moving average of each row of (N, K) scores sorted high to low:
    EMA_1 = the largest, EMA_t = alpha * s_t + (1 - alpha) * EMA_(t-1); the lowest weighs most."""
    s = -np.sort(-np.asarray(scores, dtype=np.float64), axis=1)
    out = s[:, 0].copy()
    for t in range(1, s.shape[1]):
        out = alpha * s[:, t] + (1.0 - alpha) * out
    return out


__all__ = ["MULTILABEL_CUTS", "MultilabelIssues", "ema_aggregate", "find_multilabel_issues", "multilabel_matrix"]
