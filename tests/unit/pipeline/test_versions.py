"""Run diffs add up: every row whose decision changed is counted as a decision change, and a flag
change on the same row is counted too (diff_manifests). Two real runs: tests/e2e/test_versions.py."""

from __future__ import annotations

import polars as pl

from winnow.pipeline.versions import diff_manifests


def _manifest(rows):
    return pl.DataFrame(
        {"sample_id": [r[0] for r in rows], "path": [r[0] + ".png" for r in rows],
         "decision": [r[1] for r in rows], "reasons": [r[2] for r in rows]},
        schema={"sample_id": pl.String, "path": pl.String, "decision": pl.String, "reasons": pl.List(pl.String)},
    )


def _counts(diff: pl.DataFrame) -> dict[str, int]:
    exploded = diff.explode("changes").group_by("changes").len()
    return dict(zip(exploded["changes"].to_list(), exploded["len"].to_list(), strict=True))


def test_a_flag_and_a_decision_change_on_one_row_are_both_counted():
    old = _manifest([("a", "keep", []), ("b", "keep", []), ("c", "drop", ["outlier"]), ("d", "keep", ["outlier"]),
                     ("e", "keep", []), ("gone", "keep", [])])
    new = _manifest([("a", "drop", ["label_issue"]),  # newly flagged AND decision changed
                     ("b", "keep", ["near_duplicate"]),  # newly flagged, decision kept
                     ("c", "keep", []),  # no longer flagged AND decision changed
                     ("d", "drop", ["outlier"]),  # same flag, decision changed
                     ("e", "keep", []),  # unchanged: not in the diff
                     ("new", "keep", [])])
    diff = diff_manifests(old, new)
    changes = dict(zip(diff["sample_id"].to_list(), diff["changes"].to_list(), strict=True))
    assert changes == {
        "a": ["decision_changed", "newly_flagged"], "b": ["newly_flagged"],
        "c": ["decision_changed", "no_longer_flagged"], "d": ["decision_changed"],
        "gone": ["removed"], "new": ["added"],
    }
    assert _counts(diff) == {"decision_changed": 3, "newly_flagged": 2, "no_longer_flagged": 1, "added": 1,
                             "removed": 1}
