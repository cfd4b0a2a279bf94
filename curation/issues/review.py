"""`review`: a person decided this sample (winnow review; OUT/reviews/).

Reviews are applied by the run after curate() (pipeline/review/apply.py): while a sample's
content hash is the one the reviewer saw, its decision and label are the reviewer's, with
reason `reviewed`; when the content changed the review no longer applies, the run decides
as usual and adds `review_stale` so the sample is reviewed again. This entry declares the
codes and the manifest's review columns.
"""

from __future__ import annotations

from winnow.curation.issues.base import IssueType, ReportSection


class Review(IssueType):
    name = "review"
    reasons = {
        "reviewed": "a person reviewed the sample; its decision and label are theirs (OUT/reviews/)",
        "review_stale": "the sample's content changed since a person reviewed it; review it again",
    }
    columns = {
        "review_state": "string",  # reviewed | stale | pending (flagged, not reviewed); null: not flagged
        "reviewer": "string",  # who decided (reviewed and stale rows)
        "reviewed_at": "string",  # when, ISO 8601 UTC
        "audit": "bool",  # in the audit sample: a random sample a person checks (winnow.curation.audit)
    }
    mechanics = "curate"
    default_action = None  # the reviewer's decision
    sections = {"review_stale": ReportSection(sort_by="label_quality", title="re-review", listed_first=True),
                "reviewed": ReportSection(sort_by="label_quality")}
