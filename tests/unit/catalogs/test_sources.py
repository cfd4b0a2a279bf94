"""The sample-source registry: lookup, registration, [source] parsing per kind, settings that
rebuild the source (and its reader) in another process, fingerprints, and the listing contract."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow import catalogs
from winnow.catalogs import (
    SOURCES,
    CatalogSpec,
    DuplicatePath,
    EmptyDataset,
    InvalidCatalog,
    Listing,
    Source,
    UnknownLabel,
    UnknownSource,
    get_source,
    list_samples,
    list_sources,
    load_catalog,
    open_reader,
    read_sample,
    register_source,
    resolve_catalog,
    source_of,
)
from winnow.catalogs import schemas as S
from winnow.catalogs.sources import ImageFolderSource, ManifestSource
from winnow.reading import FileReader, SampleRead, hash_bytes


def _png(value: int) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8), mode="L").save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def folder(tmp_path) -> Path:
    """Two classes of three tiny PNGs each, plus a hidden file."""
    root = tmp_path / "data"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"{i}.png").write_bytes(_png(10 * i + (label == "b") * 100))
    (root / "a" / ".DS_Store").write_bytes(b"junk")
    return root


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- the registry ------------------------------------------------------------------------------


def test_the_registry_lists_each_kind_once():
    assert list_sources() == sorted(SOURCES) and {"image_folder", "manifest"} <= set(list_sources())
    assert get_source("image_folder") is ImageFolderSource and get_source("manifest") is ManifestSource
    for kind, cls in SOURCES.items():
        assert cls.kind == kind and cls.description


def test_an_unknown_kind_is_named_with_the_known_ones(tmp_path):
    with pytest.raises(UnknownSource, match=r"'tarball'.*'image_folder'"):
        get_source("tarball")
    catalog = _write(tmp_path / "c.toml", 'name = "x"\n[source]\nkind = "tarball"\n')
    with pytest.raises(InvalidCatalog, match=r"c\.toml.*'tarball'"):  # UnknownSource is an InvalidCatalog
        load_catalog(catalog)


@dataclass(frozen=True, kw_only=True)
class _Constant(Source):
    """A toy source: `n` samples of one of two constant images."""

    kind = "constant_test"
    description = "constant images (tests)"
    n: int = 4

    @classmethod
    def from_table(cls, table: dict[str, Any], *, base_dir: Path, where: str) -> _Constant:
        return cls(n=table.get("n", 4))

    def list_samples(self) -> Listing:
        return Listing.from_rows(paths=[f"s{i}" for i in range(self.n)], locators=[str(i % 2) for i in range(self.n)],
                                 labels=["x" if i % 2 else "y" for i in range(self.n)])

    def reader(self):
        return _ConstantReader()

    def fingerprint(self, listed: pa.Table) -> str:
        return "constant"


@dataclass(frozen=True)
class _ConstantReader:
    def read_many(self, locators):
        return [SampleRead.from_bytes(_png(200 * int(loc))) for loc in locators]


@pytest.fixture
def registered():
    yield register_source(_Constant)
    SOURCES.pop(_Constant.kind, None)


def test_register_source_adds_one_kind_and_guards_the_registry(registered):
    assert registered is _Constant and get_source("constant_test") is _Constant
    assert register_source(_Constant) is _Constant  # registering the same class again is harmless

    @dataclass(frozen=True, kw_only=True)
    class Other(_Constant):
        pass

    with pytest.raises(ValueError, match="'constant_test' is already registered to _Constant"):
        register_source(Other)
    assert register_source(Other, replace=True) is Other
    with pytest.raises(TypeError, match="must subclass"):
        register_source(dict)

    @dataclass(frozen=True, kw_only=True)
    class BadKind(_Constant):
        kind = "Bad Kind"

    with pytest.raises(ValueError, match="'Bad Kind'"):
        register_source(BadKind)


def test_a_source_installed_as_an_entry_point_is_found(monkeypatch):
    """So a Dask worker, which never ran the user's register_source, still finds the kind."""
    from importlib.metadata import EntryPoint

    import winnow.catalogs.sources as registry

    point = EntryPoint(name="constant_test", value=f"{__name__}:_Constant", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [point] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.delitem(SOURCES, "constant_test", raising=False)
    try:
        assert get_source("constant_test") is _Constant
    finally:
        SOURCES.pop("constant_test", None)


def test_a_registered_source_lists_and_reads(tmp_path, registered):
    catalog = _write(tmp_path / "c.toml", 'name = "k"\n[source]\nkind = "constant_test"\nn = 6\n')
    table = list_samples(load_catalog(catalog))
    assert table.schema.remove_metadata() == S.SAMPLES_SCHEMA
    assert table.column(S.ABS_PATH).null_count == 6  # not files
    assert table.column(S.SAMPLE_ID).to_pylist() == [catalogs.make_sample_id(f"s{i}") for i in range(6)]
    assert isinstance(source_of(table), _Constant) and source_of(table).n == 6
    read = read_sample(table, "1")
    assert read.data == _png(200) and read.content_hash == hash_bytes(_png(200))


# --- [source] parsing: each source owns its keys ------------------------------------------------


@pytest.mark.parametrize("text, error, match", [
    ('kind = "image_folder"\n', InvalidCatalog, "'root' is missing"),
    ('kind = "image_folder"\nroot = 3\n', InvalidCatalog, "'root' must be str, got 3"),
    ('kind = "image_folder"\nroot = "."\npath_column = "p"\n', InvalidCatalog, r"\[source\].*'path_column'"),
    ('kind = "image_folder"\nroot = "."\nallow_outside_root = "yes"\n', InvalidCatalog, "'yes'"),
    ('kind = "manifest"\n', InvalidCatalog, "'path' is missing"),
    ('kind = "manifest"\npath = "m.csv"\nlabel_column = 1\n', InvalidCatalog, "'label_column' must be str, got 1"),
    ('kind = "manifest"\npath = "m.csv"\nrecurse = true\n', InvalidCatalog, "'recurse'"),
    ('kind = 7\n', InvalidCatalog, "'kind' must be str, got 7"),
    ('root = "."\n', InvalidCatalog, "'kind' is missing"),
    ('kind = "image_folder"\nroot = "."\nbuilder = 1\n', InvalidCatalog, "'builder' must be str, got 1"),
])
def test_each_source_checks_its_own_keys_and_quotes_bad_values(tmp_path, text, error, match):
    with pytest.raises(error, match=match):
        load_catalog(_write(tmp_path / "c.toml", f'name = "x"\n[source]\n{text}'))


def test_the_manifest_keys_resolve_against_the_catalog_folder(tmp_path):
    spec = load_catalog(_write(tmp_path / "c.toml", 'name = "x"\n[source]\nkind = "manifest"\npath = "sub/m.csv"\n'
                                                    'path_column = "file"\nallow_outside_root = true\n'))
    assert spec.source == ManifestSource(root=tmp_path / "sub", manifest=tmp_path / "sub" / "m.csv",
                                         path_column="file", allow_outside_root=True)
    assert spec.builder is None


# --- settings: the samples table rebuilds its source and reader anywhere ---------------------------


@pytest.mark.parametrize("source", [
    ImageFolderSource(root=Path("/data/pets"), allow_outside_root=True),
    ImageFolderSource(root=Path("/data/scrape"), unlabeled=True),
    ManifestSource(root=Path("/data"), manifest=Path("/data/m.parquet"), path_column="file", label_column="y"),
])
def test_settings_round_trip(source):
    import json

    settings = json.loads(json.dumps(source.settings()))  # what the table's metadata holds
    assert type(source).from_settings(settings) == source


def test_the_reader_is_rebuilt_from_the_samples_file_in_a_fresh_process(tmp_path, folder):
    table = list_samples(resolve_catalog(str(folder)))
    pq.write_table(table, tmp_path / "samples.parquet")
    reader = open_reader(tmp_path / "samples.parquet")
    assert reader == FileReader(confine_to=str(folder.resolve()))
    assert pickle.loads(pickle.dumps(reader)) == reader
    locators = table.column(S.LOCATOR).to_pylist()
    code = ("import sys; from winnow.catalogs import open_reader; "
            "r = open_reader(sys.argv[1]); print(r.read_many(sys.argv[2:])[0].content_hash)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "samples.parquet"), locators[4]],
                          capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == hash_bytes(Path(locators[4]).read_bytes())


def test_a_samples_table_from_before_the_registry_still_opens_as_files(tmp_path, folder):
    legacy = pa.table({"abs_path": [str(folder / "a" / "0.png")]}).replace_schema_metadata(
        {"confine_to": str(folder.resolve())})
    assert open_reader(legacy) == FileReader(confine_to=str(folder.resolve()))
    assert catalogs.confinement_of(legacy) == str(folder.resolve())
    assert open_reader(legacy.replace_schema_metadata({})) == FileReader(confine_to=None)
    with pytest.raises(ValueError, match="records no source"):
        source_of(legacy)


def test_file_sources_confine_reads_unless_allowed(tmp_path, folder):
    spec = resolve_catalog(str(folder))
    assert catalogs.confinement_of(list_samples(spec)) == str(folder.resolve())
    loose = CatalogSpec(name="x", source=ImageFolderSource(root=folder, allow_outside_root=True))
    assert catalogs.confinement_of(list_samples(loose)) is None


# --- fingerprints --------------------------------------------------------------------------------


def test_a_file_changed_in_place_changes_the_fingerprint(folder):
    table = list_samples(resolve_catalog(str(folder)))
    source = source_of(table)
    before = source.fingerprint(table)
    assert source.fingerprint(table) == before
    victim = Path(table.column(S.LOCATOR)[2].as_py())
    stat = victim.stat()
    victim.write_bytes(_png(77))  # a new content under the same name
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert source.fingerprint(table) != before
    changed = source.fingerprint(table)
    victim.unlink()
    assert source.fingerprint(table) not in (before, changed)


# --- the listing contract, checked for every source ----------------------------------------------


def _spec_listing(listing: Listing) -> CatalogSpec:
    @dataclass(frozen=True, kw_only=True)
    class Fixed(_Constant):
        kind = "fixed_test"

        def list_samples(self) -> Listing:
            return listing

    return CatalogSpec(name="f", source=Fixed())


def test_the_listing_contract(tmp_path):
    ok = dict(paths=["p0", "p1"], locators=["0", "1"], labels=["x", "y"])
    table = list_samples(_spec_listing(Listing.from_rows(**ok)))
    assert table.column(S.LABEL_INDEX).to_pylist() == [0, 1]
    with pytest.raises(EmptyDataset, match="'fixed_test' source lists no samples"):
        list_samples(_spec_listing(Listing.from_rows(paths=[], locators=[], labels=[])))
    with pytest.raises(DuplicatePath, match="'p0' and 'p1' have the same sample_id 'same'"):
        list_samples(_spec_listing(Listing.from_rows(**ok, sample_ids=["same", "same"])))
    with pytest.raises(UnknownLabel, match="'p1' has no label"):
        list_samples(_spec_listing(Listing.from_rows(paths=["p0", "p1"], locators=["0", "1"], labels=["x", ""])))
    broken = Listing(table=Listing.from_rows(**ok).table.drop_columns([S.LOCATOR]))
    with pytest.raises(TypeError, match=r"without the column\(s\) \['locator'\]"):
        list_samples(_spec_listing(broken))


def test_hidden_files_are_counted_by_the_listing(folder):
    from winnow.catalogs.samples import skipped_files_of

    table = list_samples(resolve_catalog(str(folder)))
    assert table.num_rows == 6 and skipped_files_of(table) == {"hidden": 1, "outside_class_folders": 0}
    assert table.column(S.LOCATOR).to_pylist() == table.column(S.ABS_PATH).to_pylist()


def test_an_unlabeled_folder_is_one_class_named_after_it(tmp_path):
    """unlabeled: every file below the folder (loose or in any subfolder) is a row of one class, the
    folder's name; other files are unsupported_format rows, a link out is refused, hidden files skipped."""
    from winnow.catalogs.errors import EmptyDataset
    from winnow.catalogs.samples import skipped_files_of

    root = tmp_path / "scrape"
    (root / "2024" / "jan").mkdir(parents=True)
    for i in range(3):
        (root / f"{i}.png").write_bytes(_png(40 * i))
    (root / "2024" / "jan" / "3.png").write_bytes(_png(200))
    (root / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "elsewhere.png").write_bytes(_png(7))
    (root / "link.png").symlink_to(tmp_path / "elsewhere.png")
    table = list_samples(resolve_catalog(str(root), unlabeled=True))
    rows = dict(zip(table.column(S.PATH).to_pylist(), table.column(S.REFUSED).to_pylist(), strict=True))
    assert rows == {"0.png": None, "1.png": None, "2.png": None, "2024/jan/3.png": None, "link.png": "outside_root",
                    "notes.txt": "unsupported_format"}
    assert set(table.column(S.LABEL).to_pylist()) == {"scrape"}
    assert skipped_files_of(table) == {"hidden": 1, "outside_class_folders": 0}
    # Without it, images straight in a folder are most often a class folder passed instead of its
    # parent: an error that names both ways out.
    (root / "2024" / "jan" / "3.png").unlink()
    (root / "2024" / "jan").rmdir()
    (root / "2024").rmdir()
    with pytest.raises(EmptyDataset, match=r"4 image file\(s\) lie directly in it.*pass the folder above it.*--unlabeled"):
        list_samples(resolve_catalog(str(root)))
    with pytest.raises(InvalidCatalog, match="not a folder"):
        resolve_catalog(str(tmp_path / "elsewhere.png"), unlabeled=True)


def test_images_beside_class_folders_are_still_skipped_not_a_class(folder):
    """With class folders present, loose files have no label: counted as skipped, not rows."""
    from winnow.catalogs.samples import skipped_files_of

    (folder / "stray.png").write_bytes(_png(3))
    table = list_samples(resolve_catalog(str(folder)))
    assert table.num_rows == 6 and "stray.png" not in table.column(S.PATH).to_pylist()
    assert skipped_files_of(table) == {"hidden": 1, "outside_class_folders": 1}


def test_a_builder_needs_local_data(registered):
    spec = CatalogSpec(name="x", source=_Constant(), builder="digits")
    with pytest.raises(InvalidCatalog, match="'digits' needs a source of local files"):
        list_samples(spec)
