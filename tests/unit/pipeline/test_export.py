"""Export on hand-made hostile runs: nothing written outside the destination, refusals named.
Round trips of a real run's export: tests/e2e/test_export.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from winnow.pipeline.export import (
    DestinationNotEmpty,
    UnknownFormat,
    export_clean,
    list_formats,
    safe_name,
)
from winnow.pipeline.report import RunNotFound


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
    assert list_formats() == ["parquet", "csv", "jsonl", "imagefolder", "parquet_images", "webdataset", "source"]
    assert safe_name("..") == "_" and safe_name("a/../b") == "a_.._b" and safe_name(".x.png", keep_suffix=True) == "_x.png"


def test_byte_forms_keep_every_row_and_safe_member_names(tmp_path):
    """parquet_images and webdataset read each sample through the run's reader; hostile sample
    ids and paths never name a tar member outside its shard."""
    import tarfile

    import pyarrow.parquet as pq

    run = _hostile_run(tmp_path)
    table = pq.read_table(export_clean(run, fmt="parquet_images", dest=tmp_path / "x.parquet"))
    assert table.num_rows == 10 and {c["bytes"] for c in table.column("image").to_pylist()} == {b"not really a png"}
    assert "image" in json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    shards = export_clean(run, fmt="webdataset", dest=tmp_path / "wds")
    with tarfile.open(shards / "shard-000000.tar") as tar:
        names = tar.getnames()
    assert len(names) == 30 and all("/" not in n and not n.startswith(".") for n in names)
    kinds = [n.rsplit(".", 1)[1] for n in names]
    assert kinds.count("cls") == kinds.count("json") == 10
    assert len({n.rsplit(".", 1)[0] for n in names}) == 10  # one key per sample
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("x")
    with pytest.raises(DestinationNotEmpty):
        export_clean(run, fmt="webdataset", dest=tmp_path / "full")
