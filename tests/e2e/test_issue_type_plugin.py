"""Issue 13 item 7: an issue type registered from outside the package is one class and one call,
and a whole run (winnow.clean, direct runner) carries it into the manifest, summary.json, the
policy and the report, with no other part of Winnow told about it."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import polars as pl
import pytest

from tests.helpers.images import digit_images, write_image_folder
from winnow.curation import issues
from winnow.curation.errors import InvalidArray
from winnow.curation.issues import IssueContext, IssueFindings, IssueType


class ToyDark(IssueType):
    """Flags samples whose embedding's first coordinate is in its lowest fifth: a stand-in for a
    darkness check, written as a plug-in would be."""

    name = "toy_dark"
    reasons = {"toy_dark": "the embedding's first coordinate is in its lowest fifth (a test's toy issue type)"}
    # lower = darker (the report lists the lowest first); and a typed column that is no score
    columns = {"score_toy_dark": "float64", "is_toy_dark": "bool"}
    default_action = "keep"

    def find(self, ctx: IssueContext) -> IssueFindings:
        score = np.asarray(ctx.embeddings[:, 0], dtype=np.float64)
        cut = float(np.quantile(score, 0.2))
        return IssueFindings(flags={"toy_dark": score < cut},
                             columns={"score_toy_dark": score, "is_toy_dark": score < cut}, facts={"toy_dark_cut": cut})


@pytest.fixture
def toy_dark():
    registered = issues.register_issue_type(ToyDark)
    try:
        yield registered
    finally:
        issues.unregister_issue_type("toy_dark")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy") / "digits"
    write_image_folder(root, digit_images(120, seed=11))
    return root


def _crawl(start: Path) -> dict[Path, str]:
    """Every page reachable from `start` through relative links: path -> its HTML."""
    pages: dict[Path, str] = {}
    todo = [Path(os.path.normpath(start))]
    while todo:
        page = todo.pop()
        if page in pages or not page.is_file():
            continue
        pages[page] = page.read_text(encoding="utf-8")
        for href in re.findall(r'href="([^"]+)"', pages[page]):
            target = urlsplit(href)
            if not target.scheme and target.path.endswith(".html"):
                todo.append(Path(os.path.normpath(page.parent / unquote(target.path))))
    return pages


def _cards(page: str, column: str) -> list[tuple[str, str | None]]:
    found = re.findall(r'<article class="gallery-card[^"]*" data-sample-id="([^"]+)">(.*?)</article>', page, re.S)
    return [(sid, m[1] if (m := re.search(rf'<span class="score">{column} <b>([^<]+)</b>', body)) else None)
            for sid, body in found]


def test_a_registered_issue_type_reaches_manifest_summary_policy_and_report(folder, tmp_path, toy_dark):
    import winnow

    assert "toy_dark" in issues.list_issue_types()
    r = winnow.clean(folder, encoder="pixels:16", k=5, out=tmp_path / "out")
    m = r.manifest
    # Ground truth recomputed from the run's own embeddings, not from the manifest.
    emb = np.load(r.run_dir / "work" / "embeddings.npy")
    score = emb[:, 0].astype(np.float64)
    cut = float(np.quantile(score, 0.2))
    truth = np.zeros(m.height, dtype=bool)
    truth[r.rows] = score < cut
    assert 10 <= truth.sum() <= 30
    flagged = m["reasons"].list.contains("toy_dark").to_numpy()
    assert np.array_equal(flagged, truth)
    # Its column, typed as declared, after the built-in types' columns (registry order).
    assert m.schema["score_toy_dark"] == pl.Float64
    assert m.columns.index("score_toy_dark") > m.columns.index("outlier_score")
    assert np.allclose(m["score_toy_dark"].to_numpy()[r.rows], score)
    assert m.schema["is_toy_dark"] == pl.Boolean and np.array_equal(m["is_toy_dark"].to_numpy(), truth)
    # summary.json: its count and its facts.
    assert r.summary["reasons"]["toy_dark"] == int(truth.sum())
    assert r.summary["toy_dark_cut"] == pytest.approx(cut)
    # Default action "keep": a toy-flagged row with no other finding is kept.
    only_toy = flagged & (m["reasons"].list.len() == 1).to_numpy()
    assert only_toy.any() and (m["decision"].to_numpy()[only_toy] == "keep").all()

    # The report: its own section, every flagged sample reachable, lowest score first, shown on each card.
    pages = _crawl(r.run_dir / "report.html")
    section = sorted((p for p in pages if p.parent.name == "reason-toy_dark"), key=lambda p: int(p.stem))
    listing = [c for p in section for c in _cards(pages[p], "score_toy_dark")]
    order = m.filter(pl.Series(flagged)).sort(["score_toy_dark", "path"])["sample_id"].to_list()
    assert [sid for sid, _ in listing] == order
    assert all(shown is not None for _, shown in listing)
    overview = pages[r.run_dir / "report.html"]
    assert "<code>toy_dark</code>" in overview
    assert "Order: lowest score_toy_dark first." in pages[section[0]]
    assert html.escape(ToyDark.reasons["toy_dark"]) in pages[section[0]]  # its meaning, from the registry

    # The policy key on_toy_dark needs no DecisionPolicy field: drop them all.
    dropped = winnow.clean(folder, encoder="pixels:16", k=5, policy={"on_toy_dark": "drop"})
    d = dropped.manifest
    assert np.array_equal(d["reasons"].list.contains("toy_dark").to_numpy(), truth)
    assert (d["decision"].to_numpy()[truth] == "drop").all()
    assert dropped.config.policy.on_toy_dark == "drop"
    assert dropped.summary["config"]["policy"]["actions"] == [["toy_dark", "drop"]]


def test_on_registered_name_is_a_policy_key_everywhere(toy_dark):
    from winnow.curation import DecisionPolicy, policy_from_dict
    from winnow.pipeline.config import Config, ConfigError, parse_set

    layer = parse_set(["policy.on_toy_dark=drop"])
    assert layer == {"policy": {"on_toy_dark": "drop"}}
    config = Config.from_settings(layer)
    assert config.policy.action_for("toy_dark") == "drop" and config.policy.on_toy_dark == "drop"
    # Round trip through summary.json's record of the config.
    assert Config.from_settings(config.to_dict()).policy == config.policy
    assert DecisionPolicy().on_toy_dark == "keep"  # the type's default
    with pytest.raises(ConfigError, match="on_toy_dark must be one of"):
        parse_set(["policy.on_toy_dark=delete"])
    with pytest.raises(InvalidArray, match=r"unknown policy key\(s\) \['on_toy_drak'\].*on_toy_dark"):
        policy_from_dict({"on_toy_drak": "drop"})


def test_registration_is_checked():
    class NoFind(IssueType):
        name = "no_find"
        reasons = {"no_find": "x"}

    class Clash(ToyDark):
        name = "clash"
        reasons = {"outlier": "taken"}

    with pytest.raises(InvalidArray, match="defines no find"):
        issues.register_issue_type(NoFind)
    with pytest.raises(InvalidArray, match=r"reason code\(s\) \['outlier'\] belong to 'outlier'"):
        issues.register_issue_type(Clash)
    with pytest.raises(InvalidArray, match="already registered"):
        issues.register_issue_type(issues.ISSUE_TYPES["leak"].__class__)
    with pytest.raises(InvalidArray, match="built in"):
        issues.unregister_issue_type("outlier")
    assert "no_find" not in issues.ISSUE_TYPES and "clash" not in issues.ISSUE_TYPES
