"""Export of a real run (the flow on 100 digits): every format round-trips, every reader reads it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import digit_images, write_image_folder
from winnow.flows.clean import clean_dataset
from winnow.pipeline.config import make_settings
from winnow.pipeline.export import export_clean


@pytest.fixture(scope="module")
def out_dir(prefect_harness, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export") / "data"
    paths = write_image_folder(root, digit_images(100, seed=3))
    good = paths[0].read_bytes()
    (root / "2" / "broken.png").write_bytes(good[:20])  # dropped: must not be exported
    out = tmp_path_factory.mktemp("export") / "out"
    clean_dataset(str(root), make_settings(out=str(out), encoder="pixels:16", k=5))
    return out


def _expected(out: Path) -> pl.DataFrame:
    m = pl.read_parquet(out / "latest" / "manifest.parquet")
    kept = m.filter(pl.col("decision") != "drop")
    assert kept.height < m.height and (m["decision"] == "relabel").any()  # the test means something
    return kept.select("sample_id", pl.col("final_label").alias("label"), "weight").sort("sample_id")


def _assert_round_trip(got: pl.DataFrame, expected: pl.DataFrame) -> None:
    got = got.select("sample_id", pl.col("label").cast(pl.String), pl.col("weight").cast(pl.Float64))
    assert got["sample_id"].n_unique() == got.height  # each row once
    assert got.sort("sample_id").equals(expected)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_manifest_formats_round_trip(out_dir, tmp_path, fmt):
    written = export_clean(out_dir, fmt=fmt, dest=tmp_path / "exp")
    assert written == tmp_path / "exp" / f"clean.{fmt}"
    read = {"parquet": pl.read_parquet, "jsonl": pl.read_ndjson,
            "csv": lambda p: pl.read_csv(p, infer_schema=False)}[fmt]
    got = read(written)
    assert {"sample_id", "path", "abs_path", "label", "original_label", "weight"} <= set(got.columns)
    _assert_round_trip(got, _expected(out_dir))
    assert all(Path(p).is_file() for p in got["abs_path"])
    named = export_clean(out_dir, fmt=fmt, dest=tmp_path / f"named.{fmt}")  # a file name is used as is
    assert named == tmp_path / f"named.{fmt}" and not list(tmp_path.glob(".*.tmp"))


def test_parquet_reads_as_is_in_every_installed_reader(out_dir, tmp_path):
    path = export_clean(out_dir, fmt="parquet", dest=tmp_path / "clean.parquet")
    expected = _expected(out_dir)
    readers = {"polars": lambda: pl.read_parquet(path)}
    if importlib.util.find_spec("pandas"):
        import pandas as pd

        readers["pandas"] = lambda: pl.from_pandas(pd.read_parquet(path))
    if importlib.util.find_spec("duckdb"):
        import duckdb

        readers["duckdb"] = lambda: pl.from_arrow(duckdb.sql(f"SELECT * FROM read_parquet('{path}')").arrow())
    if importlib.util.find_spec("datasets"):
        import datasets

        readers["datasets"] = lambda: pl.from_arrow(
            datasets.Dataset.from_parquet(str(path), cache_dir=str(tmp_path / "hf")).data.table)
    for name, read in readers.items():
        got = read()
        assert got.height == expected.height, name
        _assert_round_trip(got, expected)


def test_imagefolder_is_a_tree_of_links_with_weights_beside_it(out_dir, tmp_path):
    dest = tmp_path / "tree"
    assert export_clean(out_dir, fmt="imagefolder", dest=dest) == dest
    meta = pl.read_csv(dest / "metadata.csv", infer_schema=False)
    _assert_round_trip(meta, _expected(out_dir))
    links = [p for p in dest.rglob("*") if p.is_symlink()]
    assert len(links) == meta.height
    for file_name, label, abs_path in meta.select("file_name", "label", "abs_path").iter_rows():
        link = dest / file_name
        assert link.is_symlink() and link.parent.name == label and link.resolve() == Path(abs_path).resolve()
    export_clean(out_dir, fmt="imagefolder", dest=dest)  # a re-export replaces the earlier one
    assert len([p for p in dest.rglob("*") if p.is_symlink()]) == meta.height
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
