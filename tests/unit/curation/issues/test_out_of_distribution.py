"""The out_of_distribution issue type: registered, fed by its context, apart from `outlier`."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from winnow.curation import issues
from winnow.curation.curate import DetectConfig
from winnow.curation.errors import InvalidArray
from winnow.curation.issues import IssueContext, check_findings
from winnow.curation.knn_graph import build_knn_graph


def _world(seed: int = 0):
    """500 points in 5 concepts, one far singleton (row 500) and a tight group of 15 (rows 501-515)."""
    rng = np.random.default_rng(seed)
    d = 32
    centres = rng.standard_normal((5, d))
    bulk = np.repeat(centres, 100, axis=0) + 0.3 * rng.standard_normal((500, d))
    lone = rng.standard_normal((1, d)) * 3
    group = rng.standard_normal(d) + 0.05 * rng.standard_normal((15, d))
    x = np.vstack([bulk, lone, group])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    labels = np.r_[np.repeat(np.arange(5), 100), 0, np.arange(15) % 5]
    return x, labels


def _context(x, labels, *, detect=None, pred_probs=None):
    report = None if pred_probs is None else SimpleNamespace(pred_probs=pred_probs)
    return IssueContext(embeddings=x, graph=build_knn_graph(x, k=10), labels=labels, n_classes=5,
                        keys=np.arange(len(labels)), detect=detect, label_report=report)


def _find(ctx):
    flags = {t.name: check_findings(t, t.find(ctx), len(ctx)) for t in issues.flag_types()
             if t.name in ("outlier", "out_of_distribution")}
    return flags["outlier"], flags["out_of_distribution"]


def test_registered_after_outlier_with_its_columns_and_policy_key():
    assert issues.list_issue_types().index("out_of_distribution") == issues.list_issue_types().index("outlier") + 1
    t = issues.ISSUE_TYPES["out_of_distribution"]
    assert t.reasons.keys() == {"out_of_distribution"} and t.default_action == "drop"
    assert list(t.columns) == ["ood_score", "ood_group_distance", "ood_evenness"]
    assert t.policy_key == "on_out_of_distribution" and issues.issue_of("out_of_distribution") is t


def test_the_singleton_is_an_outlier_and_the_group_is_out_of_distribution():
    x, labels = _world()
    iso, ood = _find(_context(x, labels))
    assert iso.flags["outlier"][500] and not iso.flags["outlier"][501:].any()
    assert ood.flags["out_of_distribution"][501:].all()
    # One reason per sample: nothing is both.
    assert not (iso.flags["outlier"] & ood.flags["out_of_distribution"]).any()
    # About outlier_expected_false (1) false flags in all; the Gaussian bulk's tail gives a few.
    assert (iso.flags["outlier"] | ood.flags["out_of_distribution"])[:500].sum() <= 3
    # One score for both kinds: above the cut exactly where either flags.
    score, cut = ood.columns["ood_score"], ood.facts["ood_threshold"]
    assert np.array_equal(score > cut, iso.flags["outlier"] | ood.flags["out_of_distribution"])
    assert ood.facts["ood_max_group"] == 20 and ood.facts["out_of_distribution"] == 15
    assert ood.facts["ood_skipped"] is None


def test_the_probe_evidence_is_used_when_the_run_has_it():
    x, labels = _world()
    # A probe sure of the group's given labels: it says a class owns each member after all.
    probs = np.eye(5)[labels] * 0.9 + 0.02
    with_probe = _find(_context(x, labels, pred_probs=probs))[1].columns["ood_evenness"]
    without = _find(_context(x, labels))[1].columns["ood_evenness"]
    # The probe can only lower evenness (both must say no class owns the sample).
    assert np.all(with_probe <= without + 1e-12)
    assert without[501:].min() > 0.8 and with_probe[501:].max() < 0.4


def test_off_with_ood_max_group_zero_and_on_tiny_inputs():
    x, labels = _world()
    off = dataclasses.replace(DetectConfig(), ood_max_group=0)
    _, ood = _find(_context(x, labels, detect=off))
    assert not ood.flags["out_of_distribution"].any() and np.isnan(ood.columns["ood_score"]).all()
    assert ood.facts["ood_threshold"] is None and ood.facts["ood_skipped"] == "off (ood_max_group = 0)"
    small = x[:12]
    _, ood = _find(_context(small, labels[:12]))
    assert not ood.flags["out_of_distribution"].any()
    # Too few samples for a group test: skipped, and the summary says why.
    assert ood.facts["ood_skipped"] == "12 samples < 100 (a group of 5 would be over 5% of the data)"
    assert ood.facts["ood_max_group"] == 0
    # A few hundred samples: the group scale is 5% of N.
    _, ood = _find(_context(x[:300], labels[:300]))
    assert ood.facts["ood_max_group"] == 15 and ood.facts["ood_skipped"] is None
    with pytest.raises(InvalidArray, match="ood_max_group must be a non-negative integer, got -1"):
        DetectConfig(ood_max_group=-1)
