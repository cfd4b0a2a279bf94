"""Exports round-trip: every kept row exactly once, with its final label and weight."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import digit_images, write_image_folder
from winnow.flows.clean import clean_dataset
from winnow.pipeline.config import RunConfig
from winnow.pipeline.export import (
    DestinationNotEmpty,
    UnknownFormat,
    export_clean,
    list_formats,
    safe_name,
)
from winnow.pipeline.report import RunNotFound


@pytest.fixture(scope="module")
def out_dir(prefect_harness, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export") / "data"
    paths = write_image_folder(root, digit_images(100, seed=3))
    good = paths[0].read_bytes()
    (root / "2" / "broken.png").write_bytes(good[:20])  # dropped: must not be exported
    out = tmp_path_factory.mktemp("export") / "out"
    clean_dataset(RunConfig(target=str(root), out=str(out), encoder="pixels:16", k=5))
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


def _hostile_run(tmp_path: Path) -> Path:
    """A hand-made run whose labels and file names try to escape the export folder."""
    run = tmp_path / "run"
    run.mkdir()
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    labels = ["../../escape", "/etc", "..", ".", "", "a\x00b\nc", "metadata.csv", "Cat", "cat", ".hidden"]
    names = ["../../x.png", "same.png", "same.png", "SAME.png", ".png", "..", "a/b/../c.png", "ok.png",
             "\x1b[31mred.png", "x" * 400 + ".png"]
    for i, (label, name) in enumerate(zip(labels, names, strict=True)):
        target = images / f"{i}.png"
        target.write_bytes(b"not really a png")
        rows.append({"sample_id": f"s{i:02d}", "path": name, "abs_path": str(target), "label": label,
                     "original_label": "orig", "weight": 0.5 + i})
    clean = pl.DataFrame(rows)
    clean.write_parquet(run / "clean.parquet")
    clean.select("sample_id", "path", "label", "weight").with_columns(
        pl.lit("keep").alias("decision"), pl.col("label").alias("final_label"),
    ).write_parquet(run / "manifest.parquet")
    (run / "summary.json").write_text(json.dumps({}))
    return run


def test_imagefolder_never_writes_outside_dest_whatever_the_labels(tmp_path):
    run = _hostile_run(tmp_path)
    dest = tmp_path / "deep" / "tree"
    export_clean(run, fmt="imagefolder", dest=dest)
    made = [p for p in tmp_path.rglob("*") if p.is_symlink()]
    assert len(made) == 10
    for link in made:
        rel = os.path.relpath(link, dest)
        assert not rel.startswith("..") and rel.count(os.sep) == 1, rel  # DEST/<label>/<file>
        assert not link.parent.name.startswith(".") and not link.name.startswith(".")
        assert len(link.name.encode()) <= 200
    folders = {p.name.casefold() for p in dest.iterdir() if p.is_dir()}
    assert len(folders) == 10  # Cat and cat, "." and "..", ... stay apart
    meta = pl.read_csv(dest / "metadata.csv", infer_schema=False)
    assert meta["label"].to_list() == pl.read_parquet(run / "clean.parquet")["label"].to_list()
    assert meta["file_name"].n_unique() == 10
    assert (dest / "metadata.csv").is_file() and not (dest / "metadata.csv").is_symlink()


def test_export_refuses_what_it_must_not_touch(tmp_path):
    run = _hostile_run(tmp_path)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(DestinationNotEmpty, match="photos"):
        export_clean(run, fmt="imagefolder", dest=foreign)
    assert (foreign / "holiday.jpg").read_bytes() == b"x"
    with pytest.raises(UnknownFormat, match="'xlsx'"):
        export_clean(run, fmt="xlsx", dest=tmp_path / "x")
    with pytest.raises(RunNotFound):
        export_clean(tmp_path / "nowhere", fmt="csv", dest=tmp_path / "x")
    assert list_formats() == ["parquet", "csv", "jsonl", "imagefolder"]
    assert safe_name("..") == "_" and safe_name("a/../b") == "a_.._b" and safe_name(".x.png", keep_suffix=True) == "_x.png"
