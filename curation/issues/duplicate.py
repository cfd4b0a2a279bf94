"""Duplicates: exact (equal content hashes) and near (kNN cosine at the cut) copies.

Found in curate() (curation/duplicates.py), which keeps one representative per group in
decide() (`policy.on_duplicate`, `policy.on_duplicate_label_conflict`); the groups also make
the label detectors count copies as one voter (IssueContext.duplicate_groups). This entry
declares the codes and their report sections.
"""

from __future__ import annotations

from winnow.curation.issues.base import IssueType, ReportSection

_COPIES = ReportSection(sort_by="duplicate_of", order="copies of one original together")


class Duplicate(IssueType):
    name = "duplicate"
    reasons = {
        "near_duplicate": "a near copy of another sample that is kept",
        "exact_duplicate": "a byte-identical copy of another sample that is kept (texts: identical after "
        "normalising case, whitespace and Unicode)",
        "duplicate_label_conflict": "duplicates of each other carry different labels",
    }
    mechanics = "curate"
    default_action = None  # policy.on_duplicate, policy.on_duplicate_label_conflict
    sections = {"near_duplicate": _COPIES, "exact_duplicate": _COPIES}
