"""`winnow detect`, `winnow evaluate`, `--keep`, `--holdout` and the options of `run`.

Success paths run through typer's CliRunner; anything about errors or output streams runs a
real `winnow` process (tests/helpers/clirun.py), since CliRunner never prints a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from tests.helpers import digit_images, write_image_folder
from tests.helpers.clirun import REPO, run_winnow
from winnow.flows.cli import app

runner = CliRunner()


def blobs(n_per=80, k=4, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * 6
    x = np.concatenate([c + rng.standard_normal((n_per, d)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(k), n_per)
    return x, y


def flipped_blobs(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Blobs with every 16th label moved to the next class (6.25%), saved as folder/labels.npy and
    folder/emb.npy; returns (labels as given, the flipped rows)."""
    x, y = blobs()
    noisy = y.copy()
    flips = np.arange(0, len(y), 16)
    noisy[flips] = (noisy[flips] + 1) % 4
    np.save(folder / "labels.npy", noisy)
    np.save(folder / "emb.npy", x)
    return noisy, flips


def test_detect_on_user_arrays_finds_planted_flips(tmp_path):
    y, flips = flipped_blobs(tmp_path)
    result = runner.invoke(app, ["detect", "--labels", str(tmp_path / "labels.npy"), "--embeddings",
                                 str(tmp_path / "emb.npy"), "--out", str(tmp_path / "issues.parquet"), "--json"])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(tmp_path / "issues.parquet")
    assert frame.height == len(y) and frame["row"].to_list() == list(range(len(y)))
    flagged = set(np.flatnonzero(frame["is_label_issue"].to_numpy()))
    assert len(flagged & set(flips)) >= 0.9 * len(flips) and len(flagged - set(flips)) <= 3
    # "About X% of your labels look wrong": the estimate, and one per class (issue 16 item 2).
    counts = json.loads(result.output)
    assert abs(counts["estimated_noise_rate"] / (len(flips) / len(y)) - 1) < 0.2, counts
    assert set(counts["class_noise_rates"]) == {"0", "1", "2", "3"}


