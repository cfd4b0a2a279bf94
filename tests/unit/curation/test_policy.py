"""The decision policy: config parsing, every finding -> one decision, invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from winnow.curation.duplicates import find_duplicates
from winnow.curation.errors import InvalidArray, LengthMismatch
from winnow.curation.knn_graph import build_knn_graph
from winnow.curation.outliers import find_outliers
from winnow.curation.policy import DecisionPolicy, decide, policy_from_dict
from winnow.curation.prune import plan_prune
from winnow.curation.rebalance import hierarchical_kmeans

REASONS = {"unreadable", "missing", "label_issue", "near_duplicate", "exact_duplicate",
           "duplicate_label_conflict", "leak", "outlier", "pruned", "over_cap"}


def _base(n, labels=None):
    labels = np.zeros(n, dtype=np.int64) if labels is None else labels
    return dict(unusable_reason=[None] * n, is_label_issue=np.zeros(n, dtype=bool),
                suggested_label=labels.copy(), suggestion_confidence=np.zeros(n))


# --- policy config --------------------------------------------------------------------------------


def test_policy_from_dict_types():
    p = policy_from_dict({"keep": 0.7, "class_cap": 5000, "relabel_min_confidence": 1, "cluster_balanced": True,
                          "weighting": "effective_number"})
    assert p.keep == 0.7 and p.class_cap == 5000
    assert p.relabel_min_confidence == 1.0 and isinstance(p.relabel_min_confidence, float)
    assert policy_from_dict({"keep": 50000}).keep == 50000
    assert policy_from_dict({"class_cap": "none"}, base=p).class_cap is None
    assert policy_from_dict({"on_label_issue": "drop"}).on_label_issue == "drop"  # the old fields still work
    for bad, match in [({"keep": "most"}, "'most'"), ({"keep": 1.5}, "1.5"), ({"class_cap": 2.5}, "2.5"),
                       ({"cluster_balanced": 1}, "cluster_balanced"),
                       # detection knobs moved to DetectConfig; the error says where
                       ({"cluster_levels": [100, 10]}, "detect.cluster_levels"),
                       ({"weighting": "log"}, "'log'"), ({"nope": 1}, "nope"), ({"on_outlier": "delete"}, "delete"),
                       ({"relabel_min_confidence": "high"}, "high")]:
        with pytest.raises(InvalidArray, match=match):
            policy_from_dict(bad)


# --- decide: the old call and each finding -------------------------------------------------------


def test_old_call_still_works():
    labels = np.array([0, 1, 1, 0])
    d = decide(labels, unusable_reason=[None, "unreadable", None, None],
               is_label_issue=np.array([False, False, True, True]), suggested_label=np.array([0, 1, 0, 1]),
               suggestion_confidence=np.array([0.0, 0.0, 0.95, 0.5]))
    assert d.decision.tolist() == ["keep", "drop", "relabel", "drop"]
    assert d.final_label.tolist() == [0, -1, 0, -1]
    assert d.reasons == [[], ["unreadable"], ["label_issue"], ["label_issue"]]
    assert d.weight.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert d.duplicate_of.tolist() == [-1] * 4 and d.cluster.tolist() == [-1] * 4


def _scene(seed=0):
    """60 points in 3 blobs, 2 exact copies, a near copy with another label, 2 far points."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, 16)) * 1.5
    which = np.repeat([0, 1, 2], 20)
    x = centres[which] + rng.standard_normal((60, 16))
    x = np.vstack([x, x[[0, 1]], x[[2]] + 1e-3, rng.standard_normal((2, 16)) * 30])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    labels = np.r_[which, which[[0, 1]], 1 - which[[2]] % 2, [0, 1]].astype(np.int64)
    hashes = [f"h{i}" for i in range(60)] + ["h0", "h1", "near", "far0", "far1"]
    return x, labels, hashes


