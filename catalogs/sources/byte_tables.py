"""What the table sources of image bytes share: finding the image and label columns by type,
Hugging Face feature metadata (ClassLabel names), and the reader of rows out of shards.

A locator is `<shard url>#<row>`: the reader needs nothing but its settings, so any process
rebuilds it. Rows are read a block at a time (a Parquet row group, an Arrow file), the image
column only, and kept in a small byte-capped cache shared by the reader's threads, so a batch
of neighbouring rows costs one read.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from winnow.catalogs.errors import AmbiguousTable, EmptyDataset, MissingColumn
from winnow.catalogs.sources.base import Listing, make_sample_id
from winnow.catalogs.sources.storage import filesystem, is_url, open_file
from winnow.reading import SampleRead

CACHE_BYTES = 256 * 1024 * 1024  # blocks of image columns one reader keeps in memory (shared by its threads)


def is_image_type(dtype: pa.DataType) -> bool:
    """A column that holds image bytes: binary, or a struct with a binary `bytes` field (HF `Image`)."""
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return True
    if pa.types.is_struct(dtype):
        index = dtype.get_field_index("bytes")
        return index >= 0 and (pa.types.is_binary(dtype.field(index).type)
                               or pa.types.is_large_binary(dtype.field(index).type))
    return False


def hf_features(schema: pa.Schema) -> dict[str, Any]:
    """The Hugging Face `features` a Parquet / Arrow schema carries in its metadata ({} if none)."""
    meta = schema.metadata or {}
    text = meta.get(b"huggingface")
    if not text:
        return {}
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return (info.get("info") or {}).get("features") or {}


def class_names(feature: Any) -> list[str] | None:
    """A ClassLabel feature's names, else None."""
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and feature.get("names"):
        return [str(n) for n in feature["names"]]
    return None


def pick_columns(schema: pa.Schema, features: dict[str, Any], *, image_column: str | None,
                 label_column: str | None, where: str) -> tuple[str, str]:
    """(image column, label column): the given names, checked, or found by type when one fits.

    Image: the one column of bytes (binary, or an HF `Image` struct {bytes, path}). Label:
    `label`, else the one ClassLabel column, else the one text or integer column left.
    """
    names = schema.names
    if image_column is None:
        found = [f.name for f in schema if is_image_type(f.type)]
        if len(found) > 1:
            raise AmbiguousTable(f"{where} has several columns of image bytes: {found}; name one with "
                                 f"image_column (--image-column)")
        if not found:
            raise MissingColumn(f"{where} has no column of image bytes (binary, or a struct with 'bytes'); its "
                                f"columns: {names} (name one with image_column / --image-column)")
        image_column = found[0]
    elif image_column not in names:
        raise MissingColumn(f"{where} has no column {image_column!r} for the images; its columns: {names}")
    elif not is_image_type(schema.field(image_column).type):
        raise MissingColumn(f"{where}: column {image_column!r} holds {schema.field(image_column).type}, not image "
                            f"bytes (binary, or a struct with a 'bytes' field)")
    if label_column is None:
        if "label" in names:
            label_column = "label"
        else:
            labelled = [n for n in names if n != image_column and class_names(features.get(n))]
            plain = [f.name for f in schema if f.name != image_column
                     and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_integer(f.type))]
            found = labelled or plain
            if len(found) != 1:
                raise (AmbiguousTable if found else MissingColumn)(
                    f"{where} has no 'label' column and {'several' if found else 'no'} columns that could hold "
                    f"the labels{': ' + str(found) if found else ''}; name one with label_column (--label-column)")
            label_column = found[0]
    elif label_column not in names:
        raise MissingColumn(f"{where} has no column {label_column!r} for the labels; its columns: {names}")
    return image_column, label_column


def label_texts(column: pa.ChunkedArray | pa.Array, names: list[str] | None) -> list[str | None]:
    """Labels as text: ClassLabel indexes become their names (an index out of range stays a number)."""
    values = column.to_pylist()
    if names is not None:
        return [None if v is None else names[v] if isinstance(v, int) and 0 <= v < len(names) else str(v)
                for v in values]
    return [None if v is None else str(v) for v in values]


# --- reading rows ---------------------------------------------------------------------------------


