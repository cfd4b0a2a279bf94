"""The report's HTML: the document shell, sample cards, pagers and the gallery pages.

    RUN/gallery/reason-<code>/<n>.html   every flagged sample with that reason, page_size a page
    RUN/gallery/class-<hash>/<n>.html    every flagged sample of one given class
    RUN/gallery/classes/<n>.html         the class index, INDEX_CLASSES classes a page

A gallery page sits two folders below the run, so its links start with ../../; report.html
(overview.py) uses the same cards and pagers with no prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import polars as pl

from winnow import atomic
from winnow.catalogs import schemas as S
from winnow.pipeline.report.data import Group, class_table, group_rows
from winnow.pipeline.report.markup import esc, fmt, plural
from winnow.pipeline.report.sections import ReasonSection, reason_meaning

GALLERY = "gallery"  # the run's gallery folder
REPORT = "report.html"  # the overview page, in the run folder
INDEX_CLASSES = 100  # classes per page of the class index (its first page is on report.html)


@dataclass(frozen=True)
class PageContext:
    """What every card and page needs besides its rows."""

    catalog: str
    thumbs: dict[str, str]  # sample id -> "thumbs/<name>"
    labels: dict[str, str]  # sample id -> given label, for neighbours and duplicate groups
    neighbour_ids: dict[str, list[tuple[str, float]]]
    score_cols: list[str]
    keeper_paths: dict[str, str]  # sample id of a kept original -> its path
    thumb_limit: int
    capped: bool  # some flagged sample with an image got no thumbnail
    page_size: int
    folders: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, key) -> gallery folder
    snippets: dict[str, str] = field(default_factory=dict)  # sample id -> the start of its text (text sources)
    sections: dict[str, ReasonSection] = field(default_factory=dict)  # reason code -> its presentation
    labels_judged: bool = True  # False for a one-class run (an unlabeled folder): no label_quality to show

    def href(self, kind: str, key: str, page: int = 1, *, prefix: str = "") -> str | None:
        folder = self.folders.get((kind, key))
        return None if folder is None else f"{prefix}{GALLERY}/{folder}/{page}.html"


# Marks the page once every image has settled: body[data-images-loaded] counts thumbnails that
# decoded, so a browser test (and a curious user) can tell a broken thumbs/ folder at a glance.
_JS = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.imagesTotal = imgs.length;
  document.body.dataset.imagesLoaded = ok;
});
"""


@cache
def _css() -> str:
    return resources.files(__package__).joinpath("style.css").read_text(encoding="utf-8")


def document_head(title: str) -> str:
    """The start of every page, up to </head>: the style sheet is inlined, so a page works alone."""
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>\n{_css()}</style></head>")


def document_end() -> str:
    return f"</main><script>{_JS}</script></body></html>\n"


def write_gallery(run: Path, flagged: pl.DataFrame, groups: list[Group], ctx: PageContext) -> None:
    """Replace RUN/gallery: gallery/<group>/<n>.html for every group, and the class index
    gallery/classes/<n>.html."""
    with atomic.replace_folder(run / GALLERY) as folder:
        _write_pages(folder, flagged, groups, ctx)


