"""Parquet with image bytes: listed from the label column alone, read a row group at a time."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers.bytesources import folder_samples, write_parquet_shards
from winnow.catalogs import InvalidCatalog, list_samples, load_catalog, open_reader, resolve_catalog
from winnow.catalogs import schemas as S
from winnow.reading import hash_bytes


@pytest.fixture
def samples(digit_folder):
    return folder_samples(digit_folder)


@pytest.mark.parametrize(("struct", "names"), [(True, None), (False, [str(i) for i in range(10)])])
def test_a_parquet_target_of_image_bytes(tmp_path, samples, struct, names):
    write_parquet_shards(tmp_path / "pq", samples, shards=3, struct=struct, row_group_size=7, class_names=names)
    spec = resolve_catalog(str(tmp_path / "pq"))
    assert spec.source.kind == "parquet_images" and spec.source.image_column == "image"
    table = list_samples(spec)
    assert table.num_rows == len(samples)
    # ClassLabel indexes come back as their names; row order is shard order.
    assert table.column(S.LABEL).to_pylist() == [lab for _, _, lab in samples]
    assert table.column(S.PATH).to_pylist()[:2] == ["part-00000.parquet#0", "part-00000.parquet#1"]
    reads = open_reader(table).read_many(table.column(S.LOCATOR).to_pylist())
    assert [r.content_hash for r in reads] == [hash_bytes(b) for _, b, _ in samples]
    # sample ids are stable: the same shards listed again give the same ids
    assert list_samples(resolve_catalog(str(tmp_path / "pq"))).column(S.SAMPLE_ID) == table.column(S.SAMPLE_ID)


def test_a_table_of_paths_stays_a_manifest(tmp_path, digit_folder):
    pq.write_table(pa.table({"path": ["digits/0/x.png"], "label": ["0"]}), tmp_path / "m.parquet")
    assert resolve_catalog(str(tmp_path / "m.parquet")).source.kind == "manifest"


def test_columns_named_by_the_user_and_by_a_catalog(tmp_path, samples):
    rows = samples[::6]
    pq.write_table(pa.table({"a": [b for _, b, _ in rows], "b": [b for _, b, _ in rows],
                             "y": [lab for _, _, lab in rows]}), tmp_path / "two.parquet")
    spec = resolve_catalog(str(tmp_path / "two.parquet"), image_column="b", label_column="y")
    assert (spec.source.image_column, spec.source.label_column) == ("b", "y")
    catalog = tmp_path / "c.toml"
    catalog.write_text('name = "c"\n[source]\nkind = "parquet_images"\npath = "two.parquet"\nimage_column = "a"\n'
                       'label_column = "y"\n')
    table = list_samples(load_catalog(catalog))
    assert table.num_rows == 20 and json_kind(table) == "parquet_images"
    catalog.write_text('name = "c"\n[source]\nkind = "parquet_images"\npath = "two.parquet"\nroot = "x"\n')
    with pytest.raises(InvalidCatalog, match="'root'"):
        load_catalog(catalog)


def test_a_corrupt_image_in_a_row_is_read_as_bytes_and_a_null_as_missing(tmp_path, samples):
    cells = [b for _, b, _ in samples[::10]]
    cells[3] = cells[3][:25]  # cut short: the decoder will call it unreadable
    cells[5] = None
    pq.write_table(pa.table({"image": pa.array(cells, pa.binary()), "label": [lab for *_, lab in samples[::10]]}),
                   tmp_path / "bad.parquet")
    table = list_samples(resolve_catalog(str(tmp_path / "bad.parquet")))
    reads = open_reader(table).read_many(table.column(S.LOCATOR).to_pylist())
    assert reads[3].data == cells[3] and reads[5].reason == "missing"


def json_kind(table) -> str:
    import json

    return json.loads(table.schema.metadata[b"source"])["kind"]
