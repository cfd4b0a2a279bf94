"""Multi-label label issues (issue 16 item 4): cleanlab's multi-label filter is the test oracle."""

import warnings

import numpy as np
import pytest

import winnow.curation.multilabel as ml
from winnow.curation import detection_metrics, find_multilabel_issues, plant_multilabel_noise
from winnow.curation.errors import InvalidArray, LengthMismatch

K = 6


def planted(kind="swap", rate=0.15, *, n=900, seed=0):
    """True (N, K) sets, noisy sets and out-of-fold one-vs-rest probabilities from features that
    add up the means of a sample's classes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(seed)
    true = rng.random((n, K)) < 0.3
    true[~true.any(axis=1), 0] = True
    means = rng.normal(size=(K, 16)) * 1.5
    x = true.astype(float) @ means + rng.normal(size=(n, 16))
    noisy = plant_multilabel_noise(true, kind, rate, seed=seed)
    probs = np.zeros((n, K))
    for train, test in KFold(5, shuffle=True, random_state=seed).split(x):
        for c in range(K):
            probs[test, c] = LogisticRegression(max_iter=500).fit(x[train], noisy[train, c]).predict_proba(x[test])[:, 1]
    return true, noisy, probs


@pytest.fixture(scope="module", params=[("swap", 0.15), ("missing", 0.2), ("extra", 0.1)])
def case(request):
    return planted(*request.param)


def _cleanlab(noisy, probs):
    from cleanlab.multilabel_classification.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores

    sets = [list(np.flatnonzero(row)) for row in noisy]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return find_label_issues(sets, probs), get_label_quality_scores(sets, probs)


def test_confident_learning_cut_matches_cleanlab_sample_for_sample(case):
    _, noisy, probs = case
    expected, _ = _cleanlab(noisy, probs)
    ours = find_multilabel_issues(noisy, probs, cut="confident_learning")
    np.testing.assert_array_equal(ours.is_label_issue, expected)


def check_evidence_cut(true, noisy, probs):
    truth = (noisy != true).any(axis=1)
    res = find_multilabel_issues([list(np.flatnonzero(r)) for r in noisy], probs)
    flagged_ref, score_ref = _cleanlab(noisy, probs)
    ours = detection_metrics(truth, res.label_quality, res.is_label_issue)
    ref = detection_metrics(truth, score_ref, flagged_ref)
    assert ours["f1"] >= ref["f1"] - 1e-9 and ours["f1"] > 0.75, (ours, ref)
    assert ours["auroc"] >= ref["auroc"] - 0.005 and ours["auroc"] > 0.97, (ours, ref)
    # The cells: which class of the sample is wrong, and the suggested sets undo the flips.
    cells = noisy != true
    assert (res.class_issues & cells).sum() >= 0.6 * cells.sum()
    assert (res.suggested_labels[res.class_issues] == true[res.class_issues]).mean() > 0.8


def test_evidence_cut_finds_planted_cells_at_least_as_well_as_cleanlab(case):
    check_evidence_cut(*case)


def test_the_check_fails_with_a_cut_that_flags_nothing(monkeypatch):
    real = ml.cut_by_noise_estimate

    def nothing(labels, probs, **kw):
        flagged, cj, post, quality = real(labels, probs, **kw)
        return np.zeros_like(flagged), cj, post, quality

    monkeypatch.setattr(ml, "cut_by_noise_estimate", nothing)
    with pytest.raises(AssertionError):
        check_evidence_cut(*planted())


def check_noise_estimate(kind, true, noisy, probs):
    """The estimated share of samples with a wrong label and each class's share of wrong cells
    against the planted ones."""
    cells = noisy != true
    res = find_multilabel_issues(noisy, probs)
    true_rate, true_class = cells.any(axis=1).mean(), cells.mean(axis=0)
    if kind == "swap":
        # A swap's two wrong cells share a sample; the estimate takes cells as independent
        # given the evidence, so it counts the pair as two chances: over, by a bounded margin.
        assert true_rate <= res.noise_rate <= 1.4 * true_rate, (res.noise_rate, true_rate)
    else:
        assert abs(res.noise_rate / true_rate - 1) <= 0.2, (res.noise_rate, true_rate)
    if kind == "extra":  # 6-20 wrong cells per class of 900: half a point is the binomial spread
        np.testing.assert_allclose(res.class_noise_rates, true_class, atol=0.005)
    else:
        np.testing.assert_allclose(res.class_noise_rates, true_class, rtol=0.2)
    # The cells' probabilities add up to the class rates, and the sample rate is their combination.
    np.testing.assert_allclose(res.cell_error_prob.mean(axis=0), res.class_noise_rates, atol=1e-6)
    assert res.noise_rate == pytest.approx((1 - np.prod(1 - res.cell_error_prob, axis=1)).mean())


@pytest.mark.parametrize("kind, rate", [("swap", 0.15), ("missing", 0.2), ("extra", 0.1)])
def test_noise_estimate_is_within_20_percent_of_the_planted_rates(kind, rate):
    check_noise_estimate(kind, *planted(kind, rate))


def test_the_noise_check_fails_with_the_calibrated_confident_joint(monkeypatch):
    """The earlier estimate (each class's off-diagonal share of its calibrated one-vs-rest
    confident joint) undercounts dropped labels (0.5-0.7x per class here): the check catches it."""
    from winnow.curation.confident_learning import compute_confident_joint

    def joint_share(given, p):
        g = np.asarray(given).astype(np.int64)
        cj = compute_confident_joint(g, np.column_stack([1 - p, p]))
        rate = float((cj.sum() - np.trace(cj)) / cj.sum())
        return rate, np.full(len(g), rate)

    monkeypatch.setattr(ml, "estimate_class_noise", joint_share)
    with pytest.raises(AssertionError):
        check_noise_estimate("missing", *planted("missing", 0.2))


@pytest.mark.parametrize("fit_rows", [None, 800])
def test_class_noise_recovers_both_sides_of_a_planted_binary_flip(monkeypatch, fit_rows):
    if fit_rows:  # the fit on a draw of the rows, as for large N
        monkeypatch.setattr(ml, "EM_ROWS", fit_rows)
    rng = np.random.default_rng(1)
    n = 4000
    truly = rng.random(n) < 0.3
    given = truly.copy()
    dropped = truly & (rng.random(n) < 0.10)
    added = ~truly & (rng.random(n) < 0.05)
    given[dropped | added] = ~given[dropped | added]
    # The estimator's model: Gaussian logits per true side.
    p = 1 / (1 + np.exp(-np.where(truly, rng.normal(2.0, 1.0, n), rng.normal(-2.0, 1.3, n))))
    rate, q = ml.estimate_class_noise(given, p)
    wrong = given != truly
    assert abs(rate / wrong.mean() - 1) <= 0.2, (rate, wrong.mean())
    assert q.sum() == pytest.approx(rate * n)
    # Both sides are estimated: the cells given "has" that are wrong, and those given "lacks".
    assert abs(q[given].sum() / (wrong & given).sum() - 1) <= 0.25
    assert abs(q[~given].sum() / (wrong & ~given).sum() - 1) <= 0.25
    assert detection_metrics(wrong, 1 - q, q > 0.5)["auroc"] > 0.95


def test_a_class_the_evidence_cannot_separate_is_not_estimated(caplog):
    _, noisy, probs = planted(n=200)
    probs = probs.copy()
    probs[:, 2] = 0.5  # no evidence about class 2
    with caplog.at_level("WARNING", logger=ml.__name__):
        res = find_multilabel_issues(noisy, probs)
    assert np.isnan(res.class_noise_rates[2]) and np.isfinite(np.delete(res.class_noise_rates, 2)).all()
    assert (res.cell_error_prob[:, 2] == 0).all() and 0 < res.noise_rate < 1
    assert "[2]" in caplog.text


def test_label_sets_and_matrix_agree_and_errors_quote_values():
    _, noisy, probs = planted(n=200)
    a = find_multilabel_issues(noisy, probs)
    b = find_multilabel_issues([list(np.flatnonzero(r)) for r in noisy], probs)
    np.testing.assert_array_equal(a.class_issues, b.class_issues)
    np.testing.assert_allclose(a.label_quality, b.label_quality)
    assert ((a.label_quality >= 0) & (a.label_quality <= 1)).all()
    with pytest.raises(InvalidArray, match=r"labels\[1\] holds 9"):
        find_multilabel_issues([[0], [9]] + [[1]] * 198, probs)
    with pytest.raises(LengthMismatch, match="199"):
        find_multilabel_issues(noisy[:199], probs)
    bad = probs.copy()
    bad[3, 2] = 1.5
    with pytest.raises(InvalidArray, match=r"pred_probs\[3, 2\] is 1.5"):
        find_multilabel_issues(noisy, bad)
    with pytest.raises(InvalidArray, match="cut must be one of"):
        find_multilabel_issues(noisy, probs, cut="majority")


def test_ema_weighs_the_worst_cell_most():
    scores = np.array([[1.0, 1.0, 0.1], [0.9, 0.9, 0.9]])
    agg = ml.ema_aggregate(scores, alpha=0.8)
    assert agg[0] < 0.3 and agg[1] == pytest.approx(0.9)

