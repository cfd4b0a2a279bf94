"""The audit (curation/audit.py): a random sample a person checks, its interval, and the count that follows it."""

import numpy as np
import pytest

from tests.helpers.mixtures import mixture
from winnow.curation import (
    AuditCount,
    AuditRows,
    audit_members,
    detect_label_issues,
    detection_metrics,
    reconcile,
)
from winnow.curation.audit import MIN_CHECKED, audit_rank
from winnow.curation.ensemble import combine_detectors, rescale_cut
from winnow.curation.errors import InvalidArray
from winnow.curation.noise import plant_instance_noise


def test_wilson_interval_matches_the_textbook_values():
    # Wilson (1927) score interval, 95%: 20 of 100 -> 0.1334-0.2888; 0 of 50 -> 0-0.0714.
    lo, hi = AuditCount(100, 20).interval()
    assert (round(lo, 4), round(hi, 4)) == (0.1334, 0.2888)
    lo, hi = AuditCount(50, 0).interval()
    assert lo == 0.0 and round(hi, 4) == 0.0713
    lo, hi = AuditCount(40, 40).interval()
    assert hi == 1.0 and 0.9 < lo < 1.0
    assert AuditCount(0, 0).interval() == (0.0, 1.0)
    assert AuditCount(200, 33).as_dict()["rate"] == pytest.approx(0.165)


def test_a_bad_count_names_its_values():
    with pytest.raises(InvalidArray, match="wrong=5, checked=3"):
        AuditCount(3, 5)
    with pytest.raises(InvalidArray, match="-1"):
        audit_members(["a"], size=-1)


def test_members_are_a_fixed_random_sample_whatever_the_row_order_and_growth():
    ids = [f"img_{i:05d}.png" for i in range(5000)]
    member = audit_members(ids, size=200)
    assert member.sum() == 200
    # The order of the rows does not matter: the same ids are chosen.
    order = np.random.default_rng(0).permutation(len(ids))
    again = audit_members([ids[i] for i in order], size=200)
    assert {ids[i] for i in order[again]} == {ids[i] for i in np.flatnonzero(member)}
    # A growing dataset keeps its audited rows: of the 200 chosen among 5,000, those that are
    # still among the 200 lowest ranks of 6,000 stay, and no other old row joins.
    grown = ids + [f"new_{i:05d}.png" for i in range(1000)]
    now = {grown[i] for i in np.flatnonzero(audit_members(grown, size=200))}
    old_now = {s for s in now if s.startswith("img_")}
    assert old_now <= {ids[i] for i in np.flatnonzero(member)}
    assert 120 < len(old_now) < 200  # about 5/6 of the sample is old rows
    # Uniform: the ranks spread evenly, so no part of the listing is favoured.
    rank = audit_rank(ids)
    assert abs(rank.mean() - 0.5) < 0.02 and np.histogram(rank, bins=10, range=(0, 1))[0].min() > 400
    # Only eligible rows (e.g. usable ones); fewer eligible than the size: all of them.
    eligible = np.zeros(len(ids), dtype=bool)
    eligible[:50] = True
    assert (audit_members(ids, eligible, size=200) == eligible).all()
    assert not audit_members(ids, size=0).any()


def test_the_model_stands_inside_the_interval_and_the_audit_rules_outside_it():
    audit = AuditCount(200, 30)  # 15%, 95% about 10.7-20.7%
    assert reconcile(0.16, audit) == (0.16, False)
    assert reconcile(0.05, audit) == (0.15, True)
    assert reconcile(0.30, audit) == (0.15, True)
    assert reconcile(0.05, None) == (0.05, False)
    # Too few rows checked: reported, not used.
    assert reconcile(0.05, AuditCount(MIN_CHECKED - 1, 30)) == (0.05, False)


@pytest.fixture(scope="module")
def instance_noise():
    x, y = mixture([300] * 5)
    return x, y, plant_instance_noise(y, x, 0.2, seed=0)


