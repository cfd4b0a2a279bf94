"""How the report presents each reason code: its gallery section's title, order and card scores.

REASON_SECTIONS maps a reason code to its ReasonSection; a family of codes shares one (every
unusable-file code, both duplicate codes). A reason code that is not registered gets the
generic section, so a new issue type shows up without touching the report: its own gallery
listing, sorted by its score column when the manifest has one, lowest first, that score on
every card. Its score column is `score_<code>`, else `score_<the code without its last
_part>` and so on (reason `blurry_image` finds `score_blurry_image`, then `score_blurry`).

Scores sort lowest first by default: a `score_*` column is a quality (label_issues.py: low =
likely wrong, as in cleanlab). Register `descending=True` for a score where high is worse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from winnow.catalogs import schemas as S


@dataclass(frozen=True)
class ReasonSection:
    """The presentation of one reason code (or family) in the report."""

    sort_by: str = S.LABEL_QUALITY  # the column its listing is sorted by (ties: by path), nulls last
    descending: bool = False  # True: the highest value first
    order: str = "lowest label quality first"  # how that order reads, on its pages
    title: str | None = None  # shown before the code in its headings; None: the code alone
    meaning: str | None = None  # one line on what the code means; None: catalogs.schemas.REASON_CODES
    card_scores: tuple[str, ...] = ()  # more columns on its samples' cards (all show label_quality, score_*)
    listed_first: bool = False  # listed before every other reason (the rest: the most frequent first)


LOWEST_QUALITY = ReasonSection()
_DUPLICATES = ReasonSection(sort_by=S.DUPLICATE_OF, order="copies of one original together")
_UNUSABLE = ReasonSection(sort_by=S.PATH, order="by path")

REASON_SECTIONS: dict[str, ReasonSection] = {
    "label_issue": ReasonSection(listed_first=True),
    "exact_duplicate": _DUPLICATES,
    "near_duplicate": _DUPLICATES,
    "outlier": ReasonSection(sort_by="outlier_score", descending=True, order="farthest first",
                             card_scores=("outlier_score",)),
    **dict.fromkeys(sorted(S.UNUSABLE_REASONS), _UNUSABLE),
}


def list_reason_sections() -> list[str]:
    """The reason codes with a registered section (any other code gets the generic one)."""
    return sorted(REASON_SECTIONS)


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
    return S.REASON_CODES.get(code, "")


def section_for(code: str, columns: Collection[str]) -> ReasonSection:
    """How to present `code` in a report whose manifest has `columns`.

    The registered section, or the generic one (by the code's score column, else by label
    quality). A section whose sort column the manifest lacks (an outlier row from a manifest
    without outlier_score) is sorted by label quality instead, and says so.
    """
    section = REASON_SECTIONS.get(code)
    if section is None:
        score = score_column(code, columns)
        if score is None:
            return LOWEST_QUALITY
        return ReasonSection(sort_by=score, order=f"lowest {score} first", card_scores=(score,))
    if section.sort_by not in columns:
        return dataclasses.replace(section, sort_by=LOWEST_QUALITY.sort_by, descending=False,
                                   order=LOWEST_QUALITY.order)
    return section
