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
    """What the person found on the audit sample's checked rows (a drop says nothing about the label)."""

    checked: int  # rows whose label the person confirmed or corrected
    wrong: int  # of those, rows whose given label was wrong (relabelled to another class)

    def __post_init__(self) -> None:
        if not (0 <= self.wrong <= self.checked):
            raise InvalidArray(f"an audit needs 0 <= wrong <= checked, got wrong={self.wrong}, checked={self.checked}")

    @property
    def rate(self) -> float:
        return self.wrong / self.checked if self.checked else float("nan")

    def interval(self, z: float = Z) -> tuple[float, float]:
        """Wilson score interval of the wrong-label rate ((0, 1) when nothing was checked)."""
        n = self.checked
        if n == 0:
            return 0.0, 1.0
        p = self.wrong / n
        d = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / d
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
        return max(0.0, centre - half), min(1.0, centre + half)

    def as_dict(self) -> dict:
        lo, hi = self.interval()
        return {"checked": self.checked, "wrong": self.wrong, "rate": None if self.checked == 0 else self.rate,
                "interval": [lo, hi]}


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
    if audit is None or audit.checked < MIN_CHECKED:
        return model_rate, False
    lo, hi = audit.interval()
    if lo <= model_rate <= hi:
        return model_rate, False
    return audit.rate, True
