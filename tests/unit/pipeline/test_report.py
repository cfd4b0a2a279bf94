"""The run report: rendered in headless Chromium from a real run, plus the contract's edge cases."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import polars as pl
import pytest
from PIL import Image

import winnow.pipeline.report
from tests.conftest import digit_images, write_image_folder
from winnow.flows.clean import clean_dataset
from winnow.pipeline.config import RunConfig
from winnow.pipeline.report import RunNotFound, resolve_run, write_report

HOSTILE_FILE = "x<img src=y onerror=alert(1)>.png"  # a file name that is also markup
HOSTILE_LABEL = "<b>&quot;lbl'"  # a class folder name that is also markup
HOSTILE_REASON = "<i>odd/../reason"  # a reason code from some other tool's manifest


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
    clean_dataset(RunConfig(target=str(root), out=str(out), encoder="pixels:16", k=5))
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


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(RunNotFound, match="no manifest.parquet"):
        write_report(tmp_path)
    with pytest.raises(ValueError, match="thumb_limit must be an integer >= 0, got -1"):
        write_report(tmp_path, thumb_limit=-1)
    with pytest.raises(ValueError, match="page_size must be an integer >= 1, got 0"):
        write_report(tmp_path, page_size=0)


# --- every flagged sample reachable; the matrix counts what its caption says --------------------

PLANTED_CLASSES = ["cat", "dog", HOSTILE_LABEL, "ünï 名", "bird"]


def _sid(path: str) -> str:
    return hashlib.blake2b(path.encode(), digest_size=8).hexdigest()


def planted_run(base: Path) -> tuple[Path, pl.DataFrame]:
    """A run folder (real image files) whose manifest plants 200 flagged samples among 600.

    140 label issues (relabelled, dropped and kept), 20 exact and 10 near copies, 8 unreadable
    files, 12 pruned, 9 over a cap (one also with a reason code that is markup), and one outlier
    whose label quality is the best of all, so it sorts last. 60 unflagged rows have a suggestion that differs from their given label
    (what kNN voting writes for every sample): they are not label issues.
    """
    data, run = base / "data", base / "run"
    (run / "work").mkdir(parents=True)
    images = digit_images(600, seed=3, size=16)
    rows, abs_paths = [], []
    for i, (img, _) in enumerate(images):
        label = PLANTED_CLASSES[i % len(PLANTED_CLASSES)]
        other = PLANTED_CLASSES[(i + 1) % len(PLANTED_CLASSES)]
        name = HOSTILE_FILE if i == 5 else f"img_{i:04d}.png"
        path = f"{label}/{name}"
        file = data / label / name
        file.parent.mkdir(parents=True, exist_ok=True)
        img.save(file)
        row = {"sample_id": _sid(path), "path": path, "label": label, "decision": "keep", "reasons": [],
               "label_quality": 0.5 + 0.4 * (i % 50) / 50, "suggested_label": label, "final_label": label,
               "weight": 1.0, "duplicate_of": None, "cluster": None, "content_hash": _sid("content" + path),
               "outlier_score": 1.0}
        if i < 140:
            decision = ("relabel", "drop", "keep")[i % 3]
            row |= {"reasons": ["label_issue"] + (["duplicate_label_conflict"] if 130 <= i < 135 else []),
                    "label_quality": 0.01 + 0.002 * i, "suggested_label": other, "decision": decision,
                    "final_label": {"relabel": other, "drop": None, "keep": label}[decision]}
        elif i < 160:
            row |= {"reasons": ["exact_duplicate"], "decision": "drop", "final_label": None, "weight": 0.0,
                    "duplicate_of": _sid(f"{PLANTED_CLASSES[(300 + i) % 5]}/img_{300 + i:04d}.png")}
        elif i < 170:
            row |= {"reasons": ["near_duplicate"], "decision": "drop", "final_label": None, "weight": 0.0,
                    "duplicate_of": _sid(f"{PLANTED_CLASSES[(340 + i) % 5]}/img_{340 + i:04d}.png")}
        elif i < 178:
            file.write_bytes(file.read_bytes()[:20])  # truncated: no image
            row |= {"reasons": ["unreadable"], "decision": "drop", "final_label": None, "weight": 0.0,
                    "label_quality": None, "suggested_label": None, "outlier_score": None}
        elif i < 190:
            row |= {"reasons": ["pruned"], "decision": "drop", "final_label": None, "weight": 0.0}
        elif i < 199:
            row |= {"reasons": ["over_cap"] + ([HOSTILE_REASON] if i == 198 else []), "decision": "drop",
                    "final_label": None, "weight": 0.0}
        elif i == 199:
            row |= {"reasons": ["outlier"], "decision": "drop", "final_label": None, "weight": 0.0,
                    "label_quality": 0.999, "outlier_score": 9.0}
        elif i < 260:
            row["suggested_label"] = other  # kNN disagrees, but not enough to flag
        rows.append(row)
        abs_paths.append(str(file.absolute()))
    manifest = pl.DataFrame(rows, schema={
        "sample_id": pl.String, "path": pl.String, "label": pl.String, "decision": pl.String,
        "reasons": pl.List(pl.String), "label_quality": pl.Float64, "suggested_label": pl.String,
        "final_label": pl.String, "weight": pl.Float64, "duplicate_of": pl.String, "cluster": pl.Int32,
        "content_hash": pl.String, "outlier_score": pl.Float64,
    }).with_columns(pl.col("label_quality").alias("score_knn_vote"))
    manifest.write_parquet(run / "manifest.parquet")
    pl.DataFrame({"sample_id": manifest["sample_id"], "abs_path": abs_paths}).write_parquet(
        run / "work" / "samples.parquet")
    (run / "summary.json").write_text(json.dumps({"catalog": "planted", "samples": manifest.height}))
    return run, manifest


class _Page(HTMLParser):
    """What a page offers: its links, the samples it lists, each listed sample's own thumbnail."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.thumbs: dict[str, str] = {}
        self.group: tuple[str, str] | None = None
        self._card: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if a.get("data-sample-id") is not None:
            self.ids.add(a["data-sample-id"])
            self._card = a["data-sample-id"] if tag in ("article", "tr") else None
        if tag == "img" and self._card and "small" not in a.get("class", "").split():
            self.thumbs.setdefault(self._card, a.get("src", ""))
        if tag == "main" and a.get("data-group"):
            self.group = (a["data-group"], a.get("data-key", ""))

    def handle_endtag(self, tag):
        if tag in ("article", "tr"):
            self._card = None


