"""`label_issue`: the evidence says the given label is wrong.

Its detection (the detector ensemble, curation/label_issues.py) and its decision (relabel
when sure, else drop: `policy.on_label_issue`) are curate()'s and decide()'s own; this entry
declares its reason code and report section. Its columns (label_quality, suggested_label,
suggestion_confidence, probe_margin, score_<detector>) are in catalogs/schemas.py.
"""

from __future__ import annotations

from winnow.curation.issues.base import IssueType, ReportSection


class LabelIssue(IssueType):
    name = "label_issue"
    reasons = {"label_issue": "the evidence says the given label is wrong"}
    mechanics = "curate"
    default_action = None  # policy.on_label_issue: auto | drop | relabel | keep
    sections = {"label_issue": ReportSection(sort_by="label_quality", order="lowest label quality first",
                                             listed_first=True)}
