"""One verdict from several label-noise detectors, with no threshold to tune.

Detectors that give a class distribution per sample (the probe's or the user's
pred_probs, kNN votes, zero-shot priors) are averaged, each weighted by how often its
argmax agrees with the given labels (all sources face the same noise, so the one that
agrees more is the better predictor). label_quality is the blend's probability of the
given label, mixed with score-only evidence that ranks well on its own (the area under
the margin), which is a quarter of the weight when present. How many samples to flag comes from the confident joint of the blend:
- a given class whose estimated errors spread over many true classes (symmetric-like
  noise) flags its lowest-quality samples, as many as the joint's off-diagonal row;
- a given class whose errors concentrate on one true class (pair-flip-like noise) is
  pruned cell by cell by margin (confident learning's prune-by-noise-rate, the margin
  mixed with the score-only evidence like label_quality), which separates the two
  confusable classes better than a global quality ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from winnow.curation.confident_learning import (
    compute_confident_joint,
    estimate_noise_rate,
)
from winnow.curation.errors import InvalidArray

# Provenance of the three constants below: chosen by hand on benchmarks/label_noise.py's 15 seed-0 rows (scikit-learn digits and 5,000 MNIST digits through
# EfficientNet-Lite0, the 10-class Gaussian mixture; symmetric 20/40/60%, pair 20/40%);
# seed 1 of the same rows was the only other check. They are dev-set choices, not yet
# validated on held-out data (benchmarks/README.md reports them on the data they were chosen on).

# Weight exponent on each source's agreement with the given labels: sharp enough that a
# clearly better source dominates, soft enough that two similar ones are averaged.
AGREEMENT_POWER = 4.0
# A given class whose largest off-diagonal cell holds more than this share of its
# estimated errors is treated as pair-flip-like (pruned by margin, cell by cell).
CONCENTRATED_NOISE_SHARE = 0.5
# Share of label_quality given to score-only detectors (AUM): on those benchmark rows it
# lifts AUROC in every row; more than this starts to override the class evidence.
SCORE_SHARE = 0.25


@dataclass(frozen=True)
class EnsembleVerdict:
    blend_probs: np.ndarray  # (N, K) float64: weighted average of the sources' class distributions
    weights: dict[str, float]  # source name -> normalised weight in the blend
    label_quality: np.ndarray  # (N,) float64 in [0, 1]: blend probability of the given label
    suggested_label: np.ndarray  # (N,) int64: blend argmax (the given label when it is the argmax)
    suggestion_confidence: np.ndarray  # (N,) float64 in [0, 1]: blend probability of suggested_label
    is_label_issue: np.ndarray  # (N,) bool
    confident_joint: np.ndarray  # (K, K) int64: calibrated joint of the blend, row = given, column = true
    noise_rate: float  # estimated share of wrong labels (off-diagonal mass of the joint)


def combine_detectors(labels: np.ndarray, class_probs: dict[str, np.ndarray], *,
                      scores: dict[str, np.ndarray] | None = None,
                      sample_weight: np.ndarray | None = None) -> EnsembleVerdict:
    """Blend the sources' (N, K) class distributions and cut at the estimated noise count.

    labels: (N,) validated int64; class_probs: name -> (N, K) rows summing to 1;
    scores: name -> (N,) in [0, 1], low = likely wrong, mixed into label_quality only.
    sample_weight: (N,) how much each row counts in the noise estimate and the cut
    (1 / group size for duplicates, so a mislabelled image with copies is one error, as
    it would be alone); None: 1 each.
    """
    if not class_probs:
        raise InvalidArray("the ensemble needs at least one detector that gives class probabilities")
    n = len(labels)
    rows = np.arange(n)
    raw = {}
    for name, probs in class_probs.items():
        if probs.shape[0] != n:
            raise InvalidArray(f"detector {name!r} gave {probs.shape[0]} rows for {n} labels")
        raw[name] = max(float((probs.argmax(axis=1) == labels).mean()), 1e-3) ** AGREEMENT_POWER
    total = sum(raw.values())
    weights = {name: w / total for name, w in raw.items()}
    blend = sum(weights[name] * class_probs[name] for name in class_probs)
    blend = blend / blend.sum(axis=1, keepdims=True)
    own = blend[rows, labels]
    quality = own
    extra = None
    if scores:
        extra = np.mean([np.clip(v, 0.0, 1.0) for v in scores.values()], axis=0)
        quality = (1.0 - SCORE_SHARE) * own + SCORE_SHARE * extra
        weights = {name: w * (1.0 - SCORE_SHARE) for name, w in weights.items()}
        weights.update({name: SCORE_SHARE / len(scores) for name in scores})
    flagged, cj = cut_by_confident_joint(labels, blend, quality, scores=extra, sample_weight=sample_weight)
    suggested = blend.argmax(axis=1)
    suggested = np.where(blend[rows, suggested] > own, suggested, labels).astype(np.int64)
    return EnsembleVerdict(
        blend_probs=blend,
        weights=weights,
        label_quality=np.clip(quality, 0.0, 1.0),
        suggested_label=suggested,
        suggestion_confidence=np.clip(blend[rows, suggested], 0.0, 1.0),
        is_label_issue=flagged,
        confident_joint=cj,
        noise_rate=estimate_noise_rate(cj),
    )


def cut_by_confident_joint(labels: np.ndarray, probs: np.ndarray, quality: np.ndarray, *,
                           scores: np.ndarray | None = None,
                           sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N,) flags and the (K, K) confident joint of `probs`; see the module docstring.

    labels (N,), probs (N, K), quality (N,) label_quality; scores (N,) the score-only
    evidence mixed into quality (None = none), also mixed into the per-cell margins.
    sample_weight (N,): the joint counts weights and each cut takes rows until their
    weights reach its count (None: rows).
    """
    k = probs.shape[1]
    cj = compute_confident_joint(labels, probs, weights=sample_weight)
    w = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    off = cj - np.diag(np.diag(cj))
    n_errors = off.sum(axis=1)
    concentrated = off.max(axis=1) > CONCENTRATED_NOISE_SHARE * np.maximum(n_errors, 1)
    flagged = np.zeros(len(labels), dtype=bool)
    for given in np.flatnonzero(concentrated):
        # Confident learning's prune-by-noise-rate: in cell (given, true) flag the
        # samples the evidence most prefers to move from `given` to `true`.
        rows = np.flatnonzero(labels == given)
        for true in range(k):
            if true == given or off[given, true] <= 0:
                continue
            margin = probs[rows, true] - probs[rows, given]
            if scores is not None:
                margin = (1.0 - SCORE_SHARE) * margin + SCORE_SHARE * (1.0 - 2.0 * scores[rows])
            order = np.argsort(-margin, kind="stable")
            flagged[rows[order[: _n_within(w[rows[order]], off[given, true])]]] = True
    diffuse_rows = np.flatnonzero(~concentrated[labels])
    n_flag = int(n_errors[~concentrated].sum())
    if n_flag > 0 and len(diffuse_rows):
        order = np.argsort(quality[diffuse_rows], kind="stable")
        flagged[diffuse_rows[order[: _n_within(w[diffuse_rows[order]], n_flag)]]] = True
    return flagged, cj


def _n_within(weights: np.ndarray, count: float) -> int:
    """How many leading rows it takes for their weights to reach `count` (rows of weight 1: count)."""
    before = np.cumsum(weights) - weights
    return int(np.count_nonzero(before < count - 1e-9))
