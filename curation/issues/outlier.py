"""`outlier`: a sample far from every other sample (curation/outliers.py)."""

from __future__ import annotations

from winnow.curation.issues.base import IssueContext, IssueFindings, IssueType, ReportSection
from winnow.curation.outliers import find_outliers


class Outlier(IssueType):
    name = "outlier"
    reasons = {"outlier": "far from every other sample (kNN distance beyond the robust cut-off)"}
    columns = {"outlier_score": "float64"}  # higher = farther from every other sample
    default_action = "drop"
    sections = {"outlier": ReportSection(sort_by="outlier_score", descending=True, order="farthest first",
                                         card_columns=("outlier_score",))}

    def find(self, ctx: IssueContext) -> IssueFindings:
        out = find_outliers(ctx.graph, expected_false=ctx.detect.outlier_expected_false,
                            local=ctx.detect.outlier_local)
        return IssueFindings(flags={"outlier": out.is_outlier}, columns={"outlier_score": out.score},
                             facts={"outlier_threshold": float(out.threshold)})
