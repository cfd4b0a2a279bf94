"""One verdict from several label-noise detectors, with no threshold to tune.

Detectors that give a class distribution per sample (the probe's or the user's
pred_probs, kNN votes, zero-shot priors) are averaged, each weighted by how often its
argmax agrees with the given labels (all sources face the same noise, so the one that
agrees more is the better predictor). The cut follows the evidence, class by class:
1. The confident joint of the blend, calibrated to the label counts, estimates the joint
   distribution Q of (given, true) labels: row i is the prior over the true class of a
   sample given label i.
2. Each sample's probability of a wrong label is Bayes' rule with row i of Q as the prior
   over its true class and the blend as the likelihood: P(true = j | x, given i) is
   proportional to Q[i, j] * blend[x, j] / P(true = j). A class whose errors all go to one
   class is ranked by the evidence for that class (like confident learning's per-cell
   margin); one whose errors spread is ranked by the evidence against its own label.
   Score-only evidence (the area under the margin) is mixed in (SCORE_SHARE).
   label_quality is 1 minus that mixture.
3. In each given class, the samples of highest P(wrong) are flagged, as many as maximise the
   class's expected F1 (the expected true positives of the first m are the sum of their
   P(wrong), the expected errors the sum over the class: `f1_optimal_count`) but no more
   than the joint's off-diagonal count of the class, so no class is cut at another's rate (a rare class's clean samples are not flagged because a frequent
   class is noisy) and no count has to be guessed; as in confident learning, a sample whose
   blend argmax is its given label is never flagged. The share flagged, per class and in
   total, is the noise estimate.
4. Given an audit (a person's answers on a random sample, `audit.py`) whose 95% interval rules
   that estimate out, every class's count is scaled to the audit's rate (`rescale_cut`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from winnow.curation.audit import AuditCount, AuditRows, reconcile
from winnow.curation.confident_learning import compute_confident_joint
from winnow.curation.errors import InvalidArray

# Provenance of the cut's design, chosen on the development split of
# benchmarks/label_noise_protocol.py only (36 conditions, mean F1): the per-class expected-F1
# count capped by the joint's count (session 21) 0.9156 against the joint's count alone 0.9095
# (mean gap to the best threshold 0.017 vs 0.023; clean samples of the rarer half of the
# classes flagged on the long tails 4.1% vs 6.0%, frequent half 0.6% vs 1.3%); uncapped it
# reached 0.9165 but flagged the rare half at 4.5% and failed the long-tail test's planted
# harder rare classes (6.5% of their clean samples vs 0% of the frequent ones); before that, the posterior ranking with per-class counts 0.909 against the earlier
# two-regime cut's 0.899; a global cut at the same
# total would reach 0.921 but flags the clean samples of the rarer half of the classes at
# 11.1% against 6.1% (frequent half 1.5% vs 3.3%); the argmax guard adds 0.0006 on the mean
# (better on 31 of 36 rows, worse on the three pair-40% rows, where the true and the flipped
# class tie) and brought the one dev row below cleanlab (digits-lr sparse 0.4 30%) above it.
# Session 23 (issue 16 items 2-3), on the development split with the conditions session 23 added
# (instance-dependent noise, 5% rates; 57 single-label conditions, offline replay of --dump);
# nothing here changed. Tried for the cap: a joint that also counts each sample confident in no
# class, at the class of highest probs / label share (instance-dependent flips sit between two
# classes, confident in neither, and the confident joint drops them: its count was 0.25-0.9x the
# truth on the dev instance rows). Dev mean F1 0.867 vs 0.847 (instance rows 0.657 vs 0.569, the
# 46 others 0.9172 vs 0.9135), but it counts a confused model's hard CLEAN samples as errors: on
# clean labels (tests/unit/curation/test_validation.py's digits) it flagged 15 of 396 samples vs
# 4, failing that test, and held out it lost 0.014 mean F1 on the 40 balanced rows without
# instance noise (MNIST at 5%, text). Not taken; neither were: the same joint as the prior too
# (dev 0.872), spreading unconfident samples over their class distribution (0.868, 6.5% of the
# long-tail test's rare clean samples flagged), half-way between the two counts (0.864, 12 of
# 396 clean flagged), a plain argmax (0.867, 6.5% rare), counting at the argmax only when it
# doubles the given label's probability (0.865, 7 of 396 clean flagged); on the first 47 rows
# (before the 5% rows; this cut 0.835): a floor at 0.8-0.9 of the joint's count (0.838-0.839,
# frequent-half false flags 0.7-0.9% vs 0.6%), rescaling P(wrong) to the joint's count (0.839,
# rarer half 5.3% vs 3.7%), the joint's count alone (0.837); on the 57, the joint's count for a
# single source's rows (digits-lr mean 0.738 vs 0.739).
# Tried for the weights (same 57 rows, this cut; agreement^4: 0.8471): agreement measured on the
# samples the other sources' blend trusts (0.8471); each source's AUROC against the other
# sources' verdict, (2 AUROC - 1)^2 (0.8490, but the 46 rows without instance noise 0.9122 vs
# 0.9135 and long-tail false flags rarer / frequent half 3.9% / 0.8% vs 3.7% / 0.6%);
# AGREEMENT_POWER 2 / 8 (0.8470 / 0.8457); SCORE_SHARE scaled down by the probe's agreement
# relative to the best source's (0.8448).
# Session 25, same 57 dev rows (offline replay; this cut 0.8471, within 20% of the true rate on
# 46): the posterior treats the blend, which was learnt from the noisy labels, as evidence about
# the true class, so the noise is counted twice and an obvious flip's P(wrong) stays low (gmm sym
# 10%: flips' median 0.56, clean 99th percentile 0.13; the ranking is right, best cut 0.998, the
# count is short: 471 flagged of 501). Tried: de-noising the blend by the joint's transition matrix
# before Bayes' rule (pseudo-inverse 0.8307; a KL fit, 20 EM steps, 0.8436: the flips' P(wrong)
# rose to a median of 0.76 but spread, and the expected-F1 counts fell); a two-Gaussian mixture on
# logit(label_quality) as the count (uncapped 0.8478: instance rows 0.756 vs 0.569 but the others
# 0.870 vs 0.9135, counting the clean tail at 5% noise as 1.5-2.5x the truth and collapsing on
# digits-lr sym 60%; its expected-F1 count 0.8546 with the others at 0.878; capped by the joint
# 0.8307-0.8323); for a single source, the joint's count (cleanlab's rule) again: 0.7384 vs 0.7391
# on the ten digits-lr rows (inst 15% 0.456 vs 0.307, sparse 0.4 5% 0.772 vs 0.852); the blend
# temperature-scaled to the given labels (temperature by maximum likelihood: 0.6-0.9 sharpens the
# image rows, 1.2-2.3 softens digits-lr) and then de-noised by the KL fit: 0.8482 (instance rows
# 0.571, the others 0.9145; gmm sym 10% 0.960 vs 0.969). Nothing taken.
# Session 26, same 57 dev rows: a second count from a Dawid-Skene fit (EM with the given label and
# each source's argmax as annotators, one confusion matrix each, run on the distinct
# (given, votes) patterns; rows with two sources or more). Alone it is within 20% of the true
# rate on 43 rows (this cut 46): 0.7-0.94x on the instance rows (this cut 0.25-0.9x) but 1.4-1.6x
# at 5% on EfficientNet-Lite0 digits, where the kNN votes and the probe, read from one embedding,
# err together on hard clean samples and the fit assumes they err independently (tempering their
# log-likelihoods by 0.5-0.75 collapsed the fit onto the given labels at high noise; soft votes
# collapsed it always). As each class's count, a weighted geometric mean own^(1-s) * fitted^s:
# s = 0.25 / 0.4 / 0.5 / 1 gave mean F1 0.8546 / 0.8589 / 0.8605 / 0.8658 (instance rows 0.597 /
# 0.617 / 0.630 / 0.686, the 46 others 0.9162 / 0.9166 / 0.9156 / 0.9090, the 5% rows 0.9045 /
# 0.9019 / 0.8972 / 0.8756). Every gain comes from flagging past the joint's cap (capped by it,
# s = 0.4: 0.8478), and past the cap the rare classes go too: at s = 0.4 the rarer half's clean
# samples on the dev long tails were flagged at 6.5% vs 4.9% and 6.5% vs 3.3% (frequent half
# unchanged), and the long-tail unit test (tests/unit/curation/test_noise_estimate.py) flagged one
# clean sample of each rare class; spreading the total lift over the classes in proportion to
# their own counts did the same (0.8585; rarer half 7.3% vs 4.9%). A noise estimate as the same
# geometric mean: within 20% on 46 rows at s <= 0.4 (unchanged). Not taken; the code is not kept.
# AGREEMENT_POWER was chosen by hand on the earlier benchmark's 15 seed-0 rows
# (digits and MNIST through EfficientNet-Lite0, a Gaussian mixture) and kept unchanged when
# the protocol of benchmarks/label_noise_protocol.py (issue 16) split the benchmark: it was
# not re-tuned. SCORE_SHARE was re-checked on the protocol's development split only (0.25
# against 0.5: mean dev F1 0.903 vs 0.898 with the per-class cut); the held-out split chose
# nothing.

# Weight exponent on each source's agreement with the given labels: sharp enough that a
# clearly better source dominates, soft enough that two similar ones are averaged.
AGREEMENT_POWER = 4.0
# Share of label_quality given to score-only detectors (AUM): more than this starts to
# override the class evidence.
SCORE_SHARE = 0.25


@dataclass(frozen=True)
class EnsembleVerdict:
    blend_probs: np.ndarray  # (N, K) float64: weighted average of the sources' class distributions
    weights: dict[str, float]  # source name -> normalised weight in the blend
    label_quality: np.ndarray  # (N,) float64 in [0, 1]: 1 - P(given label wrong), score-only evidence mixed in
    suggested_label: np.ndarray  # (N,) int64: blend argmax (the given label when it is the argmax)
    suggestion_confidence: np.ndarray  # (N,) float64 in [0, 1]: blend probability of suggested_label
    is_label_issue: np.ndarray  # (N,) bool
    confident_joint: np.ndarray  # (K, K) int64: calibrated joint of the blend, row = given, column = true
    noise_rate: float  # estimated share of wrong labels: the (weighted) share the cut flags, or an audit's rate
    class_noise_rate: np.ndarray  # (K,) float64: estimated share of wrong labels among samples given class k (flagged share)
    audit_overruled: bool = False  # True: an audit ruled out the flagged share; noise_rate is the audit's rate
    model_noise_rate: float | None = None  # the flagged share before any audit (= noise_rate unless overruled)
    audit: AuditCount | None = None  # the audit's count as used (post-stratified when part of the sample is unchecked)


def combine_detectors(labels: np.ndarray, class_probs: dict[str, np.ndarray], *,
                      scores: dict[str, np.ndarray] | None = None,
                      sample_weight: np.ndarray | None = None,
                      audit: AuditCount | AuditRows | None = None) -> EnsembleVerdict:
    """Blend the sources' (N, K) class distributions and cut class by class; see the module docstring.

    labels: (N,) validated int64; class_probs: name -> (N, K) rows summing to 1;
    scores: name -> (N,) in [0, 1], low = likely wrong, mixed into label_quality only.
    sample_weight: (N,) how much each row counts in the noise estimate and the cut
    (1 / group size for duplicates, so a mislabelled image with copies is one error, as
    it would be alone); None: 1 each.
    audit: what a person found on the audit sample (`audit.AuditCount`, or `audit.AuditRows`
    aligned with the labels: counted post-stratified by this cut's flags when part of the sample
    is unchecked); when it rules out the share the cut flags, each class's count is scaled to the
    audit's rate (`audit.reconcile`).
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
    blend = _blend(class_probs, weights, n)
    extra = None
    if scores:
        extra = np.mean([np.clip(v, 0.0, 1.0) for v in scores.values()], axis=0)
        weights = {name: w * (1.0 - SCORE_SHARE) for name, w in weights.items()}
        weights.update({name: SCORE_SHARE / len(scores) for name in scores})
    flagged, cj, _, quality = cut_by_noise_estimate(labels, blend, scores=extra, sample_weight=sample_weight,
                                                    return_posterior=False)
    # The suggestion is the evidence's own choice, not the posterior's: the prior of a
    # given class favours that class, which would keep most flagged labels as they are.
    suggested = blend.argmax(axis=1)
    suggested = np.where(blend[rows, suggested] > blend[rows, labels], suggested, labels).astype(np.int64)
    # The estimate is the share the cut flags (per class and in total): what a user is told
    # ("about 9% of your labels look wrong") is what they will review. The calibrated joint's
    # off-diagonal share counts a weak model's own errors as noise (1.16-1.42x the truth on the
    # development split's raw-pixel logistic regression) and was within 20% of the truth on 29
    # of the 36 development conditions; the flagged share on 35 of 36 (median 0.99x).
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    counts = np.bincount(labels, weights=w, minlength=blend.shape[1])
    model_rate = float((flagged * w).sum() / max(counts.sum(), 1e-12))
    if isinstance(audit, AuditRows):
        if len(audit.member) != n:
            raise InvalidArray(f"the audit has {len(audit.member)} rows for {n} labels")
        audit = audit.count(flagged)
    # The audit's rate when it overrules (the cut may stop short of it where the evidence agrees
    # with the label), else the flagged share.
    noise_rate, overruled = reconcile(model_rate, audit)
    if overruled:
        flagged = rescale_cut(labels, 1.0 - quality, flagged, cj, blend, noise_rate, sample_weight)
    off = np.bincount(labels, weights=flagged * w, minlength=blend.shape[1])
    return EnsembleVerdict(
        blend_probs=blend,
        weights=weights,
        label_quality=np.clip(quality, 0.0, 1.0),
        suggested_label=suggested,
        suggestion_confidence=np.clip(blend[rows, suggested], 0.0, 1.0),
        is_label_issue=flagged,
        confident_joint=cj,
        noise_rate=noise_rate,
        class_noise_rate=np.where(counts > 0, off / np.maximum(counts, 1e-12), 0.0),
        audit_overruled=overruled,
        model_noise_rate=model_rate,
        audit=audit,
    )


