"""Hugging Face datasets saved with save_to_disk (the real `datasets` library writes them)."""

from __future__ import annotations

import pytest

from tests.helpers.bytesources import folder_samples, hf_dataset, save_hf_dataset
from winnow.catalogs import InvalidCatalog, list_samples, open_reader, resolve_catalog
from winnow.catalogs import schemas as S
from winnow.reading import hash_bytes

pytest.importorskip("datasets")


@pytest.fixture
def samples(digit_folder):
    return folder_samples(digit_folder)[::3]


def test_a_saved_dataset_is_a_target(tmp_path, samples):
    save_hf_dataset(hf_dataset(samples), tmp_path / "saved")
    spec = resolve_catalog(str(tmp_path / "saved"))
    assert spec.source.kind == "hf_dataset" and spec.name == "saved"
    table = list_samples(spec)
    assert table.column(S.LABEL).to_pylist() == [lab for *_, lab in samples]  # ClassLabel names
    reads = open_reader(table).read_many(table.column(S.LOCATOR).to_pylist())
    assert [r.content_hash for r in reads] == [hash_bytes(b) for _, b, _ in samples]


def test_a_saved_dataset_dict_takes_a_split(tmp_path, samples):
    import datasets

    ds = hf_dataset(samples)
    save_hf_dataset(datasets.DatasetDict({"train": ds, "test": ds.select(range(10))}), tmp_path / "dd")
    assert list_samples(resolve_catalog(str(tmp_path / "dd"))).num_rows == 40  # train by default
    catalog = tmp_path / "c.toml"
    catalog.write_text(f'name = "c"\n[source]\nkind = "hf_dataset"\npath = "{tmp_path / "dd"}"\nsplit = "test"\n')
    from winnow.catalogs import load_catalog

    table = list_samples(load_catalog(catalog))
    assert table.num_rows == 10 and table.column(S.PATH)[0].as_py() == "test/data-00000-of-00001.arrow#0"
    catalog.write_text(f'name = "c"\n[source]\nkind = "hf_dataset"\npath = "{tmp_path / "dd"}"\nsplit = "dev"\n')
    with pytest.raises(InvalidCatalog, match="'dev'"):
        list_samples(load_catalog(catalog))


def test_a_dataset_object_is_saved_once_to_the_cache(tmp_path, samples, monkeypatch, capsys):
    import datasets

    monkeypatch.setenv("WINNOW_CACHE", str(tmp_path / "cache"))
    datasets.enable_progress_bars()
    ds = hf_dataset(samples)
    capsys.readouterr()
    spec = resolve_catalog(ds)
    assert capsys.readouterr() == ("", "")  # quiet: no progress bars
    assert datasets.is_progress_bar_enabled()  # and the user's setting is back
    assert spec.source.path.startswith(str(tmp_path / "cache" / "hf"))
    again = resolve_catalog(ds)
    assert again.source == spec.source
    assert list_samples(spec).num_rows == 40
    with pytest.raises(InvalidCatalog, match="DatasetDict"):
        import datasets

        resolve_catalog(datasets.DatasetDict({"train": ds}))
