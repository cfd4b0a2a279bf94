"""Column names and pyarrow schemas of the tables Winnow reads and writes.

Every stage reads and writes these; changing a name here changes it everywhere.
"""

from __future__ import annotations

import pyarrow as pa

# --- samples table: what the catalog loader produces, one row per input sample ---------
SAMPLE_ID = "sample_id"  # stable id per source: by default a hash of `path` (see sources.base.make_sample_id)
PATH = "path"  # what a person calls the sample: its path relative to the root (POSIX separators), a shard
# and member, a row... unique within the catalog
LOCATOR = "locator"  # what the source's reader opens (opaque text): for file sources the absolute path
ABS_PATH = "abs_path"  # the sample's local file, for file sources (the same as `locator`); null for samples
# that are not files of their own (bytes in a table or an archive)
LABEL = "label"  # given label, as a class name
LABEL_INDEX = "label_index"  # position of `label` in the catalog's class list
REFUSED = "refused"  # a reason code decided at listing time; the sample is then never read

SAMPLES_SCHEMA = pa.schema(
    [
        pa.field(SAMPLE_ID, pa.string(), nullable=False),
        pa.field(PATH, pa.string(), nullable=False),
        pa.field(LOCATOR, pa.string(), nullable=False),
        pa.field(ABS_PATH, pa.string(), nullable=True),
        pa.field(LABEL, pa.string(), nullable=False),
        pa.field(LABEL_INDEX, pa.int32(), nullable=False),
        # Set at listing time when the sample cannot be used at all (a symlink out of the
        # root, a file that is not an image); the embedder turns it into the row's reason
        # instead of reading it.
        pa.field(REFUSED, pa.string(), nullable=True),
    ]
)
"""Schema metadata: `classes` (JSON list, label-index order), `catalog` (its name), `source`
(JSON {"kind", "settings"}: `catalogs.open_reader` rebuilds the reader from it), `skipped_files`
(JSON counts of inputs the source left out on purpose, e.g. hidden files)."""

LISTING_SCHEMA = pa.schema([f for f in SAMPLES_SCHEMA if f.name != LABEL_INDEX])
"""What a source's `list_samples` gives: the samples table before labels are indexed."""

# --- output manifest: exactly one row per input sample -----------------------------------
DECISION = "decision"
REASONS = "reasons"
LABEL_QUALITY = "label_quality"
SUGGESTED_LABEL = "suggested_label"
CONTENT_HASH = "content_hash"
WEIGHT = "weight"
DUPLICATE_OF = "duplicate_of"
CLUSTER = "cluster"
FINAL_LABEL = "final_label"

DECISIONS = ("keep", "drop", "relabel")

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field(SAMPLE_ID, pa.string(), nullable=False),
        pa.field(PATH, pa.string(), nullable=False),
        pa.field(LABEL, pa.string(), nullable=False),
        pa.field(DECISION, pa.string(), nullable=False),
        pa.field(REASONS, pa.list_(pa.string()), nullable=False),
        pa.field(LABEL_QUALITY, pa.float64(), nullable=True),  # null when not embedded
        pa.field(SUGGESTED_LABEL, pa.string(), nullable=True),
        pa.field(FINAL_LABEL, pa.string(), nullable=True),  # null for drops
        pa.field(WEIGHT, pa.float64(), nullable=False),  # 0 for drops
        pa.field(DUPLICATE_OF, pa.string(), nullable=True),
        pa.field(CLUSTER, pa.int32(), nullable=True),
        pa.field(CONTENT_HASH, pa.string(), nullable=True),
    ]
)
"""Required columns; detectors add their own score columns (`score_<detector>`) after these."""

# Per-row scores the label detectors add after the required columns, in the curation table and
# the manifest: every `score_<detector>` that ran, the probe's margin and the suggestion's
# confidence (float64, NaN / null where a row was not judged). The issue types' columns
# (outlier_score, ...) follow them: each type declares its own (winnow.curation.issues).
SCORE_PREFIX = "score_"
PROBE_MARGIN = "probe_margin"  # out-of-fold p[given] - max p[other], in [-1, 1]; low = hard or wrong
SUGGESTION_CONFIDENCE = "suggestion_confidence"  # the detectors' probability of the suggested label

