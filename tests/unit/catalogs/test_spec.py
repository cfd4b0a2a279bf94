"""Catalog loading: the bundled catalog, both source kinds, and every named validation error."""

from __future__ import annotations

import polars as pl
import pytest

from winnow import catalogs
from winnow.catalogs import (
    DuplicatePath,
    EmptyDataset,
    InvalidCatalog,
    MissingColumn,
    MissingRoot,
    TooFewClasses,
    UnknownLabel,
    UnsafePath,
    classes_of,
    list_samples,
    load_catalog,
    resolve_catalog,
)
from winnow.catalogs import schemas as S


def write_toml(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_digits_materialises_with_planted_flips():
    assert "digits" in catalogs.list_catalogs()
    spec = resolve_catalog("digits")
    table = list_samples(spec)
    assert table.num_rows == 1797
    assert classes_of(table) == [str(i) for i in range(10)]
    truth = pl.read_parquet(spec.ground_truth)
    assert truth.height == 1797
    assert truth["is_flipped"].sum() == 180  # 10%, seeded
    flipped = truth.filter(pl.col("is_flipped"))
    assert (flipped["given_label"] != flipped["true_label"]).all()
    # The folder a file sits in is its given label.
    assert (truth["path"].str.split("/").list.first() == truth["given_label"]).all()
    # Seeded: a second build elsewhere plants the same flips.
    assert list_samples(resolve_catalog("digits")).column(S.SAMPLE_ID) == table.column(S.SAMPLE_ID)


def test_plain_folder_lists_images_in_class_order(digit_folder):
    (digit_folder / "3" / "notes.txt").write_text("not an image")
    table = list_samples(resolve_catalog(str(digit_folder)))
    assert table.num_rows == 121  # the .txt is a row refused as unsupported_format, never silently dropped
    refused = dict(zip(table.column(S.PATH).to_pylist(), table.column("refused").to_pylist(), strict=True))
    assert refused.pop("3/notes.txt") == "unsupported_format"
    assert all(p.endswith(".png") and r is None for p, r in refused.items())
    classes = classes_of(table)
    labels = table.column(S.LABEL).to_pylist()
    assert [classes[i] for i in table.column(S.LABEL_INDEX).to_pylist()] == labels
    assert len(set(table.column(S.SAMPLE_ID).to_pylist())) == 121


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_manifest_catalog_paths_relative_to_manifest(tmp_path, digit_folder, fmt):
    rows = list_samples(resolve_catalog(str(digit_folder)))
    frame = pl.DataFrame({"file": ["digits/" + p for p in rows.column(S.PATH).to_pylist()],
                          "y": rows.column(S.LABEL).to_pylist()})
    manifest = tmp_path / f"labels.{fmt}"
    frame.write_csv(manifest) if fmt == "csv" else frame.write_parquet(manifest)
    cat = write_toml(tmp_path / "c.toml", f"""
name = "m"
[source]
kind = "manifest"
path = "labels.{fmt}"
path_column = "file"
label_column = "y"
""")
    table = list_samples(load_catalog(cat))
    assert table.num_rows == 120
    assert all(p.startswith(str(tmp_path)) for p in table.column(S.ABS_PATH).to_pylist())


def test_missing_root_quotes_path(tmp_path):
    cat = write_toml(tmp_path / "c.toml", 'name = "x"\n[source]\nkind = "image_folder"\nroot = "nowhere"\n')
    with pytest.raises(MissingRoot, match="nowhere"):
        list_samples(load_catalog(cat))


def test_folder_without_images(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "readme.txt").write_text("x")
    with pytest.raises(EmptyDataset, match="empty"):
        list_samples(resolve_catalog(str(tmp_path / "empty")))


def test_label_not_in_class_list(tmp_path, digit_folder):
    cat = write_toml(tmp_path / "c.toml", f'name = "x"\nclasses = ["0","1","2","3","4","5","6","7","8"]\n'
                     f'[source]\nkind = "image_folder"\nroot = "{digit_folder}"\n')
    with pytest.raises(UnknownLabel, match="'9'"):
        list_samples(load_catalog(cat))


def test_empty_class_and_single_class(tmp_path, digit_folder):
    cat = write_toml(tmp_path / "c.toml", f'name = "x"\nclasses = ["0","1","2","3","4","5","6","7","8","9","ten"]\n'
                     f'[source]\nkind = "image_folder"\nroot = "{digit_folder}"\n')
    with pytest.raises(TooFewClasses, match="ten"):
        list_samples(load_catalog(cat))
    # One class is a dataset too (duplicates, outliers, unusable files; labels are not judged).
    single = tmp_path / "single"
    single.mkdir()
    (digit_folder / "0").rename(single / "0")
    listed = list_samples(resolve_catalog(str(single)))
    assert set(listed.column("label").to_pylist()) == {"0"} and listed.num_rows == len(list((single / "0").iterdir()))


def test_duplicate_manifest_paths(tmp_path):
    pl.DataFrame({"path": ["a.png", "b.png", "a.png"], "label": ["x", "y", "x"]}).write_csv(tmp_path / "m.csv")
    cat = write_toml(tmp_path / "c.toml", 'name = "x"\n[source]\nkind = "manifest"\npath = "m.csv"\n')
    with pytest.raises(DuplicatePath, match="'a.png'"):
        list_samples(load_catalog(cat))


def test_manifest_missing_label_column(tmp_path):
    pl.DataFrame({"path": ["a.png"], "klass": ["x"]}).write_parquet(tmp_path / "m.parquet")
    cat = write_toml(tmp_path / "c.toml", 'name = "x"\n[source]\nkind = "manifest"\npath = "m.parquet"\n')
    with pytest.raises(MissingColumn, match="'label'"):
        list_samples(load_catalog(cat))


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd"])
def test_manifest_path_escaping_root_is_refused(tmp_path, bad):
    pl.DataFrame({"path": ["a.png", bad], "label": ["x", "y"]}).write_csv(tmp_path / "m.csv")
    cat = write_toml(tmp_path / "c.toml", 'name = "x"\n[source]\nkind = "manifest"\npath = "m.csv"\n')
    with pytest.raises(UnsafePath, match=bad.replace(".", r"\.")):
        list_samples(load_catalog(cat))


@pytest.mark.parametrize(
    "text, match",
    [
        ('name = "x"\ncolour = "red"\n[source]\nkind = "image_folder"\nroot = "."\n', "colour"),
        ('name = 3\n[source]\nkind = "image_folder"\nroot = "."\n', "3"),
        ('name = "x"\n[source]\nkind = "folder"\nroot = "."\n', "'folder'"),
        ('name = "x"\n[source]\nkind = "image_folder"\nroot = "."\nrecurse = true\n', "recurse"),
        ('name = "x"\nclasses = "cat"\n[source]\nkind = "image_folder"\nroot = "."\n', "'cat'"),
        ('name = "x"\n', "source"),
        ('name = "x" [', "TOML"),
    ],
)
def test_invalid_toml_quotes_the_bad_value(tmp_path, text, match):
    with pytest.raises(InvalidCatalog, match=match):
        load_catalog(write_toml(tmp_path / "c.toml", text))


def test_unknown_target_lists_bundled(tmp_path):
    with pytest.raises(catalogs.CatalogNotFound, match="digits"):
        resolve_catalog(str(tmp_path / "nope"))


@pytest.mark.parametrize("name", ["photo.png", "labels.xlsx", "notes"])
def test_a_file_that_is_not_a_catalog_or_table_says_what_winnow_reads(tmp_path, name):
    # issue 11: an image or a spreadsheet given as the target was parsed as TOML ("not valid TOML")
    (tmp_path / name).write_bytes(b"\x89PNG\r\n not a catalog")
    with pytest.raises(InvalidCatalog, match=r"does not read as a dataset.*\.toml.*\.csv") as caught:
        resolve_catalog(str(tmp_path / name))
    assert name in str(caught.value) and "TOML" not in str(caught.value)


# --- sources Winnow cannot read yet fail by name (issue 11 finding 8) -----------------------------


def _manifest_catalog(tmp_path, frame, suffix="csv", extra=""):
    path = tmp_path / f"m.{suffix}"
    frame.write_csv(path) if suffix == "csv" else frame.write_parquet(path)
    return write_toml(tmp_path / "c.toml", f'name = "x"\n[source]\nkind = "manifest"\npath = "m.{suffix}"\n{extra}')


@pytest.mark.parametrize("url", ["s3://bucket/train/a.png", "gs://bucket/a.png", "https://example.com/a.png"])
def test_url_paths_are_named_not_mangled(tmp_path, url):
    frame = pl.DataFrame({"path": ["b.png", url], "label": ["x", "y"]})
    with pytest.raises(catalogs.CatalogError, match=url.replace(".", r"\.")) as info:
        list_samples(load_catalog(_manifest_catalog(tmp_path, frame)))
    assert type(info.value).__name__ == "UnsupportedSource"
    assert "line 3" in str(info.value) and "local" in str(info.value)


def test_hugging_face_image_struct_column_is_named(tmp_path):
    frame = pl.DataFrame({"image": [{"bytes": b"\x89PNG", "path": "a.png"}, {"bytes": b"\x89PNG", "path": None}],
                          "label": ["x", "y"]})
    cat = _manifest_catalog(tmp_path, frame, "parquet", 'path_column = "image"\n')
    with pytest.raises(catalogs.CatalogError, match="'image'") as info:
        list_samples(load_catalog(cat))
    assert type(info.value).__name__ == "UnsupportedSource" and "bytes" in str(info.value)


# --- a table of paths and labels is a target by itself (issue 11 finding 12) ----------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_file_is_a_catalog(tmp_path, digit_folder, fmt):
    rows = list_samples(resolve_catalog(str(digit_folder)))
    frame = pl.DataFrame({"path": ["digits/" + p for p in rows.column(S.PATH).to_pylist()],
                          "label": rows.column(S.LABEL).to_pylist()})
    table = tmp_path / f"labels.{fmt}"
    frame.write_csv(table) if fmt == "csv" else frame.write_parquet(table)
    spec = resolve_catalog(table)
    assert spec.name == "labels" and spec.source.kind == "manifest"
    listed = list_samples(spec)
    assert listed.num_rows == 120
    assert listed.column(S.ABS_PATH).to_pylist() == [str(tmp_path / p) for p in frame["path"]]
    # Other column names, named by the caller.
    frame.rename({"path": "file", "label": "y"}).write_parquet(tmp_path / "other.parquet")
    other = list_samples(resolve_catalog(tmp_path / "other.parquet", path_column="file", label_column="y"))
    assert other.column(S.PATH).to_pylist() == listed.column(S.PATH).to_pylist()


def test_table_without_path_column_picks_the_only_candidate_or_names_them(tmp_path, digit_folder):
    rows = list_samples(resolve_catalog(str(digit_folder)))
    paths = ["digits/" + p for p in rows.column(S.PATH).to_pylist()]
    pl.DataFrame({"file": paths, "label": rows.column(S.LABEL).to_pylist()}).write_csv(tmp_path / "one.csv")
    assert list_samples(resolve_catalog(tmp_path / "one.csv")).num_rows == 120
    pl.DataFrame({"file": paths, "thumb": paths, "label": rows.column(S.LABEL).to_pylist()}).write_csv(
        tmp_path / "two.csv")
    with pytest.raises(catalogs.CatalogError, match="'file'.*'thumb'.*--path-column"):
        resolve_catalog(tmp_path / "two.csv")


def test_manifest_errors_give_the_line_an_editor_shows(tmp_path):
    # header on line 1: the rows are on lines 2, 3, 4
    pl.DataFrame({"path": ["a.png", "b.png", "a.png"], "label": ["x", "y", "x"]}).write_csv(tmp_path / "m.csv")
    with pytest.raises(DuplicatePath, match="lines 2 and 4"):
        list_samples(resolve_catalog(tmp_path / "m.csv"))
    pl.DataFrame({"path": ["a.png", "b.png", "a.png"], "label": ["x", "y", "x"]}).write_parquet(tmp_path / "m.parquet")
    with pytest.raises(DuplicatePath, match="rows 1 and 3"):
        list_samples(resolve_catalog(tmp_path / "m.parquet"))


# --- bad catalog keys: named errors quoting the bad value, before any work -------------------------

FOLDER = '[source]\nkind = "image_folder"\nroot = "data"\n'


@pytest.mark.parametrize(
    "text, error, match",
    [
        ('name = "x"\nlabels = ["a"]\n' + FOLDER, InvalidCatalog, "'labels'"),
        ('name = "x"\n' + FOLDER + 'follow_links = true\n', InvalidCatalog, "'follow_links'"),
        ('name = "x"\nencoder = 7\n' + FOLDER, InvalidCatalog, "'encoder' must be str, got 7"),
        ('name = "x"\n' + FOLDER + 'allow_outside_root = "yes"\n', InvalidCatalog, "got 'yes'"),
        ('name = "x"\nclasses = [1, 2]\n' + FOLDER, InvalidCatalog, r"\[1, 2\]"),
        ('name = "x"\nclasses = ["a", " "]\n' + FOLDER, InvalidCatalog, "' '"),
        ('name = "x"\nclasses = ["a", "a"]\n' + FOLDER, InvalidCatalog, "'a'"),
        ('name = "x"\npolicy = 3\n' + FOLDER, InvalidCatalog, "got 3"),
        ('name = ""\n' + FOLDER, InvalidCatalog, "''"),
    ],
)
def test_bad_catalog_keys_and_types(tmp_path, text, error, match):
    with pytest.raises(error, match=match):
        load_catalog(write_toml(tmp_path / "c.toml", text))
