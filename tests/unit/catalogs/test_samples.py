"""Listing samples: every file once, hidden files counted, class lists, manifests and paths that escape."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import REPO, digit_images, write_image_folder
from tests.helpers.faults import make_faulty_folder, png_bytes
from tests.helpers.userdata import make_user_folder
from winnow.catalogs import (
    DuplicatePath,
    TooFewClasses,
    UnknownLabel,
    UnsafePath,
    classes_of,
    list_samples,
    load_catalog,
    resolve_catalog,
)
from winnow.catalogs import schemas as S


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


FOLDER = '[source]\nkind = "image_folder"\nroot = "data"\n'


@pytest.fixture(scope="module")
def digit():
    return digit_images(1, seed=3)[0][0]


@pytest.fixture(scope="module")
def user_data(tmp_path_factory):
    return make_user_folder(tmp_path_factory.mktemp("user"))


def test_folder_lists_every_non_hidden_file_once(user_data):
    table = list_samples(resolve_catalog(str(user_data.folder)))
    rows = dict(zip(table.column(S.PATH).to_pylist(), table.column("refused").to_pylist(), strict=True))
    missing = sorted(set(user_data.expected) - set(rows))
    assert not missing, f"files silently not listed: {missing}"
    assert sorted(table.column(S.PATH).to_pylist()) == sorted(user_data.expected)  # each exactly once
    for rel, reason in user_data.expected.items():
        want = "unsupported_format" if reason == "unsupported_format" else None  # the rest is decided on read
        assert rows[rel] == want, (rel, rows[rel])
    labels = dict(zip(table.column(S.PATH).to_pylist(), table.column(S.LABEL).to_pylist(), strict=True))
    assert all(labels[rel] == user_data.label(rel) for rel in rows)


def test_hidden_files_are_not_rows_but_counted(user_data, tmp_path):
    from winnow.catalogs.samples import skipped_files_of

    table = list_samples(resolve_catalog(str(user_data.folder)))
    assert not [p for p in table.column(S.PATH).to_pylist() if "/." in f"/{p}"]
    assert skipped_files_of(table) == {"hidden": len(user_data.hidden), "outside_class_folders": 0}
    (user_data.folder / "stray.png").write_bytes(b"")  # a file beside the class folders has no label
    try:
        table = list_samples(resolve_catalog(str(user_data.folder)))
        assert skipped_files_of(table)["outside_class_folders"] == 1
    finally:
        (user_data.folder / "stray.png").unlink()


def test_unsupported_format_is_a_documented_unusable_reason():
    assert "unsupported_format" in S.UNUSABLE_REASON_CODES and "unsupported_format" in S.UNUSABLE_REASONS
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "| `unsupported_format` |" in readme


def test_manifest_variant_lists_the_same_data(user_data, tmp_path):
    cat = tmp_path / "user.toml"
    cat.write_text(f'name = "user"\n[source]\nkind = "manifest"\npath = "{user_data.manifest}"\n')
    table = list_samples(resolve_catalog(str(cat)))
    assert sorted(table.column(S.PATH).to_pylist()) == sorted(user_data.manifest_expected)



# --- links out of the root -------------------------------------------------------------------


def test_symlinks_inside_the_root_or_allowed_by_the_catalog_are_read(tmp_path, digit):
    root, outside = tmp_path / "data", tmp_path / "outside"
    make_faulty_folder(root, outside, n=6, faults=[("symlink_out", 0)])
    inner = sorted(root.glob("1/img_*.png"))[0]
    os.symlink(inner, root / "0" / "inner_link.png")
    rows = list_samples(resolve_catalog(str(root))).select([S.PATH, "refused"]).to_pylist()
    refused = {r[S.PATH]: r["refused"] for r in rows}
    assert refused["0/inner_link.png"] is None and refused["0/symlink_out_000.png"] == "outside_root"
    cat = write_toml(tmp_path / "c.toml", 'name = "x"\n' + FOLDER + "allow_outside_root = true\n")
    table = list_samples(load_catalog(cat))
    assert table.column("refused").null_count == table.num_rows  # the user named the way out


def test_class_folder_linked_out_of_root_is_refused(tmp_path, digit):
    root, outside = tmp_path / "data", tmp_path / "outside"
    write_image_folder(root, [(digit, 0), (digit, 1)])
    write_image_folder(outside, [(digit, "x"), (digit, "x")], prefix="secret")
    os.symlink(outside / "x", root / "2")
    table = list_samples(resolve_catalog(str(root)))
    rows = dict(zip(table.column(S.PATH).to_pylist(), table.column("refused").to_pylist(), strict=True))
    assert rows["2/secret_0000.png"] == "outside_root" and rows["0/img_0000.png"] is None



# --- class lists and manifests: named errors quoting the bad value, before any work --------------


@pytest.fixture
def small_folder(tmp_path):
    write_image_folder(tmp_path / "data", digit_images(12, seed=2))
    return tmp_path / "data"


@pytest.mark.parametrize(
    "classes, error, match",
    [
        ('["0", "1"]', UnknownLabel, r"has label '\d', which is not in the class list"),
        ("[]", TooFewClasses, r"\[\]"),
        ('["0"]', UnknownLabel, r"has label '\d', which is not in the class list"),
    ],
)
def test_class_list_problems(tmp_path, small_folder, classes, error, match):
    cat = write_toml(tmp_path / "c.toml", f'name = "x"\nclasses = {classes}\n' + FOLDER)
    with pytest.raises(error, match=match):
        list_samples(load_catalog(cat))


def test_empty_class_and_single_class(tmp_path, small_folder):
    labels = sorted(p.name for p in small_folder.iterdir())
    cat = write_toml(tmp_path / "c.toml", f'name = "x"\nclasses = {labels + ["zebra"]!r}\n'.replace("'", '"') + FOLDER)
    with pytest.raises(TooFewClasses, match="'zebra'"):
        list_samples(load_catalog(cat))
    for d in small_folder.iterdir():
        if d.name != labels[0]:
            shutil.rmtree(d)
    # One class left: listed (its labels are not judged downstream), not refused.
    listed = list_samples(load_catalog(write_toml(tmp_path / "d.toml", 'name = "x"\n' + FOLDER)))
    assert set(listed.column("label").to_pylist()) == {labels[0]}


MANIFEST = 'name = "m"\n[source]\nkind = "manifest"\npath = "sub/m.csv"\n'


def write_manifest(tmp_path: Path, paths: list[str], labels: list[str] | None = None) -> None:
    (tmp_path / "sub").mkdir(exist_ok=True)
    labels = labels or [str(i % 2) for i in range(len(paths))]
    pl.DataFrame({"path": paths, "label": labels}).write_csv(tmp_path / "sub" / "m.csv")


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "a/../../x.png", "..\\..\\x.png"])
def test_manifest_paths_escaping_the_folder_are_refused(tmp_path, bad):
    write_manifest(tmp_path, ["a.png", bad, "b.png"])
    with pytest.raises(UnsafePath, match=re.escape(repr(bad)[1:-1])) as err:
        list_samples(load_catalog(write_toml(tmp_path / "c.toml", MANIFEST)))
    # The second data row of a CSV is the editor's line 3 (the header is line 1).
    assert "allow_outside_root" in str(err.value) and "line 3" in str(err.value)


def test_corrupt_manifest_is_a_named_error(tmp_path):
    from winnow.catalogs.errors import InvalidManifest

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(InvalidManifest, match="m.parquet"):
        list_samples(load_catalog(write_toml(tmp_path / "c.toml", MANIFEST.replace("m.csv", "m.parquet"))))


def test_manifest_nul_byte_path_is_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    pl.DataFrame({"path": ["a.png", "b\x00.png"], "label": ["0", "1"]}).write_parquet(tmp_path / "sub" / "m.parquet")
    with pytest.raises(UnsafePath, match="NUL"):
        list_samples(load_catalog(write_toml(tmp_path / "c.toml", MANIFEST.replace("m.csv", "m.parquet"))))


def test_manifest_outside_paths_allowed_when_the_catalog_says_so(tmp_path, digit):
    outside = tmp_path / "elsewhere" / "x.png"
    outside.parent.mkdir()
    outside.write_bytes(png_bytes(digit))
    (tmp_path / "sub" / "in").mkdir(parents=True)
    (tmp_path / "sub" / "in" / "y.png").write_bytes(png_bytes(digit))
    write_manifest(tmp_path, [str(outside), "../elsewhere/x.png", "in/y.png"], ["0", "1", "1"])
    text = MANIFEST + "allow_outside_root = true\n"
    table = list_samples(load_catalog(write_toml(tmp_path / "c.toml", text)))
    assert table.column("refused").to_pylist() == [None, None, None]
    assert Path(table.column(S.ABS_PATH)[0].as_py()) == outside


def test_manifest_absolute_paths_inside_its_folder_are_read_as_relative(tmp_path, digit):
    """A manifest written with absolute paths (`find $PWD -name '*.png'`) is the common case: paths
    under the manifest's folder are the same samples as their relative form, with no opt-in."""
    (tmp_path / "sub" / "in").mkdir(parents=True)
    for name in ("y.png", "z.png"):
        (tmp_path / "sub" / "in" / name).write_bytes(png_bytes(digit))
    inside = str(tmp_path / "sub" / "in" / "y.png")
    write_manifest(tmp_path, [inside, "in/z.png"], ["0", "1"])
    table = list_samples(load_catalog(write_toml(tmp_path / "c.toml", MANIFEST)))
    assert table.column(S.PATH).to_pylist() == ["in/y.png", "in/z.png"]
    assert table.column("refused").to_pylist() == [None, None]
    assert Path(table.column(S.ABS_PATH)[0].as_py()) == Path(inside)
    # Through a link to the folder, too: the same file, the same relative path.
    (tmp_path / "link").symlink_to(tmp_path / "sub")
    write_manifest(tmp_path, [str(tmp_path / "link" / "in" / "y.png"), "in/z.png"], ["0", "1"])
    (tmp_path / "sub" / "m2.csv").write_bytes((tmp_path / "sub" / "m.csv").read_bytes())
    table = list_samples(load_catalog(write_toml(tmp_path / "c.toml", MANIFEST.replace("m.csv", "m2.csv"))))
    assert table.column("refused").to_pylist() == [None, None]
    # An absolute path and its relative twin are one sample listed twice: a named error.
    write_manifest(tmp_path, [inside, "in/y.png"], ["0", "1"])
    with pytest.raises(DuplicatePath, match=re.escape("in/y.png")):
        list_samples(load_catalog(write_toml(tmp_path / "c.toml", MANIFEST)))


def test_manifest_path_through_a_linked_folder_is_refused(tmp_path, digit):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.png").write_bytes(png_bytes(digit))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ok.png").write_bytes(png_bytes(digit))
    os.symlink(tmp_path / "secret", tmp_path / "sub" / "linked")
    write_manifest(tmp_path, ["ok.png", "linked/key.png"])
    table = list_samples(load_catalog(write_toml(tmp_path / "c.toml", MANIFEST)))
    assert table.column("refused").to_pylist() == [None, "outside_root"]


def test_class_names_with_any_character_round_trip(tmp_path):
    odd = ["a\x1fb", "c,d", "[e]"]
    write_manifest(tmp_path, ["1.png", "2.png", "3.png"], odd)
    table = list_samples(load_catalog(write_toml(tmp_path / "c.toml", MANIFEST)))
    assert classes_of(table) == sorted(odd)
    assert [classes_of(table)[i] for i in table.column(S.LABEL_INDEX).to_pylist()] == odd
