"""The samples table: a catalog's source listed and validated (one row per input sample), and
the source reopened from the table alone (`source_of`, `open_reader`), in any process."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from winnow.catalogs import schemas as S
from winnow.catalogs.builders import ensure_built
from winnow.catalogs.errors import DuplicatePath, EmptyDataset, TooFewClasses, UnknownLabel
from winnow.catalogs.sources import Source, get_source
from winnow.catalogs.sources.base import make_sample_id
from winnow.catalogs.sources.image_folder import SKIPPED_KINDS
from winnow.catalogs.spec import CatalogSpec
from winnow.reading import FileReader, SampleRead, SampleReader, read_one

SOURCE_KEY = b"source"  # schema metadata: JSON {"kind": ..., "settings": {...}}

SamplesRef = pa.Table | pa.Schema | str | os.PathLike
"""A samples table, its schema, or the path of its Parquet file (only the schema is read)."""


def list_samples(spec: CatalogSpec) -> pa.Table:
    """The samples table of a catalog, validated; raises a named CatalogError on bad input.

    Columns follow `catalogs.schemas.SAMPLES_SCHEMA`; the metadata (see there) holds the class
    list in label-index order (`classes_of`), the source's kind and settings (`source_of`,
    `open_reader`) and the counts of inputs the source left out (`skipped_files_of`).
    """
    ensure_built(spec)
    listing = spec.source.list_samples()
    table = _with_label_index(_checked(listing.table, spec.source.kind), spec)
    classes = json.loads(table.schema.metadata[b"classes"])
    skipped = {**dict.fromkeys(SKIPPED_KINDS, 0), **listing.skipped}
    source = {"kind": spec.source.kind, "settings": spec.source.settings()}
    return table.replace_schema_metadata({
        "classes": json.dumps(classes), "catalog": spec.name, SOURCE_KEY: json.dumps(source),
        "skipped_files": json.dumps(skipped),
    })


def skipped_files_of(table: SamplesRef) -> dict[str, int]:
    """Counts of the inputs the listing left out, by kind (hidden files...); zeros when none."""
    text = _metadata(table).get(b"skipped_files")
    return json.loads(text) if text else dict.fromkeys(SKIPPED_KINDS, 0)


def classes_of(table: SamplesRef) -> list[str]:
    """The class names of a samples table, in label-index order."""
    meta = _metadata(table)
    if b"classes" not in meta:
        return []
    text = meta[b"classes"].decode("utf-8")
    # JSON, so a class name may hold any character; older tables joined names with \x1f.
    return json.loads(text) if text.startswith("[") else text.split("\x1f")


def source_of(table: SamplesRef) -> Source:
    """The source that listed a samples table, rebuilt from its metadata (its kind must be
    registered in this process, or installed as a `winnow.sources` entry point)."""
    text = _metadata(table).get(SOURCE_KEY)
    if text is None:
        raise ValueError("this samples table records no source (written before sources were a registry); "
                         "list the catalog again")
    found = json.loads(text)
    return get_source(found["kind"]).from_settings(found["settings"])


def open_reader(table: SamplesRef) -> SampleReader:
    """The reader of a samples table's `locator`s, rebuilt from its metadata: what the
    embedder, the report's thumbnails and export read samples through.

    A table written before sources were a registry has no `source`: its rows are files
    (`abs_path`), read with the confinement it recorded.
    """
    meta = _metadata(table)
    if SOURCE_KEY not in meta:
        return FileReader(confine_to=meta.get(b"confine_to", b"").decode("utf-8") or None)
    return source_of(table).reader()


def read_sample(table: SamplesRef, locator: str) -> SampleRead:
    """One sample's bytes (or reason) through its table's reader. For many samples, open the
    reader once (`open_reader`) and call its `read_many`."""
    return read_one(open_reader(table), locator)


def confinement_of(table: SamplesRef) -> str | None:
    """The folder every read of a file source must stay inside, or None (the catalog allows
    any, or the samples are not local files)."""
    return getattr(open_reader(table), "confine_to", None)


def _metadata(table: SamplesRef) -> dict[bytes, bytes]:
    if isinstance(table, pa.Table):
        schema = table.schema
    elif isinstance(table, pa.Schema):
        schema = table
    else:
        schema = pq.read_schema(table)
    return schema.metadata or {}


def _checked(listed: pa.Table, kind: str) -> pa.Table:
    """A source's listing held to the contract every later stage relies on."""
    missing = [name for name in S.LISTING_SCHEMA.names if name not in listed.column_names]
    if missing:  # a source's bug, not the user's mistake
        raise TypeError(f"the {kind!r} source listed a table without the column(s) {missing}")
    listed = listed.select(S.LISTING_SCHEMA.names).cast(S.LISTING_SCHEMA)
    if listed.num_rows == 0:
        raise EmptyDataset(f"the {kind!r} source lists no samples")
    for name in (S.SAMPLE_ID, S.PATH, S.LOCATOR):
        column = listed.column(name)
        if column.null_count:
            raise TypeError(f"the {kind!r} source listed a sample without a {name}")
    labels = listed.column(S.LABEL).to_pylist()
    if None in labels or "" in labels:
        row = labels.index(None) if None in labels else labels.index("")
        raise UnknownLabel(f"sample {listed.column(S.PATH)[row].as_py()!r} has no label ({labels[row]!r})")
    return listed


def _with_label_index(listed: pa.Table, spec: CatalogSpec) -> pa.Table:
    labels = listed.column(S.LABEL).to_pylist()
    paths = listed.column(S.PATH)
    found = sorted(set(labels))
    if spec.classes is not None and len(spec.classes) < 1:
        raise TooFewClasses(f"the class list is empty: {list(spec.classes)!r}")
    if spec.classes is not None:
        allowed = set(spec.classes)
        for i, label in enumerate(labels):
            if label not in allowed:
                raise UnknownLabel(f"sample {paths[i].as_py()!r} has label {label!r}, which is not in the class "
                                   f"list {list(spec.classes)}")
        empty = [c for c in spec.classes if c not in set(found)]
        if empty:
            raise TooFewClasses(f"class(es) {empty!r} of the class list have no samples")
        classes = list(spec.classes)
    else:
        classes = found
    # One class is a dataset too (an unlabeled folder): its duplicates, outliers and unusable
    # files are found; its labels are not judged (label detection reports a lone class unjudged).
    _check_unique_ids(listed.column(S.SAMPLE_ID).to_pylist(), paths.to_pylist())
    index = {c: i for i, c in enumerate(classes)}
    position = S.SAMPLES_SCHEMA.get_field_index(S.LABEL_INDEX)
    table = listed.add_column(position, S.SAMPLES_SCHEMA.field(S.LABEL_INDEX),
                              pa.array([index[label] for label in labels], pa.int32()))
    return table.cast(S.SAMPLES_SCHEMA).replace_schema_metadata({"classes": json.dumps(classes)})


def _check_unique_ids(ids: Sequence[str], paths: Sequence[str]) -> None:
    if len(set(ids)) == len(ids):
        return
    first: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid in first:  # a repeated id column, or a 64-bit hash collision: never silent
            raise DuplicatePath(f"samples {paths[first[sid]]!r} and {paths[i]!r} have the same sample_id {sid!r}; "
                                f"every sample needs its own")
        first[sid] = i


__all__ = ["SKIPPED_KINDS", "classes_of", "confinement_of", "list_samples", "make_sample_id", "open_reader",
           "read_sample", "skipped_files_of", "source_of"]
