"""`winnow detect`, `winnow evaluate`, `--keep` and `--holdout` through typer's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import digit_images, write_image_folder

runner = CliRunner()


def blobs(n_per=80, k=4, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * 6
    x = np.concatenate([c + rng.standard_normal((n_per, d)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(k), n_per)
    return x, y


def test_detect_on_user_arrays_finds_planted_flips(tmp_path):
    x, y = blobs()
    noisy = y.copy()
    flips = np.arange(0, len(y), 16)
    noisy[flips] = (noisy[flips] + 1) % 4
    np.save(tmp_path / "labels.npy", noisy)
    np.save(tmp_path / "emb.npy", x)
    result = runner.invoke(app, ["detect", "--labels", str(tmp_path / "labels.npy"), "--embeddings",
                                 str(tmp_path / "emb.npy"), "--out", str(tmp_path / "issues.parquet"), "--json"])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(tmp_path / "issues.parquet")
    assert frame.height == len(y) and frame["row"].to_list() == list(range(len(y)))
    flagged = set(np.flatnonzero(frame["is_label_issue"].to_numpy()))
    assert len(flagged & set(flips)) >= 0.9 * len(flips) and len(flagged - set(flips)) <= 3
    # pred_probs only: a one-hot-ish model that agrees with the truth.
    probs = np.full((len(y), 4), 0.02)
    probs[np.arange(len(y)), y] = 0.94
    np.save(tmp_path / "pp.npy", probs)
    result = runner.invoke(app, ["detect", "--labels", str(tmp_path / "labels.npy"), "--pred-probs",
                                 str(tmp_path / "pp.npy"), "--out", str(tmp_path / "pp.parquet")])
    assert result.exit_code == 0, result.output


def test_detect_bad_arrays_exit_2_quoting_the_value(tmp_path):
    x, y = blobs()
    np.save(tmp_path / "labels.npy", y[:-3])
    np.save(tmp_path / "emb.npy", x)
    bad = runner.invoke(app, ["detect", "--labels", str(tmp_path / "labels.npy"), "--embeddings",
                              str(tmp_path / "emb.npy"), "--out", str(tmp_path / "o.parquet")])
    assert bad.exit_code == 2 and "317" in bad.output and "320" in bad.output
    x[5, 2] = np.nan
    np.save(tmp_path / "labels.npy", y)
    np.save(tmp_path / "emb.npy", x)
    bad = runner.invoke(app, ["detect", "--labels", str(tmp_path / "labels.npy"), "--embeddings",
                              str(tmp_path / "emb.npy"), "--out", str(tmp_path / "o.parquet")])
    assert bad.exit_code == 2 and "[5, 2]" in bad.output
    probs = np.full((len(y), 4), 0.3)
    np.save(tmp_path / "pp.npy", probs)
    bad = runner.invoke(app, ["detect", "--labels", str(tmp_path / "labels.npy"), "--pred-probs",
                              str(tmp_path / "pp.npy"), "--out", str(tmp_path / "o.parquet")])
    assert bad.exit_code == 2 and "sums to 1.2" in bad.output
    missing = runner.invoke(app, ["detect", "--labels", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "nope.npy" in missing.output
    assert not (tmp_path / "o.parquet").exists()


def test_evaluate_prints_every_detector_and_the_ensemble():
    # Pair flips (each class into the next) make the digit classes overlap: there no single
    # detector is enough (kNN voting and confident learning each reach F1 ~0.83 at seed 3),
    # so the ensemble's lead over every one of them is the ensemble's own doing.
    result = runner.invoke(app, ["evaluate", "digits", "--encoder", "pixels:16", "--noise", "pair:0.3",
                                 "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    names = [r["detector"] for r in data["detectors"]]
    assert names[-1] == "ensemble" and {"knn_vote", "confident_learning", "small_loss"} <= set(names)
    assert abs(data["planted"] - 0.3 * 1797) < 12  # per-class rounding of 30%
    ens = data["detectors"][-1]
    assert ens["f1"] >= max(r["f1"] for r in data["detectors"][:-1]) + 0.05
    assert ens["f1"] > 0.9
    bad = runner.invoke(app, ["evaluate", "digits", "--encoder", "pixels:16", "--noise", "gaussian:0.2"])
    assert bad.exit_code == 2 and "'gaussian'" in bad.output


def test_run_with_keep_and_holdout(prefect_harness, tmp_path):
    train = tmp_path / "train"
    images = digit_images(150, seed=5)
    write_image_folder(train, images)
    holdout = tmp_path / "holdout"
    write_image_folder(holdout, images[:10], prefix="held")  # 10 exact copies of training images
    write_image_folder(holdout, digit_images(20, seed=77), prefix="other")
    result = runner.invoke(app, ["run", str(train), "--out", str(tmp_path / "o"), "--encoder", "pixels:16",
                                 "--holdout", str(holdout), "--keep", "100", "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = pl.read_parquet(tmp_path / "o" / "manifest.parquet")
    assert manifest.height == 150
    assert (manifest["decision"] != "drop").sum() == 100
    leaked = manifest.filter(pl.col("reasons").list.contains("leak"))
    assert set(leaked["path"]) >= {f"{label}/img_{i:04d}.png" for i, (_, label) in enumerate(images[:10])}
    assert (leaked["decision"] == "drop").all()
    assert manifest.filter(pl.col("decision") != "drop")["weight"].min() > 0
