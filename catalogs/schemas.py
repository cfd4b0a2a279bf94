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

CLEAN_SCHEMA = pa.schema(
    [
        pa.field(SAMPLE_ID, pa.string(), nullable=False),
        pa.field(PATH, pa.string(), nullable=False),
        pa.field(ABS_PATH, pa.string(), nullable=True),  # the local file; null when the sample is not a file
        pa.field(LABEL, pa.string(), nullable=False),  # the final label to train on
        pa.field("original_label", pa.string(), nullable=False),
        pa.field(WEIGHT, pa.float64(), nullable=False),
        pa.field(LOCATOR, pa.string(), nullable=False),  # what the source's reader opens (metadata `source`)
    ]
)

# --- reason codes ---------------------------------------------------------------------------
REASON_CODES: dict[str, str] = {
    "unreadable": "not a decodable image: corrupt, truncated, empty, not an image, a format outside "
    "PNG/JPEG/WebP/GIF/BMP/TIFF, a FIFO or device, a symlink loop",
    "unsupported_format": "a file in a class folder whose extension is not an image format Winnow reads "
    "(PNG, JPEG, WebP, GIF, BMP, TIFF): listed, never opened",
    "missing": "the file vanished between listing and reading, or is a dangling symlink",
    "permission_denied": "the file cannot be opened for reading (permissions)",
    "too_large": "the image declares more pixels than the decoder's limit (decompression bomb), "
    "or the file is over 256 MiB",
    "outside_root": "a symlink (or a symlinked folder on its path) leads outside the dataset root; "
    "refused unless the catalog allows it",
    "label_issue": "the evidence says the given label is wrong",
    "near_duplicate": "a near copy of another sample that is kept",
    "exact_duplicate": "a byte-identical copy of another sample that is kept",
    "duplicate_label_conflict": "duplicates of each other carry different labels",
    "leak": "duplicates a sample of a holdout catalog",
    "outlier": "far from every other sample (kNN distance beyond the robust cut-off)",
    "rare_class": "its class has fewer samples than the label detectors need (max(5, k)): its labels are not "
    "judged and it is left out of the noise estimate; kept unless the policy drops it",
    "pruned": "dropped to reach the target size",
    "over_cap": "dropped to respect a per-class or per-cluster cap",
}
"""Every reason code Winnow writes, with its meaning (shown by the README and the report).
A sample source's reader returns these codes for samples it cannot read."""

UNUSABLE_REASONS = frozenset({"unreadable", "unsupported_format", "missing", "permission_denied", "too_large",
                              "outside_root"})
"""Reasons that mean the sample has no embedding: it is always dropped."""
