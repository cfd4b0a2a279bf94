"""`outlier`: a sample far from every other sample (curation/outliers.py).

The isolated half of the outlier test; small groups of odd samples that are each other's
neighbours are `out_of_distribution` (curation/issues/out_of_distribution.py). The two share
`outlier_expected_false`, half each, so a clean dataset flags about that many in all.
"""

from __future__ import annotations

from winnow.curation.issues.base import IssueContext, IssueFindings, IssueType, ReportSection
from winnow.curation.outliers import Outliers, find_outliers


def isolated_outliers(ctx: IssueContext) -> Outliers:
    """The run's isolated-outlier test, computed once (the out_of_distribution type reads it too)."""
    return ctx.shared("outliers", lambda: find_outliers(
        ctx.graph, expected_false=ctx.detect.outlier_expected_false / 2.0, local=ctx.detect.outlier_local))


class Outlier(IssueType):
    name = "outlier"
    reasons = {"outlier": "far from every other sample (kNN distance beyond the robust cut-off)"}
    columns = {"outlier_score": "float64"}  # higher = farther from every other sample
    default_action = "drop"
    sections = {"outlier": ReportSection(sort_by="outlier_score", descending=True, order="farthest first",
                                         card_columns=("outlier_score",))}
    version = 2  # issue 15: half of outlier_expected_false (the other half: out_of_distribution)

    def find(self, ctx: IssueContext) -> IssueFindings:
        out = isolated_outliers(ctx)
        return IssueFindings(flags={"outlier": out.is_outlier}, columns={"outlier_score": out.score},
                             facts={"outlier_threshold": float(out.threshold)})
