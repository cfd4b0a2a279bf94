"""Run diffs add up: the summary's counts are a group-by of diff.parquet, every row whose
decision changed is counted as a decision change, and the moved cut-offs are named."""

from __future__ import annotations

import json

import polars as pl

from tests.conftest import digit_images, write_image_folder
from winnow.pipeline.versions import diff_manifests

THRESHOLDS = ("estimated_noise_rate", "label_issue_cutoff", "outlier_threshold", "near_duplicate_min_similarity")


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


def test_adding_50_images_counts_every_changed_decision(tmp_path):
    from winnow.flows.clean import run_clean
    from winnow.pipeline.config import RunConfig

    folder = tmp_path / "digits"
    write_image_folder(folder, digit_images(200, seed=3))
    out = tmp_path / "out"
    config = RunConfig(target=str(folder), out=str(out), encoder="pixels:16", k=5)
    first = run_clean(config)
    write_image_folder(folder, digit_images(50, seed=11), prefix="added")
    second = run_clean(config)

    summary = json.loads((out / "summary.json").read_text())["diff"]
    diff = pl.read_parquet(second["diff"])
    old = pl.read_parquet(first["manifest"]).select("sample_id", "decision")
    new = pl.read_parquet(second["manifest"]).select("sample_id", "decision")
    both = old.join(new, on="sample_id", suffix="_new")
    changed = both.filter(pl.col("decision") != pl.col("decision_new"))["sample_id"].sort().to_list()

    # The summary is a group-by of diff.parquet ...
    counts = _counts(diff)
    for key in ("added", "removed", "decision_changed", "newly_flagged", "no_longer_flagged"):
        assert summary[key] == counts.get(key, 0), (key, summary, counts)
    # ... and counts every old row whose decision differs, whatever else changed on it.
    assert summary["added"] == 50 and summary["removed"] == 0
    assert summary["decision_changed"] == len(changed)
    assert diff.filter(pl.col("changes").list.contains("decision_changed"))["sample_id"].sort().to_list() == changed
    # Which data-driven cut-offs moved, old and new.
    before = json.loads(open(first["summary"]).read())
    after = json.loads(open(second["summary"]).read())
    assert set(summary["thresholds"]) == set(THRESHOLDS)
    for name in THRESHOLDS:
        assert summary["thresholds"][name] == {"old": before[name], "new": after[name]}
