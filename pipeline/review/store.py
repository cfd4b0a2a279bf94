"""OUT/reviews/: the decisions people made, as Parquet part files (one row per action).

    OUT/reviews/<UTC time>-<request id>.parquet     REVIEW_SCHEMA, written atomically, never rewritten

Every `*.parquet` in the folder is read (another tool may drop files in this schema there
too); for each sample the newest row (`reviewed_at`, then the file name) wins. A file that
does not follow the schema is an error naming it: a review silently ignored would let a run
undo what a person decided.

Writers never touch an existing file: each action batch is a new part file named by its time
and a request id, so two reviewers at once each add their own file and nothing is lost; a
request id seen before is not written again (retries are idempotent).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from winnow import atomic
from winnow.catalogs import schemas as S

LOG = logging.getLogger(__name__)

REVIEWS = "reviews"  # OUT/reviews/
REVIEWER = "reviewer"
REVIEWED_AT = "reviewed_at"
NOTE = "note"
REVIEW_DECISIONS = ("keep", "drop", "relabel")

REVIEW_SCHEMA = pa.schema([
    pa.field(S.SAMPLE_ID, pa.string(), nullable=False),
    pa.field(S.CONTENT_HASH, pa.string(), nullable=False),  # the content the reviewer saw
    pa.field(S.DECISION, pa.string(), nullable=False),  # keep | drop | relabel
    pa.field(S.LABEL, pa.string(), nullable=True),  # the label to train on (relabel: required; keep: the given one)
    pa.field(REVIEWER, pa.string(), nullable=False),
    pa.field(REVIEWED_AT, pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field(NOTE, pa.string(), nullable=True),
])
"""One row per review action; the newest row per sample wins."""

_POLARS_SCHEMA = {S.SAMPLE_ID: pl.String, S.CONTENT_HASH: pl.String, S.DECISION: pl.String, S.LABEL: pl.String,
                  REVIEWER: pl.String, REVIEWED_AT: pl.Datetime("us", "UTC"), NOTE: pl.String}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_WRITE_LOCK = threading.Lock()


class ReviewError(ValueError):
    """A review file or a review action that does not follow REVIEW_SCHEMA (quoted)."""


def reviews_dir(out: str | os.PathLike) -> Path:
    """OUT/reviews/ of an output folder."""
    return Path(out) / REVIEWS


def empty_reviews() -> pl.DataFrame:
    return pl.DataFrame(schema=_POLARS_SCHEMA)


def review_files(folder: str | os.PathLike) -> list[Path]:
    """Every part file of the folder, in name order (temp siblings of a write in progress are hidden)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


def read_review_file(path: Path) -> pl.DataFrame:
    """One part file, checked against REVIEW_SCHEMA; ReviewError naming the file otherwise."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ReviewError(f"review file {str(path)!r} is not a readable Parquet file: {exc}") from exc
    missing = [f.name for f in REVIEW_SCHEMA if f.name not in table.column_names and f.name != NOTE]
    if missing:
        raise ReviewError(f"review file {str(path)!r} lacks column(s) {missing}; a review file has "
                          f"{REVIEW_SCHEMA.names}")
    try:
        frame = pl.from_arrow(table).select(
            [pl.col(c).cast(t) if c in table.column_names else pl.lit(None, dtype=t).alias(c)
             for c, t in _POLARS_SCHEMA.items() if c != REVIEWED_AT]
            + [_timestamp(table.column(REVIEWED_AT).type)])
    except (pl.exceptions.PolarsError, pa.ArrowException) as exc:
        raise ReviewError(f"review file {str(path)!r}: a column has the wrong type ({exc})") from exc
    frame = frame.select(list(_POLARS_SCHEMA))
    for column in (S.SAMPLE_ID, S.CONTENT_HASH, S.DECISION, REVIEWER, REVIEWED_AT):
        nulls = frame[column].null_count()
        if nulls:
            raise ReviewError(f"review file {str(path)!r}: column {column!r} has {nulls} null(s)")
    bad = frame.filter(~pl.col(S.DECISION).is_in(REVIEW_DECISIONS))
    if bad.height:
        raise ReviewError(f"review file {str(path)!r}: decision {bad[S.DECISION][0]!r} (sample "
                          f"{bad[S.SAMPLE_ID][0]!r}) is not one of {REVIEW_DECISIONS}")
    bad = frame.filter((pl.col(S.DECISION) == "relabel") & pl.col(S.LABEL).is_null())
    if bad.height:
        raise ReviewError(f"review file {str(path)!r}: sample {bad[S.SAMPLE_ID][0]!r} is relabelled without a label")
    return frame


def _timestamp(dtype: pa.DataType) -> pl.Expr:
    col = pl.col(REVIEWED_AT)
    if pa.types.is_timestamp(dtype):
        expr = col.dt.convert_time_zone("UTC") if dtype.tz else col.dt.replace_time_zone("UTC")
        return expr.dt.cast_time_unit("us").alias(REVIEWED_AT)
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return col.str.to_datetime(time_zone="UTC", time_unit="us").alias(REVIEWED_AT)
    raise ReviewError(f"column {REVIEWED_AT!r} is {dtype}; a timestamp (UTC) or ISO text")


def read_reviews(folder: str | os.PathLike) -> pl.DataFrame:
    """The newest review of each sample (REVIEW_SCHEMA columns), from every part file of `folder`.

    Ties on `reviewed_at` go to the later file name, then the later row.
    """
    return newest_per_sample([(path, read_review_file(path)) for path in review_files(folder)])


def newest_per_sample(parts: list[tuple[Path, pl.DataFrame]]) -> pl.DataFrame:
    """The newest row per sample of the part files' rows (given in file name order)."""
    if not parts:
        return empty_reviews()
    every = pl.concat([frame.with_columns(pl.lit(i).alias("_file"), pl.int_range(pl.len()).alias("_row"))
                       for i, (_, frame) in enumerate(parts)])
    return (every.sort([REVIEWED_AT, "_file", "_row"]).group_by(S.SAMPLE_ID, maintain_order=True).last()
            .sort(S.SAMPLE_ID).select(list(_POLARS_SCHEMA)))


