"""A sample source registered from outside the package runs through a whole `winnow run`.

The toy source below is defined here, not in Winnow: scikit-learn's digits rendered to PNG bytes
in memory, no file on disk. With one `register_source` call a catalog names it
(`kind = "toy_digits"`), and its samples reach the manifest, the summary, the report and the
export, each with the reason Winnow's promise gives it: a corrupt sample is `unreadable`, a
sample its reader cannot find is `missing`, a sample refused at listing keeps its reason, and
two rows with the same bytes are an exact duplicate.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from winnow.catalogs import SOURCES, InvalidCatalog, Listing, Source, register_source
from winnow.catalogs import schemas as S
from winnow.catalogs.keys import reject_unknown, typed
from winnow.reading import SampleRead


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


@functools.cache
def render_png(index: int) -> bytes:
    """Digit `index` as PNG bytes, upscaled to 16 x 16 (deterministic)."""
    from PIL import Image

    images, _ = _digits()
    pixels = np.round(images[index] * (255.0 / 16.0)).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, mode="L").resize((16, 16), Image.Resampling.NEAREST).save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class ToyDigitsReader:
    """Locators: "<index>" renders digit <index>; "corrupt:<index>" its first 30 bytes; "gone:<i>" nothing."""

    def read_many(self, locators):
        reads = []
        for loc in locators:
            kind, _, index = loc.rpartition(":")
            if kind == "gone":
                reads.append(SampleRead.failed("missing"))
            elif kind == "corrupt":
                reads.append(SampleRead.from_bytes(render_png(int(index))[:30]))
            else:
                reads.append(SampleRead.from_bytes(render_png(int(index))))
        return reads


@dataclass(frozen=True, kw_only=True)
class ToyDigitsSource(Source):
    kind = "toy_digits"
    description = "scikit-learn digits as PNG bytes in memory (a test's source)"

    n: int  # digits listed: indexes 0..n-1
    version: int = 1  # bumps the fingerprint: stands for "the data changed"

    @classmethod
    def from_table(cls, table: dict[str, Any], *, base_dir: Path, where: str) -> ToyDigitsSource:
        reject_unknown(table, {"n", "version"}, where)
        n = typed(table, "n", int, where, required=True)
        if n < 20:
            raise InvalidCatalog(f"{where}: 'n' must be at least 20, got {n!r}")
        return cls(n=n, version=typed(table, "version", int, where) or 1)

    def list_samples(self) -> Listing:
        _, target = _digits()
        paths = [f"digits/{i:04d}.png" for i in range(self.n)]
        locators = [str(i) for i in range(self.n)]
        labels = [str(target[i]) for i in range(self.n)]
        refused = [None] * self.n
        extra = [("broken/0003.png", "corrupt:3", str(target[3]), None),
                 ("lost/0004.png", "gone:4", str(target[4]), None),
                 ("copies/0005.png", "5", str(target[5]), None),  # the same bytes as digits/0005.png
                 ("notes/readme.txt", "6", str(target[6]), "unsupported_format")]  # refused: never read
        for path, loc, label, why in extra:
            paths.append(path)
            locators.append(loc)
            labels.append(label)
            refused.append(why)
        return Listing.from_rows(paths=paths, locators=locators, labels=labels, refused=refused,
                                 skipped={"hidden": 2})

    def reader(self) -> ToyDigitsReader:
        return ToyDigitsReader()

    def fingerprint(self, listed) -> str:
        return f"toy-digits-v{self.version}"


@pytest.fixture
def toy_source():
    register_source(ToyDigitsSource)
    yield ToyDigitsSource
    SOURCES.pop(ToyDigitsSource.kind, None)


class _Cards(HTMLParser):
    """Sample ids a report page lists, and which of them show a thumbnail."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.thumbs: set[str] = set()
        self._card: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("data-sample-id") is not None:
            self.ids.add(a["data-sample-id"])
            self._card = a["data-sample-id"] if tag in ("article", "tr") else None
        if tag == "img" and self._card and "small" not in (a.get("class") or "").split():
            self.thumbs.add(self._card)

    def handle_endtag(self, tag):
        if tag in ("article", "tr"):
            self._card = None


