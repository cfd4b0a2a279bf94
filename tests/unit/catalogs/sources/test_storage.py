"""Listing the files of byte sources: brace patterns, globs, folders, URLs; fingerprints."""

from __future__ import annotations

import pytest

from winnow.catalogs import MissingRoot, UnsupportedSource
from winnow.catalogs.sources.storage import (
    expand_braces,
    filesystem,
    fingerprint_files,
    is_url,
    list_files,
    relative_name,
)


def test_brace_ranges_keep_their_padding_and_lists_expand():
    assert expand_braces("s/{000..002}.tar") == ["s/000.tar", "s/001.tar", "s/002.tar"]
    assert expand_braces("s/{8..10}.tar") == ["s/8.tar", "s/9.tar", "s/10.tar"]
    assert expand_braces("{a,b}/{0..1}.tar") == ["a/0.tar", "a/1.tar", "b/0.tar", "b/1.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_list_files_by_pattern_folder_and_glob(tmp_path):
    for i in range(3):
        (tmp_path / f"{i:03d}.tar").write_bytes(b"x")
    (tmp_path / ".hidden.tar").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    want = [str(tmp_path / f"{i:03d}.tar") for i in range(3)]
    assert list_files(str(tmp_path / "{000..002}.tar"), suffixes=(".tar",), what="shards") == want
    assert list_files(str(tmp_path), suffixes=(".tar",), what="shards") == want
    assert list_files(str(tmp_path / "00*.tar"), suffixes=(".tar",), what="shards") == want
    with pytest.raises(MissingRoot, match=r"1 of its 4 files do not exist, e.g. .*003\.tar"):
        list_files(str(tmp_path / "{000..003}.tar"), suffixes=(".tar",), what="shards")
    with pytest.raises(MissingRoot, match="nope"):
        list_files(str(tmp_path / "nope"), suffixes=(".tar",), what="shards")


def test_names_urls_and_fingerprints(tmp_path):
    assert is_url("s3://b/k") and is_url("https://x/y.parquet") and not is_url("/data/x.parquet")
    assert relative_name("s3://b/p/000.tar", "s3://b/p/{000..009}.tar") == "000.tar"
    assert relative_name("/d/sub/a.parquet", "/d") == "sub/a.parquet"
    f = tmp_path / "a.bin"
    f.write_bytes(b"one")
    before = fingerprint_files([str(f)])
    assert fingerprint_files([str(f)]) == before
    f.write_bytes(b"three")
    assert fingerprint_files([str(f)]) != before


def test_an_unknown_protocol_is_named():
    with pytest.raises(UnsupportedSource, match="nosuchproto://"):
        filesystem("nosuchproto://bucket/x.tar")
