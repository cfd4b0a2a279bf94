"""Reviews applied by a run: the reviewer's decision wins while the content is the one they saw.

Called by the curate stage (pipeline/stages.py) on its table, so every run applies them (one
shot, scheduled, resumed) and the stage key includes the reviews: a new review re-decides.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from winnow.catalogs import schemas as S
from winnow.curation.audit import AuditRows
from winnow.pipeline.review.store import REVIEWED_AT, REVIEWER, ReviewError

LOG = logging.getLogger(__name__)

REVIEW_STATE = "review_state"
REVIEWED, STALE, PENDING = "reviewed", "stale", "pending"
REVIEW_STATES = (REVIEWED, STALE, PENDING)
REASON_REVIEWED, REASON_STALE = "reviewed", "review_stale"


def apply_reviews(curated: pl.DataFrame, reviews: pl.DataFrame, *, content_hashes: list[str | None],
                  label_index: np.ndarray, classes: list[str]) -> pl.DataFrame:
    """The curation table (CURATION_SCHEMA, one row per sample) with the reviews applied and the
    review columns (review_state, reviewer, reviewed_at) added.

    content_hashes, label_index: (N,) in the table's row order (the sample's content now and its
    given class). A review whose content hash matches sets decision, final label and weight
    (keep: the given label; relabel: its label, one of `classes`; drop) and adds reason
    `reviewed`; one whose hash differs leaves the run's decision and adds `review_stale`.
    Flagged rows with no review that applies are `pending`.
    """
    n = curated.height
    if len(content_hashes) != n or len(label_index) != n:
        raise ValueError(f"apply_reviews: {n} rows but {len(content_hashes)} hashes and {len(label_index)} labels")
    ids = curated[S.SAMPLE_ID].to_list()
    decision = curated[S.DECISION].to_list()
    reasons = [list(r) for r in curated[S.REASONS].to_list()]
    final = curated[S.FINAL_LABEL_INDEX].to_numpy().copy()
    weight = curated[S.WEIGHT].to_numpy().copy()
    state: list[str | None] = [PENDING if r else None for r in reasons]
    who: list[str | None] = [None] * n
    when: list[str | None] = [None] * n
    class_index = {c: i for i, c in enumerate(classes)}
    at = {sid: i for i, sid in enumerate(ids)}
    applied = stale = 0
    for row in reviews.iter_rows(named=True):
        i = at.get(row[S.SAMPLE_ID])
        if i is None:
            continue  # a sample no longer in the dataset
        who[i] = row[REVIEWER]
        when[i] = row[REVIEWED_AT].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if content_hashes[i] is None or content_hashes[i] != row[S.CONTENT_HASH]:
            state[i] = STALE
            reasons[i].append(REASON_STALE)
            stale += 1
            continue
        given = int(label_index[i])
        kind = row[S.DECISION]
        if kind == "relabel":
            target = class_index.get(row[S.LABEL])
            if target is None:
                raise ReviewError(f"review of sample {row[S.SAMPLE_ID]!r} relabels it as {row[S.LABEL]!r}, "
                                  f"which is not a class of this dataset ({len(classes)} classes)")
            kind = "keep" if target == given else "relabel"
        else:
            target = given
        if kind == "drop":
            final[i], weight[i] = -1, 0.0
        else:
            final[i] = target
            weight[i] = weight[i] if weight[i] > 0 else 1.0
        decision[i] = kind
        reasons[i].append(REASON_REVIEWED)
        state[i] = REVIEWED
        applied += 1
    LOG.info("reviews: %d applied, %d stale (content changed)", applied, stale)
    return curated.with_columns(
        pl.Series(S.DECISION, decision, dtype=pl.String),
        pl.Series(S.REASONS, reasons, dtype=pl.List(pl.String)),
        pl.Series(S.FINAL_LABEL_INDEX, final, dtype=pl.Int64),
        pl.Series(S.WEIGHT, weight, dtype=pl.Float64),
        pl.Series(REVIEW_STATE, state, dtype=pl.String),
        pl.Series(REVIEWER, who, dtype=pl.String),
        pl.Series(REVIEWED_AT, when, dtype=pl.String),
    )


def audit_rows(reviews: pl.DataFrame, *, sample_ids: list[str], members: np.ndarray,
               content_hashes: list[str | None], label_index: np.ndarray, classes: list[str]) -> AuditRows:
    """What the reviewers found on the audit sample (`members`, (N,) bool in the same row order).

    A current review (its content hash is the sample's now) of a member counts as checked: keep,
    or relabel to the given class, is a right label; relabel to another class a wrong one. A drop
    says nothing about the label (an unusable image can carry the right one) and is not counted.
    """
    n = len(sample_ids)
    at = {sid: i for i, sid in enumerate(sample_ids)}
    class_index = {c: i for i, c in enumerate(classes)}
    checked = np.zeros(n, dtype=bool)
    wrong = np.zeros(n, dtype=bool)
    for row in reviews.iter_rows(named=True):
        i = at.get(row[S.SAMPLE_ID])
        if i is None or not members[i] or content_hashes[i] is None or content_hashes[i] != row[S.CONTENT_HASH]:
            continue
        if row[S.DECISION] == "keep":
            checked[i] = True
        elif row[S.DECISION] == "relabel":
            checked[i] = True
            wrong[i] = class_index.get(row[S.LABEL], -1) != int(label_index[i])
    return AuditRows(member=np.asarray(members, dtype=bool), checked=checked, wrong=wrong)


def review_counts(manifest: pl.DataFrame) -> dict[str, int]:
    """Reviewed, stale and pending rows (pending: flagged and not reviewed, stale included)."""
    if REVIEW_STATE not in manifest.columns:
        return {REVIEWED: 0, STALE: 0, PENDING: 0}
    state = manifest[REVIEW_STATE]
    return {REVIEWED: int((state == REVIEWED).sum()), STALE: int((state == STALE).sum()),
            PENDING: int(((state == PENDING) | (state == STALE)).sum())}


def newly_reviewed(old: pl.DataFrame | None, new: pl.DataFrame) -> int:
    """Rows reviewed in `new` that were not (or were stale) in the previous run's manifest."""
    if REVIEW_STATE not in new.columns:
        return 0
    now = new.filter(pl.col(REVIEW_STATE) == REVIEWED).select(S.SAMPLE_ID)
    if old is None or REVIEW_STATE not in old.columns:
        return now.height
    before = old.filter(pl.col(REVIEW_STATE) == REVIEWED).select(S.SAMPLE_ID)
    return now.join(before, on=S.SAMPLE_ID, how="anti").height
