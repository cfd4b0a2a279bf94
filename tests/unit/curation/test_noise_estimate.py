"""The per-class noise estimate and the cut that follows it (issue 16 item 2), against planted truth."""

import numpy as np
import pytest

import winnow.curation.ensemble as ensemble
from tests.helpers.mixtures import mixture
from winnow.curation import detect_label_issues, detection_metrics, plant_label_noise
from winnow.curation.knn_noise import flag_lowest
from winnow.curation.noise import plant_instance_noise

# Class i flips to i + 1 at its own rate: one class nearly clean, one at 30%.
RATES = np.array([0.05, 0.1, 0.2, 0.3, 0.15])


@pytest.fixture(scope="module")
def per_class():
    x, y = mixture([400] * 5)
    t = np.diag(1 - RATES)
    t[np.arange(5), (np.arange(5) + 1) % 5] = RATES
    noisy = plant_label_noise(y, t, seed=0)
    return x, y, noisy


def check_per_class(x, y, noisy):
    report = detect_label_issues(noisy, embeddings=x, seed=0)
    truth = noisy != y
    true_rates = np.array([truth[noisy == c].mean() for c in range(5)])
    np.testing.assert_allclose(report.class_noise_rates, true_rates, atol=0.04)
    assert abs(report.noise_rate / truth.mean() - 1) < 0.1
    # The total is the per-class estimates weighted by the class counts.
    counts = np.bincount(noisy, minlength=5)
    assert report.noise_rate == pytest.approx((report.class_noise_rates * counts).sum() / counts.sum(), abs=1e-9)
    flagged = report.frame["is_label_issue"].to_numpy()
    m = detection_metrics(truth, report.frame["label_quality"].to_numpy(), flagged)
    assert m["precision"] > 0.9 and m["recall"] > 0.9, m
    # Each class is cut at its own estimate: the flags per class follow the planted rates.
    flag_rates = np.array([flagged[noisy == c].mean() for c in range(5)])
    np.testing.assert_allclose(flag_rates, true_rates, atol=0.04)


def test_planted_per_class_noise_is_estimated_and_found(per_class):
    check_per_class(*per_class)


def _global_cut(real):
    # A cut at one global rate: the same joint and ranking, the lowest quality overall at the
    # joint's total noise rate.
    def cut(labels, probs, **kw):
        _, cj, posterior, quality = real(labels, probs, **kw)
        return flag_lowest(quality, 1 - np.trace(cj) / cj.sum()), cj, posterior, quality
    return cut


def test_the_per_class_check_fails_with_a_symmetric_noise_estimate(per_class, monkeypatch):
    # The same total noise spread evenly over the classes (the symmetric-noise assumption).
    real = ensemble.compute_confident_joint

    def symmetric(labels, probs, **kw):
        cj = real(labels, probs, **kw).astype(float)
        k = cj.shape[0]
        rows = cj.sum(axis=1)
        rate = 1 - np.trace(cj) / cj.sum()
        return np.diag(rows * (1 - rate)) + (rows * rate / (k - 1))[:, None] * (1 - np.eye(k))

    monkeypatch.setattr(ensemble, "compute_confident_joint", symmetric)
    with pytest.raises(AssertionError):
        check_per_class(*per_class)


# Long tail: 800, 800, 400, 400, 60, 60 samples; the two rare classes sit nearer the centre
# (harder), and every class flips 10% to its partner of the same size.
@pytest.fixture(scope="module")
def long_tail():
    x, y = mixture([800, 800, 400, 400, 60, 60], scales=[1.2, 1.2, 1.0, 1.0, 0.7, 0.7])
    t = np.eye(6) * 0.9
    for a, b in [(0, 1), (2, 3), (4, 5)]:
        t[a, b] = t[b, a] = 0.1
    return x, y, plant_label_noise(y, t, seed=0)


def check_rare_not_over_flagged(x, y, noisy):
    report = detect_label_issues(noisy, embeddings=x, seed=0)
    truth = noisy != y
    flagged = report.frame["is_label_issue"].to_numpy()
    rare_clean = np.isin(noisy, [4, 5]) & ~truth
    frequent_clean = np.isin(noisy, [0, 1]) & ~truth
    # One false flag among the ~108 rare clean samples is 0.009: the margin allows none more.
    assert flagged[rare_clean].mean() <= flagged[frequent_clean].mean() + 0.01, (
        flagged[rare_clean].mean(), flagged[frequent_clean].mean())
    assert detection_metrics(truth, report.frame["label_quality"].to_numpy(), flagged)["f1"] > 0.95


def test_rare_classes_clean_samples_are_not_flagged_more_often(long_tail):
    check_rare_not_over_flagged(*long_tail)


def test_the_rare_class_check_fails_with_a_global_cut(long_tail, monkeypatch):
    monkeypatch.setattr(ensemble, "cut_by_noise_estimate", _global_cut(ensemble.cut_by_noise_estimate))
    with pytest.raises(AssertionError):
        check_rare_not_over_flagged(*long_tail)


