"""The run report on hand-made runs: every flagged sample reachable, the thumbnail cap, the
matrix, the contract's edge cases. A real run's report, in Chromium too: tests/e2e/test_report.py."""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

import winnow.pipeline.report
from tests.helpers import digit_images
from tests.helpers.pages import HOSTILE_FILE, HOSTILE_LABEL, HOSTILE_REASON, crawl
from winnow.pipeline.report import RunNotFound, write_report


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
