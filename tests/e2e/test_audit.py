"""The audit through the real CLI: a run marks its audit sample, a person checks it (OUT/reviews/),
the next run measures the wrong-label share from it and, where that rules out the detectors'
own estimate, cuts at the audit's rate. Every input row is still one row."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from tests.helpers.clirun import base_env, run_winnow
from tests.helpers.images import digit_images, write_image_folder
from winnow.pipeline.review import write_reviews

N, FLIPPED = 360, 54  # 15% of the labels moved to the next digit's folder


def _world(root):
    images = digit_images(N, seed=11)
    given = [((y + 1) % 10 if i < FLIPPED else y) for i, (_, y) in enumerate(images)]
    paths = write_image_folder(root, [(img, g) for (img, _), g in zip(images, given, strict=True)])
    truth = {str(p.relative_to(root)): str(y) for p, (_, y) in zip(paths, images, strict=True)}
    return truth


def _run(root, out):
    result = run_winnow("run", root, "--out", out, "--encoder", "pixels:16", env=base_env(), track_imports=False)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = pl.read_parquet(out / "latest" / "manifest.parquet")
    summary = json.loads((out / "latest" / "summary.json").read_text())
    return result.stdout, manifest, summary


def _audit_reviews(manifest, answer):
    return [{"sample_id": r["sample_id"], "content_hash": r["content_hash"],
             "decision": "keep" if answer(r) == r["label"] else "relabel", "label": answer(r)}
            for r in manifest.filter(pl.col("audit")).iter_rows(named=True)]


def test_an_audit_measures_the_noise_and_the_cut_follows_it_when_it_must(tmp_path):
    root, out = tmp_path / "digits", tmp_path / "out"
    truth = _world(root)
    stdout, first, summary = _run(root, out)
    assert first.height == N and first["audit"].sum() == 200
    assert summary["audit"]["size"] == 200 and summary["audit"]["checked"] == 0
    assert "Audit:     0 of 200 checked" in stdout, stdout

    # A person checks the audit rows the detectors flagged first (they are in the app's default
    # list too), then 40 of the others: the count is post-stratified by the flags, so the rows
    # opened first do not make the data look noisier than it is.
    sample = first.filter(pl.col("audit"))
    is_flagged = sample["reasons"].list.contains("label_issue")
    opened = pl.concat([sample.filter(is_flagged), sample.filter(~is_flagged).head(40)])
    write_reviews(out / "reviews", _audit_reviews(opened, lambda r: truth[r["path"]]), reviewer="auditor")
    stdout, _, summary = _run(root, out)
    audit = summary["audit"]
    n_flag = int(is_flagged.sum())
    wrong_flag = sum(truth[r["path"]] != r["label"] for r in sample.filter(is_flagged).iter_rows(named=True))
    wrong_rest = sum(truth[r["path"]] != r["label"] for r in sample.filter(~is_flagged).head(40).iter_rows(named=True))
    assert audit["checked"] == n_flag + 40 and audit["strata"] == [[n_flag / 200, n_flag, wrong_flag],
                                                                   [1 - n_flag / 200, 40, wrong_rest]]
    assert audit["rate"] == pytest.approx(wrong_flag / 200 + (1 - n_flag / 200) * wrong_rest / 40)
    assert "flagged and unflagged rows weighted by their share of the sample" in stdout, stdout

    # Then the whole sample, truthfully.
    acts = _audit_reviews(first, lambda r: truth[r["path"]])
    write_reviews(out / "reviews", acts, reviewer="auditor")
    stdout, second, summary = _run(root, out)
    audit = summary["audit"]
    wrong = sum(a["decision"] == "relabel" for a in acts)
    assert (audit["checked"], audit["wrong"]) == (200, wrong)
    lo, hi = audit["interval"]
    assert lo <= wrong / 200 <= hi and hi - lo < 0.11
    assert f"Audit:     {wrong} of 200 checked labels wrong" in stdout, stdout
    model = audit["model_rate"]
    if audit["overruled"]:
        assert not lo <= model <= hi and summary["estimated_noise_rate"] == round(wrong / 200, 4)
    else:
        assert lo <= model <= hi and summary["estimated_noise_rate"] == model
    assert second.height == N and second["path"].n_unique() == N
    # The audited rows are decided by the person.
    audited = second.filter(pl.col("audit"))
    assert (audited["review_state"] == "reviewed").all()
    assert audited.filter(pl.col("decision") == "relabel").height == wrong

    # An audit that rules the detectors out: the person finds half the sampled labels wrong
    # (here they relabel every other audited row). The estimate is the audit's and the cut goes
    # deeper in every class, but not past a row whose evidence agrees with its label (the cut's
    # argmax guard): the person's claim cannot make the detectors doubt what they do not doubt.
    alternate = {r["sample_id"]: i % 2 for i, r in enumerate(first.filter(pl.col("audit")).iter_rows(named=True))}

    def claim(r):
        return str((int(r["label"]) + 1) % 10) if alternate[r["sample_id"]] else r["label"]

    write_reviews(out / "reviews", _audit_reviews(first, claim), reviewer="auditor")
    stdout, third, summary = _run(root, out)
    assert summary["audit"]["overruled"] and summary["audit"]["wrong"] == 100
    assert summary["estimated_noise_rate"] == 0.5
    assert "is outside it, so the label-issue count follows the audit" in stdout, stdout
    flagged = np.array(["label_issue" in r for r in third["reasons"].to_list()])
    before = np.array(["label_issue" in r for r in second["reasons"].to_list()])
    assert flagged.sum() > before.sum() + 20 and flagged.mean() <= 0.5
    issues = third.filter(pl.Series(flagged) & (pl.col("review_state") != "reviewed"))
    assert (issues["suggested_label"] != issues["label"]).all()
    assert third.height == N