def _write_pages(folder: Path, flagged: pl.DataFrame, groups: list[Group], ctx: PageContext) -> None:
    for group in groups:
        rows = group_rows(flagged, group)
        (folder / group.folder).mkdir()
        n_pages = group.pages(ctx.page_size)
        for p in range(1, n_pages + 1):
            chunk = rows.slice((p - 1) * ctx.page_size, ctx.page_size)
            _write_text(folder / group.folder / f"{p}.html", group_page(group, chunk, p, n_pages, ctx))
    classes = [g for g in groups if g.kind == "class"]
    table = class_table(flagged, [g for g in groups if g.kind == "reason"])
    (folder / "classes").mkdir()
    n_pages = max(1, -(-len(classes) // INDEX_CLASSES))
    for p in range(1, n_pages + 1):
        chunk = classes[(p - 1) * INDEX_CLASSES: p * INDEX_CLASSES]
        body = class_index(chunk, table, [g for g in groups if g.kind == "reason"], ctx, prefix="../../")
        nav = pager(n_pages, p, lambda q: f"{q}.html")
        _write_text(folder / "classes" / f"{p}.html", page_shell(
            f"classes, page {p} of {n_pages}", ctx,
            crumbs=f"by class · page {p} of {n_pages} ({len(classes):,} classes with flagged samples)",
            body=f"{nav}<div class=\"scroll\">{body}</div>{nav}", group=("classes", "")))


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def page_shell(title: str, ctx: PageContext, *, crumbs: str, body: str, group: tuple[str, str]) -> str:
    """A gallery page: two folders below the run, so every link starts with ../../."""
    return (f"{document_head(f'Winnow report: {ctx.catalog}: {title}')}"
            f"<body><main data-group=\"{esc(group[0])}\" data-key=\"{esc(group[1])}\">"
            f"<nav class=\"crumbs\"><a href=\"../../{REPORT}\">Winnow report</a> <span class=\"muted\">"
            f"{esc(ctx.catalog)}</span> › <a href=\"../../{REPORT}#gallery\">flagged samples</a> › "
            f"<a href=\"../classes/1.html\">all classes</a> › {crumbs}</nav>{body}"
            f"{document_end()}")


def group_page(group: Group, rows: pl.DataFrame, page: int, n_pages: int, ctx: PageContext) -> str:
    what = (f"reason {reason_heading(group)}" if group.kind == "reason"
            else f"given label <b>{esc(group.key)}</b>")
    crumbs = f"{what} · page {page} of {n_pages} ({plural(group.count, 'sample')})"
    if group.kind == "reason":
        meaning = reason_meaning(group.key)
        note = f"{esc(meaning)}{'. ' if meaning else ''}Order: {esc(group.section.order)}."
    else:
        note = "Every flagged sample of this given label: label issues first, lowest label quality first."
    missing = rows.filter(pl.col("_usable") & ~pl.col(S.SAMPLE_ID).is_in([*ctx.thumbs, *ctx.snippets])).height
    if missing:
        note += (f" Thumbnails are made for the first {fmt(ctx.thumb_limit)} flagged samples (each reason's "
                 f"worst first); the {fmt(missing)} on this page without one are beyond that cap.")
    nav = pager(n_pages, page, lambda q: f"{q}.html")
    cards = "".join(card(row, ctx, prefix="../../") for row in rows.iter_rows(named=True))
    body = (f"<p class=\"note cap\">{note}</p>{nav}<div class=\"gallery\">{cards}</div>{nav}")
    return page_shell(f"{group.kind} {group.key}, page {page} of {n_pages}", ctx, crumbs=crumbs, body=body,
                      group=(group.kind, group.key))


def pager(n_pages: int, current: int, href: Callable[[int], str]) -> str:
    """prev, the first and last page, the pages around `current` (0: none is current), next."""
    if n_pages <= 1:
        return "" if current else f"<nav class=\"pager\"><a href=\"{href(1)}\">1</a></nav>"
    near = set(range(max(1, current - 2), min(n_pages, max(current, 1) + 2) + 1)) if current else set(range(1, 6))
    shown = sorted({1, n_pages} | {p for p in near if 1 <= p <= n_pages})
    parts = []
    if current:
        parts.append(f"<a class=\"prev\" rel=\"prev\" href=\"{href(current - 1)}\">← previous</a>" if current > 1
                     else "<span class=\"muted\">← previous</span>")
    last = 0
    for p in shown:
        if p > last + 1:
            parts.append("<span class=\"muted\">…</span>")
        parts.append(f"<b>{p}</b>" if p == current else f"<a href=\"{href(p)}\">{p}</a>")
        last = p
    if current:
        parts.append(f"<a class=\"next\" rel=\"next\" href=\"{href(current + 1)}\">next →</a>"
                     if current < n_pages else "<span class=\"muted\">next →</span>")
    return f"<nav class=\"pager\">{' '.join(parts)}</nav>"


def class_index(classes: list[Group], table: dict[str, dict[str, int]], reasons: list[Group],
                ctx: PageContext, *, prefix: str) -> str:
    """A table: one row per class (its flagged samples per reason, its pages)."""
    head = "".join(f"<th class=\"num\"><a href=\"{ctx.href('reason', r.key, prefix=prefix)}\"><code>"
                   f"{esc(r.key)}</code></a></th>" for r in reasons)
    rows = []
    for g in classes:
        n_pages = g.pages(ctx.page_size)
        pages = pager(n_pages, 0, lambda q, g=g: ctx.href("class", g.key, q, prefix=prefix))
        cells = "".join(f"<td class=\"num\">{fmt(table.get(g.key, {}).get(r.key, 0)) or ''}</td>"
                        if table.get(g.key, {}).get(r.key) else "<td class=\"num muted\">·</td>" for r in reasons)
        rows.append(f"<tr><td><a href=\"{ctx.href('class', g.key, prefix=prefix)}\">{esc(g.key)}</a></td>"
                    f"<td class=\"num\">{fmt(g.count)}</td>{cells}<td>{pages}</td></tr>")
    return (f"<table class=\"index\"><thead><tr><th>given label</th><th class=\"num\">flagged</th>{head}"
            f"<th>pages</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def reason_heading(group: Group) -> str:
    """A reason's name in headings: its section's title, if it has one, and the code."""
    title = group.section.title if group.section else None
    return f"{esc(title)} <code>{esc(group.key)}</code>" if title else f"<code>{esc(group.key)}</code>"


def reason_link(code: str, ctx: PageContext) -> str:
    href = ctx.href("reason", code)
    return f"<a href=\"{esc(href)}\"><code>{esc(code)}</code></a>" if href else f"<code>{esc(code)}</code>"


def thumb_html(sid: str | None, ctx: PageContext, *, label: str, cls: str = "", prefix: str = "") -> str:
    """The sample's thumbnail (a text sample's snippet), or a "no image" box where it has none."""
    if sid is not None and sid in ctx.snippets:
        text = ctx.snippets[sid]
        return f"<div class=\"thumb snippet {cls}\" title=\"{esc(text)}\">{esc(text)}</div>"
    rel = ctx.thumbs.get(sid) if sid is not None else None
    if rel is None:
        return f"<div class=\"thumb missing {cls}\" title=\"{esc(label)}\">no image</div>"
    return (f"<img class=\"thumb {cls}\" src=\"{esc(prefix + rel)}\" alt=\"{esc(label)}\" title=\"{esc(label)}\" "
            f"loading=\"lazy\" onerror=\"this.classList.add('broken')\">")


def card(row: dict, ctx: PageContext, *, prefix: str) -> str:
    """One flagged sample: thumbnail (within the cap), labels, decision, scores, reasons, path, neighbours."""
    sid = row[S.SAMPLE_ID]
    given, suggested = row[S.LABEL], row[S.SUGGESTED_LABEL]
    quality = row[S.LABEL_QUALITY]
    scores = ([(S.LABEL_QUALITY, quality)] if ctx.labels_judged else []) + [
        (c, row[c]) for c in ctx.score_cols if row.get(c) is not None and row[c] != quality]
    for r in row[S.REASONS]:  # each reason's own columns (outlier: outlier_score)
        for c in ctx.sections[r].card_scores if r in ctx.sections else ():
            if c not in ctx.score_cols and row.get(c) is not None and all(c != k for k, _ in scores):
                scores.append((c, row[c]))
    score_html = " ".join(f"<span class=\"score\">{esc(k)} <b>{esc(fmt(v) if v is not None else '–')}</b></span>"
                          for k, v in scores)
    chips = "".join(
        f"<a class=\"chip\" href=\"{esc(ctx.href('reason', r, prefix=prefix) or '')}\" "
        f"title=\"{esc(reason_meaning(r))}\">{esc(r)}</a>" for r in row[S.REASONS])
    given_html = f"<a class=\"given\" href=\"{esc(ctx.href('class', given, prefix=prefix) or '')}\">{esc(given)}</a>"
    arrow = (f"{given_html} → <span class=\"suggested\">{esc(suggested)}</span>"
             if suggested is not None and suggested != given else given_html)
    copy_of = ""
    keeper = row.get(S.DUPLICATE_OF)
    if keeper is not None:
        copy_of = (f"<div class=\"path\" title=\"{esc(ctx.keeper_paths.get(keeper, keeper))}\">copy of "
                   f"{esc(ctx.keeper_paths.get(keeper, keeper))}</div>")
    nbrs = "".join(
        f"<figure class=\"nb\">{thumb_html(n, ctx, label=ctx.labels.get(n, '?'), cls='small', prefix=prefix)}"
        f"<figcaption class=\"{'agree' if ctx.labels.get(n) == suggested else ''}\">"
        f"{esc(ctx.labels.get(n, '?'))}</figcaption></figure>"
        for n, _sim in ctx.neighbour_ids.get(sid, []))
    if sid in ctx.thumbs or sid in ctx.snippets:
        picture, compact = thumb_html(sid, ctx, label=given, prefix=prefix), ""
    elif row["_usable"]:
        picture, compact = "", " compact"  # beyond the thumbnail cap: the page says so
    else:
        picture, compact = "<div class=\"thumb missing\">no image</div>", ""
    return (
        f"<article class=\"gallery-card decision-{esc(row[S.DECISION])}{compact}\" data-sample-id=\"{esc(sid)}\">"
        f"<div class=\"main\">{picture}<div class=\"info\">"
        f"<div class=\"labels\">{arrow}</div>"
        f"<div class=\"decision\">{esc(row[S.DECISION])}</div>"
        f"<div class=\"scores\">{score_html}</div><div class=\"chips\">{chips}</div>"
        f"<div class=\"path\" title=\"{esc(row[S.PATH])}\">{esc(row[S.PATH])}</div>{copy_of}</div></div>"
        + (f"<div class=\"nbs\"><div class=\"nbs-title\">nearest neighbours (their given labels)</div>"
           f"<div class=\"nb-row\">{nbrs}</div></div>" if nbrs else "")
        + "</article>")