COLUMN_TYPES: dict[str, pa.DataType] = {
    "float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_(), "string": pa.string(),
}
"""The arrow type of each dtype name an issue type may give its columns."""


def is_score_column(name: str) -> bool:
    """A detector's per-row score column (float64), allowed after a table's required columns."""
    return name.startswith(SCORE_PREFIX) or name in (PROBE_MARGIN, SUGGESTION_CONFIDENCE)


# Manifest column after the required ones: True on the rows of the audit sample, a fixed random
# sample of the usable rows that a person checks in `winnow review` (the audit filter); from the
# audited rows a run estimates the share of wrong labels (winnow.curation.audit).
AUDIT = "audit"

ORIGINAL_LABEL = "original_label"  # clean.parquet: the label as given, beside the final one

CLEAN_SCHEMA = pa.schema(
    [
        pa.field(SAMPLE_ID, pa.string(), nullable=False),
        pa.field(PATH, pa.string(), nullable=False),
        pa.field(ABS_PATH, pa.string(), nullable=True),  # the local file; null when the sample is not a file
        pa.field(LABEL, pa.string(), nullable=False),  # the final label to train on
        pa.field(ORIGINAL_LABEL, pa.string(), nullable=False),
        pa.field(WEIGHT, pa.float64(), nullable=False),
        pa.field(LOCATOR, pa.string(), nullable=False),  # what the source's reader opens (metadata `source`)
    ]
)

# --- a run's work tables (pipeline/layout.py names their files) ------------------------------
POSITION = "position"  # row of the samples table
REASON = "reason"  # why a sample has no embedding (an UNUSABLE_REASONS code), else null
ROW = "row"  # row of the sample's embedding in embeddings.npy (and node of the kNN graph); -1: none

EMBED_SHARD_SCHEMA = pa.schema(
    [
        pa.field(POSITION, pa.int64(), nullable=False),
        pa.field(CONTENT_HASH, pa.string(), nullable=True),  # null when the file could not be read
        pa.field(REASON, pa.string(), nullable=True),
    ]
)
"""One embedding shard's rows (every n-th sample)."""

EMBED_SCHEMA = pa.schema(
    [
        pa.field(SAMPLE_ID, pa.string(), nullable=False),
        pa.field(CONTENT_HASH, pa.string(), nullable=True),
        pa.field(REASON, pa.string(), nullable=True),
        pa.field(ROW, pa.int64(), nullable=False),
    ]
)
"""The embed stage's table: one row per sample, in samples-table order."""

FINAL_LABEL_INDEX = "final_label_index"  # class index to train on; -1 for drops

CURATION_SCHEMA = pa.schema(
    [
        pa.field(SAMPLE_ID, pa.string(), nullable=False),
        pa.field(DECISION, pa.string(), nullable=False),
        pa.field(REASONS, pa.list_(pa.string()), nullable=False),
        pa.field(FINAL_LABEL_INDEX, pa.int64(), nullable=False),
        pa.field(WEIGHT, pa.float64(), nullable=False),
        pa.field(DUPLICATE_OF, pa.string(), nullable=True),
        pa.field(CLUSTER, pa.int32(), nullable=True),
        pa.field(LABEL_QUALITY, pa.float64(), nullable=True),
        # Here the class INDEX the detectors suggest (-1 when not judged); the manifest names it.
        pa.field(SUGGESTED_LABEL, pa.int64(), nullable=False),
        pa.field(SUGGESTION_CONFIDENCE, pa.float64(), nullable=True),
    ]
)
"""The curate stage's table: one row per sample; score columns (is_score_column) and the issue
types' columns follow."""

CHANGES = "changes"  # every change of the row, in DIFF_CHANGES order
OLD_DECISION = "old_decision"
NEW_DECISION = "new_decision"
OLD_REASONS = "old_reasons"
NEW_REASONS = "new_reasons"