def test_an_audit_brings_the_instance_noise_count_to_the_planted_rate(instance_noise):
    # Without an audit the count stops at 0.74x the planted rate (test_noise_estimate's strict
    # xfail); a person checking random rows gives the count the data cannot. Here: 300 rows
    # checked, finding the planted share (95%: about 16-25%), which rules out the model's 14.7%.
    # (A real sample of 200 of these 1,500 rows found 32 wrong, 16%, 95% 11.6-21.7%: too few to
    # rule it out, and the model's cut stands, as it should while the audit cannot tell.)
    x, y, noisy = instance_noise
    truth = noisy != y
    audit = AuditCount(300, int(round(truth.mean() * 300)))
    alone = detect_label_issues(noisy, embeddings=x, seed=0)
    audited = detect_label_issues(noisy, embeddings=x, seed=0, audit=audit)
    assert not alone.audit_overruled and audited.audit_overruled, (alone.noise_rate, audit.interval())
    assert audited.noise_rate == pytest.approx(audit.rate)
    assert audited.model_noise_rate == pytest.approx(alone.noise_rate)
    assert abs(audited.noise_rate / truth.mean() - 1) < 0.15, (audited.noise_rate, truth.mean())
    f1 = [detection_metrics(truth, r.frame["label_quality"].to_numpy(), r.frame["is_label_issue"].to_numpy())["f1"]
          for r in (alone, audited)]
    assert f1[1] > f1[0] + 0.03 and f1[1] > 0.9, f1
    # The flagged share follows the audit (the argmax guard may keep a few short of it).
    flagged = audited.frame["is_label_issue"].to_numpy().mean()
    assert 0.85 * audit.rate <= flagged <= 1.01 * audit.rate


def test_an_audit_that_agrees_changes_nothing(instance_noise):
    x, y, noisy = instance_noise
    alone = detect_label_issues(noisy, embeddings=x, seed=0)
    checked = 200
    agreeing = AuditCount(checked, int(round(alone.noise_rate * checked)))
    report = detect_label_issues(noisy, embeddings=x, seed=0, audit=agreeing)
    assert not report.audit_overruled and report.noise_rate == alone.noise_rate
    assert (report.frame["is_label_issue"] == alone.frame["is_label_issue"]).all()


def test_clean_labels_and_a_clean_audit_flag_no_more():
    # Clean labels, a person finds nothing wrong in 200 rows: the interval (0-1.9%) holds the
    # model's small estimate or lies above it; either way the cut does not grow.
    x, y = mixture([300] * 5)
    alone = detect_label_issues(y, embeddings=x, seed=0)
    report = detect_label_issues(y, embeddings=x, seed=0, audit=AuditCount(200, 0))
    assert report.frame["is_label_issue"].sum() <= alone.frame["is_label_issue"].sum()


def test_rescaling_keeps_each_class_share_and_the_argmax_guard():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [600, 300, 100])
    probs = rng.dirichlet(np.ones(3), len(labels))
    wrong = 1 - probs[np.arange(len(labels)), labels]
    flagged = np.zeros(len(labels), dtype=bool)
    flagged[np.flatnonzero(labels == 0)[:30]] = True  # class 0: 30, class 1: 10, class 2: none
    flagged[np.flatnonzero(labels == 1)[:10]] = True
    agrees = probs[np.arange(len(labels)), labels] >= probs.max(axis=1)
    flagged &= ~agrees
    own = np.bincount(labels[flagged], minlength=3)
    out = rescale_cut(labels, wrong, flagged, np.eye(3), probs, 2 * flagged.mean())
    got = np.bincount(labels[out], minlength=3)
    assert got[2] == 0  # a class the cut left alone stays alone
    assert not (out & agrees).any()
    # Each class at most doubles (fewer where the guard keeps rows whose argmax is their label).
    assert (got <= 2 * own + 1).all() and got.sum() > own.sum()


