"""The audit: a fixed random sample of the data that a person checks, and what it says about the noise.

Why: from pred_probs and embeddings alone, a weak model's confusion and instance-dependent label
noise (flips between classes that look alike) look the same, so the ensemble's count of wrong
labels can be far off (0.2-0.7x the truth on the benchmark's instance-dependent rows,
benchmarks/README.md) with nothing in the data to tell. A person checking a random sample
gives an unbiased count: `wrong` of `checked` rows, with a binomial interval.

How it is used (`reconcile`): while the model's estimate lies inside the audit's 95% interval,
the model's cut stands (it is the sharper estimate: an audit of 200 rows at 5% noise is
±3 points); once the audit rules it out, the audit's rate is the estimate and each class's
count is scaled to it (`ensemble.cut_by_noise_estimate`'s target_rate). Chosen on the
development split (benchmarks/label_noise_protocol.py, 57 conditions, 200 audited rows drawn
5 times; offline replay): mean F1 0.8786 against 0.8471 without an audit (instance-dependent
rows 0.742 vs 0.569, the 46 others 0.9114 vs 0.9135, the 5% rows equal), estimate within 20%
on 55 of 57 (46 without). Moving only to the interval's nearest end gave 0.8752; always
taking a prior-weighted mean of the two (100 pseudo-rows at the model's rate) 0.8722, which
costs the low-noise rows (5% rows 0.890) where the audit's own sampling error is the larger.

A partly checked sample is post-stratified by the detectors' own flags (`AuditRows.count`): the
rows a person opens first are often the flagged ones, and counted plainly they would make the data
look noisier than it is (40 flagged rows with 36 wrong and 30 unflagged with 1: 53% plainly, 20%
stratified, tests/unit/curation/test_audit.py).

Membership is a hash of the sample id, so the sample does not depend on the order of the rows,
is the same in every run of a growing dataset (a new row joins it with the same chance as any
other), and the review app and the run agree on it without sharing state.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from winnow.curation.errors import InvalidArray

# Rows in the audit sample: at a true rate of 10%, 200 checked rows estimate it to about
# ±4 points (95%).
AUDIT_SIZE = 200
# Fewer checked rows than this and the audit is reported but not used: a handful of answers
# gives an interval too wide to overrule anything, and the first rows a person opens need not
# be a random subset of the sample.
MIN_CHECKED = 50
# Two-sided 95% normal quantile for the Wilson interval (convention, not tuned).
Z = 1.959964


@dataclass(frozen=True)
class AuditCount:
    """What the person found on the audit sample's checked rows (a drop says nothing about the label).

    strata: when the checked rows are not the whole sample, the rate is post-stratified
    (`AuditRows.count`): ((share of the sample, checked, wrong), ...) per stratum, and the rate
    is the share-weighted mean of the strata's rates, so a person who checked the flagged rows
    first does not make the sample look noisier than it is.
    """

    checked: int  # rows whose label the person confirmed or corrected
    wrong: int  # of those, rows whose given label was wrong (relabelled to another class)
    strata: tuple[tuple[float, int, int], ...] = ()

    def __post_init__(self) -> None:
        if not (0 <= self.wrong <= self.checked):
            raise InvalidArray(f"an audit needs 0 <= wrong <= checked, got wrong={self.wrong}, checked={self.checked}")

    @property
    def rate(self) -> float:
        """The estimated wrong-label rate (NaN when nothing was checked, or a stratum was not)."""
        if self.strata:
            if any(share > 0 and n == 0 for share, n, _ in self.strata):
                return float("nan")
            return float(sum(share * w / n for share, n, w in self.strata if n))
        return self.wrong / self.checked if self.checked else float("nan")

    def interval(self, z: float = Z) -> tuple[float, float]:
        """95% interval of the rate: Wilson's score interval; with strata, the normal interval of the
        stratified mean with each stratum's Agresti-Coull variance. (0, 1) when the rate is unknown."""
        if not math.isfinite(self.rate):
            return 0.0, 1.0
        if self.strata:
            var = 0.0
            for share, n, w in self.strata:
                if n:
                    n_t = n + z * z
                    p_t = (w + z * z / 2) / n_t
                    var += share * share * p_t * (1 - p_t) / n_t
            half = z * math.sqrt(var)
            return max(0.0, self.rate - half), min(1.0, self.rate + half)
        n = self.checked
        p = self.wrong / n
        d = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / d
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
        return max(0.0, centre - half), min(1.0, centre + half)

    @property
    def usable(self) -> bool:
        """Enough checked rows, and a rate for every stratum: the audit may overrule the detectors."""
        return self.checked >= MIN_CHECKED and math.isfinite(self.rate)

    def as_dict(self) -> dict:
        lo, hi = self.interval()
        rate = self.rate
        return {"checked": self.checked, "wrong": self.wrong, "rate": rate if math.isfinite(rate) else None,
                "interval": [lo, hi], **({"strata": [list(s) for s in self.strata]} if self.strata else {})}


