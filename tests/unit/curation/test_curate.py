"""curate(): a whole cleaning pass from arrays, with unusable rows among the inputs.

Unusable rows (files that could not be read) have no embedding: they are dropped with
their own reason and must never enter the pruning / capping / balancing ranking.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.conftest import digit_images, write_image_folder
from winnow.curation import DecisionPolicy, build_knn_graph, curate
from winnow.curation.rebalance import resolve_target

ROOT = Path(__file__).resolve().parents[3]


def digits_world(n=400, n_unusable=5, seed=0):
    """Real scikit-learn digits as centred, L2-normalised pixels; `n_unusable` rows without embeddings."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(d.target), size=n, replace=False)
    x = d.data[idx].astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    labels = d.target[idx].astype(np.int64)
    unusable = np.zeros(n, dtype=bool)
    unusable[rng.choice(n, size=n_unusable, replace=False)] = True
    rows = np.flatnonzero(~unusable)
    reasons = ["unreadable" if u else None for u in unusable]
    keys = np.array([f"s{i:05d}" for i in range(n)])
    return labels, x[rows], rows, reasons, keys


@pytest.fixture(scope="module")
def world():
    labels, emb, rows, reasons, keys = digits_world()
    return labels, emb, build_knn_graph(emb, k=10), rows, reasons, keys


PRUNING_POLICIES = {
    "keep_fraction": DecisionPolicy(keep=0.7),
    "keep_count": DecisionPolicy(keep=250),
    "keep_easy_end": DecisionPolicy(keep=0.6, prune_keep="easy"),
    "class_cap": DecisionPolicy(class_cap=30),
    "cluster_balanced": DecisionPolicy(cluster_balanced=True, keep=200),
    "uniform": DecisionPolicy(keep=0.5, class_distribution="uniform"),
    "sqrt_cap_balanced_weighted": DecisionPolicy(keep=0.6, class_cap=30, class_distribution="sqrt",
                                                 cluster_balanced=True, weighting="effective_number"),
    "cap_inverse_frequency": DecisionPolicy(class_cap=25, weighting="inverse_frequency"),
}


@pytest.mark.parametrize("name", sorted(PRUNING_POLICIES))
def test_pruning_capping_and_balancing_with_unusable_rows(world, name):
    labels, emb, graph, rows, reasons, keys = world
    policy = PRUNING_POLICIES[name]
    n = len(labels)
    result = curate(labels, emb, graph, rows=rows, n_classes=10, unusable_reason=reasons, keys=keys, policy=policy)
    d = result.decisions
    assert len(d.decision) == len(d.reasons) == len(d.weight) == n
    unusable = np.array([r is not None for r in reasons])
    # The unusable rows are dropped for being unreadable, and for nothing else.
    assert all(d.reasons[i] == ["unreadable"] and d.decision[i] == "drop" for i in np.flatnonzero(unusable))
    kept = d.decision != "drop"
    assert np.all(d.weight[kept] > 0) and np.all(np.isfinite(d.weight)) and np.all(d.weight[~kept] == 0)
    target = resolve_target(policy.keep, n)
    if target is not None:
        assert any("pruned" in r for r in d.reasons)
        assert kept.sum() == target
    if policy.class_cap is not None:
        assert np.bincount(d.final_label[kept], minlength=10).max() <= policy.class_cap
        assert any("over_cap" in r for r in d.reasons)


def test_cli_run_keep_with_a_corrupt_png(tmp_path):
    """`winnow run FOLDER --keep 0.7` on a folder with one corrupt PNG: every input row once."""
    folder = tmp_path / "digits"
    paths = write_image_folder(folder, digit_images(60, seed=4))
    corrupt = paths[17]
    corrupt.write_bytes(corrupt.read_bytes()[:40])
    winnow = Path(sys.executable).with_name("winnow")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           # Two shared cores: Prefect's temporary server can take longer than its default 20 s to start.
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    out = tmp_path / "out"
    proc = subprocess.run([str(winnow), "run", str(folder), "--out", str(out), "--encoder", "pixels", "--keep", "0.7"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = pl.read_parquet(out / "manifest.parquet")
    listed = sorted(p.relative_to(folder).as_posix() for p in paths)
    assert sorted(manifest["path"].to_list()) == listed  # every input row, exactly once
    bad = manifest.filter(pl.col("path") == corrupt.relative_to(folder).as_posix())
    assert bad["decision"].to_list() == ["drop"] and bad["reasons"].to_list() == [["unreadable"]]
    kept = int((manifest["decision"] != "drop").sum())
    pruned = int(manifest["reasons"].list.contains("pruned").sum())
    # The target is met exactly unless the findings alone leave fewer rows than it.
    assert kept == round(0.7 * 60) if pruned else kept <= round(0.7 * 60), (kept, pruned)
