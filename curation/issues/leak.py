"""`leak`: a training sample that duplicates a sample of a holdout (validation / test) catalog."""

from __future__ import annotations

from winnow.curation.duplicates import find_leaks
from winnow.curation.issues.base import IssueContext, IssueFindings, IssueType


class Leak(IssueType):
    name = "leak"
    reasons = {"leak": "duplicates a sample of a holdout catalog"}
    default_action = "drop"

    def find(self, ctx: IssueContext) -> IssueFindings:
        if ctx.holdout_embeddings is None:
            return IssueFindings(flags={})
        # Copies of the holdout at the same cut as copies within the data (equal hashes always).
        leaks = find_leaks(ctx.embeddings, ctx.holdout_embeddings, min_similarity=ctx.near_duplicate_similarity,
                           content_hashes=ctx.content_hashes, holdout_hashes=ctx.holdout_hashes)
        return IssueFindings(flags={"leak": leaks.is_leak})
