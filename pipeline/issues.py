"""The run's view of the issue types (winnow.curation.issues): every reason code Winnow writes,
the columns the types add to the curation table and the manifest, and their arrow types.

Curation declares the types and knows nothing of files or schemas; catalogs/schemas.py knows
the fixed columns and the unusable-file codes and nothing of curation. This module joins the
two for the stages (which check every table against its schema before writing it) and for
the documentation of the codes.
"""

from __future__ import annotations

import pyarrow as pa

from winnow.catalogs import schemas as S
from winnow.curation import issues


def reason_codes() -> dict[str, str]:
    """Every reason code a run may write -> its meaning: the unusable-file codes, then each
    registered issue type's, in registry order."""
    return {**S.UNUSABLE_REASON_CODES, **issues.reason_codes()}


def issue_columns() -> dict[str, str]:
    """The registered issue types' columns -> dtype name, in registry order."""
    return issues.issue_columns()


def extra_column(name: str) -> pa.DataType | bool:
    """`check_table`'s `extra` for the curation table and the manifest: a label detector's score
    (float64), an issue type's declared column (its type), or not allowed (False)."""
    dtype = issues.issue_columns().get(name)
    if dtype is not None:
        return S.COLUMN_TYPES[dtype]
    return S.is_score_column(name)


def issue_types_key() -> list[str]:
    """The registered types, for the curate stage's key: registering or swapping one re-runs it."""
    return [f"{t.name}={type(t).__module__}.{type(t).__qualname__}:{getattr(t, 'version', 1)}"
            for t in issues.ISSUE_TYPES.values()]