def test_posterior_follows_the_joint():
    # Given class 0 errs only towards class 1: evidence for class 2 cannot make it wrong.
    joint = np.array([[80, 20, 0], [0, 100, 0], [0, 0, 100]], dtype=float)
    probs = np.array([[0.2, 0.2, 0.6], [0.2, 0.6, 0.2], [0.8, 0.1, 0.1]])
    post = ensemble.true_class_posterior(np.array([0, 0, 0]), probs, joint)
    np.testing.assert_allclose(post.sum(axis=1), 1)
    assert post[0, 2] == 0 and post[0, 0] > 0.5  # no mass where the joint has none
    assert post[1, 1] > post[0, 1]  # evidence for class 1 moves belief to class 1
    assert post[2, 0] > 0.9


def test_f1_optimal_count_is_the_brute_force_best():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = np.sort(rng.beta(0.5, 2.0, size=int(rng.integers(1, 40))))[::-1]
        w = rng.uniform(0.2, 1.0, size=len(p))
        expected = (w * p).sum()
        f1 = [2 * (w[:m] * p[:m]).sum() / (w[:m].sum() + expected) for m in range(1, len(p) + 1)]
        assert ensemble.f1_optimal_count(p, w) == int(np.argmax(f1)) + 1
    assert ensemble.f1_optimal_count(np.zeros(5)) == 0
    assert ensemble.f1_optimal_count(np.array([1.0, 1.0, 0.0])) == 2


@pytest.fixture(scope="module")
def digits_weak_model():
    """scikit-learn digits with 10% symmetric flips, and a weak user model's out-of-fold
    pred_probs (logistic regression on 8 principal components of the pixels: ~10% of its own
    errors on clean labels, which the confident joint counts as noise)."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from winnow.curation.noise import noise_transition_matrix

    d = load_digits()
    y = d.target.astype(np.int64)
    noisy = plant_label_noise(y, noise_transition_matrix("symmetric", 0.1, n_classes=10), seed=0)
    model = make_pipeline(StandardScaler(), PCA(8, random_state=0), LogisticRegression(max_iter=500))
    probs = cross_val_predict(model, d.data, noisy, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                              method="predict_proba")
    return y, noisy, probs


def test_noise_rate_of_a_weak_model_is_within_20_percent(digits_weak_model):
    from winnow.curation.confident_learning import estimate_noise_rate

    y, noisy, probs = digits_weak_model
    report = detect_label_issues(noisy, pred_probs=probs, seed=0)
    true_rate = (noisy != y).mean()
    assert abs(report.noise_rate / true_rate - 1) <= 0.2, (report.noise_rate, true_rate)
    # The share it states is the share it flags.
    assert report.noise_rate == pytest.approx(report.frame["is_label_issue"].to_numpy().mean())
    # The calibrated joint's own off-diagonal share (the estimate before session 21) counts the
    # weak model's errors as noise: this is the data where the two differ.
    assert estimate_noise_rate(report.confident_joint) / true_rate > 1.2


def test_the_cut_beats_cleanlab_on_a_weak_model(digits_weak_model):
    from cleanlab.filter import find_label_issues as cleanlab_find

    y, noisy, probs = digits_weak_model
    truth = noisy != y
    flagged = detect_label_issues(noisy, pred_probs=probs, seed=0).frame["is_label_issue"].to_numpy()
    theirs = cleanlab_find(noisy, probs, n_jobs=1)

    def f1(mask):
        return 2 * (mask & truth).sum() / (mask.sum() + truth.sum())

    assert f1(flagged) >= f1(theirs), (f1(flagged), f1(theirs))


def test_the_joint_count_is_kept_for_multilabel_and_unknown_counts_are_named():
    x, y = mixture([200, 200, 200])
    probs = np.full((600, 3), 0.1)
    probs[np.arange(600), y] = 0.8
    noisy = y.copy()
    noisy[:20] = (noisy[:20] + 1) % 3
    flagged, cj, _, _ = ensemble.cut_by_noise_estimate(noisy, probs, count="joint")
    # The joint's count alone: each class flags its off-diagonal row of the calibrated joint.
    errors = cj.sum(axis=1) - np.diag(cj)
    np.testing.assert_array_equal(np.bincount(noisy[flagged], minlength=3), errors)
    assert flagged[:20].all()
    with pytest.raises(ensemble.InvalidArray, match="'most'"):
        ensemble.cut_by_noise_estimate(noisy, probs, count="most")


# Instance-dependent noise (issue 16, session 23): 20% of each class flips to its nearest other
# class, the nearer a sample the likelier. The flips sit between the two classes, confident in
# neither; confident learning's joint drops them and the count stops at 0.74x the planted rate
# (F1 0.85). A cap that also counted them reached 0.93x (F1 0.96) but flagged clean samples on
# clean data (curation/ensemble.py, session 23): the gap is open, and this test says so until a
# cut closes it (strict: it fails the day it passes).
@pytest.fixture(scope="module")
def instance_noise():
    x, y = mixture([300] * 5)
    return x, y, plant_instance_noise(y, x, 0.2, seed=0)


@pytest.mark.xfail(strict=True, reason="issue 16: the count stops at 0.74x the planted instance-dependent noise")
def test_instance_noise_count_reaches_the_planted_rate(instance_noise):
    x, y, noisy = instance_noise
    report = detect_label_issues(noisy, embeddings=x, seed=0)
    truth = noisy != y
    assert abs(report.noise_rate / truth.mean() - 1) < 0.15, (report.noise_rate, truth.mean())
    assert detection_metrics(truth, report.frame["label_quality"].to_numpy(),
                             report.frame["is_label_issue"].to_numpy())["f1"] > 0.93
