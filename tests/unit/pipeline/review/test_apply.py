"""Reviews applied to the curate stage's table: the reviewer's decision while the content is unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from winnow.pipeline.review.apply import apply_reviews, newly_reviewed, review_counts
from winnow.pipeline.review.store import ReviewError, empty_reviews

CLASSES = ["cat", "dog", "fox"]


def _curated():
    return pl.DataFrame({
        "sample_id": ["a", "b", "c", "d", "e"],
        "decision": ["drop", "relabel", "keep", "drop", "keep"],
        "reasons": [["label_issue"], ["label_issue"], [], ["near_duplicate"], ["outlier"]],
        "final_label_index": [-1, 2, 0, -1, 1],
        "weight": [0.0, 1.0, 1.0, 0.0, 1.0],
    }, schema={"sample_id": pl.String, "decision": pl.String, "reasons": pl.List(pl.String),
               "final_label_index": pl.Int64, "weight": pl.Float64})


def _reviews(rows):
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return pl.DataFrame([{**r, "reviewer": "ann", "reviewed_at": at, "note": None} for r in rows],
                        schema=empty_reviews().schema)


def test_reviews_win_while_the_content_is_unchanged_and_go_stale_when_it_changes():
    hashes = ["ha", "hb", "hc", "hd-new", None]
    reviews = _reviews([
        {"sample_id": "a", "content_hash": "ha", "decision": "keep", "label": "cat"},  # run dropped it
        {"sample_id": "b", "content_hash": "hb", "decision": "relabel", "label": "dog"},  # another label
        {"sample_id": "c", "content_hash": "hc", "decision": "drop", "label": None},  # was clean
        {"sample_id": "d", "content_hash": "hd-old", "decision": "keep", "label": "cat"},  # file changed
        {"sample_id": "zz", "content_hash": "hz", "decision": "drop", "label": None},  # gone from the data
    ])
    out = apply_reviews(_curated(), reviews, content_hashes=hashes, label_index=np.array([0, 0, 0, 0, 1]),
                        classes=CLASSES)
    rows = {r["sample_id"]: r for r in out.iter_rows(named=True)}
    assert (rows["a"]["decision"], rows["a"]["final_label_index"], rows["a"]["weight"]) == ("keep", 0, 1.0)
    assert (rows["b"]["decision"], rows["b"]["final_label_index"]) == ("relabel", 1)
    assert (rows["c"]["decision"], rows["c"]["final_label_index"], rows["c"]["weight"]) == ("drop", -1, 0.0)
    assert rows["a"]["reasons"] == ["label_issue", "reviewed"] and rows["c"]["reasons"] == ["reviewed"]
    # content changed: the run's decision stands, flagged for re-review
    assert rows["d"]["decision"] == "drop" and rows["d"]["reasons"] == ["near_duplicate", "review_stale"]
    assert [rows[s]["review_state"] for s in "abcde"] == ["reviewed", "reviewed", "reviewed", "stale", "pending"]
    assert rows["a"]["reviewer"] == "ann" and rows["a"]["reviewed_at"].startswith("2026-01-01T00:00:00")
    assert review_counts(out) == {"reviewed": 3, "stale": 1, "pending": 2}
    assert newly_reviewed(None, out) == 3 and newly_reviewed(out, out) == 0


def test_relabel_to_the_given_label_is_a_keep_and_an_unknown_label_is_an_error():
    reviews = _reviews([{"sample_id": "b", "content_hash": "hb", "decision": "relabel", "label": "cat"}])
    out = apply_reviews(_curated(), reviews, content_hashes=["ha", "hb", "hc", "hd", "he"],
                        label_index=np.zeros(5, dtype=int), classes=CLASSES)
    assert out.filter(pl.col("sample_id") == "b")["decision"].item() == "keep"
    bad = _reviews([{"sample_id": "b", "content_hash": "hb", "decision": "relabel", "label": "wolf"}])
    with pytest.raises(ReviewError, match="'wolf'"):
        apply_reviews(_curated(), bad, content_hashes=["ha", "hb", "hc", "hd", "he"],
                      label_index=np.zeros(5, dtype=int), classes=CLASSES)


def test_no_reviews_changes_no_decision():
    cur = _curated()
    out = apply_reviews(cur, empty_reviews(), content_hashes=["h"] * 5, label_index=np.zeros(5, dtype=int),
                        classes=CLASSES)
    assert out.select(cur.columns).equals(cur)
    assert out["review_state"].to_list() == ["pending", "pending", None, "pending", "pending"]


def test_the_audit_counts_current_reviews_of_its_members_only():
    from winnow.pipeline.review.apply import audit_rows

    ids = ["a", "b", "c", "d", "e", "f", "g"]
    hashes = ["ha", "hb", "hc", "hd", "he-new", "hf", "hg"]
    labels = np.array([0, 0, 1, 1, 2, 2, 0])  # given classes: cat cat dog dog fox fox cat
    members = np.array([True, True, True, True, True, True, False])
    reviews = _reviews([
        {"sample_id": "a", "content_hash": "ha", "decision": "keep", "label": "cat"},  # right
        {"sample_id": "b", "content_hash": "hb", "decision": "relabel", "label": "fox"},  # wrong
        {"sample_id": "c", "content_hash": "hc", "decision": "relabel", "label": "dog"},  # its own class: right
        {"sample_id": "d", "content_hash": "hd", "decision": "drop", "label": None},  # says nothing of the label
        {"sample_id": "e", "content_hash": "he-old", "decision": "relabel", "label": "cat"},  # stale: not counted
        {"sample_id": "g", "content_hash": "hg", "decision": "relabel", "label": "dog"},  # not in the sample
        {"sample_id": "zz", "content_hash": "x", "decision": "keep", "label": "cat"},  # no longer in the data
    ])
    got = audit_rows(reviews, sample_ids=ids, members=members, content_hashes=hashes, label_index=labels,
                     classes=CLASSES)
    assert [ids[i] for i in np.flatnonzero(got.checked)] == ["a", "b", "c"]
    assert [ids[i] for i in np.flatnonzero(got.wrong)] == ["b"]
    assert (got.member == members).all()
    count = got.count()
    assert (count.checked, count.wrong) == (3, 1)
    assert audit_rows(empty_reviews(), sample_ids=ids, members=members, content_hashes=hashes,
                      label_index=labels, classes=CLASSES).count().checked == 0
