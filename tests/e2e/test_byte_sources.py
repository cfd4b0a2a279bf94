"""Issue 14 acceptance: the same real images as a folder, as Parquet with bytes, as a saved
Hugging Face dataset, as WebDataset shards, and as s3:// prefixes on a real S3-compatible server
(moto's server, its own process on localhost) give the same decisions per content hash.

Bad input stays rows with reasons: a truncated tar member, a corrupt image in a Parquet row, an
object deleted from the bucket after listing. The report shows thumbnails of byte-sourced
samples (read through the source's reader), and export writes the clean set back as Parquet
with bytes and as tar shards that Winnow reads again.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers.bytesources import (
    S3_ENV,
    folder_samples,
    http_server,
    moto_server,
    upload_tree,
    write_hf_saved,
    write_parquet_shards,
    write_webdataset,
)
from tests.helpers.images import digit_images, write_image_folder
from winnow.catalogs import schemas as S

pytest.importorskip("moto")
pytest.importorskip("s3fs")


def _run(target, out: Path) -> dict[str, str]:
    from winnow.pipeline.config import make_settings
    from winnow.pipeline.run import run_clean

    return run_clean(target, make_settings(out=str(out), encoder="pixels:8", k=5))


def _decisions(manifest: pl.DataFrame) -> dict[str, list[tuple]]:
    """content hash -> the sorted (decision, reasons, final label) of its rows."""
    out: dict[str, list[tuple]] = {}
    for row in manifest.iter_rows(named=True):
        out.setdefault(row[S.CONTENT_HASH], []).append(
            (row[S.DECISION], tuple(sorted(row[S.REASONS])), row.get(S.FINAL_LABEL)))
    return {k: sorted(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    """The same images in every local form, written in the image folder's listing order."""
    tmp = tmp_path_factory.mktemp("forms")
    folder = tmp / "folder"
    write_image_folder(folder, digit_images(150, seed=3))
    # Planted: an exact duplicate in the same class, and a copy filed under another class.
    first = sorted((folder / "3").iterdir())[0]
    shutil.copy(first, folder / "3" / "zz_copy.png")
    shutil.copy(sorted((folder / "5").iterdir())[0], folder / "8" / "zz_flipped.png")
    samples = folder_samples(folder)
    write_parquet_shards(tmp / "parquet", samples, shards=3, row_group_size=16)
    write_hf_saved(tmp / "hf", samples)
    write_webdataset(tmp / "wds", samples, shards=4)
    return tmp, samples


def test_every_form_gives_the_same_decisions_per_content_hash(forms, tmp_path, monkeypatch):
    tmp, samples = forms
    runs = {"folder": _run(str(tmp / "folder"), tmp_path / "o-folder")}
    expected = _decisions(pl.read_parquet(runs["folder"]["manifest"]))
    assert sum(len(v) for v in expected.values()) == len(samples)
    assert any("exact_duplicate" in r for rows in expected.values() for _, r, _ in rows)
    local = {"parquet": str(tmp / "parquet"), "hf": str(tmp / "hf"),
             "wds": str(tmp / "wds" / "shard-{000..003}.tar")}
    with moto_server() as endpoint:
        for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(key, value)
        for name in ("parquet", "hf", "wds"):
            upload_tree(endpoint, "data", tmp / name, name)
        targets = {**local, "s3-parquet": "s3://data/parquet/", "s3-hf": "s3://data/hf",
                   "s3-wds": "s3://data/wds/shard-{000..003}.tar"}
        for name, target in targets.items():
            runs[name] = _run(target, tmp_path / f"o-{name}")
            manifest = pl.read_parquet(runs[name]["manifest"])
            assert _decisions(manifest) == expected, name
    kinds = {name: pl.read_parquet(run["manifest"]).height for name, run in runs.items()}
    assert set(kinds.values()) == {len(samples)}

    # The report shows a thumbnail for every readable flagged sample of a byte source.
    run = Path(runs["parquet"]["run"])
    manifest = pl.read_parquet(runs["parquet"]["manifest"])
    flagged = set(manifest.filter(pl.col(S.REASONS).list.len() > 0)[S.SAMPLE_ID])
    cards = _Cards()
    for page in run.rglob("*.html"):
        cards.feed(page.read_text(encoding="utf-8"))
    assert flagged and flagged <= cards.thumbs, flagged - cards.thumbs


