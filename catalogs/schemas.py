"""Column names and pyarrow schemas of the tables Winnow reads and writes.

Every stage reads and writes these; changing a name here changes it everywhere.
"""

from __future__ import annotations

import pyarrow as pa

# --- samples table: what the catalog loader produces, one row per input sample ---------
SAMPLE_ID = "sample_id"  # stable id: a hash of the sample's path relative to its root
PATH = "path"  # path as the user gave it (relative to the root), POSIX separators
ABS_PATH = "abs_path"  # resolved absolute location that the reader opens
LABEL = "label"  # given label, as a class name
LABEL_INDEX = "label_index"  # position of `label` in the catalog's class list

SAMPLES_SCHEMA = pa.schema(
    [
        pa.field(SAMPLE_ID, pa.string(), nullable=False),
        pa.field(PATH, pa.string(), nullable=False),
        pa.field(ABS_PATH, pa.string(), nullable=False),
        pa.field(LABEL, pa.string(), nullable=False),
        pa.field(LABEL_INDEX, pa.int32(), nullable=False),
        # Set at listing time when the file cannot be used at all (symlink out of the
        # root, say); the embedder turns it into the row's reason instead of reading it.
        pa.field("refused", pa.string(), nullable=True),
    ]
)

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
        pa.field(ABS_PATH, pa.string(), nullable=False),
        pa.field(LABEL, pa.string(), nullable=False),  # the final label to train on
        pa.field("original_label", pa.string(), nullable=False),
        pa.field(WEIGHT, pa.float64(), nullable=False),
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
"""Every reason code Winnow writes, with its meaning (shown by the README and the report)."""

UNUSABLE_REASONS = frozenset({"unreadable", "unsupported_format", "missing", "permission_denied", "too_large",
                              "outside_root"})
"""Reasons that mean the sample has no embedding: it is always dropped."""
