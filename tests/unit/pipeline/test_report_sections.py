"""The report's per-reason sections come from a registry; a reason code it has never heard of
still gets its own section, sorted by its score and showing it."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import polars as pl
import pytest

from winnow.pipeline.report import sections, write_report
from winnow.pipeline.report.sections import ReasonSection, score_column, section_for

N_TOY = 130  # two gallery pages of 100


def _sid(i: int) -> str:
    return hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest()


def toy_run(base: Path) -> tuple[Path, pl.DataFrame]:
    """A run whose manifest holds an issue type no part of Winnow knows: reason `toy_issue`,
    column `score_toy`. 130 toy issues (10 of them also label issues), 20 label issues, 50 clean."""
    rng = np.random.default_rng(7)
    n = 200
    toy = rng.permutation(n)[:N_TOY]
    reasons = [[] for _ in range(n)]
    for i in toy:
        reasons[i].append("toy_issue")
    for i in [i for i in range(n) if i not in set(toy)][:20] + list(toy[:10]):
        reasons[i].insert(0, "label_issue")
    manifest = pl.DataFrame({
        "sample_id": [_sid(i) for i in range(n)],
        "path": [f"c{i % 3}/img_{i:03d}.png" for i in range(n)],
        "label": [f"c{i % 3}" for i in range(n)],
        "decision": ["drop" if r else "keep" for r in reasons],
        "reasons": reasons,
        "label_quality": rng.uniform(0.0, 1.0, n).round(4),
        "suggested_label": [f"c{i % 3}" for i in range(n)],
        "final_label": [None if r else f"c{i % 3}" for i, r in enumerate(reasons)],
        "weight": [0.0 if r else 1.0 for r in reasons],
        "duplicate_of": pl.Series([None] * n, dtype=pl.String),
        "cluster": pl.Series([None] * n, dtype=pl.Int32),
        "content_hash": [_sid(-i) for i in range(n)],
        # Distinct values in [0.01, 0.99] with 4 significant digits: shown exactly as written.
        "score_toy": (rng.permutation(np.arange(n)) * 0.0049 + 0.0101).round(4),
    }, schema_overrides={"reasons": pl.List(pl.String)})
    run = base / "run"
    run.mkdir(parents=True)
    manifest.write_parquet(run / "manifest.parquet")
    (run / "summary.json").write_text(json.dumps({"catalog": "toy", "samples": n}))
    return run, manifest


def crawl(start: Path) -> dict[Path, str]:
    """Every page reachable from `start` through relative links: path -> its HTML."""
    pages: dict[Path, str] = {}
    todo = [Path(os.path.normpath(start))]
    while todo:
        page = todo.pop()
        if page in pages:
            continue
        pages[page] = page.read_text(encoding="utf-8")
        for href in re.findall(r'href="([^"]+)"', pages[page]):
            target = urlsplit(href)
            if not target.scheme and target.path.endswith(".html"):
                todo.append(Path(os.path.normpath(page.parent / unquote(target.path))))
    return pages


def cards(page: str) -> list[tuple[str, str | None]]:
    """(sample id, the score_toy it shows) for every card, in page order."""
    found = re.findall(r'<article class="gallery-card[^"]*" data-sample-id="([^"]+)">(.*?)</article>', page, re.S)
    return [(sid, m[1] if (m := re.search(r'<span class="score">score_toy <b>([^<]+)</b>', body)) else None)
            for sid, body in found]


def toy_listing(pages: dict[Path, str], run: Path) -> list[tuple[str, str | None]]:
    """The toy section's cards, page 1 first."""
    folder = run / "gallery" / "reason-toy_issue"
    listed = sorted((p for p in pages if p.parent == folder), key=lambda p: int(p.stem))
    return [c for p in listed for c in cards(pages[p])]