def test_detect_multi_label_names_the_wrong_classes(tmp_path):
    rng = np.random.default_rng(0)
    n, k = 600, 5
    true = rng.random((n, k)) < 0.3
    true[~true.any(axis=1), 0] = True
    noisy = true.copy()
    flips = np.arange(0, n, 10)
    cls = flips % k
    noisy[flips, cls] = ~noisy[flips, cls]  # one class of every 10th sample wrong
    # A model that saw the truth, with some doubt: p near 0.9 for present classes, 0.1 absent.
    probs = np.clip(np.where(true, 0.9, 0.1) + rng.normal(0, 0.05, (n, k)), 0.01, 0.99)
    np.save(tmp_path / "labels.npy", noisy.astype(np.int8))
    np.save(tmp_path / "pp.npy", probs)
    out = tmp_path / "ml.parquet"
    result = runner.invoke(app, ["detect", "--multi-label", "--labels", str(tmp_path / "labels.npy"), "--pred-probs",
                                 str(tmp_path / "pp.npy"), "--classes", "a,b,c,d,e", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(out)
    assert frame.columns == ["row", "is_label_issue", "label_quality", "issue_classes", "labels", "suggested_labels"]
    flagged = set(np.flatnonzero(frame["is_label_issue"].to_numpy()))
    # The per-class counts come from an estimate: nearly every flip, hardly anything else.
    assert len(flagged & set(flips)) >= 0.95 * len(flips) and len(flagged - set(flips)) <= 2, sorted(flagged)
    names = np.array(list("abcde"))
    assert frame["issue_classes"].to_list()[10] == [names[cls[1]]]
    assert set(frame["suggested_labels"].to_list()[10]) == set(names[true[10]])
    assert abs(json.loads(result.output)["estimated_noise_rate"] - 0.1) < 0.03
    bad = run_winnow("detect", "--multi-label", "--labels", str(tmp_path / "labels.npy"), "--out", str(out),
                     track_imports=False)
    assert bad.returncode == 2 and "--multi-label needs --pred-probs" in bad.stderr
    np.save(tmp_path / "pp3.npy", probs[:, :3])
    bad = run_winnow("detect", "--multi-label", "--labels", str(tmp_path / "labels.npy"), "--pred-probs",
                     str(tmp_path / "pp3.npy"), "--out", str(out), track_imports=False)
    assert bad.returncode == 2 and "(600, 5)" in bad.stderr and "(600, 3)" in bad.stderr


def test_detect_bad_arrays_exit_2_quoting_the_value(tmp_path):
    x, y = blobs()
    np.save(tmp_path / "labels.npy", y[:-3])
    np.save(tmp_path / "emb.npy", x)

    def detect(*args):
        result = run_winnow("detect", "--labels", str(tmp_path / "labels.npy"), *args,
                            "--out", str(tmp_path / "o.parquet"), track_imports=False)
        assert result.returncode == 2 and "Traceback" not in result.output, result.output
        assert result.lines() == [result.stderr.strip()] and result.stderr.startswith("error: ")
        return result.stderr

    assert "317" in (err := detect("--embeddings", str(tmp_path / "emb.npy"))) and "320" in err
    x[5, 2] = np.nan
    np.save(tmp_path / "labels.npy", y)
    np.save(tmp_path / "emb.npy", x)
    assert "[5, 2]" in detect("--embeddings", str(tmp_path / "emb.npy"))
    np.save(tmp_path / "pp.npy", np.full((len(y), 4), 0.3))
    assert "sums to 1.2" in detect("--pred-probs", str(tmp_path / "pp.npy"))
    (tmp_path / "emb.txt").write_text("1,2\n")
    assert "'.txt'" in detect("--embeddings", str(tmp_path / "emb.txt"))
    assert "'200-33'" in detect("--embeddings", str(tmp_path / "emb.npy"), "--audit", "200-33")
    assert "wrong=41, checked=20" in detect("--embeddings", str(tmp_path / "emb.npy"), "--audit", "20:41")
    assert not (tmp_path / "o.parquet").exists()


def test_detect_with_an_audit_that_rules_out_the_estimate(tmp_path):
    # Blobs with every 16th label flipped (6.25%); a person checked 200 random rows and found 30
    # wrong (15%, 95%: 10.7-20.7%): the estimate is ruled out, the count follows the audit.
    flipped_blobs(tmp_path)
    args = ["detect", "--labels", str(tmp_path / "labels.npy"), "--embeddings", str(tmp_path / "emb.npy")]
    alone = runner.invoke(app, [*args, "--out", str(tmp_path / "a.parquet"), "--json"])
    audited = runner.invoke(app, [*args, "--out", str(tmp_path / "b.parquet"), "--audit", "200:30"])
    assert alone.exit_code == 0 and audited.exit_code == 0, audited.output
    assert "Audit:     30 of 200 checked labels wrong: 15.0%" in audited.output, audited.output
    assert "is outside it, so the label-issue count follows the audit" in audited.output
    assert "About 15.0% of the labels look wrong." in audited.output
    before = pl.read_parquet(tmp_path / "a.parquet")["is_label_issue"].sum()
    after = pl.read_parquet(tmp_path / "b.parquet")["is_label_issue"].sum()
    assert json.loads(alone.output)["estimated_noise_rate"] < 0.1 and after >= before
    # Multi-label data take no audit yet: said, not ignored.
    multi = run_winnow("detect", "--labels", str(tmp_path / "labels.npy"), "--pred-probs", str(tmp_path / "emb.npy"),
                       "--multi-label", "--audit", "200:30", "--out", str(tmp_path / "c.parquet"), track_imports=False)
    assert multi.returncode == 2 and "--multi-label takes no audit yet" in multi.stderr, multi.output


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
    # The estimate beside the truth, in total and per class (issue 16 item 2).
    assert data["true_noise_rate"] == pytest.approx(data["planted"] / data["samples"], abs=1e-4)
    assert abs(data["estimated_noise_rate"] / data["true_noise_rate"] - 1) < 0.2
    for rates in data["class_noise_rates"].values():
        assert abs(rates["estimated"] - rates["true"]) < 0.1, data["class_noise_rates"]
    ens = data["detectors"][-1]
    assert ens["f1"] >= max(r["f1"] for r in data["detectors"][:-1]) + 0.05
    assert ens["f1"] > 0.9
    bad = runner.invoke(app, ["evaluate", "digits", "--encoder", "pixels:16", "--noise", "gaussian:0.2"])
    assert bad.exit_code == 2 and "'gaussian'" in bad.output


def test_run_with_keep_and_holdout(tmp_path):
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


# --- detect: the files and labels people bring (issue 11 finding 11) ------------------------------

NAMES = np.array(["cat", "dog", "emu", "fox"])


def planted(seed=0):
    x, y = blobs(seed=seed)
    noisy = y.copy()
    flips = np.arange(0, len(y), 16)
    noisy[flips] = (noisy[flips] + 1) % 4
    return x, y, noisy, flips


def found(frame, flips):
    flagged = set(np.flatnonzero(frame["is_label_issue"].to_numpy()))
    return len(flagged & set(flips)) >= 0.9 * len(flips) and len(flagged - set(flips)) <= 3


def test_detect_string_labels_parquet_embeddings_and_ids(tmp_path):
    x, y, noisy, flips = planted()
    ids = [f"img-{i:04d}" for i in range(len(y))]
    pl.DataFrame({"id": ids, "label": NAMES[noisy]}).write_csv(tmp_path / "labels.csv")
    pl.DataFrame({"id": ids, "embedding": x.tolist()}).write_parquet(tmp_path / "emb.parquet")
    result = runner.invoke(app, ["detect", "--labels", str(tmp_path / "labels.csv"), "--id-column", "id",
                                 "--embeddings", str(tmp_path / "emb.parquet"), "--out", str(tmp_path / "a.parquet")])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(tmp_path / "a.parquet")
    assert frame["id"].to_list() == ids and frame["row"].to_list() == list(range(len(y)))
    assert frame["label"].to_list() == NAMES[noisy].tolist()  # class names kept
    assert found(frame, flips)
    flagged = frame.filter(pl.col("is_label_issue"))
    # The suggestion is a class name too, and for the planted flips it is the true class.
    truth = dict(zip(ids, NAMES[y].tolist(), strict=True))
    right = [truth[i] == s for i, s in zip(flagged["id"], flagged["suggested_label"], strict=True)]
    assert sum(right) >= 0.9 * len(right)

    # Wide numeric columns in Parquet or CSV, and ids from their own file.
    pl.DataFrame({f"e{j}": x[:, j] for j in range(x.shape[1])}).write_parquet(tmp_path / "wide.parquet")
    pl.DataFrame({f"e{j}": x[:, j] for j in range(x.shape[1])}).write_csv(tmp_path / "wide.csv")
    pl.DataFrame({"name": ids}).write_parquet(tmp_path / "ids.parquet")
    np.save(tmp_path / "labels.npy", NAMES[noisy])  # a string array
    for emb in ("wide.parquet", "wide.csv"):
        result = runner.invoke(app, ["detect", "--labels", str(tmp_path / "labels.npy"), "--ids",
                                     str(tmp_path / "ids.parquet"), "--embeddings", str(tmp_path / emb),
                                     "--out", str(tmp_path / "b.parquet")])
        assert result.exit_code == 0, result.output
        wide = pl.read_parquet(tmp_path / "b.parquet")
        assert wide["id"].to_list() == ids and found(wide, flips)


def test_detect_pred_probs_only_flags_the_disagreements(tmp_path):
    _, y, noisy, flips = planted()
    probs = np.full((len(y), 4), 0.02)
    probs[np.arange(len(y)), y] = 0.94  # a model that agrees with the truth
    pl.DataFrame({"label": NAMES[noisy]}).write_parquet(tmp_path / "labels.parquet")
    pl.DataFrame({n: probs[:, j] for j, n in enumerate(NAMES)}).write_csv(tmp_path / "pp.csv")
    result = runner.invoke(app, ["detect", "--labels", str(tmp_path / "labels.parquet"), "--pred-probs",
                                 str(tmp_path / "pp.csv"), "--out", str(tmp_path / "pp.parquet")])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(tmp_path / "pp.parquet")
    assert sorted(np.flatnonzero(frame["is_label_issue"].to_numpy())) == list(flips)
    assert frame.filter(pl.col("is_label_issue"))["suggested_label"].to_list() == NAMES[y[flips]].tolist()


def test_detect_zero_shot_with_class_text_embeddings(tmp_path):
    x, y, noisy, flips = planted()
    centres = np.stack([x[y == c].mean(axis=0) for c in range(4)])  # a text tower that knows the classes
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "text.npy", centres)
    pl.DataFrame({"label": NAMES[noisy]}).write_csv(tmp_path / "labels.csv")
    result = runner.invoke(app, ["detect", "--labels", str(tmp_path / "labels.csv"), "--embeddings",
                                 str(tmp_path / "x.npy"), "--class-text-embeddings", str(tmp_path / "text.npy"),
                                 "--methods", "zero_shot", "--out", str(tmp_path / "z.parquet")])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(tmp_path / "z.parquet")
    assert "score_zero_shot" in frame.columns and found(frame, flips)


def test_detect_without_inputs_names_real_options(tmp_path):
    np.save(tmp_path / "labels.npy", np.arange(10) % 2)
    result = run_winnow("detect", "--labels", str(tmp_path / "labels.npy"), "--out", str(tmp_path / "o.parquet"),
                        track_imports=False)
    assert result.returncode == 2 and "Traceback" not in result.output
    assert "--pred-probs" in result.stderr and "--embeddings" in result.stderr and "knn" not in result.stderr
    help_text = run_winnow("detect", "--help", track_imports=False).stdout
    for option in ("--pred-probs", "--embeddings", "--class-text-embeddings", "--ids", "--id-column"):
        assert option in help_text


# --- ground truth in the documented form (issue 11 finding 5) --------------------------------------


@pytest.fixture
def flipped_catalog(tmp_path):
    """300 digits, every 10th filed under the wrong class; truth as README documents it: path, is_flipped."""
    images = digit_images(300, seed=4)
    given, rows = [], []
    for i, (img, label) in enumerate(images):
        flipped = i % 10 == 0
        g = (label + 1) % 10 if flipped else label
        given.append((img, g))
        rows.append((f"{g}/img_{i:04d}.png", flipped))
    write_image_folder(tmp_path / "images", given)
    pl.DataFrame({"path": [r[0] for r in rows], "is_flipped": [r[1] for r in rows]}).write_parquet(
        tmp_path / "truth.parquet")
    (tmp_path / "flipped.toml").write_text(
        'name = "flipped"\nground_truth = "truth.parquet"\n[source]\nkind = "image_folder"\nroot = "images"\n')
    return tmp_path / "flipped.toml"


def test_evaluate_accepts_ground_truth_without_true_label(flipped_catalog):
    result = runner.invoke(app, ["evaluate", str(flipped_catalog), "--encoder", "pixels:16", "--noise",
                                 "symmetric:0.2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # The 30 known-wrong labels have no known right label: they are left out, not scored as clean.
    assert data["samples"] == 270 and data["excluded_known_flips"] == 30
    assert abs(data["planted"] - 0.2 * 270) < 12
    assert data["detectors"][-1]["f1"] > 0.7


def test_run_scores_against_ground_truth_when_the_catalog_has_it(flipped_catalog, tmp_path):
    out = tmp_path / "o"
    result = runner.invoke(app, ["run", str(flipped_catalog), "--out", str(out), "--encoder", "pixels:16", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    scores = summary["ground_truth"]
    manifest = pl.read_parquet(out / "manifest.parquet")
    truth = pl.read_parquet(flipped_catalog.parent / "truth.parquet")
    joined = manifest.join(truth, on="path")
    flagged = joined["reasons"].list.contains("label_issue").to_numpy()
    actual = joined["is_flipped"].to_numpy()
    tp = int((flagged & actual).sum())
    assert scores["n_true_issues"] == 30 and scores["n_flagged"] == int(flagged.sum())
    assert scores["precision"] == pytest.approx(tp / flagged.sum(), abs=1e-4)
    assert scores["recall"] == pytest.approx(tp / 30, abs=1e-4)
    assert scores["recall"] >= 0.6 and scores["precision"] >= 0.6  # pixels on 300 digits: ~0.75 / ~0.8
    assert f"precision {scores['precision']:.3f}" in result.output and f"recall {scores['recall']:.3f}" in result.output


# --- CLI options (issue 11 finding 14) -------------------------------------------------------------


def test_run_methods_list_and_seed_reach_the_library(tmp_path, monkeypatch):
    from winnow import curation
    folder = tmp_path / "digits"
    write_image_folder(folder, digit_images(120, seed=2))
    seen = {}
    real_graph, real_curate = curation.build_knn_graph, curation.curate

    def graph(*args, **kwargs):
        seen["index_seed"] = kwargs["index"].seed
        return real_graph(*args, **kwargs)

    def curate(*args, **kwargs):
        kmeans = kwargs["detect"].kmeans_seed
        seen["kmeans_seed"] = kwargs["seed"] if kmeans is None else kmeans  # None: the run's seed
        return real_curate(*args, **kwargs)

    monkeypatch.setattr(curation, "build_knn_graph", graph)
    monkeypatch.setattr(curation, "curate", curate)
    result = runner.invoke(app, ["run", str(folder), "--out", str(tmp_path / "o"), "--encoder", "pixels:16",
                                 "--methods", "knn_vote,small_loss", "--seed", "7", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["label_detectors"] == ["knn_vote", "small_loss"]
    assert seen == {"index_seed": 7, "kmeans_seed": 7}
    # A kmeans_seed the user sets wins over --seed.
    result = runner.invoke(app, ["run", str(folder), "--out", str(tmp_path / "o2"), "--encoder", "pixels:16",
                                 "--seed", "7", "--set", "detect.kmeans_seed=3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert seen == {"index_seed": 7, "kmeans_seed": 3}


def test_evaluate_methods():
    result = runner.invoke(app, ["evaluate", "digits", "--encoder", "pixels:16", "--methods", "knn_vote,small_loss",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert [r["detector"] for r in json.loads(result.output)["detectors"]] == ["knn_vote", "small_loss", "ensemble"]


def test_help_version_and_readme():
    for command in ("run", "detect", "evaluate", "demo"):
        text = run_winnow(command, "--help", track_imports=False).stdout
        assert "<bool>" not in text, command
    version = run_winnow("--version", track_imports=False)
    from importlib.metadata import version as installed

    assert version.returncode == 0 and version.stdout.strip() == f"winnow {installed('winnow-curate')}"  # the distribution's name (issue 13)
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("## CLI"):].split("```")[1]
    for command in ("winnow run", "winnow demo", "winnow report", "winnow export", "winnow detect",
                    "winnow evaluate", "winnow serve"):
        assert command in block, command


def test_summary_prints_rare_classes_in_one_line(tmp_path, capsys):
    from winnow.flows.cli import _print_summary

    summary = {"catalog": "c", "encoder": "pixels", "samples": 10, "seconds": 1, "embedding": {},
               "decisions": {"keep": 10}, "reasons": {}, "rare_classes": {"emu": 1, "yak": 3}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    paths = {k: str(tmp_path / k) for k in ("run", "latest", "manifest", "clean")} | {
        "summary": str(tmp_path / "summary.json")}
    _print_summary(paths, as_json=False)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.lower().startswith("rare")]
    assert len(lines) == 1 and "emu 1" in lines[0] and "yak 3" in lines[0]


def test_run_on_a_table_file(tmp_path):
    folder = tmp_path / "digits"
    paths = write_image_folder(folder, digit_images(60, seed=9))
    rel = [str(p.relative_to(tmp_path)) for p in paths]
    pl.DataFrame({"file": rel, "y": [p.parent.name for p in paths]}).write_parquet(tmp_path / "labels.parquet")
    result = runner.invoke(app, ["run", str(tmp_path / "labels.parquet"), "--path-column", "file", "--label-column",
                                 "y", "--out", str(tmp_path / "o"), "--encoder", "pixels:16", "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = pl.read_parquet(tmp_path / "o" / "manifest.parquet")
    assert manifest["path"].to_list() == rel and manifest["label"].to_list() == [p.parent.name for p in paths]


# --- `--keep` over a folder with a corrupt file, in a real process -------------------------------


def test_cli_run_keep_with_a_corrupt_png(tmp_path):
    """`winnow run FOLDER --keep 0.7` on a folder with one corrupt PNG: every input row once."""
    folder = tmp_path / "digits"
    paths = write_image_folder(folder, digit_images(60, seed=4))
    corrupt = paths[17]
    corrupt.write_bytes(corrupt.read_bytes()[:40])
    winnow = Path(sys.executable).with_name("winnow")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / "prefect"),
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
