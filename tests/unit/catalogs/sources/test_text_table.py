"""The text_table source: csv / parquet / jsonl tables of texts, ids, bytes kept as stored."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow.catalogs import (
    DuplicatePath,
    InvalidCatalog,
    MissingColumn,
    list_samples,
    open_reader,
    parse_catalog,
    resolve_catalog,
)
from winnow.catalogs import schemas as S
from winnow.catalogs.sources import TextTableSource
from winnow.reading import hash_bytes

ROWS = [("a1", "the cat sat", "pets"), ("a2", "  ", "pets"), ("a3", "stocks fell", "money"),
        ("a4", "the cat sat", "money"), ("a5", "", "money")]


def _csv(path, rows=ROWS, header=("id", "text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _texts(table):
    reader = open_reader(table)
    return [r.data for r in reader.read_many(table.column(S.LOCATOR).to_pylist())]


def test_a_csv_with_text_column_lists_every_row_and_reads_the_cells_bytes(tmp_path):
    spec = resolve_catalog(_csv(tmp_path / "d.csv"), text_column="text", label_column="label")
    assert spec.source.kind == "text_table" and spec.source.modality == "text"
    table = list_samples(spec)
    assert table.num_rows == 5  # blank and empty texts are rows: their reasons come when decoded
    assert table.column(S.LABEL).to_pylist() == ["pets", "pets", "money", "money", "money"]
    assert _texts(table) == [b"the cat sat", b"  ", b"stocks fell", b"the cat sat", b""]
    reads = open_reader(table).read_many(["0", "3"])
    assert reads[0].content_hash == reads[1].content_hash == hash_bytes(b"the cat sat")
    assert table.column(S.PATH).to_pylist()[0] == "line 2"  # the CSV line a person finds it on


def test_ids_without_an_id_column_are_stable_when_rows_move_and_unique_for_copies(tmp_path):
    first = list_samples(resolve_catalog(_csv(tmp_path / "a.csv"), text_column="text"))
    moved = list_samples(resolve_catalog(_csv(tmp_path / "b.csv", rows=ROWS[::-1] + [("x", "new", "pets")]),
                                         text_column="text"))
    ids = dict(zip(first.column(S.SAMPLE_ID).to_pylist(), _texts(first), strict=True))
    ids_moved = dict(zip(moved.column(S.SAMPLE_ID).to_pylist(), _texts(moved), strict=True))
    assert len(set(ids)) == 5  # the two copies of "the cat sat" get their own ids
    assert all(ids_moved[k] == v for k, v in ids.items())


def test_the_id_column_gives_the_sample_ids_and_must_be_unique(tmp_path):
    table = list_samples(resolve_catalog(_csv(tmp_path / "d.csv"), text_column="text", id_column="id"))
    assert table.column(S.SAMPLE_ID).to_pylist() == ["a1", "a2", "a3", "a4", "a5"]
    bad = _csv(tmp_path / "dup.csv", rows=[("a1", "x", "p"), ("a1", "y", "q")])
    with pytest.raises(DuplicatePath, match="'a1'"):
        list_samples(resolve_catalog(bad, text_column="text", id_column="id"))
    with pytest.raises(MissingColumn, match="'nope'"):
        resolve_catalog(_csv(tmp_path / "d.csv"), text_column="nope")


def test_bytes_that_are_not_utf8_are_kept_as_stored(tmp_path):
    path = _csv(tmp_path / "d.csv")
    with open(path, "ab") as fh:
        fh.write(b"a6,caf\xe9 au lait,money\n")
    table = list_samples(resolve_catalog(path, text_column="text"))
    assert _texts(table)[-1] == b"caf\xe9 au lait"


def test_parquet_string_and_binary_columns_and_jsonl(tmp_path):
    pq.write_table(pa.table({"t": ["hello", None], "b": pa.array([b"\xff\xfe", b"ok"], pa.binary()),
                             "label": [1, 2]}), tmp_path / "d.parquet")
    table = list_samples(resolve_catalog(tmp_path / "d.parquet", text_column="t"))
    assert _texts(table) == [b"hello", b""] and table.column(S.LABEL).to_pylist() == ["1", "2"]
    table = list_samples(resolve_catalog(tmp_path / "d.parquet", text_column="b"))
    assert _texts(table) == [b"\xff\xfe", b"ok"]
    lines = [{"text": "one", "label": "x", "id": 7}, {"label": "y", "id": 8}, {"text": "\ud800", "label": "y", "id": 9}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8-sig")  # a BOM
    table = list_samples(resolve_catalog(tmp_path / "d.jsonl", id_column="id"))  # a .jsonl is a text table
    assert table.column(S.SAMPLE_ID).to_pylist() == ["7", "8", "9"]
    texts = _texts(table)
    assert texts[0] == b"one" and texts[1] == b""  # a record without the key: a missing cell
    with pytest.raises(UnicodeDecodeError):
        texts[2].decode("utf-8")  # a lone surrogate stays invalid UTF-8 (the row becomes not_utf8)


def test_a_catalog_file_names_the_source_and_columns_are_checked(tmp_path):
    _csv(tmp_path / "d.csv")
    spec = parse_catalog({"name": "t", "source": {"kind": "text_table", "path": "d.csv", "id_column": "id"}},
                         base_dir=tmp_path)
    assert isinstance(spec.source, TextTableSource)
    assert list_samples(spec).column(S.SAMPLE_ID).to_pylist()[0] == "a1"
    with pytest.raises(InvalidCatalog, match="colour"):
        parse_catalog({"name": "t", "source": {"kind": "text_table", "path": "d.csv", "colour": 1}}, base_dir=tmp_path)
    with pytest.raises(InvalidCatalog, match="path_column"):
        resolve_catalog(tmp_path / "d.csv", text_column="text", path_column="p")


def test_a_reader_whose_table_vanished_gives_reasons_not_errors(tmp_path):
    path = _csv(tmp_path / "d.csv")
    table = list_samples(resolve_catalog(path, text_column="text"))
    reader = open_reader(table)
    assert [r.reason for r in reader.read_many(["99", "x"])] == ["missing", "missing"]
    path.unlink()
    assert [r.reason for r in reader.read_many(["0"])] == ["missing"]


def test_an_image_manifest_takes_an_id_column_too(tmp_path):
    from tests.helpers.images import digit_images

    paths = []
    for i, (img, _label) in enumerate(digit_images(4)):
        p = tmp_path / f"{i}.png"
        img.save(p)
        paths.append(p.name)
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "key"])
        w.writerows([(p, "ab"[i % 2], f"k{i}") for i, p in enumerate(paths)])
    table = list_samples(resolve_catalog(tmp_path / "m.csv", id_column="key"))
    assert table.column(S.SAMPLE_ID).to_pylist() == ["k0", "k1", "k2", "k3"]