DIFF_SCHEMA = pa.schema(
    [
        pa.field(SAMPLE_ID, pa.string(), nullable=False),
        pa.field(PATH, pa.string(), nullable=False),
        pa.field(CHANGES, pa.list_(pa.string()), nullable=False),
        pa.field(OLD_DECISION, pa.string(), nullable=True),  # null: added
        pa.field(NEW_DECISION, pa.string(), nullable=True),  # null: removed
        pa.field(OLD_REASONS, pa.list_(pa.string()), nullable=True),
        pa.field(NEW_REASONS, pa.list_(pa.string()), nullable=True),
    ]
)
"""diff.parquet: one row per sample that changed since the previous run."""


class SchemaMismatch(RuntimeError):
    """A table Winnow is about to write does not match its schema: a bug, never the user's data."""


def check_table(table, schema: pa.Schema, *, what: str, extra=None) -> None:
    """Check that `table` (a pyarrow Table or anything with `.to_arrow()`, e.g. polars) starts
    with `schema`'s columns, in order, of its types (large / view string and list types count
    as their plain forms), with no nulls where the schema has none. Columns after those must
    satisfy `extra(name)`: True means a float64 column (a detector score), an arrow type means
    a column of that type (an issue type's), False an error; none are allowed without `extra`.
    """
    arrow = table if isinstance(table, pa.Table) else table.to_arrow()
    names = arrow.column_names
    want = schema.names
    if names[: len(want)] != want:
        raise SchemaMismatch(f"{what} has columns {names}; its schema starts with {want}")
    for f in schema:
        col = arrow.column(f.name)
        if _plain(col.type) != f.type:
            raise SchemaMismatch(f"{what} column {f.name!r} is {col.type}; its schema says {f.type}")
        if not f.nullable and col.null_count:
            raise SchemaMismatch(f"{what} column {f.name!r} has {col.null_count} null(s); its schema allows none")
    for name in names[len(want):]:
        allowed = extra(name) if extra is not None else False
        if allowed is False or allowed is None:
            raise SchemaMismatch(f"{what} has column {name!r}, which is not in its schema")
        expected = pa.float64() if allowed is True else allowed
        got = _plain(arrow.column(name).type)
        if got != expected:
            raise SchemaMismatch(f"{what} score column {name!r} is {arrow.column(name).type}, not {expected}")


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_list(t) or pa.types.is_list(t) or pa.types.is_list_view(t):
        return pa.list_(_plain(t.value_type))
    return t

# --- reason codes ---------------------------------------------------------------------------
# The codes of files Winnow cannot use are fixed here: the embedder writes them. Every other
# code belongs to an issue type (winnow.curation.issues declares each with its meaning);
# winnow.pipeline.issues.reason_codes() is the whole list.
UNUSABLE_REASON_CODES: dict[str, str] = {
    "unreadable": "not a decodable image: corrupt, truncated, empty, not an image, a format outside "
    "PNG/JPEG/WebP/GIF/BMP/TIFF/AVIF, a FIFO or device, a symlink loop",
    "unsupported_format": "a file in a class folder whose extension is not an image format Winnow reads "
    "(PNG, JPEG, WebP, GIF, BMP, TIFF, AVIF): listed, never opened",
    "missing": "the file vanished between listing and reading, or is a dangling symlink",
    "permission_denied": "the file cannot be opened for reading (permissions)",
    "too_large": "the image declares more pixels than the decoder's limit (decompression bomb), "
    "or the file is over 256 MiB",
    "outside_root": "a symlink (or a symlinked folder on its path) leads outside the dataset root; "
    "refused unless the catalog allows it",
    # Text samples (a table's text column): the cell is there but holds nothing to embed.
    "empty_text": "a text sample that is empty (or a missing cell)",
    "blank_text": "a text sample of only whitespace",
    "not_utf8": "a text sample whose bytes are not valid UTF-8",
    "text_too_long": "a text sample over the length limit (100,000 characters)",
}
"""Reasons that mean the sample has no embedding (it is always dropped), with their meanings.
A sample source's reader returns these codes for samples it cannot read."""

UNUSABLE_REASONS = frozenset(UNUSABLE_REASON_CODES)
"""Reasons that mean the sample has no embedding: it is always dropped."""