def test_bad_input_stays_rows_with_reasons(forms, tmp_path, monkeypatch):
    tmp, samples = forms
    # A corrupt image in a Parquet row (cut short) and a null cell.
    cells = [b for _, b, _ in samples]
    cells[7] = cells[7][:40]
    cells[9] = None
    pq.write_table(pa.table({"image": pa.array(cells, pa.binary()), "label": [lab for *_, lab in samples]}),
                   tmp_path / "bad.parquet")
    manifest = pl.read_parquet(_run(str(tmp_path / "bad.parquet"), tmp_path / "o1")["manifest"])
    assert manifest.height == len(samples)
    assert manifest[S.REASONS][7].to_list() == ["unreadable"] and manifest[S.REASONS][9].to_list() == ["missing"]

    # A truncated tar member: the shard cut inside its last image.
    shards = tmp_path / "wds"
    shutil.copytree(tmp / "wds", shards)
    last = shards / "shard-003.tar"
    raw = last.read_bytes()
    with tarfile.open(last) as tar:
        member = [m for m in tar.getmembers() if m.name.endswith(".png")][-1]
    last.write_bytes(raw[:member.offset_data + member.size // 2])
    manifest = pl.read_parquet(_run(str(shards), tmp_path / "o2")["manifest"])
    cut = manifest.filter(pl.col(S.PATH) == f"shard-003.tar/{member.name}")
    assert cut.height == 1 and cut[S.REASONS][0].to_list() == ["unreadable"] and cut[S.DECISION][0] == "drop"
    assert manifest.height == len(samples)  # every sample stays a row

    # A missing object: a shard deleted from the bucket after listing.
    from winnow.catalogs import list_samples, open_reader, resolve_catalog

    with moto_server() as endpoint:
        for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(key, value)
        upload_tree(endpoint, "data", tmp / "parquet", "parquet")
        table = list_samples(resolve_catalog("s3://data/parquet/"))
        import boto3

        boto3.client("s3", endpoint_url=endpoint).delete_object(Bucket="data", Key="parquet/part-00001.parquet")
        reads = open_reader(table).read_many(table.column(S.LOCATOR).to_pylist())
    gone = [r.reason for r, loc in zip(reads, table.column(S.LOCATOR).to_pylist(), strict=True) if "part-00001" in loc]
    assert gone and set(gone) == {"missing"}
    assert all(r.reason is None for r, loc in zip(reads, table.column(S.LOCATOR).to_pylist(), strict=True)
               if "part-00001" not in loc)


def test_a_dataset_object_and_export_in_source_form(forms, tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    import winnow
    from tests.helpers.bytesources import hf_dataset
    from winnow.pipeline.export import export_clean

    tmp, samples = forms
    monkeypatch.setenv("WINNOW_CACHE", str(tmp_path / "cache"))
    result = winnow.clean(hf_dataset(samples), encoder="pixels:8", k=5, out=tmp_path / "out")
    assert result.manifest.height == len(samples)
    assert result.summary["source"] == "hf_dataset"
    clean = result.clean.join(result.manifest.select(S.SAMPLE_ID, S.CONTENT_HASH), on=S.SAMPLE_ID)
    want = {hashlib.blake2b(b, digest_size=16).hexdigest() for _, b, _ in samples}
    assert clean.height == result.clean.height and set(clean[S.CONTENT_HASH]) <= want

    # Parquet with bytes: an HF Image struct column Winnow (and `datasets`) read back.
    written = export_clean(tmp_path / "out", fmt="parquet_images", dest=tmp_path / "exp" / "clean.parquet")
    back = pq.read_table(written)
    assert back.num_rows == clean.height
    assert {hashlib.blake2b(c["bytes"], digest_size=16).hexdigest() for c in back.column("image").to_pylist()} \
        == set(clean[S.CONTENT_HASH])
    import datasets

    loaded = datasets.Dataset.from_parquet(str(written), cache_dir=str(tmp_path / "hf-cache"))
    assert type(loaded.features["image"]).__name__ == "Image" and loaded[0]["image"].size == (32, 32)
    again = winnow.clean(str(written), encoder="pixels:8", k=5)
    assert again.manifest.height == clean.height and again.summary["source"] == "parquet_images"
    # Tar shards: <key>.<ext> + <key>.cls + <key>.json, read back by the webdataset source.
    shards = export_clean(tmp_path / "out", fmt="webdataset", dest=tmp_path / "exp" / "shards")
    from winnow.catalogs import list_samples, open_reader, resolve_catalog

    assert export_clean(tmp_path / "out", fmt="source", dest=tmp_path / "exp" / "src.parquet").is_file()
    table = list_samples(resolve_catalog(str(shards)))
    reads = open_reader(table).read_many(table.column(S.LOCATOR).to_pylist())
    assert sorted(r.content_hash for r in reads) == sorted(clean[S.CONTENT_HASH])
    labels = dict(zip(clean[S.CONTENT_HASH], clean["label"], strict=False))
    assert all(labels[r.content_hash] == lab for r, lab in zip(reads, table.column(S.LABEL).to_pylist(), strict=True))


def test_http_urls_are_read_with_range_requests(forms):
    """Object storage behind plain HTTP(S): a Parquet shard and a brace pattern of tar shards."""
    from winnow.catalogs import list_samples, open_reader, resolve_catalog
    from winnow.reading import hash_bytes

    tmp, samples = forms
    with http_server(tmp) as url:
        first = pq.read_metadata(tmp / "parquet" / "part-00000.parquet").num_rows
        for target, n in ((f"{url}/parquet/part-00000.parquet", first), (f"{url}/wds/shard-{{000..003}}.tar", None)):
            table = list_samples(resolve_catalog(target))
            reads = open_reader(table).read_many(table.column(S.LOCATOR).to_pylist())
            want = [hash_bytes(b) for _, b, _ in samples][:n]
            assert [r.content_hash for r in reads] == want, target


class _Cards(HTMLParser):
    """Sample ids a report page lists, and which of them show a thumbnail."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.thumbs: set[str] = set()
        self._card: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("data-sample-id") is not None:
            self._card = a["data-sample-id"] if tag in ("article", "tr") else None
        if tag == "img" and self._card and "small" not in (a.get("class") or "").split():
            self.thumbs.add(self._card)

    def handle_endtag(self, tag):
        if tag in ("article", "tr"):
            self._card = None
