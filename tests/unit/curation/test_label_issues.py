"""find_label_issues and every detector on seeded Gaussian mixtures and real digits with planted flips."""

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from winnow.curation.errors import InvalidArray, LengthMismatch
from winnow.curation.knn_graph import build_knn_graph
from winnow.curation.knn_noise import find_knn_label_issues, find_simifeat_label_issues
from winnow.curation.label_issues import (
    DETECTORS,
    detect_label_issues,
    find_label_issues,
    list_detectors,
)
from winnow.curation.noise import detection_metrics, noise_transition_matrix, plant_label_noise
from winnow.curation.small_loss import fit_probe, split_small_loss
from winnow.curation.zero_shot import zero_shot_pred_probs


def mixture(n=600, k=5, d=32, *, sep=1.2, seed=0):
    """(N, D) L2-normalised Gaussian-mixture embeddings, (N,) true labels, (K, D) class means."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * sep
    y = np.arange(n) % k
    x = means[y] + rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), y, means


def planted(kind="symmetric", rate=0.15, **kw):
    x, y, means = mixture(**kw)
    k = means.shape[0]
    noisy = plant_label_noise(y, noise_transition_matrix(kind, rate, n_classes=k), seed=1)
    return x, y, noisy, means


@pytest.fixture(scope="module")
def sym():
    x, y, noisy, means = planted()
    return x, y, noisy, means, build_knn_graph(x, k=10)


def test_registry():
    assert list_detectors() == sorted(DETECTORS)
    assert {"knn_vote", "simifeat", "small_loss", "aum", "confident_learning", "zero_shot"} <= set(DETECTORS)


def test_knn_vote_finds_flips(sym):
    x, y, noisy, _, g = sym
    votes = find_knn_label_issues(noisy, g, n_classes=5, noise_rate=0.15)
    m = detection_metrics(noisy != y, votes.label_quality, votes.is_label_issue)
    assert m["auroc"] > 0.95 and m["f1"] > 0.85
    # The original majority rule still works.
    assert find_knn_label_issues(noisy, g, n_classes=5).is_label_issue.sum() > 0


def test_simifeat_finds_flips(sym):
    x, y, noisy, _, g = sym
    votes = find_simifeat_label_issues(noisy, x, g, n_classes=5, seed=0, noise_rate=0.15)
    m = detection_metrics(noisy != y, votes.label_quality, votes.is_label_issue)
    assert m["auroc"] > 0.95 and m["f1"] > 0.8
    np.testing.assert_allclose(votes.vote_probs.sum(axis=1), 1)


def test_probe_small_loss_and_aum_find_flips(sym):
    x, y, noisy, _, _ = sym
    probe = fit_probe(x, noisy, n_classes=5, seed=0)
    truth = noisy != y
    np.testing.assert_allclose(probe.pred_probs.sum(axis=1), 1, atol=1e-9)
    assert (probe.pred_probs.argmax(axis=1) == y).mean() > 0.9  # trained on noisy labels, right on true ones
    split = split_small_loss(probe.losses)
    m = detection_metrics(truth, split.clean_prob, split.is_noisy)
    assert m["auroc"] > 0.95 and m["recall"] > 0.85 and m["precision"] > 0.6
    assert detection_metrics(truth, probe.aum, truth)["auroc"] > 0.95


def test_small_loss_split_is_bimodal_and_monotone():
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.gamma(2, 0.05, 900), 2 + rng.normal(0, 0.3, 100)])
    split = split_small_loss(losses)
    assert split.is_noisy[900:].mean() > 0.95 and split.is_noisy[:900].mean() < 0.02
    order = np.argsort(losses)
    assert np.all(np.diff(split.clean_prob[order]) <= 1e-12)
    assert not split_small_loss(np.ones(5)).is_noisy.any()


def test_zero_shot_prior():
    x, y, noisy, means = planted()
    probs = zero_shot_pred_probs(x, means, temperature=0.05)
    assert probs.shape == (600, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1)
    assert (probs.argmax(axis=1) == y).mean() > 0.95
    with pytest.raises(InvalidArray, match="dimensions"):
        zero_shot_pred_probs(x, means[:, :10])
    out = find_label_issues(noisy, embeddings=x, class_text_embeddings=means, zero_shot_temperature=0.05)
    assert "score_zero_shot" in out.columns
    m = detection_metrics(noisy != y, out["score_zero_shot"].to_numpy(), out["is_label_issue"].to_numpy())
    assert m["auroc"] > 0.95


def test_ensemble_precision_and_recall_symmetric(sym):
    x, y, noisy, _, g = sym
    report = detect_label_issues(noisy, embeddings=x, knn=g)
    f = report.frame
    assert isinstance(f, pl.DataFrame) and f.height == 600
    for col in ["is_label_issue", "label_quality", "suggested_label", "suggestion_confidence", "probe_margin",
                "score_knn_vote", "score_small_loss", "score_aum", "score_confident_learning"]:
        assert col in f.columns
    m = detection_metrics(noisy != y, f["label_quality"].to_numpy(), f["is_label_issue"].to_numpy())
    assert m["precision"] >= 0.85 and m["recall"] >= 0.85, m
    assert abs(report.noise_rate - 0.15) < 0.05
    flagged = f["is_label_issue"].to_numpy()
    assert (f["suggested_label"].to_numpy()[flagged] == y[flagged]).mean() > 0.9


def test_ensemble_pair_noise():
    x, y, noisy, _ = planted("pair", 0.3, seed=2)
    f = find_label_issues(noisy, embeddings=x)
    m = detection_metrics(noisy != y, f["label_quality"].to_numpy(), f["is_label_issue"].to_numpy())
    assert m["f1"] > 0.85, m


def test_inputs_pred_probs_only_embeddings_only_knn_only(sym):
    x, y, noisy, _, g = sym
    probs = fit_probe(x, noisy, n_classes=5).pred_probs
    only_probs = find_label_issues(noisy, pred_probs=probs)
    assert {"score_confident_learning", "score_small_loss"} <= set(only_probs.columns)
    assert "score_knn_vote" not in only_probs.columns and "probe_margin" not in only_probs.columns
    only_knn = find_label_issues(noisy, knn=g, n_classes=5)
    assert list(only_knn.columns)[:4] == ["is_label_issue", "label_quality", "suggested_label", "suggestion_confidence"]
    both = find_label_issues(noisy, pred_probs=probs, embeddings=x, methods=["knn_vote", "confident_learning"])
    assert [c for c in both.columns if c.startswith("score_")] == ["score_knn_vote", "score_confident_learning"]
    for frame in (only_probs, only_knn, both):
        m = detection_metrics(noisy != y, frame["label_quality"].to_numpy(), frame["is_label_issue"].to_numpy())
        assert m["f1"] > 0.8


def test_deterministic_given_seed(sym):
    x, _, noisy, _, g = sym
    a = find_label_issues(noisy, embeddings=x, knn=g, seed=3)
    b = find_label_issues(noisy, embeddings=x, knn=g, seed=3)
    assert a.equals(b)


def test_noise_free_well_separated_flags_almost_nothing():
    x, y, _ = mixture(n=500, k=5, sep=3.0, seed=4)
    f = find_label_issues(y, embeddings=x)
    assert f["is_label_issue"].sum() <= 3


@pytest.mark.slow
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), k=st.integers(2, 4), rate=st.floats(0.0, 0.4))
def test_scores_in_unit_interval(seed, k, rate):
    x, y, _ = mixture(n=90, k=k, d=8, sep=1.0, seed=seed)
    noisy = plant_label_noise(y, noise_transition_matrix("symmetric", rate, n_classes=k), seed=seed)
    f = find_label_issues(noisy, embeddings=x, n_classes=k, seed=seed, methods=list(DETECTORS)[:5])
    for col in [c for c in f.columns if c.startswith("score_")] + ["label_quality", "suggestion_confidence"]:
        v = f[col].to_numpy()
        assert np.all((v >= 0) & (v <= 1)), col
    assert f["suggested_label"].min() >= 0 and f["suggested_label"].max() < k


@pytest.mark.slow
@settings(suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_permuting_samples_permutes_results(seed):
    x, y, _ = mixture(n=200, k=4, d=16, sep=1.0, seed=seed)
    noisy = plant_label_noise(y, noise_transition_matrix("symmetric", 0.2, n_classes=4), seed=seed)
    perm = np.random.default_rng(seed).permutation(len(y))
    a = find_label_issues(noisy, embeddings=x)
    b = find_label_issues(noisy[perm], embeddings=x[perm])
    np.testing.assert_allclose(b["label_quality"].to_numpy(), a["label_quality"].to_numpy()[perm], atol=1e-4)
    agree = (b["is_label_issue"].to_numpy() == a["is_label_issue"].to_numpy()[perm]).mean()
    assert agree >= 0.99


def test_bad_arrays_raise_clear_errors(sym):
    x, _, noisy, _, g = sym
    with pytest.raises(LengthMismatch, match="599"):
        find_label_issues(noisy[:599], embeddings=x)
    probs = np.full((600, 5), 0.2)
    probs[7] = 0.5
    with pytest.raises(InvalidArray, match="row 7 sums to 2.5"):
        find_label_issues(noisy, pred_probs=probs)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InvalidArray, match=r"embeddings\[3, 2\] is nan"):
        find_label_issues(noisy, embeddings=bad)
    wrong = noisy.copy()
    wrong[5] = 9
    with pytest.raises(InvalidArray, match=r"labels\[5\] is 9, outside 0..4"):
        find_label_issues(wrong, pred_probs=np.full((600, 5), 0.2))
    missing = np.where(noisy == 2, 1, noisy)
    with pytest.raises(InvalidArray, match=r"class\(es\) \[2\] have no samples"):
        find_label_issues(missing, embeddings=x, n_classes=5)
    with pytest.raises(InvalidArray, match="unknown detector"):
        find_label_issues(noisy, embeddings=x, methods=["knn_votes"])
    with pytest.raises(InvalidArray, match="needs"):
        find_label_issues(noisy, pred_probs=np.full((600, 5), 0.2), methods=["knn_vote"])
    with pytest.raises(InvalidArray, match="needs pred_probs, embeddings or knn"):
        find_label_issues(noisy)


# --- the ensemble against its parts, where the classes overlap --------------------------------
# Real digits (scikit-learn's 1,797, centred and L2-normalised pixels, i.e. the `pixels`
# encoder at 8x8) with class-conditional noise: pair flips (each class into the next) and
# CIFAR-10N's human "worse" transition matrix. Here no single detector is enough: kNN voting
# beats confident learning on the pair flips and loses to it on the human noise.
SINGLE_DETECTORS = ("knn_vote", "simifeat", "confident_learning", "small_loss")  # each flags on its own
ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
OVERLAP_NOISE = {
    "pair30": lambda: noise_transition_matrix("pair", 0.3, n_classes=10),
    "cifar10n_worse": lambda: np.loadtxt(ROOT / "benchmarks" / "data" / "cifar10n_worse.csv", delimiter=","),
}
_single_f1: dict = {}


@pytest.fixture(scope="module")
def digit_pixels():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data - d.data.mean(axis=1, keepdims=True)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x, d.target.astype(np.int64), build_knn_graph(x, k=10)


def _f1(truth, frame):
    return detection_metrics(truth, frame["label_quality"].to_numpy(), frame["is_label_issue"].to_numpy())["f1"]


def check_ensemble_beats_single_detectors(digit_pixels, case):
    """The ensemble's F1 is at least the best single detector's (each run alone, same inputs)."""
    x, y, g = digit_pixels
    noisy = plant_label_noise(y, OVERLAP_NOISE[case](), seed=0)
    truth = noisy != y
    if case not in _single_f1:  # the single detectors do not depend on the ensemble: run them once
        _single_f1[case] = {m: _f1(truth, find_label_issues(noisy, embeddings=x, knn=g, methods=[m]))
                            for m in SINGLE_DETECTORS}
    single = _single_f1[case]
    ensemble = _f1(truth, find_label_issues(noisy, embeddings=x, knn=g))
    assert ensemble >= max(single.values()), (case, round(ensemble, 4), {m: round(v, 4) for m, v in single.items()})
    return ensemble, single


@pytest.mark.parametrize("case", sorted(OVERLAP_NOISE))
def test_ensemble_is_at_least_the_best_single_detector_on_overlapping_digits(digit_pixels, case):
    ensemble, single = check_ensemble_beats_single_detectors(digit_pixels, case)
    assert ensemble > 0.9


@pytest.mark.parametrize(("only", "case"), [("knn_vote", "cifar10n_worse"), ("confident_learning", "pair30")])
def test_the_ensemble_check_fails_with_a_single_part_ensemble(digit_pixels, monkeypatch, only, case):
    # The check above must need the ensemble: with methods="auto" running kNN voting alone
    # (or confident learning alone) it fails on the case where that part is not enough.
    import winnow.curation.label_issues as li

    real = li._resolve_methods

    def one_part(methods, **kw):
        return [only] if methods == "auto" else real(methods, **kw)

    monkeypatch.setattr(li, "_resolve_methods", one_part)
    with pytest.raises(AssertionError):
        check_ensemble_beats_single_detectors(digit_pixels, case)


def test_blocked_vote_and_posterior_equal_the_whole_array_formulas(monkeypatch):
    # Issue 18 item 1: the kNN vote, the blend and the posterior run in row blocks; the blocks
    # (here 7 rows, so many and a ragged last one) must give the whole-array values exactly.
    from winnow.curation import ensemble, knn_noise
    from winnow.curation.knn_graph import KnnGraph

    rng = np.random.default_rng(3)
    n, k, classes = 100, 6, 4
    labels = rng.integers(0, classes, n)
    idx = rng.integers(0, n, (n, k))
    idx[rng.random((n, k)) < 0.1] = -1
    sims = rng.uniform(-0.2, 1.0, (n, k)).astype(np.float32)
    sims[idx < 0] = -np.inf
    graph = KnnGraph(indices=idx, similarities=sims)
    # The formula before blocking: one np.add.at over the whole graph.
    valid = idx >= 0
    w = np.where(valid, np.clip(sims, 0.0, None), 0.0).astype(np.float64)
    want = np.zeros((n, classes))
    np.add.at(want, (np.repeat(np.arange(n), k), np.where(valid, labels[np.maximum(idx, 0)], 0).ravel()), w.ravel())
    empty = want.sum(axis=1) <= 0
    want[empty] = 1.0 / classes
    want /= want.sum(axis=1, keepdims=True)
    monkeypatch.setattr(knn_noise, "_VOTE_ROWS", 7)
    monkeypatch.setattr(ensemble, "_ROWS", 7)
    votes = knn_noise.vote_knn(labels, graph, n_classes=classes)
    np.testing.assert_array_equal(votes, want)

    probs = rng.dirichlet(np.ones(classes), n)
    joint = rng.integers(1, 20, (classes, classes)).astype(np.float64)
    prior = joint.sum(axis=0) / joint.sum()
    post = (joint / joint.sum(axis=1, keepdims=True))[labels] * probs / prior[None, :]
    np.testing.assert_array_equal(ensemble.true_class_posterior(labels, probs, joint),
                                  post / post.sum(axis=1, keepdims=True))
    blend = ensemble._blend({"a": probs, "b": votes}, {"a": 0.3, "b": 0.7}, n)
    whole = 0.3 * probs + 0.7 * votes
    np.testing.assert_array_equal(blend, whole / whole.sum(axis=1, keepdims=True))
    kept = ensemble.cut_by_noise_estimate(labels, blend)
    dropped = ensemble.cut_by_noise_estimate(labels, blend, return_posterior=False)
    assert dropped[2] is None and kept[2].shape == (n, classes)
    for a, b in ((kept[0], dropped[0]), (kept[1], dropped[1]), (kept[3], dropped[3])):
        np.testing.assert_array_equal(a, b)


def test_the_ensemble_holds_no_whole_array_temporaries(monkeypatch):
    # Issue 18 item 1: at 10M rows every (N, K) float64 temporary is 80 bytes a row. The blend
    # it returns is one such array; its other temporaries are row blocks (small next to N here),
    # so the traced peak stays under 2.5 (N, K) arrays (measured 1.7; the whole-array formulas
    # peaked at 5.2).
    import tracemalloc

    from winnow.curation import ensemble
    from winnow.curation.ensemble import combine_detectors

    monkeypatch.setattr(ensemble, "_ROWS", 4096)

    rng = np.random.default_rng(0)
    n, classes = 100_000, 10
    labels = rng.integers(0, classes, n)
    a = rng.dirichlet(np.ones(classes) * 0.3, n)
    b = rng.dirichlet(np.ones(classes) * 0.3, n)
    one = n * classes * 8
    tracemalloc.start()
    try:
        combine_detectors(labels, {"a": a, "b": b}, scores={"s": rng.random(n)})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * one, f"combine_detectors peaked at {peak / one:.2f} (N, K) float64 arrays"


def test_out_of_core_probe_features_are_float16_and_standardised_alike(tmp_path):
    # Issue 18 item 1: on float16 embeddings the probe keeps its (N, max_dim) features as float16
    # (256 bytes a row at 128 axes, not 512) and divides by their std block by block; that std is
    # torch's unbiased std (unweighted) and the weighted formula of the in-memory path.
    import torch

    from winnow.curation import small_loss

    rng = np.random.default_rng(2)
    x = rng.standard_normal((3000, 96)).astype(np.float32)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
    path = tmp_path / "emb.npy"
    np.save(path, x)
    feats, key = small_loss._projected_blocks(np.load(path, mmap_mode="r"), 16, seed=0)
    assert feats.dtype == torch.float16 and tuple(feats.shape) == (3000, 16) and key.shape == (3000,)
    f32 = feats.float()
    np.testing.assert_allclose(small_loss._feature_std(feats).numpy(), f32.std(0).numpy(), rtol=1e-4)
    w = torch.from_numpy(rng.uniform(0.2, 1.0, 3000).astype(np.float32))
    want = ((w.double() @ f32.double().square()) / (w.double().sum() - 1)).sqrt()
    np.testing.assert_allclose(small_loss._feature_std(feats, w).numpy(), want.numpy(), rtol=1e-5)
    # float32 embeddings keep float32 features.
    assert small_loss._projected_blocks(x.astype(np.float32), 16, seed=0)[0].dtype == torch.float32


def test_one_class_comes_back_unjudged_not_refused():
    """An unlabeled folder is one class: nothing to confuse it with, so nothing is flagged and the
    estimate is 0, whatever the embeddings say (curate still finds its duplicates and outliers)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    report = detect_label_issues(np.zeros(60, dtype=np.int64), embeddings=x, knn=build_knn_graph(x, k=5),
                                 n_classes=1)
    assert not report.frame["is_label_issue"].any() and report.noise_rate == 0.0
    assert (report.frame["label_quality"].to_numpy() == 1.0).all() and report.methods == ()
    with pytest.raises(InvalidArray, match="at least 1"):
        detect_label_issues(np.zeros(60, dtype=np.int64), embeddings=x, n_classes=0)
