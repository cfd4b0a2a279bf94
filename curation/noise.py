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


def sparse_noise_matrix(n_classes: int, rate: float, *, sparsity: float, seed: int = 0) -> np.ndarray:
    """(K, K) class-conditional transition matrix with a sparse off-diagonal (Northcutt et al. 2021).

    A share `sparsity` of the K (K - 1) off-diagonal cells is zero (each class keeps at least
    one other class to flip to); class i's flip rate is `rate` times a factor drawn in
    [0.5, 1.5] (so per-class rates differ), capped at 0.65, spread over its non-zero cells
    with Dirichlet(1) weights, redrawn until every off-diagonal cell is below the diagonal
    (the given label stays the true class's most likely one). Deterministic for a seed.
    """
    if n_classes < 2:
        raise InvalidArray(f"n_classes must be at least 2, got {n_classes}")
    if not 0.0 <= rate < 1.0:
        raise InvalidArray(f"noise rate must be in [0, 1), got {rate!r}")
    if not 0.0 <= sparsity < 1.0:
        raise InvalidArray(f"sparsity must be in [0, 1), got {sparsity!r}")
    k = n_classes
    rng = np.random.default_rng(seed)
    off = ~np.eye(k, dtype=bool)
    cells = np.argwhere(off)
    zero = np.zeros((k, k), dtype=bool)
    zero[tuple(cells[rng.permutation(len(cells))[: int(round(sparsity * len(cells)))]].T)] = True
    for i in range(k):  # every class keeps one cell to flip to
        if not (off[i] & ~zero[i]).any():
            zero[i, rng.choice(np.flatnonzero(off[i]))] = False
    factors = rng.uniform(0.5, 1.5, k)
    rates = np.minimum(rate * factors / factors.mean(), 0.65)
    t = np.zeros((k, k))
    for i in range(k):
        live = np.flatnonzero(off[i] & ~zero[i])
        r = rates[i]
        for _ in range(200):
            w = rng.dirichlet(np.ones(len(live))) if len(live) > 1 else np.ones(1)
            if (w * r).max() < 1.0 - r:
                break
        else:  # no draw kept the diagonal on top: spread evenly, and lower the rate if needed
            w = np.full(len(live), 1.0 / len(live))
            r = min(r, 0.99 * len(live) / (len(live) + 1))
        t[i, live] = w * r
        t[i, i] = 1.0 - r
    return t


def plant_instance_noise(labels, features, rate: float, *, seed: int = 0, sharpness: float = 2.0) -> np.ndarray:
    """(N,) noisy labels with instance-dependent noise: samples near another class flip to it.

    labels: (N,) true classes; features: (N, D) any view of the samples (raw pixels,
    embeddings). Each sample's closeness to the nearest other class is its cosine to that
    class's mean minus its cosine to its own class's mean; round(rate * n_c) samples of
    each class c flip, drawn without replacement with probability proportional to
    exp(sharpness * closeness standardised within c), each to its nearest other class.
    (sharpness 2 is a choice of the noise model, not tuned against any detector.)
    """
    labels = check_labels(labels)
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(labels):
        raise LengthMismatch(f"features must be (N, D) with N = {len(labels)} labels, got shape {x.shape}")
    if not 0.0 <= rate < 1.0:
        raise InvalidArray(f"noise rate must be in [0, 1), got {rate!r}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    k = int(labels.max()) + 1
    means = np.zeros((k, x.shape[1]))
    np.add.at(means, labels, x)
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    cos = x @ means.T
    own = cos[np.arange(len(labels)), labels]
    cos[np.arange(len(labels)), labels] = -np.inf
    nearest = cos.argmax(axis=1)
    closeness = cos[np.arange(len(labels)), nearest] - own
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    for c in range(k):
        rows = np.flatnonzero(labels == c)
        n_flip = int(round(rate * len(rows)))
        if n_flip == 0 or len(rows) < 2:
            continue
        z = closeness[rows]
        z = (z - z.mean()) / (z.std() + 1e-12)
        # Gumbel top-k: a draw without replacement with probabilities proportional to exp(sharpness z).
        keys = sharpness * z + rng.gumbel(size=len(rows))
        chosen = rows[np.argsort(-keys, kind="stable")[:n_flip]]
        noisy[chosen] = nearest[chosen]
    return noisy


MULTILABEL_NOISE_KINDS = ("swap", "missing", "extra")


def plant_multilabel_noise(labels, kind: str, rate: float, *, seed: int = 0) -> np.ndarray:
    """(N, K) bool noisy label sets from (N, K) true ones.

    swap: round(rate * N) samples (among those with a label and a free class) have one
    label replaced by one they lack; missing: round(rate * positives) present labels are
    dropped; extra: round(rate * N) samples gain one label they lack. Deterministic for a seed.
    """
    y = np.asarray(labels).astype(bool)
    if y.ndim != 2 or y.shape[1] < 2:
        raise InvalidArray(f"multi-label labels must be (N, K) with K >= 2, got shape {y.shape}")
    if kind not in MULTILABEL_NOISE_KINDS:
        raise InvalidArray(f"multi-label noise kind must be one of {MULTILABEL_NOISE_KINDS}, got {kind!r}")
    if not 0.0 <= rate < 1.0:
        raise InvalidArray(f"noise rate must be in [0, 1), got {rate!r}")
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    n = len(y)
    if kind == "missing":
        pos = np.argwhere(y)
        drop = pos[rng.permutation(len(pos))[: int(round(rate * len(pos)))]]
        noisy[drop[:, 0], drop[:, 1]] = False
        return noisy
    can = (~y).any(axis=1) & (y.any(axis=1) if kind == "swap" else True)
    rows = rng.permutation(np.flatnonzero(can))[: int(round(rate * n))]
    for r in rows:
        if kind == "swap":
            noisy[r, rng.choice(np.flatnonzero(y[r]))] = False
        noisy[r, rng.choice(np.flatnonzero(~y[r]))] = True
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
