"""winnow.clean in this process: every kind of source, the result's parts, and catalog settings."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import winnow
from tests.helpers.images import digit_images, write_image_folder
from winnow.catalogs import InvalidCatalog, catalog_from_folder, load_catalog
from winnow.pipeline.config import ConfigError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cleaning") / "digits"
    write_image_folder(root, digit_images(60, seed=6))
    return root


def test_a_catalog_spec_source_and_a_result_that_hangs_together(folder, tmp_path):
    r = winnow.clean(catalog_from_folder(folder), encoder="pixels:16", k=4, config={"policy": {"keep": 40}})
    assert isinstance(r, winnow.CleanResult) and r.manifest.height == 60
    assert (r.manifest["decision"] != "drop").sum() <= 40  # the config reached the policy
    assert r.config.policy.keep == 40 and r.config.knn.k == 4 and r.config.embed.encoder == "pixels:16"
    # The graph's node i is the embedding of manifest row rows[i].
    assert r.graph.indices.shape == (len(r.rows), 4)
    assert np.array_equal(np.sort(r.rows), r.rows) and r.rows.max() < 60
    kept = set(r.manifest.filter(pl.col("decision") != "drop")["sample_id"])
    assert set(r.clean["sample_id"]) == kept
    again = winnow.load_result(r.run_dir)
    assert again.manifest.equals(r.manifest) and again.config == r.config


def test_a_catalog_file_with_config_tables_and_its_overrides(folder, tmp_path):
    (tmp_path / "cat.toml").write_text(f'name = "c"\n[source]\nkind = "image_folder"\nroot = "{folder}"\n'
                                       '[embed]\nencoder = "pixels:8"\n[knn]\nk = 3\n[policy]\nclass_cap = 4\n')
    r = winnow.clean(tmp_path / "cat.toml", k=6)
    assert r.summary["encoder"] == "pixels:8" and r.summary["knn"]["k"] == 6  # keyword over the catalog
    assert r.config.policy.class_cap == 4
    assert r.clean.group_by("label").len()["len"].max() <= 4


def test_catalog_config_table_errors(folder, tmp_path):
    (tmp_path / "twice.toml").write_text(f'name = "c"\nencoder = "pixels"\n[source]\nkind = "image_folder"\n'
                                         f'root = "{folder}"\n[embed]\nencoder = "pixels:8"\n')
    with pytest.raises(InvalidCatalog, match="given twice"):
        load_catalog(tmp_path / "twice.toml")
    (tmp_path / "cols.toml").write_text(f'name = "c"\n[source]\nkind = "image_folder"\nroot = "{folder}"\n'
                                        '[run]\npath_column = "file"\n')
    with pytest.raises(ConfigError, match=r"cols\.toml.*\[source\]"):
        winnow.clean(tmp_path / "cols.toml", encoder="pixels:16")
    (tmp_path / "table.toml").write_text(f'name = "c"\nknn = 5\n[source]\nkind = "image_folder"\n'
                                         f'root = "{folder}"\n')
    with pytest.raises(InvalidCatalog, match=r"\[knn\] must be a table"):
        load_catalog(tmp_path / "table.toml")