def test_a_registered_toy_source_runs_end_to_end(tmp_path, toy_source):
    from winnow.pipeline.config import make_settings
    from winnow.pipeline.export import export_clean
    from winnow.pipeline.run import run_clean

    catalog = tmp_path / "toy.toml"
    catalog.write_text('name = "toy"\n[source]\nkind = "toy_digits"\nn = 120\n')
    out = tmp_path / "out"
    paths = run_clean(str(catalog), make_settings(out=str(out), encoder="pixels:8", k=5))

    manifest = pl.read_parquet(paths["manifest"])
    listed = ToyDigitsSource(n=120).list_samples().table
    assert manifest.height == 124 and sorted(manifest[S.PATH]) == sorted(listed.column(S.PATH).to_pylist())
    by_path = {row[S.PATH]: row for row in manifest.iter_rows(named=True)}
    assert by_path["broken/0003.png"][S.REASONS] == ["unreadable"]
    assert by_path["lost/0004.png"][S.REASONS] == ["missing"]
    assert by_path["notes/readme.txt"][S.REASONS] == ["unsupported_format"]
    assert all(by_path[p][S.DECISION] == "drop" for p in ("broken/0003.png", "lost/0004.png", "notes/readme.txt"))
    # Content hashes are blake2b-128 of the bytes the reader gave, whatever the source.
    for i in (0, 7, 119):
        assert by_path[f"digits/{i:04d}.png"][S.CONTENT_HASH] == hashlib.blake2b(render_png(i), digest_size=16).hexdigest()
    copy, original = by_path["copies/0005.png"], by_path["digits/0005.png"]
    assert copy[S.CONTENT_HASH] == original[S.CONTENT_HASH]
    pair = [copy, original]
    assert sorted("exact_duplicate" in r[S.REASONS] for r in pair) == [False, True]
    kept = next(r for r in pair if "exact_duplicate" not in r[S.REASONS])
    assert next(r for r in pair if "exact_duplicate" in r[S.REASONS])[S.DUPLICATE_OF] == kept[S.SAMPLE_ID]

    summary = json.loads(Path(paths["summary"]).read_text())
    assert summary["source"] == "toy_digits" and summary["samples"] == 124
    assert sum(summary["decisions"].values()) == 124
    assert summary["reasons"]["unreadable"] == 1 and summary["reasons"]["missing"] == 1
    assert summary["reasons"]["unsupported_format"] == 1 and summary["reasons"]["exact_duplicate"] == 1
    assert summary["skipped_files"]["hidden"] == 2
    assert summary["embedding"]["unusable"] == 3 and summary["embedding"]["embedded"] == 120

    # The report lists every flagged toy sample (thumbnails come once the report reads through
    # the source's reader: pipeline/report.py still opens abs_path, which a toy sample lacks).
    cards = _Cards()
    for page in Path(paths["run"]).rglob("*.html"):
        cards.feed(page.read_text(encoding="utf-8"))
    flagged = set(manifest.filter(pl.col(S.REASONS).list.len() > 0)[S.SAMPLE_ID])
    assert flagged and flagged <= cards.ids
    # Thumbnails come through the source's reader: every readable flagged toy sample has one.
    readable = set(manifest.filter(pl.col(S.REASONS).list.len() > 0, pl.col(S.CONTENT_HASH).is_not_null(),
                                   ~pl.col(S.REASONS).list.contains("unreadable"))[S.SAMPLE_ID])
    assert readable and readable <= cards.thumbs, readable - cards.thumbs

    # The clean set: no local file (abs_path null), the locator to read each kept sample.
    clean = pl.read_parquet(paths["clean"])
    assert clean[S.ABS_PATH].null_count() == clean.height and clean[S.LOCATOR].null_count() == 0
    assert not {"broken/0003.png", "lost/0004.png", "notes/readme.txt"} & set(clean[S.PATH])
    # Export writes each kept sample's bytes, read through the toy reader, as a file.
    tree = export_clean(out, fmt="imagefolder", dest=tmp_path / "tree")
    meta = pl.read_csv(tree / "metadata.csv", infer_schema=False)
    assert meta.height == clean.height
    for file_name, path in meta.select("file_name", S.PATH).iter_rows():
        written = tree / file_name
        assert not written.is_symlink()
        locator = clean.filter(pl.col(S.PATH) == path)[S.LOCATOR][0]
        assert written.read_bytes() == render_png(int(locator))


def test_the_toy_source_validates_its_own_keys(tmp_path, toy_source):
    from winnow.catalogs import list_samples, load_catalog

    catalog = tmp_path / "toy.toml"
    catalog.write_text('name = "toy"\n[source]\nkind = "toy_digits"\nn = 3\n')
    with pytest.raises(InvalidCatalog, match=r"'n' must be at least 20, got 3"):
        load_catalog(catalog)
    catalog.write_text('name = "toy"\n[source]\nkind = "toy_digits"\nn = "many"\n')
    with pytest.raises(InvalidCatalog, match="'many'"):
        load_catalog(catalog)
    catalog.write_text('name = "toy"\n[source]\nkind = "toy_digits"\nn = 40\nroot = "x"\n')
    with pytest.raises(InvalidCatalog, match=r"\[source\].*'root'"):
        load_catalog(catalog)
    catalog.write_text('name = "toy"\n[source]\nkind = "toy_digits"\nn = 40\n')
    table = list_samples(load_catalog(catalog))
    assert table.num_rows == 44 and json.loads(table.schema.metadata[b"source"]) == {
        "kind": "toy_digits", "settings": {"n": 40, "version": 1}}


def test_the_samples_stage_key_follows_the_fingerprint(tmp_path, toy_source, monkeypatch):
    """The samples stage key includes the source's fingerprint: data changed behind an unchanged
    listing gives the stages a new key, so nothing embedded from the old content is reused."""
    from winnow.catalogs import list_samples, load_catalog
    from winnow.pipeline.layout import WorkLayout
    from winnow.pipeline.stages import load_samples

    catalog = tmp_path / "toy.toml"
    catalog.write_text('name = "toy"\n[source]\nkind = "toy_digits"\nn = 30\n')
    table = list_samples(load_catalog(catalog))

    def key() -> str:
        work = WorkLayout(tmp_path)
        load_samples(str(catalog), work, table=table)
        return json.loads(work.done("samples").read_text())["key"]

    first = key()
    assert key() == first
    monkeypatch.setattr(ToyDigitsSource, "fingerprint", lambda self, listed: "the bytes changed")
    assert key() != first
