"""A user's pred_probs and Winnow's embeddings together rank label issues better than either alone
(issue 16 item 3), on a planted case where the two views of each sample are independent."""

import numpy as np
import pytest

import winnow.curation.label_issues as li
from winnow.curation import detect_label_issues, detection_metrics, plant_label_noise
from winnow.curation.noise import noise_transition_matrix

K, N, D = 6, 1800, 24


def _view(y, seed):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(K, D)) * 0.55
    return means[y] + rng.normal(size=(len(y), D))


@pytest.fixture(scope="module")
def two_views():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.arange(N) % K
    emb = _view(y, 1)
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    noisy = plant_label_noise(y, noise_transition_matrix("symmetric", 0.2, n_classes=K), seed=0)
    # The user's model saw another view (think: a CNN on pixels), out of fold, on the noisy labels.
    probs = cross_val_predict(LogisticRegression(max_iter=500), _view(y, 2), noisy,
                              cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")
    return y, noisy, emb, probs


def _auroc(truth, frame):
    return detection_metrics(truth, frame["label_quality"].to_numpy(), frame["is_label_issue"].to_numpy())["auroc"]


def check_both_beat_each(y, noisy, emb, probs):
    truth = noisy != y
    probs_only = _auroc(truth, detect_label_issues(noisy, pred_probs=probs).frame)
    emb_only = _auroc(truth, detect_label_issues(noisy, embeddings=emb).frame)
    both = _auroc(truth, detect_label_issues(noisy, pred_probs=probs, embeddings=emb).frame)
    assert both > max(probs_only, emb_only) + 0.01, (both, probs_only, emb_only)


def test_pred_probs_and_embeddings_beat_each_alone(two_views):
    check_both_beat_each(*two_views)


def test_the_check_fails_when_only_the_users_pred_probs_are_used(two_views, monkeypatch):
    real = li._resolve_methods

    def users_only(methods, **kw):
        return ["confident_learning"] if methods == "auto" and kw.get("pred_probs") is not None else real(methods, **kw)

    monkeypatch.setattr(li, "_resolve_methods", users_only)
    with pytest.raises(AssertionError):
        check_both_beat_each(*two_views)


def test_auto_adds_the_probe_beside_a_users_pred_probs(two_views):
    _, noisy, emb, probs = two_views
    report = detect_label_issues(noisy, pred_probs=probs, embeddings=emb)
    assert "probe" in report.methods and "knn_vote" in report.methods
    # Without the user's pred_probs the probe already feeds confident learning: not twice.
    assert "probe" not in detect_label_issues(noisy, embeddings=emb).methods