@dataclass(frozen=True)
class AuditRows:
    """The audit row by row, aligned with the labels: (N,) bool each; checked within member, wrong within checked."""

    member: np.ndarray
    checked: np.ndarray
    wrong: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.member)
        if len(self.checked) != n or len(self.wrong) != n:
            raise InvalidArray(f"audit rows: member {n}, checked {len(self.checked)}, wrong {len(self.wrong)} rows")
        if (self.checked & ~self.member).any() or (self.wrong & ~self.checked).any():
            raise InvalidArray("audit rows: a checked row must be a member and a wrong row checked")

    def subset(self, rows: np.ndarray) -> AuditRows:
        return AuditRows(self.member[rows], self.checked[rows], self.wrong[rows])

    def count(self, flagged: np.ndarray | None = None) -> AuditCount:
        """The audit's count. When some members are unchecked and `flagged` (N,) bool (the detectors'
        own flags) is given, post-stratified by it: the rows a person opens first need not be a
        random part of the sample (the flagged ones are listed in the app's default view too)."""
        checked, wrong = int(self.checked.sum()), int(self.wrong.sum())
        members = int(self.member.sum())
        if flagged is None or checked == members or members == 0:
            return AuditCount(checked, wrong)
        strata = []
        for side in (True, False):
            inside = self.member & (flagged == side)
            if inside.any():
                strata.append((float(inside.sum()) / members, int((self.checked & inside).sum()),
                               int((self.wrong & inside).sum())))
        return AuditCount(checked, wrong, strata=tuple(strata))


def audit_rank(sample_ids: Sequence[str]) -> np.ndarray:
    """(N,) float64 in [0, 1): each id's place in the audit order (a hash: uniform, fixed per id)."""
    out = np.empty(len(sample_ids), dtype=np.float64)
    for i, sid in enumerate(sample_ids):
        digest = hashlib.blake2b(str(sid).encode("utf-8"), digest_size=8, person=b"winnow-audit").digest()
        out[i] = int.from_bytes(digest, "big") / 2.0**64
    return out


def audit_members(sample_ids: Sequence[str], eligible: np.ndarray | None = None, size: int = AUDIT_SIZE) -> np.ndarray:
    """(N,) bool: the `size` eligible rows of lowest audit rank (all eligible rows when fewer).

    eligible: (N,) bool, e.g. the usable rows (None: all). size 0: no audit.
    """
    if size < 0:
        raise InvalidArray(f"audit size must be >= 0, got {size}")
    n = len(sample_ids)
    eligible = np.ones(n, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    if len(eligible) != n:
        raise InvalidArray(f"eligible has {len(eligible)} rows for {n} sample ids")
    member = np.zeros(n, dtype=bool)
    candidates = np.flatnonzero(eligible)
    if size == 0 or len(candidates) == 0:
        return member
    rank = audit_rank([sample_ids[i] for i in candidates])
    member[candidates[np.argsort(rank, kind="stable")[:size]]] = True
    return member


def reconcile(model_rate: float, audit: AuditCount | None) -> tuple[float, bool]:
    """(the noise rate to cut at, whether the audit overruled the model); see the module docstring."""
    if audit is None or not audit.usable:
        return model_rate, False
    lo, hi = audit.interval()
    if lo <= model_rate <= hi:
        return model_rate, False
    return audit.rate, True
