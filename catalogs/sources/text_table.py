"""`kind = "text_table"`: text classification data, a .csv / .parquet / .jsonl table with a text
column and a label column; each row is a sample.

    [source]
    kind = "text_table"
    path = "reviews.csv"          # relative to the catalog file
    text_column = "text"
    label_column = "label"
    id_column = "id"              # optional: its values become the sample ids

A table given as the target with `--text-column` (or any .jsonl file) is this source by itself
(`TextTableSource.from_file`). A sample's bytes are its cell's UTF-8 bytes exactly as stored (a
CSV or JSONL file's bytes are kept even where they are not UTF-8), so its content hash is the
blake2b-128 of the text, as an image's is of its file. Text that cannot be used (an empty or
missing cell, only whitespace, bytes that are not UTF-8, over the length limit) is decided when
the text is decoded (`winnow.embeddings.text`): the row gets a reason, never a crash.

Without an id column a sample's id comes from its text (and which copy of that text it is), so
it survives reordering and inserted rows; with one, the column's values are the ids (each
must be unique and non-empty). The locator is the row number; the reader parses the table once
per process and keeps the text column (`_cells`).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from winnow.catalogs.errors import (
    CatalogError,
    DuplicatePath,
    EmptyDataset,
    InvalidManifest,
    MissingColumn,
    MissingRoot,
)
from winnow.catalogs.keys import reject_unknown, resolve_path, typed
from winnow.catalogs.sources.base import Listing, Source, make_sample_id
from winnow.reading import SampleRead

TEXT_TABLE_SUFFIXES = (".csv", ".parquet", ".jsonl")  # the table formats a text source reads


@dataclass(frozen=True, kw_only=True)
class TextTableSource(Source):
    kind = "text_table"
    modality = "text"
    description = "a .csv / .parquet / .jsonl table of texts and labels, one sample per row"

    path: Path  # the table file
    text_column: str = "text"  # column holding the texts
    label_column: str = "label"  # column holding the labels
    id_column: str | None = None  # column whose values are the sample ids; None: an id from each row's text

    @classmethod
    def from_table(cls, table: dict[str, Any], *, base_dir: Path, where: str) -> TextTableSource:
        reject_unknown(table, {"path", "text_column", "label_column", "id_column"}, where)
        return cls(path=resolve_path(typed(table, "path", str, where, required=True), base_dir),
                   text_column=typed(table, "text_column", str, where) or "text",
                   label_column=typed(table, "label_column", str, where) or "label",
                   id_column=typed(table, "id_column", str, where))

    @classmethod
    def from_file(cls, path: Path, *, text_column: str | None = None, label_column: str | None = None,
                  id_column: str | None = None) -> TextTableSource:
        """The source of a table given as the target; its columns are checked now."""
        source = cls(path=path.expanduser().resolve(), text_column=text_column or "text",
                     label_column=label_column or "label", id_column=id_column)
        source._columns()  # a missing file or column fails before any work
        return source

    def _columns(self) -> dict[str, list]:
        path = self.path
        if not path.is_file():
            raise MissingRoot(f"table {str(path)!r} does not exist")
        if path.suffix.lower() not in TEXT_TABLE_SUFFIXES:
            raise MissingRoot(f"text table {str(path)!r} must be a {' / '.join(TEXT_TABLE_SUFFIXES)} file")
        st = path.stat()
        wanted = tuple(dict.fromkeys(c for c in (self.text_column, self.label_column, self.id_column) if c))
        return _read_columns(str(path), wanted, st.st_size, st.st_mtime_ns)

    def list_samples(self) -> Listing:
        columns = self._columns()
        cells = columns[self.text_column]
        n = len(cells)
        if n == 0:
            raise EmptyDataset(f"table {str(self.path)!r} has no rows")
        labels = [_label_text(v) for v in columns[self.label_column]]
        rows = [_row_name(self.path, i) for i in range(n)]
        if self.id_column:
            ids = [_label_text(v) for v in columns[self.id_column]]
            for i, sid in enumerate(ids):
                if not sid:
                    raise MissingColumn(f"table {str(self.path)!r} {rows[i]}: empty id in column {self.id_column!r}")
            seen: dict[str, int] = {}
            for i, sid in enumerate(ids):
                if sid in seen:
                    raise DuplicatePath(f"table {str(self.path)!r}: id {sid!r} of column {self.id_column!r} appears "
                                        f"at {rows[seen[sid]]} and {rows[i]}")
                seen[sid] = i
            paths = ids
        else:
            ids, copies = [], {}
            for cell in cells:
                digest = hashlib.blake2b(cell or b"", digest_size=16).hexdigest()
                copy = copies[digest] = copies.get(digest, -1) + 1
                ids.append(make_sample_id(f"text:{digest}:{copy}"))
            paths = rows
        return Listing.from_rows(paths=paths, locators=[str(i) for i in range(n)], labels=labels, sample_ids=ids)

    def reader(self) -> TextTableReader:
        return TextTableReader(path=str(self.path), text_column=self.text_column)

    def fingerprint(self, listed: pa.Table) -> str:
        try:
            st = self.path.stat()
            return f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            return "-"

    def local_path(self) -> Path:
        return self.path


@dataclass(frozen=True)
class TextTableReader:
    """Locators are row numbers of the table; a sample's bytes are its text cell's bytes."""

    path: str  # the table file
    text_column: str  # its text column
    modality = "text"  # what the bytes are: the report shows them as snippets, not thumbnails

    def read_many(self, locators) -> list[SampleRead]:
        try:
            st = os.stat(self.path)
            cells = _read_columns(self.path, (self.text_column,), st.st_size, st.st_mtime_ns)[self.text_column]
        except FileNotFoundError:
            return [SampleRead.failed("missing") for _ in locators]
        except PermissionError:
            return [SampleRead.failed("permission_denied") for _ in locators]
        except (OSError, CatalogError):  # the table changed under the run
            return [SampleRead.failed("unreadable") for _ in locators]
        out = []
        for locator in locators:
            try:
                row = int(locator)
            except (TypeError, ValueError):
                out.append(SampleRead.failed("missing"))
                continue
            if not 0 <= row < len(cells):
                out.append(SampleRead.failed("missing"))
                continue
            out.append(SampleRead.from_bytes(cells[row] or b""))
        return out


def _row_name(path: Path, i: int) -> str:
    suffix = path.suffix.lower()
    return f"line {i + 2}" if suffix == ".csv" else f"line {i + 1}" if suffix == ".jsonl" else f"row {i + 1}"


def _label_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@functools.lru_cache(maxsize=4)
def _read_columns(path: str, columns: tuple[str, ...], size: int, mtime_ns: int) -> dict[str, list]:
    """{column: values} of a table file; text cells as bytes (None for a missing cell), others as
    read. Keyed by size and mtime, so a table edited in place is read again."""
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path, columns)
    if suffix == ".csv":
        return _read_csv(path, columns)
    return _read_jsonl(path, columns)


def _missing(path: str, column: str, found: list[str]) -> MissingColumn:
    return MissingColumn(f"table {path!r} has no column {column!r}; its columns: {found} (name another with "
                         f"--text-column / --label-column / --id-column, or text_column / label_column / id_column "
                         f"in [source])")


def _read_parquet(path: str, columns: tuple[str, ...]) -> dict[str, list]:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as exc:
        raise InvalidManifest(f"table {path!r} cannot be read as parquet: {exc}") from exc
    for c in columns:
        if c not in names:
            raise _missing(path, c, names)
    table = pq.read_table(path, columns=list(columns))
    out = {}
    for c in columns:
        col = table.column(c)
        kind = col.type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            out[c] = col.to_pylist()
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
            # Arrow's strings are UTF-8 by contract but not always checked: keep the stored bytes.
            out[c] = col.cast(pa.large_binary()).to_pylist()
        else:
            out[c] = [None if v is None else str(v).encode("utf-8") for v in col.to_pylist()]
    return out


def _read_csv(path: str, columns: tuple[str, ...]) -> dict[str, list]:
    # surrogateescape keeps every byte: a cell that is not UTF-8 gets its own reason, the rest stand.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 26))
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise EmptyDataset(f"table {path!r} is empty (no header line)")
            header = [h.lstrip("\ufeff") if i == 0 else h for i, h in enumerate(header)]  # a BOM
            for c in columns:
                if c not in header:
                    raise _missing(path, c, header)
            at = {c: header.index(c) for c in columns}
            out: dict[str, list] = {c: [] for c in columns}
            for line, record in enumerate(reader, start=2):
                if not record:
                    continue  # a blank line is no row (as every CSV reader treats it)
                if len(record) != len(header):
                    raise InvalidManifest(f"table {path!r} line {line}: {len(record)} fields, the header has "
                                          f"{len(header)}")
                for c, i in at.items():
                    out[c].append(_utf8(record[i]))
            return out
    except csv.Error as exc:
        raise InvalidManifest(f"table {path!r} cannot be read as csv: {exc}") from exc


def _read_jsonl(path: str, columns: tuple[str, ...]) -> dict[str, list]:
    out: dict[str, list] = {c: [] for c in columns}
    seen: set[str] = set()
    keys: set[str] = set()
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            if line_no == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark
            try:
                record = json.loads(raw.decode("utf-8", "surrogateescape"))
            except ValueError as exc:
                raise InvalidManifest(f"table {path!r} line {line_no} is not a JSON object: {exc}") from exc
            if not isinstance(record, dict):
                raise InvalidManifest(f"table {path!r} line {line_no} is {type(record).__name__}, not a JSON object")
            keys.update(record)
            for c in columns:
                value = record.get(c)  # a record without the key is a missing cell, as in a table
                seen.update([c] if c in record else [])
                if value is None:
                    out[c].append(None)
                elif isinstance(value, str):
                    out[c].append(_utf8(value))
                else:
                    out[c].append(_utf8(json.dumps(value, ensure_ascii=False)))
    for c in columns:
        if c not in seen and keys:
            raise _missing(path, c, sorted(keys))
    return out


def _utf8(text: str) -> bytes:
    """The bytes a str was decoded from with surrogateescape; a lone surrogate written as a JSON
    escape ("\\ud800") stays as its (invalid) UTF-8 bytes, so the row gets `not_utf8`."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")