def crawl(start: Path) -> dict[Path, _Page]:
    """Every page reachable from `start` through relative links (as a browser opens them)."""
    root = Path(os.path.normpath(start.parent))
    pages: dict[Path, _Page] = {}
    todo = [Path(os.path.normpath(start))]
    while todo:
        page = todo.pop()
        if page in pages:
            continue
        parsed = _Page()
        parsed.feed(page.read_text(encoding="utf-8"))
        pages[page] = parsed
        for href in parsed.links:
            target = urlsplit(href)
            if target.scheme or target.netloc or not target.path:
                continue
            nxt = Path(os.path.normpath(page.parent / unquote(target.path)))
            assert nxt.is_relative_to(root) and nxt.is_file(), f"{page.name} links to {href!r}: no such page"
            if nxt.suffix == ".html":
                todo.append(nxt)
    return pages


def test_every_flagged_sample_is_reachable_by_reason_and_by_class(tmp_path):
    run, manifest = planted_run(tmp_path)
    write_report(run)
    flagged = manifest.filter(pl.col("reasons").list.len() > 0)
    assert flagged.height == 200
    pages = crawl(run / "report.html")
    reached = set().union(*(p.ids for p in pages.values()))
    missing = flagged.filter(~pl.col("sample_id").is_in(list(reached)))
    assert missing.height == 0, (
        f"{missing.height} of {flagged.height} flagged samples cannot be reached from report.html, "
        f"among them {missing.filter(pl.col('reasons').list.contains('outlier'))['path'].to_list()} (the "
        f"outlier) and {sorted(missing['reasons'].list.first().unique().to_list())}")
    assert reached == set(flagged["sample_id"])  # only flagged samples are listed as such

    # Grouped: each reason's pages list exactly its samples; each class's pages its flagged samples.
    groups: dict[tuple[str, str], list[set[str]]] = {}
    for page in pages.values():
        if page.group and page.group[0] in ("reason", "class"):
            groups.setdefault(page.group, []).append(page.ids)
    want = {("reason", r): set(flagged.filter(pl.col("reasons").list.contains(r))["sample_id"])
            for r in flagged["reasons"].explode().unique()}
    want |= {("class", c): set(flagged.filter(pl.col("label") == c)["sample_id"])
             for c in flagged["label"].unique()}
    assert {g: set().union(*ids) for g, ids in groups.items()} == want
    assert [len(ids) for ids in groups[("reason", "label_issue")]] in ([100, 40], [40, 100])  # paged by 100

    # Every listed sample that has an image shows its thumbnail (200 is under the cap).
    thumbs = {}
    for page_path, page in pages.items():
        for sid, src in page.thumbs.items():
            assert (page_path.parent / src).is_file(), src
            thumbs[sid] = src
    with_image = flagged.filter(~pl.col("reasons").list.contains("unreadable"))
    assert set(with_image["sample_id"]) <= set(thumbs)

    # File names never come from the data; data never becomes markup.
    for p in (run / "gallery").rglob("*"):
        assert re.fullmatch(r"[a-z0-9_-]+(\.html)?", p.name), p
    for p in pages:
        text = p.read_text(encoding="utf-8")
        assert "<img src=y" not in text and "<b>&quot;" not in text and "<i>odd" not in text, p


