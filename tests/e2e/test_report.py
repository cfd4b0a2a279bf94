"""The report of a real run (the flow on digits plus a hostile class, file and copy), in a browser too."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from tests.helpers import digit_images, write_image_folder
from tests.helpers.pages import HOSTILE_FILE, HOSTILE_LABEL, crawl
from winnow.flows.clean import clean_dataset
from winnow.pipeline.config import make_settings
from winnow.pipeline.report import resolve_run, write_report


@pytest.fixture(scope="module")
def out_dir(prefect_harness, tmp_path_factory) -> Path:
    """A real run on 120 digits plus a hostile class, a hostile unreadable file and a copy."""
    root = tmp_path_factory.mktemp("report") / "data"
    paths = write_image_folder(root, digit_images(120, seed=1))
    hostile = root / HOSTILE_LABEL
    hostile.mkdir()
    for i, (img, _) in enumerate(digit_images(8, seed=2)):
        img.save(hostile / f"h_{i}.png")
    good = paths[0].read_bytes()
    (root / "3" / HOSTILE_FILE).write_bytes(good[: len(good) // 3])  # truncated: unusable
    shutil.copy(paths[1], root / "7" / "copy_of_one.png")
    out = tmp_path_factory.mktemp("report") / "out"
    clean_dataset(str(root), make_settings(out=str(out), encoder="pixels:16", k=5))
    return out


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.fail("no headless browser: `make test` installs Debian's chromium, or run "
                "`apt-get install -y chromium`")


def _browse(page: Path, tmp: Path, *, screenshot: Path | None = None) -> str:
    """Chromium renders the page offline; returns the DOM after the load event."""
    args = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={tmp / 'chrome-profile'}", "--window-size=1400,2400"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    done = subprocess.run([*args, page.absolute().as_uri()], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.browser
def test_report_renders_in_headless_chromium(out_dir, tmp_path):
    # The first run's own report already works from OUT/: its gallery/ link is in place.
    flagged_by_run = set().union(*(p.ids for p in crawl(out_dir / "report.html").values()))
    report = write_report(out_dir)  # the OUT folder: resolves `latest`
    run = resolve_run(out_dir)
    assert report == run / "report.html"
    manifest = pl.read_parquet(run / "manifest.parquet")
    page = out_dir / "report.html"  # what users open: the published link to latest/
    assert page.resolve() == report.resolve()

    dom = _browse(page, tmp_path)
    for element_id in ("report-header", "summary", "reasons", "classes", "chart-class-counts",
                       "chart-noise-rate", "confusion", "chart-confusion", "scores",
                       "hist-label_quality", "gallery", "reason-index", "duplicates", "unusable", "details"):
        assert f'id="{element_id}"' in dom, element_id
    assert dom.count('class="gallery-card ') > 0
    # Every thumbnail decoded in the browser, through the OUT/ links as well as in the run folder.
    images = re.search(r'data-images-total="(\d+)" data-images-loaded="(\d+)"', dom)
    assert images and int(images[1]) > 0 and images[1] == images[2], images
    html_text = report.read_text(encoding="utf-8")
    for src in set(re.findall(r'<img [^>]*src="([^"]+)"', html_text)):
        assert src.startswith("thumbs/") and (run / src).is_file() and (out_dir / src).is_file(), src
    assert len(list((run / "thumbs").iterdir())) < manifest.height  # only what is shown
    # Hostile names are shown as text, never as markup.
    assert "<img src=y" not in html_text and "<b>&quot" not in html_text
    assert "x&lt;img src=y onerror=alert(1)&gt;.png" in html_text
    assert "&lt;b&gt;&amp;quot;lbl&#x27;" in html_text
    assert "<img src=y" not in dom and "<b>&quot;lbl'" not in dom

    # From OUT/report.html (the link users open) every flagged sample is a few clicks away.
    pages = crawl(page)
    flagged = set(manifest.filter(pl.col("reasons").list.len() > 0)["sample_id"])
    assert set().union(*(p.ids for p in pages.values())) == flagged == flagged_by_run
    gallery = out_dir / "gallery" / "reason-label_issue" / "1.html"
    assert os.path.normpath(gallery) in {str(p) for p in pages}
    gallery_dom = _browse(gallery, tmp_path)
    images = re.search(r'data-images-total="(\d+)" data-images-loaded="(\d+)"', gallery_dom)
    assert images and int(images[1]) > 0 and images[1] == images[2], images
    assert "<img src=y" not in gallery_dom

    for name, shown in (("report", page), ("gallery", gallery)):
        shot = tmp_path / f"{name}.png"
        _browse(shown, tmp_path, screenshot=shot)
        pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
        assert pixels.shape[:2] == (2400, 1400)
        assert pixels.std() > 20, name  # not a blank page
        if name == "report":
            top = pixels[:1200]
            red = (top[..., 0] > 180) & (top[..., 1] < 90) & (top[..., 2] < 90)  # noise bars, heat map
            blue = (top[..., 2] > 200) & (top[..., 0] < 80)  # class counts after cleaning
            assert red.mean() > 0.002 and blue.mean() > 0.002
        shutil.copy(shot, out_dir / f"{name}-screenshot.png")  # kept beside the run for a human look


def test_report_shows_duplicates_new_detectors_and_the_summary_cutoff(out_dir, tmp_path):
    """Later detectors fill duplicate_of, add score columns and summary keys: all are shown."""
    run = tmp_path / "run"
    shutil.copytree(resolve_run(out_dir), run, symlinks=True)
    manifest = pl.read_parquet(run / "manifest.parquet")
    ids = manifest["sample_id"].to_list()
    copy = manifest.filter(pl.col("path") == "7/copy_of_one.png")["sample_id"][0]
    keeper = next(i for i in ids if i != copy)
    rng = np.random.default_rng(0)
    manifest = manifest.with_columns(
        pl.when(pl.col("sample_id") == copy).then(pl.lit(keeper)).otherwise(None).alias("duplicate_of"),
        pl.Series("score_outlier", rng.random(manifest.height)),
    )
    manifest.write_parquet(run / "manifest.parquet")
    summary = json.loads((run / "summary.json").read_text())
    summary |= {"label_issue_cutoff": 0.3125, "cluster_balance": {"clusters": 7, "gini": 0.21}}
    (run / "summary.json").write_text(json.dumps(summary))

    html = write_report(run).read_text(encoding="utf-8")
    assert html.count('class="dup-group"') == 1 and "copy_of_one.png" in html
    assert 'id="hist-score_outlier"' in html
    assert "cut-off 0.312" in html  # the summary's value, not the derived one
    assert "cluster_balance" in html and "gini" in html


def test_report_of_an_old_run_without_work_folder(out_dir, tmp_path):
    """prune_old_work deletes work/: the report still builds, without neighbours."""
    run = tmp_path / "old"
    shutil.copytree(resolve_run(out_dir), run, symlinks=True)
    shutil.rmtree(run / "work")
    shutil.rmtree(run / "thumbs", ignore_errors=True)
    html_text = write_report(run, thumb_limit=5).read_text(encoding="utf-8")
    assert 'class="nbs"' not in html_text
    assert (run / "thumbs").is_dir() and (run / "gallery").is_dir()
    manifest = pl.read_parquet(run / "manifest.parquet")
    pages = crawl(run / "report.html")
    assert set().union(*(p.ids for p in pages.values())) == set(
        manifest.filter(pl.col("reasons").list.len() > 0)["sample_id"])
    assert 0 < len(set().union(*(p.thumbs for p in pages.values()))) <= 5