def test_an_unknown_reason_gets_its_own_section_sorted_by_its_score(tmp_path):
    run, manifest = toy_run(tmp_path)
    write_report(run)
    pages = crawl(run / "report.html")
    toy = manifest.filter(pl.col("reasons").list.contains("toy_issue"))
    listing = toy_listing(pages, run)

    # Every toy sample is reachable from report.html, in its own section, once.
    assert len(listing) == N_TOY and {sid for sid, _ in listing} == set(toy["sample_id"])
    assert len([p for p in pages if p.parent.name == "reason-toy_issue"]) == 2  # 100 a page
    # Sorted by score_toy, lowest first (a score is a quality: low = worst), each card showing it.
    by_id = dict(zip(toy["sample_id"], toy["score_toy"], strict=True))
    assert [sid for sid, _ in listing] == sorted(by_id, key=by_id.get)
    assert all(shown is not None and float(shown) == pytest.approx(by_id[sid], abs=1e-9) for sid, shown in listing)
    # The overview lists it with its pages and previews its worst samples.
    overview = pages[run / "report.html"]
    assert '<a href="gallery/reason-toy_issue/1.html"><code>toy_issue</code></a>' in overview
    preview = re.search(r'<div class="preview" data-reason="toy_issue">(.*?)(<div class="preview"|</section>)',
                        overview, re.S)
    assert preview and [sid for sid, _ in cards(preview[1])] == sorted(by_id, key=by_id.get)[:6]
    # The note on its pages says how it is sorted.
    assert "Order: lowest score_toy first." in pages[run / "gallery" / "reason-toy_issue" / "1.html"]


def test_a_registered_section_sets_title_meaning_and_direction(tmp_path, monkeypatch):
    monkeypatch.setattr(sections, "REASON_SECTIONS", dict(sections.REASON_SECTIONS))
    sections.register_reason_section("toy_issue", ReasonSection(
        sort_by="score_toy", descending=True, order="toyest first", title="Toy <issues>",
        meaning="a made-up issue type"))
    assert "toy_issue" in sections.list_reason_sections()
    run, manifest = toy_run(tmp_path)
    write_report(run)
    pages = crawl(run / "report.html")
    toy = manifest.filter(pl.col("reasons").list.contains("toy_issue"))
    by_id = dict(zip(toy["sample_id"], toy["score_toy"], strict=True))
    assert [sid for sid, _ in toy_listing(pages, run)] == sorted(by_id, key=by_id.get, reverse=True)
    first = pages[run / "gallery" / "reason-toy_issue" / "1.html"]
    assert "reason Toy &lt;issues&gt; <code>toy_issue</code>" in first  # the title is data: escaped
    assert "a made-up issue type. Order: toyest first." in first
    assert "<h3>Toy &lt;issues&gt; <code>toy_issue</code>" in pages[run / "report.html"]


def test_section_lookup():
    columns = ["label_quality", "path", "duplicate_of", "score_toy", "score_knn_vote"]
    assert score_column("toy_issue", columns) == "score_toy"
    assert score_column("toy", columns + ["score_toy_issue"]) == "score_toy"
    assert score_column("toy_issue", columns + ["score_toy_issue"]) == "score_toy_issue"  # the longest
    assert score_column("blur", columns) is None and score_column("<i>odd/../reason", columns) is None
    generic = section_for("toy_issue", columns)
    assert (generic.sort_by, generic.descending, generic.card_scores) == ("score_toy", False, ("score_toy",))
    assert section_for("pruned", columns).sort_by == "label_quality"  # no score of its own
    assert section_for("unreadable", columns).sort_by == "path"
    assert section_for("near_duplicate", columns).sort_by == "duplicate_of"
    assert section_for("label_issue", columns).listed_first
    outlier = section_for("outlier", columns + ["outlier_score"])
    assert (outlier.sort_by, outlier.descending, outlier.card_scores) == ("outlier_score", True, ("outlier_score",))
    # A manifest without outlier_score: still its section (card columns kept), by label quality.
    fallback = section_for("outlier", columns)
    assert (fallback.sort_by, fallback.descending, fallback.order) == ("label_quality", False,
                                                                       "lowest label quality first")
    with pytest.raises(ValueError, match="a reason code is a non-empty string, got ''"):
        sections.register_reason_section(["x", ""], ReasonSection())
    assert "x" not in sections.list_reason_sections()  # nothing registered from a bad list