def test_every_finding_is_listed_and_mapped():
    x, labels, hashes = _scene()
    n = len(x)
    graph = build_knn_graph(x, k=5)
    dup = find_duplicates(graph, content_hashes=hashes, labels=labels)
    leaks = np.zeros(n, dtype=bool)
    leaks[10] = True
    outliers = np.zeros(n, dtype=bool)
    outliers[[63, 64]] = True
    d = decide(labels, **_base(n, labels), duplicates=dup, outliers=outliers, leaks=leaks)
    assert len(d.decision) == n and len(d.reasons) == n
    for copy, orig in [(60, 0), (61, 1)]:
        pair = {copy, orig}
        kept = [i for i in pair if d.decision[i] == "keep"]
        assert len(kept) == 1
        dropped = (pair - set(kept)).pop()
        assert d.reasons[dropped] == ["exact_duplicate"] and d.duplicate_of[dropped] == kept[0]
    # The conflicting near copy: both rows carry the conflict, one is kept (conservative default).
    assert "duplicate_label_conflict" in d.reasons[2] and "duplicate_label_conflict" in d.reasons[62]
    assert sorted([d.decision[2], d.decision[62]]) == ["drop", "keep"]
    assert d.reasons[10] == ["leak"] and d.decision[10] == "drop"
    assert d.decision[63] == d.decision[64] == "drop" and d.reasons[63] == ["outlier"]
    # Flag-only actions keep the row but still list the finding.
    flag = DecisionPolicy(on_outlier="keep", on_leak="keep", on_duplicate="keep")
    d2 = decide(labels, **_base(n, labels), duplicates=dup, outliers=outliers, leaks=leaks, policy=flag)
    assert d2.decision[63] == "keep" and d2.reasons[63] == ["outlier"] and d2.weight[63] == 1.0
    assert d2.decision[10] == "keep" and d2.reasons[10] == ["leak"]
    assert (d2.decision == "keep").all() and (d2.duplicate_of >= 0).sum() == 3
    drop_all = decide(labels, **_base(n, labels), duplicates=dup,
                      policy=DecisionPolicy(on_duplicate_label_conflict="drop_all"))
    assert drop_all.decision[2] == drop_all.decision[62] == "drop"


def test_representative_is_repicked_when_the_first_choice_is_dropped():
    x, labels, hashes = _scene()
    n = len(x)
    dup = find_duplicates(build_knn_graph(x, k=5), content_hashes=hashes)
    rep = int(dup.representative[0])
    other = 60 if rep == 0 else 0
    leaks = np.zeros(n, dtype=bool)
    leaks[rep] = True
    d = decide(labels, **_base(n, labels), duplicates=dup, leaks=leaks)
    # The leaked row is still reported as a copy, now of the re-picked representative.
    assert d.decision[rep] == "drop" and d.reasons[rep] == ["leak", "exact_duplicate"]
    assert d.duplicate_of[rep] == other
    assert d.decision[other] == "keep" and d.duplicate_of[other] == -1


def test_target_size_caps_clusters_and_weights():
    x, labels, hashes = _scene()
    n = len(x)
    graph = build_knn_graph(x, k=5)
    dup = find_duplicates(graph, content_hashes=hashes, labels=labels)
    out = find_outliers(graph)
    h = hierarchical_kmeans(x, levels=(8, 3))
    plan = plan_prune(x, h.centroids[0], h.finest, eligible=~dup.is_duplicate)
    policy = DecisionPolicy(keep=30, cluster_balanced=True, weighting="inverse_frequency", class_cap=14)
    d = decide(labels, **_base(n, labels), duplicates=dup, outliers=out, clusters=h,
               prune_priority=plan.priority, policy=policy)
    kept = d.decision != "drop"
    assert kept.sum() == 30
    assert np.bincount(d.final_label[kept]).max() <= 14
    assert np.array_equal(d.cluster, h.finest)
    assert np.all(d.weight[~kept] == 0) and np.all(d.weight[kept] > 0) and np.all(np.isfinite(d.weight))
    assert any("pruned" in r for r in d.reasons) and any("over_cap" in r for r in d.reasons)
    frac = decide(labels, **_base(n, labels), policy=DecisionPolicy(keep=0.5))
    assert (frac.decision != "drop").sum() == int(np.floor(0.5 * n + 0.5))  # rounded half up
    with pytest.raises(InvalidArray, match="no clusters"):
        decide(labels, **_base(n, labels), policy=DecisionPolicy(keep=10, cluster_balanced=True))


def test_length_mismatch_is_named():
    with pytest.raises(LengthMismatch, match="outliers has 3"):
        decide(np.zeros(4, dtype=np.int64), **_base(4), outliers=np.zeros(3, dtype=bool))


# --- invariants ------------------------------------------------------------------------------------


@st.composite
def worlds(draw):
    n0 = draw(st.integers(4, 40))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n0, 6))
    src = rng.integers(0, n0, draw(st.integers(0, n0)))
    x = np.vstack([x, x[src] + 0.001 * rng.standard_normal((len(src), 6))])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    n = len(x)
    labels = rng.integers(0, 3, n)
    unusable = [("unreadable" if rng.random() < 0.1 else None) for _ in range(n)]
    issue = rng.random(n) < 0.15
    policy = DecisionPolicy(
        keep=draw(st.one_of(st.none(), st.integers(0, n + 5), st.floats(0.05, 1.0))),
        class_cap=draw(st.one_of(st.none(), st.integers(0, n))),
        class_distribution=draw(st.sampled_from(["original", "uniform", "sqrt"])),
        cluster_balanced=draw(st.booleans()),
        weighting=draw(st.sampled_from(["none", "inverse_frequency", "effective_number"])),
        on_label_issue=draw(st.sampled_from(["auto", "drop", "relabel", "keep"])),
        on_outlier=draw(st.sampled_from(["drop", "keep"])),
        on_duplicate_label_conflict=draw(st.sampled_from(["keep_one", "drop_all"])),
    )
    return x, labels, unusable, issue, rng.integers(0, 3, n), rng.random(n), rng.random(n) < 0.1, policy, rng.permutation(n)