class _BlockCache:
    """Blocks (one column of a row group / an Arrow file) by key, least recently used out first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple, load) -> Any:
        with self._lock:
            if key in self._blocks:
                self._blocks.move_to_end(key)
                return self._blocks[key][0]
        value, size = load()  # outside the lock: threads read different blocks at once
        with self._lock:
            if key not in self._blocks:
                self._blocks[key] = (value, size)
                self._size += size
            while self._size > self.capacity and len(self._blocks) > 1:
                _, (_, dropped) = self._blocks.popitem(last=False)
                self._size -= dropped
        return value

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._size = 0


@dataclass(frozen=True)
class TableBytesReader:
    """Reads `<shard url>#<row>` locators: the image bytes in column `image_column` of a
    Parquet file (fmt "parquet") or an Arrow IPC stream file (fmt "arrow", what
    `Dataset.save_to_disk` writes). Never raises for one sample: a shard that cannot be opened
    is `missing` for its rows, a null cell `missing`, a row past the end `missing`.

    Its block cache lives and dies with the reader (one per stage): a shard changed or deleted
    after one run is read afresh by the next, never served from memory."""

    image_column: str
    fmt: str = "parquet"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cache", _BlockCache(CACHE_BYTES))

    def __getstate__(self) -> dict[str, str]:  # pickled without its cache (another process, its own)
        return {"image_column": self.image_column, "fmt": self.fmt}

    def __setstate__(self, state: dict[str, str]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)
        self.__post_init__()

    def read_many(self, locators: Sequence[str]) -> list[SampleRead]:
        reads: list[SampleRead | None] = [None] * len(locators)
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for i, loc in enumerate(locators):
            url, _, row = loc.rpartition("#")
            if not url or not row.isdigit():
                reads[i] = SampleRead.failed("missing")
                continue
            by_shard.setdefault(url, []).append((i, int(row)))
        for url, wanted in by_shard.items():
            try:
                values = self._rows(url, [row for _, row in wanted])
            except Exception:  # a shard gone, unreadable or corrupt: every row of it says so
                values = [_MISSING] * len(wanted)
            for (i, _), value in zip(wanted, values, strict=True):
                reads[i] = _read_value(value)
        return reads  # type: ignore[return-value]

    def _rows(self, url: str, rows: list[int]) -> list[Any]:
        if self.fmt == "arrow":
            column = self._cache.get(("arrow", url, self.image_column), lambda: self._arrow_column(url))
            return _take_all(column, rows)
        starts = self._cache.get(("parquet-meta", url), lambda: _row_group_starts(url))
        out: list[Any] = [_MISSING] * len(rows)
        groups: dict[int, list[tuple[int, int]]] = {}
        for j, row in enumerate(rows):
            group = _group_of(starts, row)
            if group is not None:
                groups.setdefault(group, []).append((j, row - starts[group]))
        for group, members in groups.items():
            column = self._cache.get(("parquet", url, self.image_column, group),
                                lambda group=group: self._parquet_group(url, group))
            for (j, _), value in zip(members, _take(column, [o for _, o in members]), strict=True):
                out[j] = value
        return out

    def _parquet_group(self, url: str, group: int) -> tuple[pa.Array, int]:
        import pyarrow.parquet as pq

        with open_file(url) as fh:
            table = pq.ParquetFile(fh).read_row_group(group, columns=[self.image_column])
        column = _image_bytes(table.column(self.image_column))
        return column, column.nbytes

    def _arrow_column(self, url: str) -> tuple[pa.Array, int]:
        if not is_url(url):
            # Memory-mapped: the pages stay in the OS cache, not in this process's heap.
            with pa.memory_map(url) as source:
                table = pa.ipc.open_stream(source).read_all()
            return _image_bytes(table.column(self.image_column)), 0
        with open_file(url) as fh:
            table = pa.ipc.open_stream(pa.py_buffer(fh.read())).read_all()
        column = _image_bytes(table.column(self.image_column))
        return column, column.nbytes


_MISSING = object()


def _image_bytes(column: pa.ChunkedArray) -> pa.Array:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_struct(array.type):
        array = array.field("bytes")
    return array


def _take(column: pa.Array, offsets: list[int]) -> list[Any]:
    return column.take(pa.array(offsets, pa.int64())).to_pylist()


def _take_all(column: pa.Array, rows: list[int]) -> list[Any]:
    inside = [r for r in rows if r < len(column)]
    got = iter(_take(column, inside))
    return [next(got) if r < len(column) else _MISSING for r in rows]


def _row_group_starts(url: str) -> tuple[list[int], int]:
    import pyarrow.parquet as pq

    with open_file(url) as fh:
        meta = pq.ParquetFile(fh).metadata
    starts, total = [], 0
    for g in range(meta.num_row_groups):
        starts.append(total)
        total += meta.row_group(g).num_rows
    starts.append(total)
    return starts, 64 * len(starts)


def _group_of(starts: list[int], row: int) -> int | None:
    import bisect

    if row >= starts[-1]:
        return None
    return bisect.bisect_right(starts, row) - 1


def _read_value(value: Any) -> SampleRead:
    if value is _MISSING or value is None:
        return SampleRead.failed("missing")
    return SampleRead.from_bytes(bytes(value))


def file_exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


__all__ = ["CACHE_BYTES", "TableBytesReader", "class_names", "hf_features", "is_image_type", "label_texts",
           "pick_columns"]


def listing_of_shards(shards: Iterable[tuple[str, str, Iterable[str]]], *, what: str) -> Listing:
    """The listing of a table source: (shard name, shard URL, its rows' label texts) per shard ->
    one sample per row, path `shard#row`, locator `url#row`. EmptyDataset names `what` when no row."""
    paths, locators, labels = [], [], []
    for shard, url, texts in shards:
        for row, label in enumerate(texts):
            paths.append(f"{shard}#{row}")
            locators.append(f"{url}#{row}")
            labels.append(label)
    if not paths:
        raise EmptyDataset(f"{what} has no rows")
    return Listing.from_rows(paths=paths, locators=locators, labels=labels,
                             sample_ids=[make_sample_id(p) for p in paths])
