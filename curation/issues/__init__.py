"""Issue types: one file each, one line each in ISSUE_TYPES (cleanlab's issue-manager REGISTRY).

    ISSUE_TYPES        name -> IssueType, in decision order
    list_issue_types() their names
    register_issue_type(issue)  add one from outside the package (a plug-in, a test)

The "flag" types (leak, outlier, out_of_distribution, rare_class, and any registered one) are found by their own
`find` and kept or dropped by `policy.on_<name>`, in this order, before label issues and
duplicates. The "curate" entries (label_issue, duplicate, rebalance) keep their mechanics in
curate() / decide() and declare their reason codes here, so every code Winnow writes is in
one list (`reason_codes()`; with the fixed unusable-file codes of catalogs/schemas.py in
winnow.pipeline.issues).

Adding an issue type: a file `curation/issues/<name>.py` with a subclass of IssueType (its
name, reason codes, columns, default action, `find`, report sections) and one line below.
"""

from __future__ import annotations

from winnow.curation.errors import InvalidArray
from winnow.curation.issues.base import (
    ACTIONS,
    COLUMN_DTYPES,
    IssueContext,
    IssueFindings,
    IssueType,
    MissingInput,
    ReportSection,
    check_findings,
    check_issue_type,
)
from winnow.curation.issues.duplicate import Duplicate
from winnow.curation.issues.label_issue import LabelIssue
from winnow.curation.issues.leak import Leak
from winnow.curation.issues.out_of_distribution import OutOfDistributionType
from winnow.curation.issues.outlier import Outlier
from winnow.curation.issues.quality import ImageQuality
from winnow.curation.issues.rare_class import RareClass
from winnow.curation.issues.rebalance import Rebalance
from winnow.curation.issues.review import Review

ISSUE_TYPES: dict[str, IssueType] = {
    "leak": Leak(),
    "outlier": Outlier(),
    "out_of_distribution": OutOfDistributionType(),
    "rare_class": RareClass(),
    "image_quality": ImageQuality(),
    "label_issue": LabelIssue(),
    "duplicate": Duplicate(),
    "rebalance": Rebalance(),
    "review": Review(),
}
"""Every issue type, by name, in decision order (the flag types in this order come first)."""

for _issue in ISSUE_TYPES.values():
    check_issue_type(_issue)


def list_issue_types() -> list[str]:
    """The registered issue types' names, in decision order."""
    return list(ISSUE_TYPES)


def flag_types() -> list[IssueType]:
    """The types curate() finds and decide() keeps or drops generically, in decision order."""
    return [t for t in ISSUE_TYPES.values() if t.mechanics == "flag"]


def register_issue_type(issue: IssueType | type[IssueType], *, replace: bool = False) -> IssueType:
    """Add `issue` (an IssueType or its class) to the registry, after the registered flag types.

    Its reason codes and columns must not clash with another type's; a name already taken is
    an error unless `replace`. Returns the registered instance.
    """
    if isinstance(issue, type):
        issue = issue()
    check_issue_type(issue)
    if issue.name in ISSUE_TYPES and not replace:
        raise InvalidArray(f"issue type {issue.name!r} is already registered; pass replace=True to swap it")
    for other in ISSUE_TYPES.values():
        if other.name == issue.name:
            continue
        clash = sorted(set(other.reasons) & set(issue.reasons))
        if clash:
            raise InvalidArray(f"issue type {issue.name!r}: reason code(s) {clash!r} belong to {other.name!r}")
        clash = sorted(set(other.columns) & set(issue.columns))
        if clash:
            raise InvalidArray(f"issue type {issue.name!r}: column(s) {clash!r} belong to {other.name!r}")
        if other.policy_key == issue.policy_key:
            raise InvalidArray(f"issue type {issue.name!r}: policy key {issue.policy_key!r} is taken")
    if issue.name in ISSUE_TYPES:
        ISSUE_TYPES[issue.name] = issue
    else:
        # New flag types act after the built-in flag types and before label issues / duplicates.
        items = list(ISSUE_TYPES.items())
        at = max((i + 1 for i, (_, t) in enumerate(items) if t.mechanics == "flag"), default=0)
        items.insert(at if issue.mechanics == "flag" else len(items), (issue.name, issue))
        ISSUE_TYPES.clear()
        ISSUE_TYPES.update(items)
    return issue


def unregister_issue_type(name: str) -> IssueType:
    """Remove a registered type (a plug-in's or a test's); the built-in ones stay."""
    if name in _BUILT_IN:
        raise InvalidArray(f"issue type {name!r} is built in and cannot be removed")
    if name not in ISSUE_TYPES:
        raise InvalidArray(f"no issue type {name!r}; registered: {list_issue_types()}")
    return ISSUE_TYPES.pop(name)


def reason_codes() -> dict[str, str]:
    """Every reason code the registered types write -> its meaning (unusable-file codes apart)."""
    return {code: meaning for t in ISSUE_TYPES.values() for code, meaning in t.reasons.items()}


def issue_of(code: str) -> IssueType | None:
    """The registered type that writes reason `code`, or None."""
    for t in ISSUE_TYPES.values():
        if code in t.reasons:
            return t
    return None


def issue_columns() -> dict[str, str]:
    """Every registered type's manifest columns -> dtype, in registry order."""
    return {c: d for t in ISSUE_TYPES.values() for c, d in t.columns.items()}


_BUILT_IN = frozenset(ISSUE_TYPES)

__all__ = [
    "ACTIONS", "COLUMN_DTYPES", "ISSUE_TYPES", "IssueContext", "IssueFindings", "IssueType", "MissingInput",
    "ReportSection", "check_findings", "check_issue_type", "flag_types", "issue_columns", "issue_of",
    "list_issue_types", "reason_codes", "register_issue_type", "unregister_issue_type",
]
