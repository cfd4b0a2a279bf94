"""`rare_class`: the rows of a class too rare for the label detectors to judge.

The label detectors (curation/label_issues.py) leave a class with fewer usable samples than
max(5, the graph's k) out of detection and the noise estimate; this type flags its rows, so
the manifest says why their labels were not judged. Kept by default (a typo'd label folder is
the user's to fix).
"""

from __future__ import annotations

import numpy as np

from winnow.curation.issues.base import IssueContext, IssueFindings, IssueType


class RareClass(IssueType):
    name = "rare_class"
    reasons = {"rare_class": "its class has fewer samples than the label detectors need (max(5, k)): its labels are "
               "not judged and it is left out of the noise estimate; kept unless the policy drops it"}
    default_action = "keep"
    rank_for_pruning = True  # a rare class's rows are ordinary data otherwise

    def find(self, ctx: IssueContext) -> IssueFindings:
        rare = ctx.label_report.frame["is_rare_class"].to_numpy().astype(bool)
        classes, counts = np.unique(ctx.labels[rare], return_counts=True)
        names = ctx.class_names
        # class too rare to judge -> its usable samples (every one of them is flagged)
        rare_classes = {(names[int(c)] if names is not None else str(int(c))): int(n)
                        for c, n in zip(classes, counts, strict=True)}
        return IssueFindings(flags={"rare_class": rare}, facts={"rare_classes": rare_classes})