def test_thumbnails_stop_at_the_cap_and_the_pages_say_so(tmp_path, monkeypatch):
    run, manifest = planted_run(tmp_path)
    monkeypatch.setattr(winnow.pipeline.report, "DUPLICATE_GROUPS", 0)  # their thumbnails come on top of the cap
    write_report(run, thumb_limit=30)
    pages = crawl(run / "report.html")
    thumbs = set().union(*(p.thumbs for p in pages.values()))
    assert len(thumbs) == 30
    # The cap is shared across reasons, worst first in each: the worst label issue and the lone
    # outlier both keep their thumbnail.
    worst = manifest.sort("label_quality", nulls_last=True)["sample_id"][0]
    outlier = manifest.filter(pl.col("reasons").list.contains("outlier"))["sample_id"][0]
    assert {worst, outlier} <= thumbs
    reached = set().union(*(p.ids for p in pages.values()))
    assert len(reached) == 200  # rows beyond the cap are still listed
    no_image = set(manifest.filter(pl.col("reasons").list.contains("unreadable"))["sample_id"])
    capped = [p for p, page in pages.items() if page.ids - thumbs - no_image and page.group]
    assert capped and all("first 30 flagged samples" in p.read_text(encoding="utf-8") for p in capped)


def _matrix_cells(page: str) -> Counter:
    cells = Counter()
    for title in re.findall(r'<rect class="cell"[^>]*><title>(.*?)</title>', page):
        given, suggested, n = re.fullmatch(r"given (.*), suggested (.*): (\d+)", html.unescape(title)).groups()
        cells[given, suggested] += int(n)
    return cells


def test_given_vs_suggested_matrix_counts_exactly_the_label_issues(tmp_path):
    run, manifest = planted_run(tmp_path)
    page = write_report(run).read_text(encoding="utf-8")
    issues = manifest.filter(pl.col("reasons").list.contains("label_issue"))
    cells = _matrix_cells(page)
    assert sum(cells.values()) == issues.height == 140, (
        f"the matrix counts {sum(cells.values())} rows; {issues.height} are flagged label_issue")
    assert cells == Counter(zip(issues["label"], issues["suggested_label"], strict=True))
    section = re.search(r'<section id="confusion">(.*?)</section>', page, re.S)[1]
    caption = html.unescape(re.sub(r"<[^>]+>", "", re.search(r"<figcaption>(.*?)</figcaption>", section, re.S)[1]))
    assert "label_issue" in caption and "relabel" in caption and "drop" in caption and "kept" in caption
