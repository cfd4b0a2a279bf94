"""Finding the image and label columns by type; the reader of rows out of Parquet / Arrow shards."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.catalogs import AmbiguousTable, MissingColumn
from winnow.catalogs.sources.byte_tables import (
    TableBytesReader,
    is_image_type,
    label_texts,
    pick_columns,
)
from winnow.reading import hash_bytes

STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def test_image_columns_are_found_by_type():
    assert is_image_type(pa.binary()) and is_image_type(pa.large_binary()) and is_image_type(STRUCT)
    assert not is_image_type(pa.string()) and not is_image_type(pa.struct([("path", pa.string())]))
    schema = pa.schema([("img", STRUCT), ("y", pa.int64()), ("note", pa.float64())])
    assert pick_columns(schema, {}, image_column=None, label_column=None, where="t") == ("img", "y")
    features = {"y": {"_type": "ClassLabel", "names": ["a", "b"]}}
    two = pa.schema([("img", STRUCT), ("y", pa.int64()), ("caption", pa.string())])
    assert pick_columns(two, features, image_column=None, label_column=None, where="t") == ("img", "y")
    with pytest.raises(AmbiguousTable, match=r"\['y', 'caption'\]"):
        pick_columns(two, {}, image_column=None, label_column=None, where="t")
    with pytest.raises(AmbiguousTable, match=r"\['a', 'b'\]"):
        pick_columns(pa.schema([("a", pa.binary()), ("b", pa.binary()), ("label", pa.string())]), {},
                     image_column=None, label_column=None, where="t")
    with pytest.raises(MissingColumn, match="'pic'"):
        pick_columns(schema, {}, image_column="pic", label_column=None, where="t")
    with pytest.raises(MissingColumn, match="'y' holds int64"):
        pick_columns(schema, {}, image_column="y", label_column=None, where="t")


def test_class_label_indexes_become_names():
    assert label_texts(pa.array([1, 0, None, 7]), ["cat", "dog"]) == ["dog", "cat", None, "7"]
    assert label_texts(pa.array([3, 4]), None) == ["3", "4"]


def test_reader_takes_rows_across_row_groups_and_says_what_is_missing(tmp_path):
    blobs = [f"image-{i}".encode() for i in range(10)]
    cells = [{"bytes": b, "path": None} for b in blobs]
    cells[4] = None
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"image": pa.array(cells, STRUCT)}), path, row_group_size=3)
    reader = TableBytesReader(image_column="image")
    locators = [f"{path}#{i}" for i in (9, 0, 4, 5, 10)] + [f"{tmp_path / 'gone.parquet'}#0", "garbage"]
    reads = reader.read_many(locators)
    assert [r.content_hash for r in reads[:2]] == [hash_bytes(blobs[9]), hash_bytes(blobs[0])]
    assert reads[3].data == blobs[5]
    assert [r.reason for r in reads] == [None, None, "missing", None, "missing", "missing", "missing"]


def test_reader_of_arrow_stream_files(tmp_path):
    path = tmp_path / "data.arrow"
    table = pa.table({"image": pa.array([b"a", b"bb", b"ccc"], pa.binary())})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    reads = TableBytesReader(image_column="image", fmt="arrow").read_many([f"{path}#2", f"{path}#0", f"{path}#3"])
    assert [r.data for r in reads] == [b"ccc", b"a", None] and reads[2].reason == "missing"


def test_a_new_reader_sees_a_rewritten_shard_and_pickles_without_its_cache(tmp_path):
    import pickle

    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"image": pa.array([b"old"], pa.binary())}), path)
    reader = TableBytesReader(image_column="image")
    assert reader.read_many([f"{path}#0"])[0].data == b"old"
    pq.write_table(pa.table({"image": pa.array([b"new"], pa.binary())}), path)
    again = pickle.loads(pickle.dumps(reader))
    assert again == reader and again.read_many([f"{path}#0"])[0].data == b"new"
    path.unlink()
    assert TableBytesReader(image_column="image").read_many([f"{path}#0"])[0].reason == "missing"
