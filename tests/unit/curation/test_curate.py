"""curate(): a whole cleaning pass from arrays, with unusable rows among the inputs.

Unusable rows (files that could not be read) have no embedding: they are dropped with
their own reason and must never enter the pruning / capping / balancing ranking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import digits_world
from winnow.curation import DecisionPolicy, build_knn_graph, curate
from winnow.curation.rebalance import resolve_target

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def world():
    labels, emb, rows, reasons, keys = digits_world()
    return labels, emb, build_knn_graph(emb, k=10), rows, reasons, keys


PRUNING_POLICIES = {
    "keep_fraction": DecisionPolicy(keep=0.7),
    "keep_count": DecisionPolicy(keep=250),
    "keep_easy_end": DecisionPolicy(keep=0.6, prune_keep="easy"),
    "class_cap": DecisionPolicy(class_cap=30),
    "cluster_balanced": DecisionPolicy(cluster_balanced=True, keep=200),
    "uniform": DecisionPolicy(keep=0.5, class_distribution="uniform"),
    "sqrt_cap_balanced_weighted": DecisionPolicy(keep=0.6, class_cap=30, class_distribution="sqrt",
                                                 cluster_balanced=True, weighting="effective_number"),
    "cap_inverse_frequency": DecisionPolicy(class_cap=25, weighting="inverse_frequency"),
}


@pytest.mark.parametrize("name", sorted(PRUNING_POLICIES))
def test_pruning_capping_and_balancing_with_unusable_rows(world, name):
    labels, emb, graph, rows, reasons, keys = world
    policy = PRUNING_POLICIES[name]
    n = len(labels)
    result = curate(labels, emb, graph, rows=rows, n_classes=10, unusable_reason=reasons, keys=keys, policy=policy)
    d = result.decisions
    assert len(d.decision) == len(d.reasons) == len(d.weight) == n
    unusable = np.array([r is not None for r in reasons])
    # The unusable rows are dropped for being unreadable, and for nothing else.
    assert all(d.reasons[i] == ["unreadable"] and d.decision[i] == "drop" for i in np.flatnonzero(unusable))
    kept = d.decision != "drop"
    assert np.all(d.weight[kept] > 0) and np.all(np.isfinite(d.weight)) and np.all(d.weight[~kept] == 0)
    target = resolve_target(policy.keep, n)
    if target is not None:
        assert any("pruned" in r for r in d.reasons)
        assert kept.sum() == target
    if policy.class_cap is not None:
        assert np.bincount(d.final_label[kept], minlength=10).max() <= policy.class_cap
        assert any("over_cap" in r for r in d.reasons)