def _run(x, labels, unusable, issue, suggested, conf, leaks, policy, keys):
    usable = np.array([u is None for u in unusable])
    graph = build_knn_graph(x, k=min(5, len(x) - 1))
    # Unusable rows have no embedding: no graph edges, no findings.
    graph.indices[~usable] = -1
    graph.indices[np.isin(graph.indices, np.flatnonzero(~usable))] = -1
    dup = find_duplicates(graph, labels=labels, keys=keys)
    levels = [np.where(usable, c, -1) for c in hierarchical_kmeans(x, levels=(4, 2)).assignments]
    prio = np.round(np.linalg.norm(x - x.mean(0), axis=1), 6)
    return decide(labels, unusable_reason=unusable, is_label_issue=issue, suggested_label=suggested,
                  suggestion_confidence=conf, policy=policy, duplicates=dup, leaks=leaks & usable,
                  outliers=find_outliers(graph).is_outlier & usable, clusters=levels, prune_priority=prio,
                  keys=keys, n_classes=3)


@pytest.mark.slow
@settings(deadline=None)
@given(worlds())
def test_decide_invariants_and_row_order(world):
    x, labels, unusable, issue, suggested, conf, leaks, policy, perm = world
    n = len(x)
    keys = np.array([f"k{i:04d}" for i in range(n)])
    d = _run(x, labels, unusable, issue, suggested, conf, leaks, policy, keys)
    # Every input row exactly once, with a decision, a known reason list and a weight.
    assert len(d.decision) == len(d.reasons) == len(d.weight) == n
    assert set(d.decision.tolist()) <= {"keep", "drop", "relabel"}
    assert all(set(r) <= REASONS for r in d.reasons)
    kept = d.decision != "drop"
    assert np.all(d.weight[~kept] == 0) and np.all(d.weight[kept] > 0) and np.all(np.isfinite(d.weight))
    assert np.all(d.final_label[~kept] == -1) and np.all(d.final_label[kept] >= 0)
    assert all(r for r, k in zip(d.reasons, kept, strict=True) if not k)  # every drop says why
    # Duplicates point at a row of their group; a group keeps at most one member.
    has_rep = d.duplicate_of >= 0
    assert np.all(d.duplicate_of[has_rep] != np.flatnonzero(has_rep))
    # Target size and caps met exactly (when enough rows survive the findings).
    from winnow.curation.rebalance import resolve_target

    target = resolve_target(policy.keep, n)
    if policy.class_cap is not None:
        assert np.bincount(d.final_label[kept], minlength=3).max(initial=0) <= policy.class_cap
    if target is not None:
        assert kept.sum() <= target
        if any("pruned" in r for r in d.reasons):
            assert kept.sum() == target
    # Row order does not matter (keys break ties).
    p = perm
    e = _run(x[p], labels[p], [unusable[i] for i in p], issue[p], suggested[p], conf[p], leaks[p], policy, keys[p])
    assert np.array_equal(d.decision[p], e.decision)
    assert [d.reasons[i] for i in p] == e.reasons
    assert np.allclose(d.weight[p], e.weight)
    dup_d = np.where(d.duplicate_of >= 0, keys[np.maximum(d.duplicate_of, 0)], "")
    dup_e = np.where(e.duplicate_of >= 0, keys[p][np.maximum(e.duplicate_of, 0)], "")
    assert np.array_equal(dup_d[p], dup_e)


def test_findings_on_the_embedded_subset_scatter_to_all_rows():
    x, labels, hashes = _scene()
    n = len(x) + 2  # two unreadable files at the end: no embedding, no findings
    rows = np.arange(len(x))
    graph = build_knn_graph(x, k=5)
    dup = find_duplicates(graph, content_hashes=hashes).scatter(rows, n)
    out = find_outliers(graph).scatter(rows, n)
    all_labels = np.r_[labels, [0, 1]]
    base = _base(n, all_labels)
    base["unusable_reason"] = [None] * len(x) + ["unreadable", "missing"]
    d = decide(all_labels, **base, duplicates=dup, outliers=out)
    assert d.reasons[-2:] == [["unreadable"], ["missing"]]
    assert dup.group[-2:].tolist() == [-1, -1] and not out.is_outlier[-2:].any()
    assert set(d.duplicate_of[d.duplicate_of >= 0]) <= set(rows)
    with pytest.raises(InvalidArray, match="rows must be"):
        find_outliers(graph).scatter(rows[:-1], n)
