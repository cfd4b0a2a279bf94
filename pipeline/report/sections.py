"""How the report presents each reason code: its gallery section's title, order and card scores.

The issue types of the registry (winnow.curation.issues) declare their reason codes' sections
(IssueType.section -> curation's ReportSection, which curation declares without knowing the
report); `section_for` turns those into ReasonSections here. REASON_SECTIONS holds the fixed
unusable-file codes (one family, by path) and whatever `register_reason_section` adds, which
wins over the registry. A reason code that no one declared gets the generic section, so a new
issue type shows up without touching the report: its own gallery listing, sorted by its score
column when the manifest has one, lowest first, that score on every card. Its score column is
`score_<code>`, else `score_<the code without its last _part>` and so on (reason
`blurry_image` finds `score_blurry_image`, then `score_blurry`).

Scores sort lowest first by default: a `score_*` column is a quality (label_issues.py: low =
likely wrong, as in cleanlab). Declare `descending=True` for a score where high is worse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from winnow.catalogs import schemas as S
from winnow.curation import issues


@dataclass(frozen=True)
class ReasonSection:
    """The presentation of one reason code (or family) in the report."""

    sort_by: str = S.LABEL_QUALITY  # the column its listing is sorted by (ties: by path), nulls last
    descending: bool = False  # True: the highest value first
    order: str = "lowest label quality first"  # how that order reads, on its pages
    title: str | None = None  # shown before the code in its headings; None: the code alone
    meaning: str | None = None  # one line on what the code means; None: its issue type's (or catalogs.schemas.UNUSABLE_REASON_CODES)
    card_scores: tuple[str, ...] = ()  # more columns on its samples' cards (all show label_quality, score_*)
    listed_first: bool = False  # listed before every other reason (the rest: the most frequent first)


LOWEST_QUALITY = ReasonSection()
_UNUSABLE = ReasonSection(sort_by=S.PATH, order="by path")

REASON_SECTIONS: dict[str, ReasonSection] = dict.fromkeys(sorted(S.UNUSABLE_REASONS), _UNUSABLE)
"""Sections set here rather than by an issue type: the unusable-file codes, and overrides."""


def list_reason_sections() -> list[str]:
    """The reason codes with a section of their own (any other code gets the generic one)."""
    declared = {code for t in issues.ISSUE_TYPES.values() for code in t.reasons if _declared(t, code) is not None}
    return sorted(set(REASON_SECTIONS) | declared)


def register_reason_section(codes: str | Iterable[str], section: ReasonSection) -> None:
    """Present reason `codes` (one code, or a family) as `section` in every later report."""
    codes = [codes] if isinstance(codes, str) else list(codes)
    for code in codes:
        if not isinstance(code, str) or not code:
            raise ValueError(f"a reason code is a non-empty string, got {code!r}")
    REASON_SECTIONS.update(dict.fromkeys(codes, section))


def score_column(code: str, columns: Collection[str]) -> str | None:
    """The manifest's score column for reason `code`: `score_<code>`, or `score_<a leading part
    of the code>` (the longest that exists); None when there is none."""
    parts = code.split("_")
    for n in range(len(parts), 0, -1):
        name = "score_" + "_".join(parts[:n])
        if name in columns:
            return name
    return None


def reason_meaning(code: str) -> str:
    """What reason `code` means, in one line ("" when nobody said)."""
    section = REASON_SECTIONS.get(code)
    if section is not None and section.meaning is not None:
        return section.meaning
    issue = issues.issue_of(code)
    if issue is not None:
        return issue.reasons[code]
    return S.UNUSABLE_REASON_CODES.get(code, "")


def _declared(issue: issues.IssueType, code: str) -> ReasonSection | None:
    """The ReasonSection an issue type declares for `code`; None when it names no sort column
    (the generic section then applies, with the declared title and placement)."""
    spec = issue.section(code)
    if spec.sort_by is None:
        return None
    card = spec.card_columns or ((spec.sort_by,) if spec.sort_by in issue.columns else ())
    order = spec.order or f"{'highest' if spec.descending else 'lowest'} {spec.sort_by} first"
    return ReasonSection(sort_by=spec.sort_by, descending=spec.descending, order=order, title=spec.title,
                         card_scores=tuple(card), listed_first=spec.listed_first)


def section_for(code: str, columns: Collection[str]) -> ReasonSection:
    """How to present `code` in a report whose manifest has `columns`.

    A section registered here, else the one its issue type declares, else the generic one (by
    the code's score column, else by label quality). A section whose sort column the manifest
    lacks (an outlier row from a manifest without outlier_score) is sorted by label quality
    instead, and says so.
    """
    section = REASON_SECTIONS.get(code)
    issue = issues.issue_of(code) if section is None else None
    if issue is not None:
        section = _declared(issue, code)
    if section is None:
        score = score_column(code, columns)
        if score is None:
            section = LOWEST_QUALITY
        else:
            section = ReasonSection(sort_by=score, order=f"lowest {score} first", card_scores=(score,))
        if issue is not None:  # no order of its own, but maybe a title or a place
            spec = issue.section(code)
            section = dataclasses.replace(section, title=spec.title, listed_first=spec.listed_first,
                                          card_scores=spec.card_columns or section.card_scores)
        return section
    if section.sort_by not in columns:
        return dataclasses.replace(section, sort_by=LOWEST_QUALITY.sort_by, descending=False,
                                   order=LOWEST_QUALITY.order)
    return section
