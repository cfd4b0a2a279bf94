"""Rare classes: a class with fewer than max(5, k) samples (a typo'd label, say) is left out
of the label detectors and the noise estimate; its rows are kept with reason `rare_class`."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import digits_world
from winnow.curation import DecisionPolicy, build_knn_graph, curate, detect_label_issues
from winnow.curation.noise import noise_transition_matrix, plant_label_noise
from winnow.curation.rebalance import resolve_target


@pytest.fixture(scope="module")
def noisy_digits():
    labels, emb, rows, reasons, keys = digits_world(n=501, n_unusable=3, seed=5)
    # The last row is the one that will get a typo'd label; the base set is everything else.
    last = len(labels) - 1
    assert last in rows
    noisy = plant_label_noise(labels, noise_transition_matrix("symmetric", 0.1, n_classes=10), seed=4)
    return noisy, emb, rows, reasons, keys


def _curate(labels, emb, rows, reasons, keys, n_classes, **kw):
    return curate(labels, emb, build_knn_graph(emb, k=10), rows=rows, n_classes=n_classes,
                  unusable_reason=reasons, keys=keys, **kw)


def test_one_typo_label_changes_no_other_decision(noisy_digits):
    labels, emb, rows, reasons, keys = noisy_digits
    n = len(labels) - 1
    base = _curate(labels[:n], emb[:-1], rows[:-1], reasons[:n], keys[:n], 10)
    typo = labels.copy()
    typo[n] = 10  # "sevn": an eleventh class with one sample
    got = _curate(typo, emb, rows, reasons, keys, 11)
    d, b = got.decisions, base.decisions
    changed = np.flatnonzero((d.decision[:n] != b.decision) | (d.final_label[:n] != b.final_label))
    assert changed.tolist() == [], [(i, b.decision[i], d.decision[i], b.reasons[i], d.reasons[i]) for i in changed]
    assert d.reasons[:n] == b.reasons
    assert abs(got.facts["estimated_noise_rate"] - base.facts["estimated_noise_rate"]) < 0.01
    assert d.decision[n] == "keep" and d.reasons[n] == ["rare_class"] and d.final_label[n] == 10
    assert got.facts["rare_classes"] == {"10": 1} and base.facts["rare_classes"] == {}  # no names: the index
    names = [str(c) for c in range(10)] + ["sevn"]
    dropped = _curate(typo, emb, rows, reasons, keys, 11, policy=DecisionPolicy(on_rare_class="drop"),
                      class_names=names)
    assert dropped.decisions.decision[n] == "drop" and dropped.decisions.reasons[n] == ["rare_class"]
    assert dropped.facts["rare_classes"] == {"sevn": 1}
    assert np.array_equal(dropped.decisions.decision[:n], b.decision)


def test_a_class_below_max_5_k_is_rare_and_out_of_the_noise_estimate(noisy_digits):
    labels, emb, rows, _, _ = noisy_digits
    y = labels[rows].copy()
    x = emb
    base = detect_label_issues(y, embeddings=x, knn=build_knn_graph(x, k=10))
    # Nine samples of a new class 10 (under k = 10 neighbours: kNN voting cannot hear them).
    few = np.flatnonzero(y == 3)[:9]
    y2 = y.copy()
    y2[few] = 10
    rep = detect_label_issues(y2, embeddings=x, knn=build_knn_graph(x, k=10), n_classes=11)
    assert abs(rep.noise_rate - base.noise_rate) < 0.01, (rep.noise_rate, base.noise_rate)
    assert rep.rare_classes == {10: 9}
    rare = rep.frame["is_rare_class"].to_numpy()
    assert np.flatnonzero(rare).tolist() == few.tolist()
    assert not rep.frame["is_label_issue"].to_numpy()[few].any()
    # With k = 4 neighbours the threshold is max(5, 4) = 5: nine samples are not rare.
    rep4 = detect_label_issues(y2, embeddings=x, knn=build_knn_graph(x, k=4), n_classes=11)
    assert rep4.rare_classes == {}


def test_every_class_rare_flags_nothing_and_keeps_every_row():
    labels, emb, rows, reasons, keys = digits_world(n=40, n_unusable=2, seed=1)
    got = _curate(labels, emb, rows, reasons, keys, 10)
    d = got.decisions
    assert len(d.decision) == 40
    usable = np.array([r is None for r in reasons])
    assert all("rare_class" in d.reasons[i] and "label_issue" not in d.reasons[i] for i in np.flatnonzero(usable))
    assert got.facts["label_detectors"] == []
    assert got.facts["estimated_noise_rate"] == 0.0
    assert sum(got.facts["rare_classes"].values()) == usable.sum()


def test_a_rare_class_goes_through_pruning_and_caps(noisy_digits):
    # Rows of a rare class have no probe margin (NaN difficulty): pruning ranks them by
    # prototypicality alone instead of failing.
    labels, emb, rows, reasons, keys = noisy_digits
    typo = labels.copy()
    typo[-3:] = 10
    for policy in (DecisionPolicy(keep=0.7), DecisionPolicy(class_cap=30, cluster_balanced=True, keep=300)):
        d = _curate(typo, emb, rows, reasons, keys, 11, policy=policy).decisions
        assert (d.decision != "drop").sum() == resolve_target(policy.keep, len(typo))
        assert all("rare_class" in d.reasons[i] for i in range(len(typo) - 3, len(typo)) if reasons[i] is None)


def test_one_class_left_after_the_rare_ones_is_unflagged_with_full_quality():
    labels, emb, rows, reasons, keys = digits_world(n=60, n_unusable=0, seed=2)
    y = labels[rows].copy()
    y[:] = np.where(np.arange(len(y)) < 54, 0, 1 + np.arange(len(y)) % 2)  # class 0: 54, classes 1 and 2: 3 each
    rep = detect_label_issues(y, embeddings=emb, knn=build_knn_graph(emb, k=10), n_classes=3)
    f = rep.frame
    assert rep.rare_classes == {1: 3, 2: 3} and rep.noise_rate == 0.0 and not f["is_label_issue"].any()
    assert (f["label_quality"].to_numpy()[y == 0] == 1.0).all() and np.isnan(f["label_quality"].to_numpy()[y > 0]).all()
