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

The noise estimate does not come from the cut. Per class, the share of "has k" cells that are
wrong (a) and of "lacks k" cells that are wrong (b) are mixture proportions: the given-k
cells' pred_probs are a mix of truly-k and truly-not-k samples, and where the evidence is
lowest only truly-not-k samples live (an anchor region), so there the ratio of the given-k
cells' tail share to the lacks-k cells' tail share estimates how much not-k is mixed in
(Scott, Blanchard and Handy 2013, mutual contamination; each tail ratio is the Best Bin
Estimate of Garg et al. 2021 with its published delta 0.1 and gamma 0.01, not tuned here).
The class's rate is (a * n_has + b * n_lacks) / N. The calibrated one-vs-rest confident
joint was the first candidate: on the development split's ml-synth (a weak model: given-k
cells have mean p_k about 0.4) it counted every ambiguous cell, 3-9x the true per-class rates
(the sample estimate 84% / 79% for true 20% / 10%); it also undercounted dropped labels on
the unit tests' planted data (0.5-0.7x). Each cell's probability of being wrong is the Bayes
posterior under those rates (the pred_probs taken as the noisy-label posterior), scaled per
class and side so that the cells add up to the class's estimated count; a sample's
probability of a wrong label is 1 - prod_k(1 - p_cell), and noise_rate is its mean. Cells
are taken as independent given the evidence, so errors that come in pairs (a swapped
label: one dropped, one added in the same sample) are counted as two chances and the sample
rate is overestimated where the evidence is uncertain (unit tests' planted swap 15%: 0.196).
Where no region of the evidence is free of one side (classes that overlap everywhere) a tail
ratio is an upper bound, and so is the estimate: on ml-synth it stays 3-7x too high.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from winnow.curation.confident_learning import find_confident_learning_issues
from winnow.curation.ensemble import cut_by_noise_estimate
from winnow.curation.errors import InvalidArray, LengthMismatch

MULTILABEL_CUTS = ("evidence", "confident_learning")
LOG = logging.getLogger(__name__)

# Best Bin Estimation's confidence (delta) and slack (gamma), the published defaults of Garg et
# al. 2021 (not tuned here): the penalty keeps the tail ratio off the last few samples.
BBE_DELTA = 0.1
BBE_GAMMA = 0.01
# cleanlab's default forgetting factor of its exponential-moving-average aggregator (not tuned here).
EMA_ALPHA = 0.8


@dataclass(frozen=True)
class MultilabelIssues:
    is_label_issue: np.ndarray  # (N,) bool: some class of the sample looks wrongly annotated
    label_quality: np.ndarray  # (N,) float64 in [0, 1]: aggregate of the cells' qualities, low = likely wrong
    class_issues: np.ndarray  # (N, K) bool: cell (sample, class) looks wrong (a label to drop or one missing)
    class_quality: np.ndarray  # (N, K) float64 in [0, 1]: quality of each cell, low = likely wrong
    suggested_labels: np.ndarray  # (N, K) bool: the given sets with every flagged cell flipped
    class_noise_rates: np.ndarray  # (K,) float64: estimated share of samples whose class-k cell is wrong (NaN: no evidence)
    noise_rate: float  # estimated share of samples with a wrong cell: mean of 1 - prod_k(1 - cell_error_prob)
    cell_error_prob: np.ndarray  # (N, K) float64: each cell's probability of being wrong; column k sums to N * class_noise_rates[k]


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
    cell_error = np.zeros((n, k))
    for c in range(k):
        given = y[:, c].astype(np.int64)
        binary = np.column_stack([1.0 - probs[:, c], probs[:, c]])
        quality[:, c] = binary[np.arange(n), given]
        if given.min() == given.max():
            continue  # every sample agrees on class c: nothing to compare it with
        if cut == "confident_learning":
            issues[:, c] = find_confident_learning_issues(given, binary).is_label_issue
        else:
            flagged, _, _, q = cut_by_noise_estimate(given, binary, count="joint")
            issues[:, c] = flagged
            quality[:, c] = q
        rates[c], cell_error[:, c] = estimate_class_noise(y[:, c], probs[:, c])
    judged = np.isfinite(rates)
    if not judged.all():
        LOG.warning("no evidence separates classes %s from their absence: their noise is not estimated",
                    np.flatnonzero(~judged).tolist())
    sample_error = 1.0 - np.prod(1.0 - cell_error[:, judged], axis=1)
    return MultilabelIssues(
        is_label_issue=issues.any(axis=1),
        label_quality=ema_aggregate(quality, alpha=alpha),
        class_issues=issues,
        class_quality=quality,
        suggested_labels=y ^ issues,
        class_noise_rates=rates,
        noise_rate=float(sample_error.mean()) if n else 0.0,
        cell_error_prob=cell_error,
    )


def estimate_class_noise(given, p) -> tuple[float, np.ndarray]:
    """(share of the N cells that are wrong, (N,) each cell's probability of being wrong) for one
    class: given (N,) bool presence, p (N,) out-of-fold probability that the class applies.

    Mutual-contamination mixture proportions (see the module docstring): kappa_has = inf over
    low tails of P(tail | has) / P(tail | lacks) = a / (1 - b), kappa_lacks likewise over high
    tails = b / (1 - a); solved for a (has-cells wrong) and b (lacks-cells wrong). NaN and zeros
    when neither tail separates (kappa_has * kappa_lacks = 1).
    """
    g = np.asarray(given, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    n_has, n_lacks = int(g.sum()), int((~g).sum())
    if n_has == 0 or n_lacks == 0:
        return 0.0, np.zeros(len(g))
    k_has = _tail_ratio(p[g], p[~g])
    k_lacks = _tail_ratio(-p[~g], -p[g])
    d = 1.0 - k_has * k_lacks
    if d <= 1e-9:
        return float("nan"), np.zeros(len(g))
    a, b = k_has * (1.0 - k_lacks) / d, k_lacks * (1.0 - k_has) / d
    wrong_has, wrong_lacks = a * n_has, b * n_lacks
    # Bayes with p as the noisy-label posterior: rho_10 = P(given has | truly lacks),
    # rho_01 = P(given lacks | truly has), eta = P(truly has | x) from p = rho_10 + (1 - rho_10 - rho_01) eta.
    rho_10 = wrong_has / max(wrong_has + n_lacks - wrong_lacks, 1e-12)
    rho_01 = wrong_lacks / max(wrong_lacks + n_has - wrong_has, 1e-12)
    eta = np.clip((p - rho_10) / max(1.0 - rho_10 - rho_01, 1e-12), 0.0, 1.0)
    q = np.where(g, rho_10 * (1.0 - eta) / np.maximum(p, 1e-12), rho_01 * eta / np.maximum(1.0 - p, 1e-12))
    q = np.clip(q, 0.0, 1.0)
    # The model's p is rarely calibrated to the noise: scale each side's cells to its count.
    q[g] = _scale_to(q[g], wrong_has)
    q[~g] = _scale_to(q[~g], wrong_lacks)
    return float((wrong_has + wrong_lacks) / len(g)), q


def _tail_ratio(mix: np.ndarray, ref: np.ndarray) -> float:
    """min over thresholds t of P(mix <= t) / P(ref <= t), Best Bin Estimation's penalised choice
    of t (the threshold minimising the ratio's upper confidence bound); at most 1."""
    mix, ref = np.sort(mix), np.sort(ref)
    ts = np.unique(np.concatenate([mix, ref]))
    q_mix = np.searchsorted(mix, ts, side="right") / len(mix)
    q_ref = np.searchsorted(ref, ts, side="right") / len(ref)
    slack = np.sqrt(np.log(4 / BBE_DELTA) / (2 * len(mix))) + np.sqrt(np.log(4 / BBE_DELTA) / (2 * len(ref)))
    bound = np.where(q_ref > 0, (q_mix + (1 + BBE_GAMMA) * slack) / np.maximum(q_ref, 1e-300), np.inf)
    j = int(np.argmin(bound))
    return float(min(q_mix[j] / q_ref[j], 1.0))


def _scale_to(q: np.ndarray, total: float) -> np.ndarray:
    """q times the one factor that makes the entries, each capped at 1, sum to `total`."""
    q = np.asarray(q, dtype=np.float64)
    if total <= 0 or len(q) == 0:
        return np.zeros_like(q)
    if total >= len(q):
        return np.ones_like(q)
    positive = int(np.count_nonzero(q > 0))
    if positive <= total:  # even all of them at 1 fall short: the rest share what is left
        return np.where(q > 0, 1.0, (total - positive) / max(len(q) - positive, 1))
    desc = -np.sort(-q)
    tail = np.cumsum(desc[::-1])[::-1]  # tail[j] = sum of desc[j:]
    capped = np.arange(len(q))
    factor = (total - capped) / np.maximum(tail, 1e-300)
    # The fewest capped entries for which the next one stays under the cap.
    j = int(np.argmax(factor * desc <= 1.0))
    return np.minimum(q * factor[j], 1.0)


def ema_aggregate(scores: np.ndarray, *, alpha: float = EMA_ALPHA) -> np.ndarray:
    """(N,) exponential moving average of each row of (N, K) scores sorted high to low:
    EMA_1 = the largest, EMA_t = alpha * s_t + (1 - alpha) * EMA_(t-1); the lowest weighs most."""
    s = -np.sort(-np.asarray(scores, dtype=np.float64), axis=1)
    out = s[:, 0].copy()
    for t in range(1, s.shape[1]):
        out = alpha * s[:, t] + (1.0 - alpha) * out
    return out


__all__ = ["MULTILABEL_CUTS", "MultilabelIssues", "ema_aggregate", "estimate_class_noise", "find_multilabel_issues",
           "multilabel_matrix"]
