"""Outliers: planted out-of-domain images in a real folder, the cut-off, invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.planted import PlantedFolder, planted_folder
from winnow.curation.errors import InvalidArray
from winnow.curation.knn_graph import build_knn_graph
from winnow.curation.outliers import find_outliers, score_knn_distance, score_local


@pytest.fixture(scope="session")
def planted(tmp_path_factory) -> PlantedFolder:
    # Same root as tests/unit/curation/test_duplicates.py (tests/helpers/planted.py): the folder is built and embedded once.
    return planted_folder(str(tmp_path_factory.getbasetemp() / "planted"))


@pytest.mark.slow
def test_planted_out_of_domain_images_are_found(planted):
    out = find_outliers(build_knn_graph(planted.embeddings, k=10))
    ood = planted.kind == "ood"
    flagged = out.is_outlier
    recall = flagged[ood].mean()
    precision = (flagged & ood).sum() / max(1, flagged.sum())
    assert recall >= 0.85, (recall, out.score[ood], out.threshold)
    assert precision >= 0.8, np.flatnonzero(flagged & ~ood)
    # The planted junk is at the top of the score, whatever the cut-off.
    top = np.argsort(-out.score)[: int(ood.sum())]
    assert ood[top].mean() >= 0.85


@pytest.mark.slow
def test_clean_folder_has_almost_no_outliers(planted):
    base = planted.kind == "base"
    out = find_outliers(build_knn_graph(planted.embeddings[base], k=10))
    # expected_false=1 means about one false flag on a clean set; allow a little more.
    assert out.is_outlier.sum() <= 3, out.score[out.is_outlier]


def test_cut_offs_are_median_plus_z_mad_on_log_scores():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    graph = build_knn_graph(x.astype(np.float32), k=10)
    from scipy.stats import norm

    assert find_outliers(graph).z == pytest.approx(norm.ppf(1 - 1 / 2000))
    out = find_outliers(graph, expected_false=1.0, local=True)
    # With the local test on, half of the expected false flags go to each score.
    assert out.z == pytest.approx(norm.ppf(1 - 0.5 / 2000))
    flags = np.zeros(2000, dtype=bool)
    for values, threshold in ((score_knn_distance(graph), out.threshold),
                              (score_local(graph, score_knn_distance(graph)), out.local_threshold)):
        logs = np.log(values + 1e-6)
        med = np.median(logs)
        sigma = 1.4826 * np.median(np.abs(logs - med))
        assert np.log(threshold + 1e-6) == pytest.approx(med + out.z * sigma)
        flags |= logs > med + out.z * sigma
    assert np.array_equal(out.is_outlier, flags)
    # More expected false flags -> lower cut-offs -> a superset of flags.
    loose = find_outliers(graph, expected_false=50.0, local=True)
    assert loose.threshold < out.threshold and np.all(loose.is_outlier[out.is_outlier])


def test_a_stray_point_near_a_dense_concept_is_found_next_to_a_sparse_one():
    # Two concepts: dense (spread 0.2) and sparse (spread 0.9). A point at distance ~0.6
    # from the dense one is globally no farther than the sparse concept's members.
    rng = np.random.default_rng(2)
    d = 64
    a, b = rng.standard_normal(d), rng.standard_normal(d)
    dense = a + 0.2 * rng.standard_normal((600, d))
    sparse = b + 0.9 * rng.standard_normal((600, d))
    stray = a + 0.9 * rng.standard_normal((3, d))
    x = np.vstack([dense, sparse, stray])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    graph = build_knn_graph(x, k=10)
    out = find_outliers(graph, local=True)
    assert out.is_outlier[-3:].all()
    assert out.is_outlier[:-3].sum() <= 3
    # The global score alone cannot tell them from the sparse concept.
    assert not find_outliers(graph).is_outlier[-3:].all()


def test_planted_far_points_in_a_gaussian_cloud():
    rng = np.random.default_rng(1)
    centre = rng.standard_normal(32)
    bulk = centre + 0.3 * rng.standard_normal((1000, 32))
    far = rng.standard_normal((10, 32)) * 2
    x = np.vstack([bulk, far])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    out = find_outliers(build_knn_graph(x.astype(np.float32), k=10))
    assert out.is_outlier[1000:].all()
    assert out.is_outlier[:1000].sum() <= 3


def test_score_skips_missing_neighbours_and_validates():
    x = np.eye(3, dtype=np.float32)
    graph = build_knn_graph(x, k=5)  # only 2 real neighbours each
    assert np.allclose(score_knn_distance(graph), 1.0)
    with pytest.raises(InvalidArray, match="k must be in 1..5"):
        score_knn_distance(graph, k=9)
    with pytest.raises(InvalidArray, match="expected_false"):
        find_outliers(graph, expected_false=0)


@settings(deadline=None)
@given(st.integers(20, 200), st.integers(0, 2**16), st.booleans())
def test_outliers_do_not_depend_on_row_order(n, seed, local):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8)) * rng.uniform(0.2, 2.0, (n, 1)) + 1.0
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    perm = rng.permutation(n)
    a = find_outliers(build_knn_graph(x, k=5), local=local)
    b = find_outliers(build_knn_graph(x[perm], k=5), local=local)
    assert np.allclose(a.score[perm], b.score, atol=1e-6)
    assert a.threshold == pytest.approx(b.threshold, rel=1e-6)
    # Flags agree except, at worst, for a score within float error of the cut-off.
    differ = a.is_outlier[perm] != b.is_outlier
    near_cut = (np.abs(b.score - b.threshold) < 1e-5) | (np.abs(b.local_score - b.local_threshold) < 1e-4)
    assert np.all(near_cut[differ])
