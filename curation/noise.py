"""Planted label noise and the metrics that score a detector against it.

A noise model is a (K, K) transition matrix T, T[i, j] = P(given = j | true = i):
symmetric (the rate spread evenly over the other classes), pair-flip (class i to
i + 1) or any matrix the user brings. Planting is exact per class (largest-remainder
rounding of T's row times the class count), so "symmetric:0.2" flips 20% of every class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from winnow.curation.errors import InvalidArray, LengthMismatch
from winnow.curation.validation import check_labels

NOISE_KINDS = ("symmetric", "pair", "matrix")


@dataclass(frozen=True)
class NoiseSpec:
    kind: str  # "symmetric" | "pair" | "matrix"
    rate: float | None  # flip rate in [0, 1) for symmetric / pair; None for matrix
    source: str | None  # for "matrix": whatever followed the colon (a file the caller loads); else None


def parse_noise_spec(spec: str) -> NoiseSpec:
    """Parse "symmetric:0.2", "pair:0.3" or "matrix:PATH" (PATH is returned, not opened)."""
    if not isinstance(spec, str) or ":" not in spec:
        raise InvalidArray(f"noise spec must look like 'symmetric:0.2', 'pair:0.3' or 'matrix:FILE', got {spec!r}")
    kind, _, value = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in NOISE_KINDS:
        raise InvalidArray(f"noise kind must be one of {NOISE_KINDS}, got {kind!r} in {spec!r}")
    if kind == "matrix":
        if not value.strip():
            raise InvalidArray(f"noise spec {spec!r} names no matrix file")
        return NoiseSpec(kind="matrix", rate=None, source=value.strip())
    try:
        rate = float(value)
    except ValueError:
        raise InvalidArray(f"noise rate in {spec!r} is not a number: {value!r}") from None
    if not 0.0 <= rate < 1.0:
        raise InvalidArray(f"noise rate must be in [0, 1), got {rate!r} in {spec!r}")
    return NoiseSpec(kind=kind, rate=rate, source=None)


def noise_transition_matrix(kind: str, rate: float, *, n_classes: int) -> np.ndarray:
    """(K, K) transition matrix for "symmetric" or "pair" noise at `rate`."""
    if n_classes < 2:
        raise InvalidArray(f"n_classes must be at least 2, got {n_classes}")
    if not 0.0 <= rate < 1.0:
        raise InvalidArray(f"noise rate must be in [0, 1), got {rate!r}")
    t = np.eye(n_classes) * (1.0 - rate)
    if kind == "symmetric":
        t += (1.0 - np.eye(n_classes)) * rate / (n_classes - 1)
    elif kind == "pair":
        t[np.arange(n_classes), (np.arange(n_classes) + 1) % n_classes] += rate
    else:
        raise InvalidArray(f"kind must be 'symmetric' or 'pair' (a matrix is passed as an array), got {kind!r}")
    return t


def check_transition_matrix(transition, *, n_classes: int | None = None) -> np.ndarray:
    """(K, K) finite, non-negative, rows summing to 1."""
    t = np.asarray(transition, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise InvalidArray(f"transition matrix must be square (K, K), got shape {t.shape}")
    if n_classes is not None and t.shape[0] != n_classes:
        raise InvalidArray(f"transition matrix is {t.shape[0]}x{t.shape[0]} but there are {n_classes} classes")
    if not np.all(np.isfinite(t)) or t.min() < 0:
        r, c = np.argwhere(~np.isfinite(t) | (t < 0))[0]
        raise InvalidArray(f"transition[{r}, {c}] is {t[r, c]!r}; entries must be finite and >= 0")
    sums = t.sum(axis=1)
    off = np.abs(sums - 1) > 1e-6
    if off.any():
        r = int(np.flatnonzero(off)[0])
        raise InvalidArray(f"transition row {r} sums to {sums[r]:.6g}, not 1")
    return t


def plant_label_noise(labels, transition, *, seed: int = 0) -> np.ndarray:
    """(N,) noisy labels: class i's samples are relabelled j for round(T[i, j] * n_i) of them.

    labels: (N,) true class indices in 0..K-1; transition: (K, K). Counts per cell use
    largest-remainder rounding so each class's total is exact; which samples flip is
    drawn with `seed`.
    """
    t = check_transition_matrix(transition)
    k = t.shape[0]
    labels = check_labels(labels, n_classes=k)
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    for c in range(k):
        rows = rng.permutation(np.flatnonzero(labels == c))
        counts = _largest_remainder(t[c] * len(rows))
        targets = np.repeat(np.arange(k), counts)
        noisy[rows] = targets
    return noisy


def detection_metrics(true_is_issue, label_quality, flagged) -> dict[str, float]:
    """precision, recall, f1 of `flagged` and auroc, average_precision of the ranking.

    true_is_issue, flagged: (N,) bool; label_quality: (N,) score, LOW = likely an issue
    (the label_quality column), so the ranking uses its negation. AUROC is NaN when only
    one class is present.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth = np.asarray(true_is_issue, dtype=bool)
    flag = np.asarray(flagged, dtype=bool)
    quality = np.asarray(label_quality, dtype=np.float64)
    if not (len(truth) == len(flag) == len(quality)):
        raise LengthMismatch(
            f"true_is_issue has {len(truth)} rows, label_quality {len(quality)}, flagged {len(flag)}"
        )
    tp = int((truth & flag).sum())
    precision = tp / flag.sum() if flag.sum() else 0.0
    recall = tp / truth.sum() if truth.sum() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both = 0 < truth.sum() < len(truth)
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "auroc": float(roc_auc_score(truth, -quality)) if both else float("nan"),
        "average_precision": float(average_precision_score(truth, -quality)) if both else float("nan"),
        "n_flagged": int(flag.sum()),
        "n_true_issues": int(truth.sum()),
    }


def _largest_remainder(values: np.ndarray) -> np.ndarray:
    floor = np.floor(values + 1e-9).astype(np.int64)
    short = int(round(values.sum())) - int(floor.sum())
    if short > 0:
        floor[np.argsort(-(values - floor), kind="stable")[:short]] += 1
    return floor
