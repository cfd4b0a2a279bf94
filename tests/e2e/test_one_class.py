"""One class through the real CLI: an unlabeled folder of images (`--unlabeled`: a scrape, no class
folders) and a folder with a single class folder. Labels are not judged; planted duplicates, a
near duplicate, a broken file and a stray text file are found; every file is one row. Without
--unlabeled, a flat folder stays an error that names both ways out."""

from __future__ import annotations

import io
import json

import polars as pl
from PIL import Image

from tests.helpers import digit_images
from tests.helpers.clirun import base_env, run_winnow


def _scrape(root):
    """40 distinct real digits, an exact copy, a resized copy, a truncated PNG, a text file."""
    root.mkdir(parents=True)
    images = [im.convert("RGB").resize((48, 48)) for im, _ in digit_images(40, seed=7)]
    for i, im in enumerate(images):
        im.save(root / f"img_{i:03d}.png")
    (root / "copy_of_003.png").write_bytes((root / "img_003.png").read_bytes())
    images[5].resize((96, 96), Image.Resampling.BICUBIC).save(root / "bigger_005.png")
    buf = io.BytesIO()
    images[9].save(buf, format="PNG")
    (root / "broken.png").write_bytes(buf.getvalue()[:80])
    (root / "README.txt").write_text("scraped on Monday")
    return root


def test_an_unlabeled_folder_is_one_class_with_its_duplicates_and_broken_files_found(tmp_path):
    root = _scrape(tmp_path / "scrape")
    out = tmp_path / "out"
    refused = run_winnow("run", root, "--out", out, "--encoder", "pixels:16", env=base_env(), track_imports=False)
    assert refused.returncode == 2 and "pass --unlabeled" in refused.stderr and not out.exists(), refused.stderr
    result = run_winnow("run", root, "--unlabeled", "--out", out, "--encoder", "pixels:16", env=base_env(),
                        track_imports=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Labels:    one class ('scrape'), so labels were not judged" in result.stdout, result.stdout
    manifest = pl.read_parquet(out / "latest" / "manifest.parquet")
    assert manifest.height == 44 and manifest["path"].n_unique() == 44  # every file, once
    assert set(manifest["label"]) == {"scrape"}
    reasons = dict(zip(manifest["path"], manifest["reasons"].to_list(), strict=True))
    assert "unreadable" in reasons["broken.png"] and "unsupported_format" in reasons["README.txt"]
    copies = {"img_003.png", "copy_of_003.png"}
    assert sum("exact_duplicate" in reasons[p] for p in copies) == 1  # one kept, one dropped
    assert any("near_duplicate" in reasons[p] for p in ("img_005.png", "bigger_005.png")), reasons
    assert not any("label_issue" in r for r in reasons.values())
    summary = json.loads((out / "latest" / "summary.json").read_text())
    assert summary["classes_before"] == {"scrape": 44} and summary["label_detectors"] == []
    # 44 rows, fewer than an audit needs to count (50 checked): no audit sample.
    assert not manifest["audit"].any() and "audit" not in summary
    # The report says why there are no label sections instead of showing them empty (a flat
    # noise-rate chart, "no label issue", a label_quality of 1 on every card).
    report = (out / "latest" / "report.html").read_text(encoding="utf-8")
    assert '<section id="labels">' in report and "labels were not judged" in report
    for empty in ('id="classes"', 'id="confusion"', 'id="scores"'):
        assert empty not in report, empty
    pages = list((out / "latest" / "gallery").rglob("*.html"))
    cards = "".join(p.read_text(encoding="utf-8") for p in pages)
    assert "exact_duplicate" in cards and '<span class="score">label_quality' not in cards


def test_a_single_class_folder_runs_instead_of_stopping(tmp_path):
    root = tmp_path / "cats"
    _scrape(root / "cat")
    result = run_winnow("run", root, "--out", tmp_path / "out", "--encoder", "pixels:16", "--json", env=base_env(),
                        track_imports=False)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["samples"] == 44 and summary["classes_before"] == {"cat": 44}
    assert summary["reasons"].get("unreadable") == 1 and "label_issue" not in summary["reasons"]
