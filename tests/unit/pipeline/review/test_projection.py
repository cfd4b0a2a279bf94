"""The embedding map: a capped sample (flagged first), a 2-D projection in [0, 1], a static SVG."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from winnow.pipeline.review.projection import choose_map_rows, map_svg, project_2d


def test_the_map_sample_is_capped_and_takes_flagged_rows_first():
    flagged = np.zeros(10_000, dtype=bool)
    flagged[::100] = True
    rows = choose_map_rows(flagged, limit=500, seed=1)
    assert len(rows) == 500 and len(set(rows)) == 500 and np.all(np.diff(rows) > 0)
    assert flagged[rows].sum() == 100  # every flagged row, then random others
    assert np.array_equal(rows, choose_map_rows(flagged, limit=500, seed=1))
    assert len(choose_map_rows(np.ones(50, dtype=bool), limit=20)) == 20
    assert np.array_equal(choose_map_rows(flagged[:30], limit=500), np.arange(30))


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_projection_keeps_clusters_apart(method):
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:2] * 4
    x = np.concatenate([c + rng.normal(scale=0.2, size=(40, 8)) for c in centres]).astype(np.float32)
    if method == "tsne":
        pytest.importorskip("openTSNE")
    xy, used = project_2d(x, method=method)
    assert used == method and xy.shape == (80, 2) and xy.min() >= 0 and xy.max() <= 1
    a, b = xy[:40].mean(axis=0), xy[40:].mean(axis=0)
    spread = max(xy[:40].std(axis=0).max(), xy[40:].std(axis=0).max())
    assert np.linalg.norm(a - b) > 3 * spread  # the two clusters land apart


def test_static_map_is_escaped_and_capped():
    pts = pl.DataFrame({"sample_id": [f"s{i}" for i in range(10)], "x": np.linspace(0, 1, 10, dtype=np.float32),
                        "y": np.linspace(0, 1, 10, dtype=np.float32), "flagged": [i < 3 for i in range(10)]})
    svg = map_svg(pts, {f"s{i}": "<b>" for i in range(10)}, ["<b>"], {"method": "pca", "sampled": 10, "total": 99},
                  limit=5)
    assert svg.count("<circle") == 5 and svg.count('stroke="#111"') == 3  # flagged drawn first
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "10 of 99" in svg