def test_combine_detectors_reports_the_model_rate_beside_the_audit():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 2000)
    probs = np.full((2000, 4), 0.02)
    probs[np.arange(2000), labels] = 0.94
    flip = rng.random(2000) < 0.1
    probs[flip] = np.roll(probs[flip], 1, axis=1)
    knn = probs.copy()
    v = combine_detectors(labels, {"a": probs / probs.sum(1, keepdims=True), "b": knn / knn.sum(1, keepdims=True)},
                          audit=AuditCount(200, 60))  # the audit says 30%
    assert v.audit_overruled and v.noise_rate == pytest.approx(0.3)
    assert v.model_noise_rate == pytest.approx(flip.mean(), abs=0.01)


def _biased_audit():
    """200 audited rows, 20% wrong; the detectors flag 40 of them (36 wrong) and the person checked
    those 40 first, then 30 of the 160 unflagged (1 wrong)."""
    member = np.ones(200, dtype=bool)
    flagged = np.zeros(200, dtype=bool)
    flagged[:40] = True
    wrong = np.zeros(200, dtype=bool)
    wrong[:36] = True
    wrong[40:44] = True  # 4 wrong among the unflagged
    checked = flagged.copy()
    checked[43:73] = True  # 30 unflagged checked, one of them wrong (row 43)
    return AuditRows(member=member, checked=checked, wrong=wrong & checked), flagged


def test_a_partial_audit_is_post_stratified_by_the_detectors_flags():
    rows, flagged = _biased_audit()
    plain = rows.count()
    assert (plain.checked, plain.wrong) == (70, 37) and plain.rate == pytest.approx(37 / 70)  # 53%: overstated
    count = rows.count(flagged)
    # 0.2 * 36/40 + 0.8 * 1/30: the rate of the whole sample, not of what was opened first.
    assert count.rate == pytest.approx(0.2 * 0.9 + 0.8 / 30)
    lo, hi = count.interval()
    assert lo < 0.2 < hi and hi - lo < 0.2
    assert count.usable and count.as_dict()["strata"] == [[0.2, 40, 36], [0.8, 30, 1]]
    # Every member checked: the plain share and Wilson's interval, strata or not.
    every = AuditRows(member=rows.member, checked=rows.member.copy(), wrong=np.isin(np.arange(200), [*range(36), 40, 41, 42, 43]))
    assert every.count(flagged) == every.count() == AuditCount(200, 40)


def test_an_audit_of_the_flagged_rows_alone_is_not_used():
    rows, flagged = _biased_audit()
    only_flagged = AuditRows(member=rows.member, checked=flagged.copy(), wrong=rows.wrong & flagged)
    count = only_flagged.count(flagged)
    assert count.checked == 40 and np.isnan(count.rate) and not count.usable
    assert reconcile(0.1, count) == (0.1, False)
    with pytest.raises(InvalidArray, match="member"):
        AuditRows(member=np.zeros(3, bool), checked=np.ones(3, bool), wrong=np.zeros(3, bool))


def test_audit_rows_reach_the_cut_through_detect_label_issues(instance_noise):
    # Row-level answers aligned with the labels: the same outcome as the count when all are checked.
    x, y, noisy = instance_noise
    truth = noisy != y
    member = audit_members([f"s{i}" for i in range(len(y))], size=300)
    rows = AuditRows(member=member, checked=member.copy(), wrong=member & truth)
    by_rows = detect_label_issues(noisy, embeddings=x, seed=0, audit=rows)
    by_count = detect_label_issues(noisy, embeddings=x, seed=0, audit=rows.count())
    assert by_rows.audit == by_count.audit == AuditCount(300, int((member & truth).sum()))
    assert (by_rows.frame["is_label_issue"] == by_count.frame["is_label_issue"]).all()
    with pytest.raises(InvalidArray, match="3 rows"):
        detect_label_issues(noisy, embeddings=x, seed=0, audit=AuditRows(*(np.zeros(3, bool),) * 3))
