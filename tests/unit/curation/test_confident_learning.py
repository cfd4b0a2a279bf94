"""Confident learning against cleanlab as the oracle, on the same pred_probs."""

import numpy as np
import pytest

from winnow.curation.confident_learning import (
    FILTER_BY,
    compute_confident_joint,
    estimate_noise_rate,
    find_confident_learning_issues,
    rank_label_quality,
)
from winnow.curation.errors import InvalidArray, LengthMismatch

cleanlab = pytest.importorskip("cleanlab")


def _noisy_probs(n, k, *, noise, seed, spread=1.5, boost=2.5):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) * spread
    logits[np.arange(n), true] += boost
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    labels = true.copy()
    flip = rng.random(n) < noise
    labels[flip] = (true[flip] + rng.integers(1, k, flip.sum())) % k
    return labels, probs, true


@pytest.mark.parametrize("k", [2, 3, 10])
@pytest.mark.parametrize("filter_by", FILTER_BY)
def test_flagged_sets_agree_with_cleanlab(k, filter_by):
    from cleanlab.filter import find_label_issues

    labels, probs, _ = _noisy_probs(2000, k, noise=0.25, seed=k)
    ours = find_confident_learning_issues(labels, probs, filter_by=filter_by).is_label_issue
    theirs = find_label_issues(labels, probs, filter_by=filter_by, n_jobs=1)
    assert (ours == theirs).mean() >= 0.99
    assert ours.sum() > 0


def test_confident_joint_matches_cleanlab():
    from cleanlab.count import compute_confident_joint as cleanlab_cj

    labels, probs, _ = _noisy_probs(1500, 6, noise=0.3, seed=7)
    np.testing.assert_array_equal(compute_confident_joint(labels, probs), cleanlab_cj(labels=labels, pred_probs=probs))
    raw = compute_confident_joint(labels, probs, calibrate=False)
    np.testing.assert_array_equal(raw, cleanlab_cj(labels=labels, pred_probs=probs, calibrate=False))


@pytest.mark.parametrize("rank_by", ["self_confidence", "normalized_margin"])
def test_scores_match_cleanlab(rank_by):
    from cleanlab.rank import get_label_quality_scores

    labels, probs, _ = _noisy_probs(500, 4, noise=0.2, seed=3)
    np.testing.assert_allclose(
        rank_label_quality(labels, probs, rank_by=rank_by),
        get_label_quality_scores(labels, probs, method=rank_by),
    )


def test_noise_rate_estimate_tracks_planted_rate():
    labels, probs, true = _noisy_probs(4000, 5, noise=0.2, seed=11, spread=0.7, boost=3.0)
    rate = estimate_noise_rate(compute_confident_joint(labels, probs))
    assert abs(rate - (labels != true).mean()) < 0.06


def test_finds_planted_flips():
    labels, probs, true = _noisy_probs(3000, 10, noise=0.2, seed=5, spread=0.7, boost=3.0)
    out = find_confident_learning_issues(labels, probs)
    truth = labels != true
    assert (out.is_label_issue & truth).sum() / out.is_label_issue.sum() > 0.8
    assert (out.is_label_issue & truth).sum() / truth.sum() > 0.6
    assert out.label_quality.min() >= 0 and out.label_quality.max() <= 1


def test_bad_inputs_raise_named_errors():
    labels, probs, _ = _noisy_probs(50, 3, noise=0.1, seed=0)
    with pytest.raises(LengthMismatch, match="49"):
        find_confident_learning_issues(labels[:49], probs)
    bad = probs.copy()
    bad[4] *= 2
    with pytest.raises(InvalidArray, match="row 4 sums to"):
        find_confident_learning_issues(labels, bad)
    bad = probs.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InvalidArray, match="nan"):
        find_confident_learning_issues(labels, bad)
    out_of_range = labels.copy()
    out_of_range[3] = 3
    with pytest.raises(InvalidArray, match=r"labels\[3\] is 3"):
        find_confident_learning_issues(out_of_range, probs)
    with pytest.raises(InvalidArray, match="filter_by"):
        find_confident_learning_issues(labels, probs, filter_by="nope")
