"""`out_of_distribution`: a member of a small group of samples that do not belong (curation/outliers.py).

Junk rarely comes alone: a scrape drops twenty noise images or scanned pages into the class
folders, and they are each other's nearest neighbours, so the isolated `outlier` test (mean
distance to k neighbours) does not see them. This type flags samples far from the data at the
scale of a group (`DetectConfig.ood_max_group`), sooner when no class owns their neighbourhood
and the probe is unsure for every class. Its `ood_score` is the one score of both kinds: the
larger of the isolated and the group robust z, with the cut-off `ood_threshold` (flagged
`outlier` when the isolated test is beyond it, else `out_of_distribution`).

Small datasets: the group scale shrinks with N (at most 5% of the samples) and below
`curation.outliers.N_MIN` samples the group test is skipped, saying why in `ood_skipped`
("40 samples < 100 ..."): a tiny folder cannot tell a small odd group from a small class.
"""

from __future__ import annotations

import numpy as np

from winnow.curation.issues.base import (
    IssueContext,
    IssueFindings,
    IssueType,
    MissingInput,
    ReportSection,
)
from winnow.curation.issues.outlier import isolated_outliers
from winnow.curation.knn_graph import build_knn_graph
from winnow.curation.outliers import OutOfDistribution, find_out_of_distribution, group_scale


def out_of_distribution(ctx: IssueContext) -> OutOfDistribution | None:
    """The run's group test, computed once; None when it is off (ood_max_group = 0)."""
    def compute():
        max_group = int(ctx.detect.ood_max_group)
        if max_group < 1:
            return None
        # Below N_MIN samples the scale is 0 and the test skips itself (no search needed).
        k = 2 * group_scale(len(ctx), max_group)
        # A run's knn stage keeps the search's k wide columns (pipeline/stages.py: wide_k_for);
        # without them (the library called with a k=10 graph) a second search, as costly as the first.
        wide = next((g for g in (ctx.graph, ctx.wide_graph) if g is not None and g.k >= k), None)
        if wide is None:
            wide = build_knn_graph(ctx.embeddings, k=k)
        try:
            probs = ctx.pred_probs
        except MissingInput:
            probs = None
        return find_out_of_distribution(ctx.graph, wide, ctx.labels, n_classes=ctx.n_classes, pred_probs=probs,
                                        max_group=max_group, expected_false=ctx.detect.outlier_expected_false)

    return ctx.shared("out_of_distribution", compute)


class OutOfDistributionType(IssueType):
    name = "out_of_distribution"
    reasons = {"out_of_distribution": "in a small group far from the rest of the data that no class owns"}
    columns = {
        "ood_score": "float64",  # the one outlier score: max(isolated, group) robust z; beyond ood_threshold = flagged
        "ood_group_distance": "float64",  # mean cosine distance to the neighbours just past the largest group
        "ood_evenness": "float64",  # 0..1: how evenly neighbours' labels (and the probe) spread over classes
    }
    default_action = "drop"
    sections = {"out_of_distribution": ReportSection(sort_by="ood_score", descending=True, order="oddest first",
                                                     card_columns=("ood_score", "ood_evenness"))}
    version = 2  # issue 15: group scale shrinks with N (skipped below N_MIN); the group cut pays for its bonus

    def find(self, ctx: IssueContext) -> IssueFindings:
        m = len(ctx)
        found = out_of_distribution(ctx)
        if found is None:
            nan = np.full(m, np.nan)
            return IssueFindings(flags={"out_of_distribution": np.zeros(m, dtype=bool)},
                                 columns={"ood_score": nan, "ood_group_distance": nan, "ood_evenness": nan},
                                 facts={"ood_threshold": None, "ood_skipped": "off (ood_max_group = 0)"})
        # A sample the isolated test flags (with outlier_local too) is an `outlier`, not a group member.
        flags = found.is_ood & ~isolated_outliers(ctx).is_outlier
        return IssueFindings(flags={"out_of_distribution": flags},
                             columns={"ood_score": found.score, "ood_group_distance": found.group_distance,
                                      "ood_evenness": found.evenness},
                             facts={"ood_threshold": float(found.z), "ood_max_group": found.max_group,
                                    "ood_skipped": found.skipped, "out_of_distribution": int(flags.sum())})
