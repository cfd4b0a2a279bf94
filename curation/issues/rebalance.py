"""Pruning and caps: samples dropped to meet `policy.keep` or `policy.class_cap`.

decide() chooses them (curation/rebalance.py, curation/prune.py) after every finding; this
entry declares their reason codes.
"""

from __future__ import annotations

from winnow.curation.issues.base import IssueType


class Rebalance(IssueType):
    name = "rebalance"
    reasons = {
        "pruned": "dropped to reach the target size",
        "over_cap": "dropped to respect a per-class or per-cluster cap",
    }
    mechanics = "curate"
    default_action = None  # policy.keep, policy.class_cap, ...
