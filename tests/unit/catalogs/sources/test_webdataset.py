"""WebDataset tar shards: grouped by key, labels from .cls / .json, bytes by offset, never unpacked."""

from __future__ import annotations

import tarfile

import pytest

from tests.helpers.bytesources import add_member, folder_samples, write_webdataset
from winnow.catalogs import (
    InvalidCatalog,
    MissingColumn,
    list_samples,
    load_catalog,
    open_reader,
    resolve_catalog,
)
from winnow.catalogs import schemas as S
from winnow.catalogs.sources.webdataset import split_member
from winnow.reading import hash_bytes


@pytest.fixture
def samples(digit_folder):
    return folder_samples(digit_folder)[::4]


def test_members_split_as_webdataset_does():
    assert split_member("a/b/000123.seg.png") == ("a/b/000123", "seg.png")
    assert split_member("x.JPG") == ("x", "jpg")


@pytest.mark.parametrize("label", ["cls", "json"])
def test_shards_by_pattern_and_folder(tmp_path, samples, label):
    write_webdataset(tmp_path / "wds", samples, shards=3, label=label)
    label_column = "json:label" if label == "json" else None
    for target in (str(tmp_path / "wds"), str(tmp_path / "wds" / "shard-{000..002}.tar")):
        spec = resolve_catalog(target, label_column=label_column)
        assert spec.source.kind == "webdataset"
        table = list_samples(spec)
        assert table.column(S.LABEL).to_pylist() == [lab for *_, lab in samples]
        assert table.column(S.PATH)[0].as_py() == "shard-000.tar/000000000.png"
        reads = open_reader(table).read_many(table.column(S.LOCATOR).to_pylist())
        assert [r.content_hash for r in reads] == [hash_bytes(b) for _, b, _ in samples]


def test_a_truncated_member_and_a_sample_without_image_are_rows(tmp_path, samples):
    shard = tmp_path / "s" / "000.tar"
    shard.parent.mkdir()
    with tarfile.open(shard, "w") as tar:
        for i, (_, data, lab) in enumerate(samples[:5]):
            add_member(tar, f"k{i}.cls", lab.encode())
            if i != 2:  # k2 has a label and no image
                add_member(tar, f"k{i}.png", data)
    raw = shard.read_bytes()
    # Cut the shard inside the last image member (k4.png): header kept, data short.
    end = raw.index(samples[4][1]) + len(samples[4][1]) // 2
    shard.write_bytes(raw[:end])
    table = list_samples(resolve_catalog(str(shard)))
    by_path = dict(zip(table.column(S.PATH).to_pylist(), table.column(S.REFUSED).to_pylist(), strict=True))
    assert by_path == {"000.tar/k0.png": None, "000.tar/k1.png": None, "000.tar/k2.missing": "missing",
                       "000.tar/k3.png": None, "000.tar/k4.png": "unreadable"}
    reads = open_reader(table).read_many(table.column(S.LOCATOR).to_pylist())
    assert reads[0].content_hash == hash_bytes(samples[0][1]) and reads[4].reason == "unreadable"


def test_a_sample_without_label_names_the_key(tmp_path, samples):
    write_webdataset(tmp_path / "wds", samples, shards=1)
    with pytest.raises(MissingColumn, match=r"'000000000' has no label: no 'txt'"):
        list_samples(resolve_catalog(str(tmp_path / "wds"), label_column="txt"))
    catalog = tmp_path / "c.toml"
    catalog.write_text('name = "c"\n[source]\nkind = "webdataset"\nshards = "wds"\nlabel_key = "json:"\n')
    with pytest.raises(InvalidCatalog, match="'json:'"):
        load_catalog(catalog)
