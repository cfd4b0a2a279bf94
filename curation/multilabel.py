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

The noise estimate does not come from the cut. Per class, the logits of p_k are taken as a
two-component Gaussian mixture (the binormal model of ROC analysis): one component for the
samples that truly carry k, one for those that truly lack it, shared by the two given sides,
which differ only in their mix: a given-has cells come from the lacks component and b
given-lacks cells from the has component. EM fits both components and both mixes at once
(started from the given sides, at most EM_ITERATIONS rounds); a cell's responsibility for the
other side's component is its probability of being wrong, so each class's cells add up to its
rate (a * n_has + b * n_lacks) / N, and a sample's probability of a wrong label is
1 - prod_k(1 - p_cell), its mean the noise_rate. Chosen on the development split (ml-synth
swap 20% / 10%, a weak model: given-has cells' mean p_k about 0.4) and the unit tests'
planted data: the calibrated one-vs-rest confident joint (the earlier estimate) counted
every ambiguous cell, per class 3-9x the true rate, sample estimate 84% / 79% for true 20% /
10%; an anchor-based mixture proportion (Best Bin Estimation of the tails, mutual
contamination) 3-9x as well (it assumes some region of the evidence holds one side only,
which a weak model's overlapping classes never do); the binormal fit 1.26x / 1.23x on the sum
of the class rates (per class 0.38-2.32x), and on the planted data (seeds 0-3) sums
0.96-1.11x, per class 0.76-1.75x. Cells are taken as independent given the evidence, so
errors that come in pairs
(a swapped label: one dropped and one added in the same sample) count as two chances where
the evidence is uncertain: ml-synth's swaps are estimated at 41% / 22% of the samples for
20% / 10% (the planted swaps 1.13-1.29x). Where a side's logits are far from Gaussian the
fit reads the misfit as noise: a long tail of the lacks side (skewed logits of a class the
model barely learnt) is taken for has-cells mixed in, and such a class can be estimated at
many times its true rate (benchmarks/README.md, the held-out multi-label rows).
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

# EM rounds of the per-class binormal fit and its stop (change of a + b per round): on the
# development split's ml-synth the class rates move by under 0.01 between 300 rounds and 2,000.
EM_ITERATIONS = 300
EM_TOLERANCE = 1e-7
# Rows the per-class fit sees at most (a seeded draw; every cell then gets its responsibility):
# the fit's cost stops growing with N, and 50,000 cells pin a two-component mixture well.
EM_ROWS = 50_000
# Probabilities are clipped to [CLIP, 1 - CLIP] before the logit (p of exactly 0 or 1 has none).
LOGIT_CLIP = 1e-6
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

    The binormal mixture of the module docstring, fitted by EM: logit(p) ~ N(m_lacks, s_lacks)
    or N(m_has, s_has); a given-has cell is from the lacks component with probability a, a
    given-lacks cell from the has component with probability b. NaN and zeros when the
    evidence does not vary (nothing to separate the components).
    """
    g = np.asarray(given, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    n = len(g)
    n_has = int(g.sum())
    if n_has == 0 or n_has == n:
        return 0.0, np.zeros(n)
    s = np.log(np.clip(p, LOGIT_CLIP, 1 - LOGIT_CLIP)) - np.log(np.clip(1 - p, LOGIT_CLIP, 1 - LOGIT_CLIP))
    if np.ptp(s) < 1e-9:
        return float("nan"), np.zeros(n)
    fit = np.arange(n)
    if n > EM_ROWS:  # a seeded draw keeping both sides' shares
        fit = np.sort(np.random.default_rng(0).choice(n, EM_ROWS, replace=False))
    params = _fit_binormal(g[fit], s[fit])
    wrong = _responsibility_of_other_side(g, s, *params)
    return float(wrong.mean()), wrong


def _fit_binormal(g: np.ndarray, s: np.ndarray):
    """EM for (m_lacks, sd_lacks, m_has, sd_has, a, b); see estimate_class_noise."""
    floor = 1e-3 * max(float(s.std()), 1e-12)  # a component never shrinks onto one value
    m0, s0 = float(s[~g].mean()), max(float(s[~g].std()), floor)
    m1, s1 = float(s[g].mean()), max(float(s[g].std()), floor)
    a = b = 0.05  # a start, not an estimate: EM moves it
    for _ in range(EM_ITERATIONS):
        r0 = _responsibility_of_other_side(g, s, m0, s0, m1, s1, a, b)
        r0 = np.where(g, r0, 1.0 - r0)  # responsibility of the lacks component, every cell
        r1 = 1.0 - r0
        w0, w1 = max(r0.sum(), 1e-12), max(r1.sum(), 1e-12)
        m0, m1 = float((r0 * s).sum() / w0), float((r1 * s).sum() / w1)
        s0 = max(float(np.sqrt((r0 * (s - m0) ** 2).sum() / w0)), floor)
        s1 = max(float(np.sqrt((r1 * (s - m1) ** 2).sum() / w1)), floor)
        new_a, new_b = float(r0[g].mean()), float(r1[~g].mean())
        done = abs(new_a - a) + abs(new_b - b) < EM_TOLERANCE
        a, b = new_a, new_b
        if done:
            break
    return m0, s0, m1, s1, a, b


def _responsibility_of_other_side(g, s, m0, s0, m1, s1, a, b) -> np.ndarray:
    """(N,) posterior that each cell's logit comes from the component of the side it was NOT given."""
    # Log densities, so that far tails do not underflow to 0 / 0.
    log0 = -0.5 * ((s - m0) / s0) ** 2 - np.log(s0)
    log1 = -0.5 * ((s - m1) / s1) ** 2 - np.log(s1)
    with np.errstate(divide="ignore"):
        log_w0 = np.where(g, np.log(a), np.log1p(-b))
        log_w1 = np.where(g, np.log1p(-a), np.log(b))
    l0, l1 = log_w0 + log0, log_w1 + log1
    top = np.maximum(l0, l1)
    p0 = np.exp(l0 - top) / (np.exp(l0 - top) + np.exp(l1 - top))
    return np.where(g, p0, 1.0 - p0)


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
