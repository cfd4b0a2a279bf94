"""k-means, caps / target sizes / class distributions, cluster balance, weights (SemDeDup pruning: test_prune.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from winnow.curation.errors import InvalidArray
from winnow.curation.knn_graph import kmeans
from winnow.curation.rebalance import (
    compute_weights,
    default_cluster_levels,
    hierarchical_kmeans,
    plan_rebalance,
    resolve_target,
    water_fill,
)


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _blobs(n=600, d=16, centres=6, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d))
    which = rng.integers(0, centres, n)
    return _unit(c[which] + spread * rng.standard_normal((n, d))), which


# --- k-means (FAISS) ---------------------------------------------------------------------------


def test_kmeans_assigns_each_point_to_its_nearest_centroid_and_ignores_row_order():
    x, _ = _blobs()
    cent, assign = kmeans(x, 6, seed=0)
    assert cent.shape == (6, 16) and assign.shape == (600,)
    assert np.array_equal(assign, np.argmax(x @ cent.T, axis=1))  # brute force
    perm = np.random.default_rng(1).permutation(600)
    cent2, assign2 = kmeans(x[perm], 6, seed=0)
    assert np.allclose(cent, cent2, atol=1e-5) and np.array_equal(assign[perm], assign2)
    _, few = kmeans(x[:3], 10)
    assert set(few.tolist()) <= {0, 1, 2}
    with pytest.raises(InvalidArray, match="n_clusters"):
        kmeans(x, 0)


def test_hierarchical_kmeans_levels_nest():
    x, _ = _blobs(n=900)
    h = hierarchical_kmeans(x, levels=(30, 5))
    assert [len(c) for c in h.centroids] == [30, 5]
    fine, top = h.assignments
    for c in np.unique(fine):
        assert len(np.unique(top[fine == c])) == 1  # a fine cluster has one parent
    assert default_cluster_levels(100_000) == (316, 18)
    with pytest.raises(InvalidArray, match="decreasing"):
        hierarchical_kmeans(x, levels=(5, 30))


# --- SemDeDup and the pruning ranking ---------------------------------------------------------------


# --- quotas, caps, targets ------------------------------------------------------------------------


@settings(deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=8), st.integers(0, 400),
       st.sampled_from([None, "sqrt", "random"]), st.integers(0, 1000))
def test_water_fill_is_exact_and_capped(capacity, total, shares_kind, seed):
    cap = np.array(capacity)
    shares = None
    if shares_kind == "sqrt":
        shares = np.sqrt(cap)
    elif shares_kind == "random":
        shares = np.random.default_rng(seed).uniform(0, 3, len(cap))
    q = water_fill(cap, total, shares=shares)
    assert q.sum() == min(total, cap.sum())
    assert np.all(q >= 0) and np.all(q <= cap)
    if shares is None:
        # Equal shares: an unfilled group is within one of every other unfilled group's quota.
        unfilled = q < cap
        if unfilled.any():
            assert q[unfilled].max() - q[unfilled].min() <= 1
            # A group filled to its capacity by rounding may hold one more than the others.
            assert np.all(q[~unfilled] <= q[unfilled].max() + 1)


@st.composite
def rebalance_cases(draw):
    n = draw(st.integers(1, 150))
    k = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    labels = rng.choice(k, n, p=rng.dirichlet(np.ones(k) * 0.7))
    eligible = rng.random(n) < draw(st.sampled_from([1.0, 0.8]))
    cap = draw(st.one_of(st.none(), st.integers(0, 60)))
    target = draw(st.one_of(st.none(), st.integers(0, 160)))
    dist = draw(st.sampled_from(["original", "uniform", "sqrt"]))
    balanced = draw(st.booleans())
    fine = rng.integers(0, 6, n)
    top = np.array([0, 0, 1, 1, 2, 2])[fine]
    priority = rng.standard_normal(n)
    return labels, k, eligible, cap, target, dist, balanced, [fine, top], priority, rng.permutation(n)


@settings(deadline=None)
@given(rebalance_cases())
def test_caps_and_targets_are_met_exactly_and_row_order_does_not_matter(case):
    labels, k, eligible, cap, target, dist, balanced, levels, priority, perm = case
    keys = np.array([f"s{i:05d}" for i in range(len(labels))])
    sel = plan_rebalance(labels, n_classes=k, eligible=eligible, target_size=target, class_cap=cap,
                         class_distribution=dist, hierarchy=levels, cluster_balanced=balanced,
                         priority=priority, keys=keys)
    counts = np.bincount(labels[eligible], minlength=k)
    capped = counts if cap is None else np.minimum(counts, cap)
    kept = np.bincount(labels[sel.selected], minlength=k)
    assert not sel.selected[~eligible].any()
    assert np.all(kept <= capped)
    expected_total = capped.sum() if target is None else min(target, capped.sum())
    assert sel.selected.sum() == expected_total
    if target is None:
        assert np.array_equal(kept, capped)
    # Every eligible row left out has exactly one reason; kept and ineligible rows none.
    assert np.all((sel.reason != None) == (eligible & ~sel.selected))  # noqa: E711
    if dist == "uniform":
        unfilled = kept < capped
        if unfilled.any():
            assert kept[unfilled].max() - kept[unfilled].min() <= 1
    if balanced:
        # Within a class, the top-level clusters it was cut in are balanced.
        for c in range(k):
            rows = np.flatnonzero(eligible & (labels == c))
            if not len(rows) or kept[c] == len(rows):
                continue
            top = levels[1][rows]
            got = np.array([sel.selected[rows][top == t].sum() for t in np.unique(top)])
            have = np.array([(top == t).sum() for t in np.unique(top)])
            unfilled = got < have
            if unfilled.any():
                assert got[unfilled].max() - got[unfilled].min() <= 1
    other = plan_rebalance(labels[perm], n_classes=k, eligible=eligible[perm], target_size=target, class_cap=cap,
                           class_distribution=dist, hierarchy=[a[perm] for a in levels],
                           cluster_balanced=balanced, priority=priority[perm], keys=keys[perm])
    assert np.array_equal(sel.selected[perm], other.selected)


def test_target_size_distributions():
    labels = np.repeat(np.arange(3), [800, 150, 50])
    orig = plan_rebalance(labels, target_size=500)
    assert np.bincount(labels[orig.selected]).tolist() == [400, 75, 25]
    uni = plan_rebalance(labels, target_size=150, class_distribution="uniform")
    assert np.bincount(labels[uni.selected]).tolist() == [50, 50, 50]
    uni = plan_rebalance(labels, target_size=500, class_distribution="uniform")
    assert np.bincount(labels[uni.selected]).tolist() == [300, 150, 50]  # small classes are kept whole
    sq = plan_rebalance(labels, target_size=500, class_distribution="sqrt")
    k = np.bincount(labels[sq.selected])
    assert k.sum() == 500 and k[2] == 50 and k[0] / k[1] == pytest.approx(np.sqrt(800 / 150), rel=0.02)
    cap = plan_rebalance(labels, class_cap=100)
    assert np.bincount(labels[cap.selected]).tolist() == [100, 100, 50]
    assert set(cap.reason[~cap.selected]) == {"over_cap"}


def test_cluster_balanced_sampling_evens_out_concepts():
    # One class, three concepts of sizes 700 / 250 / 50: keep 150 -> 50 each.
    concepts = np.repeat([0, 1, 2], [700, 250, 50])
    labels = np.zeros(1000, dtype=np.int64)
    sel = plan_rebalance(labels, target_size=150, hierarchy=[concepts], cluster_balanced=True)
    assert np.bincount(concepts[sel.selected]).tolist() == [50, 50, 50]
    with pytest.raises(InvalidArray, match="hierarchy"):
        plan_rebalance(labels, target_size=10, cluster_balanced=True)


def test_resolve_target():
    assert resolve_target(0.7, 1000) == 700 and resolve_target(1.0, 7) == 7 and resolve_target(50, 10) == 50
    assert resolve_target(None, 5) is None
    for bad in (0.0, 1.5, -3, True, "half"):
        with pytest.raises(InvalidArray):
            resolve_target(bad, 10)


# --- weights -----------------------------------------------------------------------------------------


@settings(deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=200),
       st.sampled_from(["none", "inverse_frequency", "effective_number"]), st.floats(0.0, 0.9999))
def test_weights_are_positive_finite_and_zero_for_unselected(labels, scheme, beta):
    labels = np.array(labels)
    selected = np.arange(len(labels)) % 3 != 0
    w = compute_weights(labels, selected=selected, scheme=scheme, beta=beta)
    assert np.all(w[~selected] == 0)
    if selected.any():
        assert np.all(np.isfinite(w[selected])) and np.all(w[selected] > 0)
        assert w[selected].mean() == pytest.approx(1.0)


def test_inverse_frequency_equalises_class_totals_and_effective_number_sits_between():
    labels = np.repeat([0, 1], [900, 100])
    inv = compute_weights(labels, scheme="inverse_frequency")
    assert inv[labels == 0].sum() == pytest.approx(inv[labels == 1].sum())
    eff = compute_weights(labels, scheme="effective_number", beta=0.999)
    ratio = eff[labels == 1][0] / eff[labels == 0][0]
    assert 1.0 < ratio < 9.0
    with pytest.raises(InvalidArray, match="beta"):
        compute_weights(labels, scheme="effective_number", beta=1.0)


def test_priority_is_read_on_eligible_rows_only():
    # Rows out of play (unusable files, rows dropped for a finding) have no rank: NaN / -inf
    # there is fine, while a non-finite priority on a row in play is an error quoting it.
    labels = np.zeros(6, dtype=np.int64)
    eligible = np.array([True, False, True, False, True, True])
    priority = np.array([0.4, np.nan, 0.1, -np.inf, 0.9, 0.2])
    sel = plan_rebalance(labels, eligible=eligible, target_size=2, priority=priority)
    assert np.flatnonzero(sel.selected).tolist() == [0, 4]
    priority[2] = -np.inf
    with pytest.raises(InvalidArray, match=r"priority\[2\] is -inf"):
        plan_rebalance(labels, eligible=eligible, target_size=2, priority=priority)