class ReviewReader:
    """read_reviews for a long-lived reader (the app): a part file is parsed once, then kept
    while its name, size and mtime stay; a new file costs one file read, not the whole folder."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._parsed: dict[str, tuple[tuple[int, int], pl.DataFrame]] = {}
        self._lock = threading.Lock()

    def read(self) -> pl.DataFrame:
        with self._lock:
            parts, seen = [], set()
            for path in review_files(self.folder):
                st = path.stat()
                stamp = (st.st_size, st.st_mtime_ns)
                cached = self._parsed.get(path.name)
                if cached is None or cached[0] != stamp:
                    cached = (stamp, read_review_file(path))
                    self._parsed[path.name] = cached
                parts.append((path, cached[1]))
                seen.add(path.name)
            for gone in set(self._parsed) - seen:
                del self._parsed[gone]
            return newest_per_sample(parts)


def reviews_key(reviews: pl.DataFrame) -> str:
    """A digest of the effective reviews (what a run applies): the curate stage's key includes it."""
    digest = hashlib.blake2b(digest_size=16)
    for row in reviews.select(S.SAMPLE_ID, S.CONTENT_HASH, S.DECISION, S.LABEL).sort(S.SAMPLE_ID).iter_rows():
        digest.update(repr(row).encode())
    return digest.hexdigest()


def write_reviews(folder: str | os.PathLike, actions: Iterable[Mapping], *, reviewer: str,
                  request_id: str | None = None, now: datetime | None = None) -> tuple[Path, bool]:
    """Add one part file holding `actions` (dicts of sample_id, content_hash, decision, label, note).

    `request_id`: the client's id of this request; a request already written is not written
    again (returns its file and False). Returns (the part file, whether it was written now).
    """
    request_id = request_id or uuid.uuid4().hex
    if not _REQUEST_ID.match(request_id):
        raise ReviewError(f"request id {request_id!r} must be 1-64 letters, digits, '-' or '_'")
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise ReviewError(f"reviewer must be a non-empty name, got {reviewer!r}")
    rows = [dict(a) for a in actions]
    if not rows:
        raise ReviewError("no review actions to write")
    now = now or datetime.now(UTC)
    for row in rows:
        if row.get("decision") not in REVIEW_DECISIONS:
            raise ReviewError(f"decision {row.get('decision')!r} for sample {row.get('sample_id')!r} "
                              f"is not one of {REVIEW_DECISIONS}")
        if row["decision"] == "relabel" and not row.get("label"):
            raise ReviewError(f"relabel of sample {row.get('sample_id')!r} needs a label")
        for key in ("sample_id", "content_hash"):
            if not isinstance(row.get(key), str) or not row[key]:
                raise ReviewError(f"review action {row!r} lacks {key!r}")
    frame = pl.DataFrame({
        S.SAMPLE_ID: [r["sample_id"] for r in rows],
        S.CONTENT_HASH: [r["content_hash"] for r in rows],
        S.DECISION: [r["decision"] for r in rows],
        S.LABEL: [r.get("label") for r in rows],
        REVIEWER: [reviewer.strip()] * len(rows),
        REVIEWED_AT: [now] * len(rows),
        NOTE: [r.get("note") for r in rows],
    }, schema=_POLARS_SCHEMA)
    folder = Path(folder)
    with _WRITE_LOCK:  # one process: a retried request id is checked and written as one step
        existing = sorted(folder.glob(f"*-{request_id}.parquet")) if folder.is_dir() else []
        if existing:
            return existing[0], False
        name = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{request_id}.parquet"
        path = atomic.write_parquet(frame.to_arrow().cast(REVIEW_SCHEMA), folder / name)
    LOG.info("wrote %d review(s) by %r to %s", len(rows), reviewer, path)
    return path, True


def folder_signature(folder: str | os.PathLike) -> tuple:
    """What changes when a part file is added or replaced (a reader's cache key)."""
    out = []
    for p in review_files(folder):
        st = p.stat()
        out.append((p.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def utc_now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
