"""Embeddings a user hands to the public functions: raw rows are normalised with a warning,
zero / NaN / inf rows are errors quoting the row (curation/validation.py, one place); NaN / inf
values and mismatched lengths are named errors quoting the value."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.helpers import digits_world
from winnow import curation
from winnow.curation import (
    InvalidArray,
    build_knn_graph,
    curate,
    find_label_issues,
    find_leaks,
    find_semantic_duplicates,
    find_simifeat_label_issues,
    hierarchical_kmeans,
    kmeans,
    out_of_fold_pred_probs,
    plan_prune,
    score_prototypicality,
    search_knn,
)
from winnow.curation.noise import noise_transition_matrix, plant_label_noise


@pytest.fixture(scope="module")
def unit_and_raw():
    labels, emb, rows, reasons, keys = digits_world(n=400, n_unusable=4, seed=3)
    # Raw encoder outputs: the same directions at norms from 0.3 to 40.
    scale = np.random.default_rng(1).uniform(0.3, 40.0, size=(len(emb), 1))
    return labels, emb, (emb * scale).astype(np.float32), rows, reasons, keys


def test_raw_embeddings_give_the_same_label_issues_and_warn(unit_and_raw):
    labels, unit, raw, rows, _, _ = unit_and_raw
    noisy = plant_label_noise(labels[rows], noise_transition_matrix("symmetric", 0.15, n_classes=10), seed=2)
    expected = find_label_issues(noisy, embeddings=unit)
    with pytest.warns(UserWarning, match=f"{len(raw)} of {len(raw)} rows of embeddings are not unit length"):
        got = find_label_issues(noisy, embeddings=raw)
    assert got["is_label_issue"].to_list() == expected["is_label_issue"].to_list()
    assert got["suggested_label"].to_list() == expected["suggested_label"].to_list()
    np.testing.assert_allclose(got["label_quality"].to_numpy(), expected["label_quality"].to_numpy(), atol=1e-5)


def test_raw_embeddings_give_the_same_curation_and_warn(unit_and_raw):
    labels, unit, raw, rows, reasons, keys = unit_and_raw
    kw = dict(rows=rows, n_classes=10, unusable_reason=reasons, keys=keys)
    expected = curate(labels, unit, build_knn_graph(unit, k=10), **kw)
    with pytest.warns(UserWarning, match="not unit length"):
        raw_graph = build_knn_graph(raw, k=10)
    with pytest.warns(UserWarning, match="not unit length"):
        got = curate(labels, raw, raw_graph, **kw)
    assert got.decisions.decision.tolist() == expected.decisions.decision.tolist()
    assert got.decisions.reasons == expected.decisions.reasons
    assert (got.decisions.decision == "drop").sum() <= 10  # not "799 of 800 near duplicates"


def test_unit_rows_pass_silently(unit_and_raw):
    labels, unit, _, rows, _, _ = unit_and_raw
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_knn_graph(unit, k=5)
        kmeans(unit, 4)


def test_a_graph_built_from_raw_rows_is_refused(unit_and_raw):
    labels, unit, raw, rows, reasons, keys = unit_and_raw
    from winnow.curation.knn_graph import KnnGraph

    g = build_knn_graph(unit, k=10)
    inflated = KnnGraph(indices=g.indices, similarities=g.similarities * 30.0)
    with pytest.raises(InvalidArray, match="not L2-normalised"):
        curate(labels, unit, inflated, rows=rows, n_classes=10, unusable_reason=reasons, keys=keys)
    with pytest.raises(InvalidArray, match="not L2-normalised"):
        find_label_issues(labels[rows], knn=inflated, n_classes=10)


def _entry_points(x, labels, good):
    g = build_knn_graph(good, k=5)  # a valid graph of the same rows: the bad row is in the embeddings only
    cent = np.eye(1, x.shape[1], dtype=np.float32)
    clusters = np.zeros(len(x), dtype=np.int64)
    rows = np.arange(len(x))
    return {
        "find_label_issues": lambda: find_label_issues(labels, embeddings=x),
        "curate": lambda: curate(labels, x, g, rows=rows, n_classes=10, unusable_reason=[None] * len(x), keys=rows),
        "build_knn_graph": lambda: build_knn_graph(x, k=5),
        "search_knn": lambda: search_knn(x, x[:3]),
        "find_leaks": lambda: find_leaks(x[50:], x[:50]),  # the bad row is training row 7
        "find_leaks_holdout": lambda: find_leaks(x[:50], x[50:]),  # ... holdout row 7
        "kmeans": lambda: kmeans(x, 3),
        "hierarchical_kmeans": lambda: hierarchical_kmeans(x, levels=(4, 2)),
        "out_of_fold_pred_probs": lambda: out_of_fold_pred_probs(x, labels, n_classes=10),
        "find_simifeat_label_issues": lambda: find_simifeat_label_issues(labels, x, g, n_classes=10),
        "score_prototypicality": lambda: score_prototypicality(x, cent, clusters),
        "find_semantic_duplicates": lambda: find_semantic_duplicates(x, clusters, prototypicality=np.zeros(len(x))),
        "plan_prune": lambda: plan_prune(x, cent, clusters),
    }


ENTRY_POINTS = ["build_knn_graph", "curate", "find_label_issues", "find_leaks", "find_leaks_holdout",
                "find_semantic_duplicates", "find_simifeat_label_issues", "hierarchical_kmeans", "kmeans",
                "out_of_fold_pred_probs", "plan_prune", "score_prototypicality", "search_knn"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("bad", ["zero", "nan", "inf"])
def test_zero_nan_and_inf_rows_raise_quoting_the_row(unit_and_raw, entry, bad):
    labels, unit, _, rows, _, _ = unit_and_raw
    x = unit[:100].copy()
    # Row 57 (row 7 of x[50:], which find_leaks takes as one of its two sets).
    value = {"zero": 0.0, "nan": np.nan, "inf": np.inf}[bad]
    if bad == "zero":
        x[57] = 0.0
    else:
        x[57, 3] = value
    calls = _entry_points(x, labels[rows][:100], unit[:100])
    assert sorted(calls) == ENTRY_POINTS
    call = calls[entry]
    pattern = {"zero": r"row (57|7)\b.*norm 0", "nan": r"\[(57|7), 3\] is nan", "inf": r"\[(57|7), 3\] is inf"}[bad]
    with pytest.raises(InvalidArray, match=pattern):
        call()


# --- bad arrays: NaN / inf / mismatched lengths, named and quoted -------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_embeddings_and_pred_probs(bad):
    emb = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    emb[7, 2] = bad
    word = "nan" if np.isnan(bad) else "inf"
    with pytest.raises(curation.InvalidArray, match=rf"embeddings\[7, 2\] is \S*{word}"):
        curation.build_knn_graph(emb, k=3)
    probs = np.full((6, 2), 0.5)
    probs[4, 1] = bad
    from winnow.curation.confident_learning import find_confident_learning_issues

    with pytest.raises(curation.InvalidArray, match=rf"pred_probs\[4, 1\] is \S*{word}"):
        find_confident_learning_issues(np.array([0, 1, 0, 1, 0, 1]), probs)


def test_mismatched_lengths_name_both_sides():
    from winnow.curation.confident_learning import find_confident_learning_issues

    with pytest.raises(curation.LengthMismatch, match="labels has 5 rows but pred_probs has 6"):
        find_confident_learning_issues(np.array([0, 1, 0, 1, 0]), np.full((6, 2), 0.5))
    with pytest.raises(curation.InvalidArray, match=r"labels\[2\] is 7, outside 0..1"):
        find_confident_learning_issues(np.array([0, 1, 7, 1, 0, 1]), np.full((6, 2), 0.5))