def rescale_cut(labels: np.ndarray, wrong: np.ndarray, flagged: np.ndarray, joint: np.ndarray, probs: np.ndarray,
                rate: float, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """(N,) bool: the cut with every class's count scaled so that the total is `rate` of the weight.

    wrong (N,) each row's P(wrong) (the order within a class), flagged (N,) the cut to scale (its
    per-class counts are the shares; where it flags nothing, the joint's off-diagonal counts are),
    joint (K, K), probs (N, K) the evidence (a row whose argmax is its label stays unflagged, as
    in the cut itself). Classes keep their share of the errors, so a rare class is not cut at a
    frequent class's rate.
    """
    n, k = probs.shape
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    own = np.bincount(labels, weights=flagged * w, minlength=k)
    if own.sum() <= 0:
        own = np.asarray(joint, dtype=np.float64).sum(axis=1) - np.diag(joint)
    lift = rate * float(w.sum()) / max(float(own.sum()), 1e-12)
    out = np.zeros(n, dtype=bool)
    for given in range(k):
        rows = np.flatnonzero(labels == given)
        if len(rows) == 0 or own[given] <= 0:
            continue
        order = rows[np.argsort(-wrong[rows], kind="stable")]
        out[order[:_n_within(w[order], float(np.floor(own[given] * lift + 0.5)))]] = True
    agrees = probs[np.arange(n), labels] >= probs.max(axis=1) - 1e-12
    return out & ~agrees


def true_class_posterior(labels: np.ndarray, probs: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """(N, K) P(true class = j | evidence, given label) by Bayes' rule.

    labels (N,), probs (N, K) the evidence (a class distribution per sample), joint (K, K)
    the estimated (given, true) joint, e.g. a calibrated confident joint. Row i of the joint
    is the prior over the true class of a sample given label i; probs[x, j] / P(true = j)
    is the likelihood ratio of the evidence.
    """
    out = np.empty(probs.shape, dtype=np.float64)
    for start, post in _posterior_blocks(labels, probs, joint):
        out[start : start + len(post)] = post
    return out


# Rows per block of the (rows, K) float64 temporaries of the blend and the posterior: a few
# MiB whatever N is (at 10M rows, each whole-array temporary was 80 bytes a row; issue 18 item 1).
_ROWS = 1 << 16


def _posterior_blocks(labels: np.ndarray, probs: np.ndarray, joint: np.ndarray):
    """(start, (rows, K) posterior) of true_class_posterior, block by block of rows."""
    joint = np.asarray(joint, dtype=np.float64)
    prior_true = joint.sum(axis=0) / max(joint.sum(), 1e-12)
    given_rows = joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-12)
    scale = np.maximum(prior_true, 1e-12)[None, :]
    for start in range(0, len(labels), _ROWS):
        lab = labels[start : start + _ROWS]
        post = given_rows[lab] * probs[start : start + _ROWS] / scale
        total = post.sum(axis=1, keepdims=True)
        # A sample whose evidence puts no mass where its row allows: keep its given label.
        fallback = np.zeros_like(post)
        fallback[np.arange(len(lab)), lab] = 1.0
        yield start, np.where(total > 0, post / np.where(total > 0, total, 1.0), fallback)


def _blend(class_probs: dict[str, np.ndarray], weights: dict[str, float], n: int) -> np.ndarray:
    """(N, K) weighted sum of the sources' distributions, rows renormalised, in row blocks
    (the same sums in the same order as one whole-array expression, without its temporaries)."""
    first = next(iter(class_probs.values()))
    out = np.empty((n, first.shape[1]), dtype=np.result_type(*class_probs.values()))
    for start in range(0, n, _ROWS):
        block = sum(weights[name] * probs[start : start + _ROWS] for name, probs in class_probs.items())
        out[start : start + len(block)] = block / block.sum(axis=1, keepdims=True)
    return out


CUT_COUNTS = ("expected_f1", "joint")


def cut_by_noise_estimate(labels: np.ndarray, probs: np.ndarray, *, scores: np.ndarray | None = None,
                          sample_weight: np.ndarray | None = None, count: str = "expected_f1",
                          return_posterior: bool = True):
    """Flags, joint, posterior and label_quality of the per-class cut; see the module docstring.

    labels (N,), probs (N, K) the blended evidence; scores (N,) score-only evidence in
    [0, 1] (low = likely wrong), None = none. sample_weight (N,): the joint counts
    weights and each class's cut takes rows until their weights reach its count.
    Returns (is_label_issue (N,) bool, confident joint (K, K), posterior (N, K) over the
    true class, label_quality (N,)). return_posterior=False: None in the posterior's place, and
    no (N, K) array is kept (only each row's P(true = given) is needed for the cut).
    """
    if count not in CUT_COUNTS:
        raise InvalidArray(f"count must be one of {CUT_COUNTS}, got {count!r}")
    k = probs.shape[1]
    cj = compute_confident_joint(labels, probs, weights=sample_weight)
    n = len(labels)
    posterior = np.empty(probs.shape, dtype=np.float64) if return_posterior else None
    wrong = np.empty(n, dtype=np.float64)
    for start, post in _posterior_blocks(labels, probs, cj):
        if posterior is not None:
            posterior[start : start + len(post)] = post
        wrong[start : start + len(post)] = 1.0 - post[np.arange(len(post)), labels[start : start + len(post)]]
    if scores is not None:
        wrong = (1.0 - SCORE_SHARE) * wrong + SCORE_SHARE * (1.0 - scores)
    quality = 1.0 - wrong
    w = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    errors = cj.sum(axis=1) - np.diag(cj)
    flagged = np.zeros(len(labels), dtype=bool)
    for given in range(k):
        rows = np.flatnonzero(labels == given)
        if len(rows) == 0 or errors[given] <= 0:
            continue
        order = rows[np.argsort(-wrong[rows], kind="stable")]
        # The joint's count caps the class: where the evidence is weak (a rare class the
        # model barely learnt) the expected-F1 count grows with the doubt, and would flag
        # that class's clean samples more often than a frequent class's.
        m = _n_within(w[order], errors[given])
        if count == "expected_f1":
            m = min(f1_optimal_count(wrong[order], w[order]), m)
        flagged[order[:m]] = True
    # As in confident learning: a sample whose evidence's most probable class is its given
    # label keeps it, whatever its class's count (an overestimated count cannot reach it).
    agrees = probs[np.arange(n), labels] >= probs.max(axis=1) - 1e-12
    return flagged & ~agrees, cj, posterior, quality


def f1_optimal_count(p_wrong: np.ndarray, weights: np.ndarray | None = None) -> int:
    """How many of the rows, sorted by falling P(wrong), to flag so that the expected F1 is highest.

    p_wrong (M,) sorted descending, each row's probability that its label is wrong; weights
    (M,) how much each row counts (None: 1). Taking the first m rows, the expected true
    positives are the sum of their p and the expected errors the sum of all p, so the
    expected F1 is 2 * sum_{i<m} w p / (sum_{i<m} w + sum_i w p); the best m, 0 when no row
    has any chance of being wrong. No constant: the count follows the probabilities.
    """
    p = np.clip(np.asarray(p_wrong, dtype=np.float64), 0.0, 1.0)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    expected = float((w * p).sum())
    if len(p) == 0 or expected <= 0:
        return 0
    f1 = 2 * np.cumsum(w * p) / (np.cumsum(w) + expected)
    return int(np.argmax(f1)) + 1


def _n_within(weights: np.ndarray, count: float) -> int:
    """How many leading rows it takes for their weights to reach `count` (rows of weight 1: count)."""
    before = np.cumsum(weights) - weights
    return int(np.count_nonzero(before < count - 1e-9))
