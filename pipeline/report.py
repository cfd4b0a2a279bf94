"""The run report: static pages that work offline, from a run's files.

    RUN/report.html                   the overview:
      summary cards, reason table, run details      from summary.json (every key shown)
      class counts before/after, per-class noise     bar charts (inline SVG)
      label issues: given vs suggested label         heat map (inline SVG) of the rows flagged label_issue
      label_quality and every score_<detector>       histograms with the label-issue cut-off
      flagged samples                                the index: every reason and every class with its
                                                     pages, and each reason's worst samples
      duplicate groups, unusable files               the largest groups; the first unusable rows
    RUN/gallery/reason-<code>/<n>.html every flagged sample with that reason, worst first, 100 a page
    RUN/gallery/class-<hash>/<n>.html  every flagged sample of one given class, label issues first
    RUN/gallery/classes/<n>.html       the class index, 100 classes a page
    RUN/thumbs/<hash>.png              the thumbnails

Every flagged sample is listed on the gallery pages, and every page is reachable from
report.html through page links. What costs more than a line of text is capped, so a report
costs about the same for 1,000 samples as for 10 million: thumbnails for at most
`thumb_limit` flagged samples (each reason's worst first; rows beyond the cap are listed
without one, and their page says so), nearest neighbours for at most `neighbour_limit` of
them, 30 duplicate groups and 200 unusable rows on the overview. Only the listing grows with
the number of flagged rows, a few hundred bytes of HTML each.

Every string that comes from the data (paths, labels, reason codes, summary values) is
HTML-escaped, and no file or folder name is made from it: file names are hostile input.
The thumbs/ and gallery/ folders are written beside the old ones and swapped in, and
report.html is replaced atomically.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from PIL import Image

from winnow.catalogs import schemas as S
from winnow.embeddings import load_image
from winnow.embeddings.images import to_rgb
from winnow.pipeline.files import load_knn_graph

PAGE_SIZE = 100  # flagged samples per gallery page
THUMB_LIMIT = 5_000  # flagged samples that get a thumbnail (each reason's worst first)
NEIGHBOUR_LIMIT = 500  # of those, the ones shown with their nearest neighbours
NEIGHBOURS = 8  # nearest-neighbour thumbnails per gallery card
PREVIEW_CARDS = 6  # cards per reason on report.html (the rest are on the gallery pages)
INDEX_CLASSES = 100  # classes per page of the class index (its first page is on report.html)
DUPLICATE_GROUPS = 30  # duplicate groups shown
GROUP_MEMBERS = 8  # copies shown per duplicate group
UNUSABLE_ROWS = 200  # rows of the unusable-files table on report.html (all are on the gallery pages)
MAX_BAR_CLASSES = 40  # classes in the bar charts (the noisiest when there are more)
MAX_HEAT_CLASSES = 30  # classes in the heat map (the most confused when there are more)
THUMB_PX = 128  # longest side of a stored thumbnail; tiny images are upscaled (nearest)
HIST_BINS = 40

THUMBS = "thumbs"
GALLERY = "gallery"
REPORT = "report.html"
_SAFE_CODE = re.compile(r"[a-z0-9_]{1,40}")  # reason codes that may name a folder as they are


class RunNotFound(FileNotFoundError):
    """The folder is neither a run folder nor an output folder with a `latest` run."""


def resolve_run(run_or_out_dir: str | os.PathLike) -> Path:
    """A run folder as given, or OUT/latest resolved when given an output folder."""
    given = Path(run_or_out_dir).expanduser()
    run = given
    if (given / "latest").exists():
        run = (given / "latest").resolve()
    if not (run / "manifest.parquet").is_file():
        raise RunNotFound(
            f"{str(run_or_out_dir)!r} is not a Winnow run: no manifest.parquet in it "
            f"(pass a run folder, or an output folder holding a `latest` link)"
        )
    return run.resolve()


def write_report(run_or_out_dir: str | os.PathLike, *, thumb_limit: int = THUMB_LIMIT,
                 neighbours: int = NEIGHBOURS, neighbour_limit: int = NEIGHBOUR_LIMIT,
                 page_size: int = PAGE_SIZE) -> Path:
    """Build RUN/report.html, RUN/gallery/ and RUN/thumbs/ from a run's files; returns the report's path.

    Reads manifest.parquet and summary.json, plus work/samples.parquet, work/embed.parquet
    and work/knn.npz when they are still there (old runs lose work/: their report then has
    no neighbours and thumbnails only where clean.parquet knows the file).
    """
    for name, value, least in (("thumb_limit", thumb_limit, 0), ("neighbours", neighbours, 0),
                               ("neighbour_limit", neighbour_limit, 0), ("page_size", page_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    run = resolve_run(run_or_out_dir)
    manifest = pl.read_parquet(run / "manifest.parquet")
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    flagged = _flagged_rows(manifest)
    groups = _reason_groups(flagged) + _class_groups(flagged)
    with_thumb = _thumbnail_order(flagged, groups)[:thumb_limit]
    neighbour_ids = _neighbours(run, with_thumb[:neighbour_limit], neighbours)
    dup_groups = _duplicate_groups(manifest)
    wanted = set(with_thumb)
    for ids in neighbour_ids.values():
        wanted.update(sid for sid, _ in ids)
    for keeper, members in dup_groups:
        wanted.add(keeper)
        wanted.update(members)
    shown = manifest.filter(pl.col(S.SAMPLE_ID).is_in(list(wanted))).select(S.SAMPLE_ID, S.LABEL)

    tmp_thumbs = run / f".{THUMBS}.{uuid.uuid4().hex}.tmp"
    tmp_thumbs.mkdir()
    try:
        locations = _locations(run, wanted)
        thumbs = _make_thumbnails({sid: locations.get(sid) for sid in wanted}, tmp_thumbs)
        _swap_folder(tmp_thumbs, run / THUMBS)
    finally:
        if tmp_thumbs.exists():
            shutil.rmtree(tmp_thumbs)

    ctx = _Context(
        catalog=str(summary.get("catalog", "run")), thumbs=thumbs, labels=dict(shown.iter_rows()),
        neighbour_ids=neighbour_ids, score_cols=[c for c in manifest.columns if c.startswith("score_")],
        keeper_paths=_keeper_paths(manifest, flagged), thumb_limit=thumb_limit,
        capped=len(with_thumb) < flagged.filter(pl.col("_usable")).height, page_size=page_size,
        folders={(g.kind, g.key): g.folder for g in groups},
    )
    tmp_gallery = run / f".{GALLERY}.{uuid.uuid4().hex}.tmp"
    tmp_gallery.mkdir()
    try:
        _write_gallery(tmp_gallery, flagged, groups, ctx)
        _swap_folder(tmp_gallery, run / GALLERY)
    finally:
        if tmp_gallery.exists():
            shutil.rmtree(tmp_gallery)

    page = _render_page(summary, manifest, flagged, groups, dup_groups, ctx)
    out = run / REPORT
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(page, encoding="utf-8")
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    _link_from_out(run)
    return out


@dataclass(frozen=True)
class _Group:
    """One listing of the gallery: the flagged samples with one reason, or of one given class."""

    kind: str  # "reason" or "class"
    key: str  # the reason code or the class name, as in the manifest (data: escape it)
    folder: str  # its folder under gallery/, never made from the data's text
    count: int  # samples listed

    def pages(self, page_size: int) -> int:
        return max(1, -(-self.count // page_size))


@dataclass(frozen=True)
class _Context:
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

    def href(self, kind: str, key: str, page: int = 1, *, prefix: str = "") -> str | None:
        folder = self.folders.get((kind, key))
        return None if folder is None else f"{prefix}{GALLERY}/{folder}/{page}.html"


# --- reading the run ---------------------------------------------------------------------------


def _flagged_rows(manifest: pl.DataFrame) -> pl.DataFrame:
    """Every sample with at least one reason, with `_usable` (it has an image) added."""
    unusable = list(S.UNUSABLE_REASONS)
    return manifest.filter(pl.col(S.REASONS).list.len() > 0).with_columns(
        (~pl.col(S.REASONS).list.eval(pl.element().is_in(unusable)).list.any()).alias("_usable"))


def _reason_groups(flagged: pl.DataFrame) -> list[_Group]:
    """One group per reason present: label_issue first, then the most frequent."""
    counts = flagged.select(pl.col(S.REASONS).explode()).drop_nulls()[S.REASONS].value_counts()
    pairs = sorted(zip(counts[S.REASONS].to_list(), counts["count"].to_list(), strict=True),
                   key=lambda rc: (rc[0] != "label_issue", -rc[1], rc[0]))
    return [_Group("reason", code, "reason-" + (code if _SAFE_CODE.fullmatch(code) else "x" + _digest(code)), n)
            for code, n in pairs]


def _class_groups(flagged: pl.DataFrame) -> list[_Group]:
    """One group per given label with flagged samples, the most flagged first."""
    counts = flagged[S.LABEL].value_counts()
    pairs = sorted(zip(counts[S.LABEL].to_list(), counts["count"].to_list(), strict=True),
                   key=lambda lc: (-lc[1], lc[0]))
    return [_Group("class", label, "class-" + _digest(label), n) for label, n in pairs]


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def _group_rows(flagged: pl.DataFrame, group: _Group) -> pl.DataFrame:
    """The group's samples in page order: the most telling first."""
    if group.kind == "class":
        return (flagged.filter(pl.col(S.LABEL) == group.key)
                .with_columns((~pl.col(S.REASONS).list.contains("label_issue")).alias("_not_issue"))
                .sort(["_not_issue", S.LABEL_QUALITY, S.PATH], nulls_last=True).drop("_not_issue"))
    rows = flagged.filter(pl.col(S.REASONS).list.contains(group.key))
    if group.key in ("exact_duplicate", "near_duplicate") and S.DUPLICATE_OF in rows.columns:
        return rows.sort([S.DUPLICATE_OF, S.PATH], nulls_last=True)  # copies of one original together
    if group.key == "outlier" and "outlier_score" in rows.columns:
        return rows.sort(["outlier_score", S.PATH], descending=[True, False], nulls_last=True)
    if group.key in S.UNUSABLE_REASONS:
        return rows.sort(S.PATH)
    return rows.sort([S.LABEL_QUALITY, S.PATH], nulls_last=True)  # lowest label quality first


def _thumbnail_order(flagged: pl.DataFrame, groups: list[_Group]) -> list[str]:
    """Flagged samples with an image, in the order they get thumbnails: the first of every
    reason's listing, then the second of every reason's, and so on (a cap then keeps the
    worst of each reason, not only label issues)."""
    ranked = [
        _group_rows(flagged, g).filter(pl.col("_usable")).select(
            S.SAMPLE_ID, pl.int_range(pl.len()).alias("_rank"), pl.lit(i).alias("_group"))
        for i, g in enumerate(groups) if g.kind == "reason"
    ]
    if not ranked:
        return []
    best = (pl.concat(ranked).group_by(S.SAMPLE_ID).agg(pl.col("_rank").min(), pl.col("_group").min())
            .sort(["_rank", "_group", S.SAMPLE_ID]))
    return best[S.SAMPLE_ID].to_list()


def _keeper_paths(manifest: pl.DataFrame, flagged: pl.DataFrame) -> dict[str, str]:
    """Path of every sample that a flagged copy duplicates."""
    if S.DUPLICATE_OF not in flagged.columns:
        return {}
    keepers = flagged[S.DUPLICATE_OF].drop_nulls().unique()
    found = manifest.filter(pl.col(S.SAMPLE_ID).is_in(keepers.implode())).select(S.SAMPLE_ID, S.PATH)
    return dict(found.iter_rows())


def _locations(run: Path, ids: set[str]) -> dict[str, str]:
    """sample id -> absolute file location, for `ids` only (a run may hold millions of rows)."""
    source = run / "work" / "samples.parquet"
    if not source.is_file():
        source = run / "clean.parquet"  # old runs lose work/; clean.parquet knows the kept files
    if not source.is_file() or not ids:
        return {}
    found = (pl.scan_parquet(source).select(S.SAMPLE_ID, S.ABS_PATH)
             .filter(pl.col(S.SAMPLE_ID).is_in(list(ids))).collect())
    return dict(zip(found[S.SAMPLE_ID].to_list(), found[S.ABS_PATH].to_list(), strict=True))


def _neighbours(run: Path, ids: list[str], k: int) -> dict[str, list[tuple[str, float]]]:
    """sample id -> up to k (neighbour id, similarity), nearest first, from work/knn.npz.

    Empty when the run's work/ folder is gone (old runs) or k is 0.
    """
    work = run / "work"
    if k == 0 or not ids or not (work / "embed.parquet").is_file() or not (work / "knn.npz").is_file():
        return {}
    graph = load_knn_graph(work / "knn.npz")
    embed = pl.read_parquet(work / "embed.parquet", columns=[S.SAMPLE_ID, "row"]).filter(pl.col("row") >= 0)
    n_rows = graph.indices.shape[0]
    by_row = embed.sort("row")
    if by_row.height != n_rows or not np.array_equal(by_row["row"].to_numpy(), np.arange(n_rows)):
        return {}  # the graph is not this embed table's: showing wrong neighbours is worse than none
    id_by_row = by_row[S.SAMPLE_ID]
    rows = dict(embed.filter(pl.col(S.SAMPLE_ID).is_in(ids)).iter_rows())
    out: dict[str, list[tuple[str, float]]] = {}
    for sid in ids:
        row = rows.get(sid)
        if row is None:
            continue
        cand = [(int(j), float(sim)) for j, sim in zip(graph.indices[row], graph.similarities[row], strict=True)
                if 0 <= j < n_rows and j != row][:k]
        names = id_by_row.gather([j for j, _ in cand]).to_list() if cand else []
        out[sid] = [(name, sim) for name, (_, sim) in zip(names, cand, strict=True)]
    return out


def _duplicate_groups(manifest: pl.DataFrame) -> list[tuple[str, list[str]]]:
    """(kept sample id, [copy ids]) for the largest duplicate groups."""
    if S.DUPLICATE_OF not in manifest.columns:
        return []
    dups = manifest.filter(pl.col(S.DUPLICATE_OF).is_not_null())
    if dups.height == 0:
        return []
    grouped = (
        dups.group_by(S.DUPLICATE_OF)
        .agg(pl.col(S.SAMPLE_ID).sort().alias("members"), pl.len().alias("n"))
        .sort(["n", S.DUPLICATE_OF], descending=[True, False])
        .head(DUPLICATE_GROUPS)
    )
    return [(k, m[:GROUP_MEMBERS]) for k, m in zip(grouped[S.DUPLICATE_OF].to_list(),
                                                  grouped["members"].to_list(), strict=True)]


# --- thumbnails ----------------------------------------------------------------------------


def _thumb_name(sample_id: str) -> str:
    # Never the user's file name: a hash of the id is always a safe, fixed-length name.
    return hashlib.blake2b(sample_id.encode("utf-8"), digest_size=10).hexdigest() + ".png"


def _make_thumbnails(paths: dict[str, str | None], folder: Path) -> dict[str, str]:
    """sample id -> "thumbs/<name>" for every sample whose image still decodes."""

    def one(item: tuple[str, str | None]) -> tuple[str, str | None]:
        sid, path = item
        if not path:
            return sid, None
        img, reason = load_image(path)
        if img is None:
            return sid, None
        img = to_rgb(img)
        longest = max(img.size)
        if longest < THUMB_PX:
            factor = max(1, THUMB_PX // longest)  # whole-pixel blocks keep 8x8 digits crisp
            img = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
        else:
            img.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
        name = _thumb_name(sid)
        img.save(folder / name, format="PNG", optimize=False)
        return sid, f"{THUMBS}/{name}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        return {sid: rel for sid, rel in pool.map(one, sorted(paths.items())) if rel is not None}


def _swap_folder(new: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _link_from_out(run: Path) -> None:
    """OUT/report.html is a link to latest/report.html, and a browser resolves the report's
    relative links against OUT/: point OUT/thumbs and OUT/gallery at latest/ the same way
    (what pipeline.versions.publish_run does for the other published files). Done here, before
    the run is published, so the first run's report works from OUT/ as soon as it is."""
    out = run.parent.parent
    if run.parent.name != "runs" or not (out / ".winnow.lock").exists():
        return  # not a versioned output folder
    for name in (THUMBS, GALLERY):
        link = out / name
        if link.is_symlink() or link.exists():
            continue
        tmp = out / f".{name}.{uuid.uuid4().hex}.link"
        os.symlink(os.path.join("latest", name), tmp)
        os.replace(tmp, link)


# --- the gallery pages -------------------------------------------------------------------------


def _write_gallery(folder: Path, flagged: pl.DataFrame, groups: list[_Group], ctx: _Context) -> None:
    """gallery/<group>/<n>.html for every group, and the class index gallery/classes/<n>.html."""
    for group in groups:
        rows = _group_rows(flagged, group)
        (folder / group.folder).mkdir()
        n_pages = group.pages(ctx.page_size)
        for p in range(1, n_pages + 1):
            chunk = rows.slice((p - 1) * ctx.page_size, ctx.page_size)
            _write_text(folder / group.folder / f"{p}.html", _group_page(group, chunk, p, n_pages, ctx))
    classes = [g for g in groups if g.kind == "class"]
    table = _class_table(flagged, [g for g in groups if g.kind == "reason"])
    (folder / "classes").mkdir()
    n_pages = max(1, -(-len(classes) // INDEX_CLASSES))
    for p in range(1, n_pages + 1):
        chunk = classes[(p - 1) * INDEX_CLASSES: p * INDEX_CLASSES]
        body = _class_index(chunk, table, [g for g in groups if g.kind == "reason"], ctx, prefix="../../")
        pager = _pager(n_pages, p, lambda q: f"{q}.html")
        _write_text(folder / "classes" / f"{p}.html", _page_shell(
            f"classes, page {p} of {n_pages}", ctx,
            crumbs=f"by class · page {p} of {n_pages} ({len(classes):,} classes with flagged samples)",
            body=f"{pager}<div class=\"scroll\">{body}</div>{pager}", group=("classes", "")))


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _page_shell(title: str, ctx: _Context, *, crumbs: str, body: str, group: tuple[str, str]) -> str:
    """A gallery page: two folders below the run, so every link starts with ../../."""
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(f'Winnow report: {ctx.catalog}: {title}')}</title><style>{_CSS}</style></head>"
            f"<body><main data-group=\"{_e(group[0])}\" data-key=\"{_e(group[1])}\">"
            f"<nav class=\"crumbs\"><a href=\"../../{REPORT}\">Winnow report</a> <span class=\"muted\">"
            f"{_e(ctx.catalog)}</span> › <a href=\"../../{REPORT}#gallery\">flagged samples</a> › "
            f"<a href=\"../classes/1.html\">all classes</a> › {crumbs}</nav>{body}"
            f"</main><script>{_JS}</script></body></html>\n")


def _group_page(group: _Group, rows: pl.DataFrame, page: int, n_pages: int, ctx: _Context) -> str:
    what = (f"reason <code>{_e(group.key)}</code>" if group.kind == "reason"
            else f"given label <b>{_e(group.key)}</b>")
    crumbs = f"{what} · page {page} of {n_pages} ({_plural(group.count, 'sample')})"
    if group.kind == "reason":
        meaning = S.REASON_CODES.get(group.key, "")
        order = {"exact_duplicate": "copies of one original together", "near_duplicate":
                 "copies of one original together", "outlier": "farthest first"}.get(
            group.key, "by path" if group.key in S.UNUSABLE_REASONS else "lowest label quality first")
        note = f"{_e(meaning)}{'. ' if meaning else ''}Order: {_e(order)}."
    else:
        note = "Every flagged sample of this given label: label issues first, lowest label quality first."
    missing = rows.filter(pl.col("_usable") & ~pl.col(S.SAMPLE_ID).is_in(list(ctx.thumbs))).height
    if missing:
        note += (f" Thumbnails are made for the first {_fmt(ctx.thumb_limit)} flagged samples (each reason's "
                 f"worst first); the {_fmt(missing)} on this page without one are beyond that cap.")
    pager = _pager(n_pages, page, lambda q: f"{q}.html")
    cards = "".join(_card(row, ctx, prefix="../../") for row in rows.iter_rows(named=True))
    body = (f"<p class=\"note cap\">{note}</p>{pager}<div class=\"gallery\">{cards}</div>{pager}")
    return _page_shell(f"{group.kind} {group.key}, page {page} of {n_pages}", ctx, crumbs=crumbs, body=body,
                       group=(group.kind, group.key))


def _pager(n_pages: int, current: int, href: Callable[[int], str]) -> str:
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


def _class_table(flagged: pl.DataFrame, reasons: list[_Group]) -> dict[str, dict[str, int]]:
    """given label -> reason -> flagged samples."""
    counts = (flagged.select(S.LABEL, pl.col(S.REASONS)).explode(S.REASONS)
              .group_by([S.LABEL, S.REASONS]).agg(pl.len().alias("n")))
    table: dict[str, dict[str, int]] = {}
    for label, reason, n in counts.iter_rows():
        table.setdefault(label, {})[reason] = n
    return table


def _class_index(classes: list[_Group], table: dict[str, dict[str, int]], reasons: list[_Group],
                 ctx: _Context, *, prefix: str) -> str:
    head = "".join(f"<th class=\"num\"><a href=\"{ctx.href('reason', r.key, prefix=prefix)}\"><code>"
                   f"{_e(r.key)}</code></a></th>" for r in reasons)
    rows = []
    for g in classes:
        n_pages = g.pages(ctx.page_size)
        pages = _pager(n_pages, 0, lambda q, g=g: ctx.href("class", g.key, q, prefix=prefix))
        cells = "".join(f"<td class=\"num\">{_fmt(table.get(g.key, {}).get(r.key, 0)) or ''}</td>"
                        if table.get(g.key, {}).get(r.key) else "<td class=\"num muted\">·</td>" for r in reasons)
        rows.append(f"<tr><td><a href=\"{ctx.href('class', g.key, prefix=prefix)}\">{_e(g.key)}</a></td>"
                    f"<td class=\"num\">{_fmt(g.count)}</td>{cells}<td>{pages}</td></tr>")
    return (f"<table class=\"index\"><thead><tr><th>given label</th><th class=\"num\">flagged</th>{head}"
            f"<th>pages</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


# --- the page --------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and abs(value) < 5e-4:
            return "<0.001" if value > 0 else "-<0.001"  # scores are probabilities: 1e-26 reads as noise
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _reason_link(code: str, ctx: _Context) -> str:
    href = ctx.href("reason", code)
    return f"<a href=\"{_e(href)}\"><code>{_e(code)}</code></a>" if href else f"<code>{_e(code)}</code>"


def _plural(n: int, noun: str) -> str:
    return f"{_fmt(n)} {noun}{'' if n == 1 else 's'}"


def _label_issue_cutoff(summary: dict, manifest: pl.DataFrame) -> float | None:
    if isinstance(summary.get("label_issue_cutoff"), int | float):
        return float(summary["label_issue_cutoff"])
    issues = manifest.filter(pl.col(S.REASONS).list.contains("label_issue"))[S.LABEL_QUALITY].drop_nulls()
    return float(issues.max()) if issues.len() else None


def _render_page(summary: dict, manifest: pl.DataFrame, flagged: pl.DataFrame, groups: list[_Group],
                 dup_groups: list[tuple[str, list[str]]], ctx: _Context) -> str:
    cutoff = _label_issue_cutoff(summary, manifest)
    title = f"Winnow report: {ctx.catalog}"
    parts = [
        f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        _header(summary),
        _summary_section(summary, manifest, flagged.height, cutoff, ctx),
        _class_section(manifest),
        "<div class=\"pair\">",
        _confusion_section(manifest, ctx),
        _histogram_section(manifest, ctx.score_cols, cutoff),
        "</div>",
        _gallery_section(flagged, groups, ctx),
        _duplicates_section(manifest, dup_groups, ctx),
        _unusable_section(manifest, ctx),
        _details_section(summary),
        f"</main><script>{_JS}</script></body></html>\n",
    ]
    return "\n".join(parts)


def _header(summary: dict) -> str:
    bits = [f"<span>catalog <b>{_e(summary.get('catalog', '?'))}</b></span>"]
    for key, name in (("encoder", "encoder"), ("run_id", "run"), ("k", "k"), ("seconds", "took (s)")):
        if key in summary:
            bits.append(f"<span>{name} <b>{_e(_fmt(summary[key]))}</b></span>")
    return (f"<header id=\"report-header\"><h1>Winnow report</h1><div class=\"meta\">{''.join(bits)}</div>"
            f"</header>")


def _summary_section(summary: dict, manifest: pl.DataFrame, n_flagged: int, cutoff: float | None,
                     ctx: _Context) -> str:
    n = manifest.height
    decisions = summary.get("decisions") or {
        d: int((manifest[S.DECISION] == d).sum()) for d in S.DECISIONS}
    cards = [("samples", summary.get("samples", n), "", "")]
    for d, cls in (("keep", "ok"), ("relabel", "warn"), ("drop", "bad")):
        c = int(decisions.get(d, 0))
        cards.append((d, c, f"{100 * c / n:.1f}% of samples" if n else "", cls))
    cards.append(("flagged", n_flagged, "samples with any reason", ""))
    emb = summary.get("embedding") or {}
    if emb:
        cards.append(("embedded", emb.get("embedded", "?"), f"reused {_fmt(emb.get('reused', '?'))}", ""))
    if cutoff is not None:
        cards.append(("label-issue cut-off", round(cutoff, 4), "label_quality at or below", ""))
    card_html = "".join(
        f"<div class=\"card {cls}\" data-key=\"{_e(k)}\"><div class=\"k\">{_e(k)}</div>"
        f"<div class=\"v\">{_e(_fmt(v))}</div><div class=\"s\">{_e(sub)}</div></div>"
        for k, v, sub, cls in cards
    )
    reasons = summary.get("reasons")
    if reasons is None:
        vc = manifest.select(pl.col(S.REASONS).explode()).drop_nulls()[S.REASONS].value_counts(sort=True)
        reasons = dict(zip(vc[S.REASONS].to_list(), vc["count"].to_list(), strict=True))
    rows = "".join(
        f"<tr><td>{_reason_link(code, ctx)}</td><td class=\"num\">{_e(_fmt(count))}</td>"
        f"<td>{_e(S.REASON_CODES.get(code, ''))}</td></tr>"
        for code, count in reasons.items()
    ) or "<tr><td colspan=\"3\">No sample was flagged.</td></tr>"
    return (f"<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">{card_html}</div>"
            f"<table id=\"reasons\"><thead><tr><th>reason</th><th>samples</th><th>meaning</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>")


def _class_section(manifest: pl.DataFrame) -> str:
    before = manifest.group_by(S.LABEL).agg(
        pl.len().alias("before"),
        pl.col(S.REASONS).list.contains("label_issue").sum().alias("issues"),
        (pl.col(S.DECISION) == "drop").sum().alias("dropped"),
    )
    after = (manifest.filter(pl.col(S.DECISION) != "drop").group_by(S.FINAL_LABEL).agg(pl.len().alias("after"))
             .rename({S.FINAL_LABEL: S.LABEL}))
    table = (before.join(after, on=S.LABEL, how="full", coalesce=True)
             .fill_null(0).with_columns((pl.col("issues") / pl.col("before").clip(1)).alias("noise")))
    note = ""
    if table.height > MAX_BAR_CLASSES:
        note = (f"<p class=\"note\">Showing the {MAX_BAR_CLASSES} classes with the highest noise rate "
                f"of {table.height}.</p>")
        table = table.sort(["noise", S.LABEL], descending=[True, False]).head(MAX_BAR_CLASSES)
    table = table.sort(S.LABEL)
    labels = table[S.LABEL].to_list()
    counts = _bar_chart(labels, [("before", table["before"].to_list(), "#9ca3af"),
                                 ("after", table["after"].to_list(), "#2563eb")],
                        chart_id="chart-class-counts", y_label="samples")
    noise = _bar_chart(labels, [("label-issue rate", table["noise"].to_list(), "#dc2626")],
                       chart_id="chart-noise-rate", y_label="share of given label flagged", percent=True)
    return (f"<section id=\"classes\"><h2>Classes</h2>{note}<div class=\"charts2\">"
            f"<figure><figcaption>Class counts before and after cleaning</figcaption>{counts}</figure>"
            f"<figure><figcaption>Per-class noise rate: share of each given label flagged as a label issue"
            f"</figcaption>{noise}</figure></div></section>")



def _confusion_section(manifest: pl.DataFrame, ctx: _Context) -> str:
    issues = manifest.filter(pl.col(S.REASONS).list.contains("label_issue"))
    head = "<section id=\"confusion\"><h2>Label issues: given vs suggested label</h2>"
    if issues.height == 0:
        return head + "<p class=\"note\">No sample is flagged <code>label_issue</code>.</p></section>"
    by_decision = {d: int((issues[S.DECISION] == d).sum()) for d in S.DECISIONS}
    pairs = (issues.filter(pl.col(S.SUGGESTED_LABEL).is_not_null())
             .group_by([S.LABEL, S.SUGGESTED_LABEL]).agg(pl.len().alias("n")))
    no_suggestion = issues.height - int(pairs["n"].sum())
    classes = sorted(set(pairs[S.LABEL].to_list()) | set(pairs[S.SUGGESTED_LABEL].to_list()))
    notes = []
    if len(classes) > MAX_HEAT_CLASSES:
        mass: dict[str, int] = {}
        for g, s, c in pairs.iter_rows():
            mass[g] = mass.get(g, 0) + c
            mass[s] = mass.get(s, 0) + c
        classes = sorted(sorted(classes, key=lambda c: (-mass.get(c, 0), c))[:MAX_HEAT_CLASSES])
        kept = set(classes)
        outside = sum(c for g, s, c in pairs.iter_rows() if g not in kept or s not in kept)
        notes.append(f"Showing the {MAX_HEAT_CLASSES} classes with the most label issues of "
                     f"{len(mass):,}; {outside:,} flagged rows fall outside them (see the class pages).")
    if no_suggestion:
        notes.append(f"{no_suggestion:,} flagged rows have no suggested label and are not in the matrix.")
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for g, s, c in pairs.iter_rows():
        if g in index and s in index:
            matrix[index[g], index[s]] += c
    links = {c: ctx.href("class", c) for c in classes}
    caption = (f"Every row flagged <code>label_issue</code> ({_fmt(issues.height)}: "
               f"{_fmt(by_decision['relabel'])} relabelled, {_fmt(by_decision['drop'])} dropped, "
               f"{_fmt(by_decision['keep'])} kept; all three are counted). Rows: the given label; columns: "
               f"the suggested label (red, darker = more; a grey diagonal cell: flagged, but no other "
               f"label is suggested). Rows not flagged are not counted, whatever their suggestion. A given "
               f"label links to its flagged samples.")
    note = "".join(f"<p class=\"note\">{_e(n)}</p>" for n in notes)
    return (f"{head}{note}<figure><figcaption>{caption}</figcaption>"
            f"{_heat_map(classes, matrix, row_links=links)}</figure></section>")


def _thumb(sid: str | None, ctx: _Context, *, label: str, cls: str = "", prefix: str = "") -> str:
    rel = ctx.thumbs.get(sid) if sid is not None else None
    if rel is None:
        return f"<div class=\"thumb missing {cls}\" title=\"{_e(label)}\">no image</div>"
    return (f"<img class=\"thumb {cls}\" src=\"{_e(prefix + rel)}\" alt=\"{_e(label)}\" title=\"{_e(label)}\" "
            f"loading=\"lazy\" onerror=\"this.classList.add('broken')\">")


def _card(row: dict, ctx: _Context, *, prefix: str) -> str:
    """One flagged sample: thumbnail (within the cap), labels, decision, scores, reasons, path, neighbours."""
    sid = row[S.SAMPLE_ID]
    given, suggested = row[S.LABEL], row[S.SUGGESTED_LABEL]
    quality = row[S.LABEL_QUALITY]
    scores = [(S.LABEL_QUALITY, quality)] + [
        (c, row[c]) for c in ctx.score_cols if row.get(c) is not None and row[c] != quality]
    if row.get("outlier_score") is not None and "outlier" in row[S.REASONS]:
        scores.append(("outlier_score", row["outlier_score"]))
    score_html = " ".join(f"<span class=\"score\">{_e(k)} <b>{_e(_fmt(v) if v is not None else '–')}</b></span>"
                          for k, v in scores)
    chips = "".join(
        f"<a class=\"chip\" href=\"{_e(ctx.href('reason', r, prefix=prefix) or '')}\" "
        f"title=\"{_e(S.REASON_CODES.get(r, ''))}\">{_e(r)}</a>" for r in row[S.REASONS])
    given_html = f"<a class=\"given\" href=\"{_e(ctx.href('class', given, prefix=prefix) or '')}\">{_e(given)}</a>"
    arrow = (f"{given_html} → <span class=\"suggested\">{_e(suggested)}</span>"
             if suggested is not None and suggested != given else given_html)
    copy_of = ""
    keeper = row.get(S.DUPLICATE_OF)
    if keeper is not None:
        copy_of = (f"<div class=\"path\" title=\"{_e(ctx.keeper_paths.get(keeper, keeper))}\">copy of "
                   f"{_e(ctx.keeper_paths.get(keeper, keeper))}</div>")
    nbrs = "".join(
        f"<figure class=\"nb\">{_thumb(n, ctx, label=ctx.labels.get(n, '?'), cls='small', prefix=prefix)}"
        f"<figcaption class=\"{'agree' if ctx.labels.get(n) == suggested else ''}\">"
        f"{_e(ctx.labels.get(n, '?'))}</figcaption></figure>"
        for n, _sim in ctx.neighbour_ids.get(sid, []))
    if sid in ctx.thumbs:
        picture, compact = _thumb(sid, ctx, label=given, prefix=prefix), ""
    elif row["_usable"]:
        picture, compact = "", " compact"  # beyond the thumbnail cap: the page says so
    else:
        picture, compact = "<div class=\"thumb missing\">no image</div>", ""
    return (
        f"<article class=\"gallery-card decision-{_e(row[S.DECISION])}{compact}\" data-sample-id=\"{_e(sid)}\">"
        f"<div class=\"main\">{picture}<div class=\"info\">"
        f"<div class=\"labels\">{arrow}</div>"
        f"<div class=\"decision\">{_e(row[S.DECISION])}</div>"
        f"<div class=\"scores\">{score_html}</div><div class=\"chips\">{chips}</div>"
        f"<div class=\"path\" title=\"{_e(row[S.PATH])}\">{_e(row[S.PATH])}</div>{copy_of}</div></div>"
        + (f"<div class=\"nbs\"><div class=\"nbs-title\">nearest neighbours (their given labels)</div>"
           f"<div class=\"nb-row\">{nbrs}</div></div>" if nbrs else "")
        + "</article>")


def _gallery_section(flagged: pl.DataFrame, groups: list[_Group], ctx: _Context) -> str:
    head = "<section id=\"gallery\"><h2>Flagged samples</h2>"
    if flagged.height == 0:
        return head + "<p class=\"note\">No sample was flagged.</p></section>"
    reasons = [g for g in groups if g.kind == "reason"]
    classes = [g for g in groups if g.kind == "class"]
    n_usable = flagged.filter(pl.col("_usable")).height
    cap = (f"Thumbnails for the first {_fmt(ctx.thumb_limit)} flagged samples (each reason's worst first); "
           f"the other {_fmt(n_usable - ctx.thumb_limit)} are listed without one." if ctx.capped
           else "Every flagged sample with an image has a thumbnail.")
    note = (f"{_fmt(flagged.height)} samples are flagged. Every one is listed on the pages below, by reason "
            f"and by given label, {_fmt(ctx.page_size)} a page, the most telling first. {cap}")
    reason_rows = "".join(
        f"<tr><td><a href=\"{ctx.href('reason', g.key)}\"><code>{_e(g.key)}</code></a></td>"
        f"<td class=\"num\">{_fmt(g.count)}</td><td>{_e(S.REASON_CODES.get(g.key, ''))}</td>"
        f"<td>{_pager(g.pages(ctx.page_size), 0, lambda q, g=g: ctx.href('reason', g.key, q))}</td></tr>"
        for g in reasons)
    by_reason = (f"<h3>By reason</h3><table id=\"reason-index\" class=\"index\"><thead><tr><th>reason</th>"
                 f"<th class=\"num\">samples</th><th>meaning</th><th>pages</th></tr></thead>"
                 f"<tbody>{reason_rows}</tbody></table>")
    more = (f"<p class=\"note\">The {INDEX_CLASSES} most flagged of {_fmt(len(classes))} classes; "
            f"<a href=\"{GALLERY}/classes/1.html\">all classes</a>.</p>" if len(classes) > INDEX_CLASSES
            else f"<p class=\"note\"><a href=\"{GALLERY}/classes/1.html\">the class index on its own page</a></p>")
    by_class = (f"<h3>By given label</h3>{more}<div class=\"scroll\">"
                + _class_index(classes[:INDEX_CLASSES], _class_table(flagged, reasons), reasons, ctx, prefix="")
                + "</div>")
    previews = []
    for g in reasons:
        rows = _group_rows(flagged, g).head(PREVIEW_CARDS)
        cards = "".join(_card(row, ctx, prefix="") for row in rows.iter_rows(named=True))
        previews.append(
            f"<div class=\"preview\" data-reason=\"{_e(g.key)}\"><h3><code>{_e(g.key)}</code> "
            f"<span class=\"muted\">{_plural(g.count, 'sample')}"
            f"{f'; the first {PREVIEW_CARDS} shown' if g.count > PREVIEW_CARDS else ''}</span> "
            f"<a href=\"{ctx.href('reason', g.key)}\">all {_fmt(g.count)} →</a></h3>"
            f"<div class=\"gallery\">{cards}</div></div>")
    return (f"{head}<p class=\"note\">{_e(note)} A neighbour's label in green agrees with the suggestion.</p>"
            f"{by_reason}{by_class}{''.join(previews)}</section>")


def _duplicates_section(manifest: pl.DataFrame, groups: list[tuple[str, list[str]]], ctx: _Context) -> str:
    if not groups:
        return ("<section id=\"duplicates\"><h2>Duplicate groups</h2>"
                "<p class=\"note\">No duplicates were found.</p></section>")
    info = {r[S.SAMPLE_ID]: r for r in manifest.filter(
        pl.col(S.SAMPLE_ID).is_in([k for k, m in groups] + [x for _, m in groups for x in m])
    ).select(S.SAMPLE_ID, S.PATH, S.LABEL, S.DECISION, S.REASONS).iter_rows(named=True)}
    n_groups = manifest[S.DUPLICATE_OF].drop_nulls().n_unique()

    def member(sid: str, role: str) -> str:
        r = info.get(sid, {S.PATH: sid, S.LABEL: "?", S.DECISION: "?", S.REASONS: []})
        tags = " ".join(r[S.REASONS] or [])
        return (f"<figure class=\"dup {role}\">{_thumb(sid, ctx, label=r[S.LABEL])}"
                f"<figcaption><b>{_e(r[S.LABEL])}</b> · {_e(role)} · {_e(r[S.DECISION])}"
                f"<br><span class=\"path\" title=\"{_e(r[S.PATH])}\">{_e(r[S.PATH])}</span>"
                f"{'<br><small>' + _e(tags) + '</small>' if tags else ''}</figcaption></figure>")

    rows = "".join(
        f"<div class=\"dup-group\">{member(keeper, 'kept')}{''.join(member(m, 'copy') for m in members)}</div>"
        for keeper, members in groups)
    every = ", ".join(f"<a href=\"{ctx.href('reason', code)}\"><code>{code}</code></a>"
                      for code in ("exact_duplicate", "near_duplicate") if ctx.href("reason", code))
    return (f"<section id=\"duplicates\"><h2>Duplicate groups</h2><p class=\"note\">{len(groups)} of "
            f"{_fmt(n_groups)} groups, largest first; each row is the kept sample and its copies. Every copy "
            f"is listed under {every or 'its reason'}.</p>{rows}</section>")


def _unusable_section(manifest: pl.DataFrame, ctx: _Context) -> str:
    bad = manifest.filter(pl.col(S.REASONS).list.eval(pl.element().is_in(list(S.UNUSABLE_REASONS))).list.any())
    if bad.height == 0:
        return ""
    rows = "".join(f"<tr data-sample-id=\"{_e(sid)}\"><td class=\"path\">{_e(p)}</td><td>{_e(lab)}</td>"
                   f"<td>{_e(', '.join(r))}</td></tr>"
                   for sid, p, lab, r in bad.select(S.SAMPLE_ID, S.PATH, S.LABEL, S.REASONS)
                   .head(UNUSABLE_ROWS).iter_rows())
    codes = sorted(set(bad[S.REASONS].explode().to_list()) & S.UNUSABLE_REASONS)
    every = ", ".join(f"<a href=\"{ctx.href('reason', c)}\"><code>{_e(c)}</code></a>" for c in codes)
    more = (f"<p class=\"note\">The first {UNUSABLE_ROWS}; all {bad.height:,} are listed under {every}.</p>"
            if bad.height > UNUSABLE_ROWS else f"<p class=\"note\">Also listed under {every}.</p>")
    return (f"<section id=\"unusable\"><h2>Unusable files ({bad.height:,})</h2>{more}<table><thead><tr>"
            f"<th>path</th><th>label</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table></section>")


def _histogram_section(manifest: pl.DataFrame, score_cols: list[str], cutoff: float | None) -> str:
    issue = manifest[S.REASONS].list.contains("label_issue").to_numpy()
    lq = manifest[S.LABEL_QUALITY].cast(pl.Float64).to_numpy()
    charts = []
    shown = [(S.LABEL_QUALITY, lq, [])]
    for col in score_cols:
        values = manifest[col].cast(pl.Float64).to_numpy()
        if np.array_equal(values, lq, equal_nan=True):
            shown[0][2].append(col)
        else:
            shown.append((col, values, []))
    for name, values, aliases in shown:
        line = cutoff if name == S.LABEL_QUALITY else None
        caption = _e(name) + (f" (= {', '.join(_e(a) for a in aliases)})" if aliases else "")
        if line is not None:
            caption += f"; dashed line: the label-issue cut-off {line:.4g}"
        charts.append(f"<figure class=\"hist\" data-score=\"{_e(name)}\"><figcaption>{caption}</figcaption>"
                      f"{_histogram(values, issue, cutoff=line, chart_id='hist-' + name)}</figure>")
    return (f"<section id=\"scores\"><h2>Score distributions</h2><p class=\"note\">Red: samples flagged as "
            f"a label issue; grey: the rest. Low label quality means the neighbours disagree with the "
            f"given label.</p><div class=\"charts2\">{''.join(charts)}</div></section>")




def _details_section(summary: dict) -> str:
    if not summary:
        return ""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_value_html(v)}</td></tr>" for k, v in summary.items())
    return f"<section id=\"details\"><h2>Run details (summary.json)</h2><table class=\"kv\">{rows}</table></section>"


def _value_html(value: Any, depth: int = 0) -> str:
    if isinstance(value, dict) and not value:
        return "–"
    if isinstance(value, dict) and all(not isinstance(v, dict | list) for v in value.values()):
        return "<div class=\"flow\">" + " ".join(
            f"<span><span class=\"muted\">{_e(k)}</span> {_value_html(v, depth + 1)}</span>"
            for k, v in value.items()) + "</div>"
    if isinstance(value, dict) and depth < 2:
        return "<table class=\"kv inner\">" + "".join(
            f"<tr><th>{_e(k)}</th><td>{_value_html(v, depth + 1)}</td></tr>" for k, v in value.items()) + "</table>"
    if isinstance(value, dict | list):
        return f"<code>{_e(json.dumps(value, default=str))}</code>"
    if value is None:
        return "–"
    return _e(_fmt(value))


# --- charts: inline SVG, no scripts ---------------------------------------------------------


def _bar_chart(categories: list[str], series: list[tuple[str, list[float], str]], *, chart_id: str,
               y_label: str, percent: bool = False, width: int = 620, height: int = 300) -> str:
    left, right, top, bottom = 56, 12, 28, 58
    pw, ph = width - left - right, height - top - bottom
    vmax = max([max(v, default=0) for _, v, _ in series] + [0])
    ymax = _nice_ceiling(vmax if vmax > 0 else 1)
    out = [f"<svg id=\"{_e(chart_id)}\" class=\"chart bar-chart\" viewBox=\"0 0 {width} {height}\" "
           f"width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{_e(y_label)}\">"]
    for i in range(5):
        y_val = ymax * i / 4
        y = top + ph - ph * i / 4
        tick = f"{100 * y_val:.3g}%" if percent else _fmt(round(y_val, 2) if y_val % 1 else int(y_val))
        out.append(f"<line class=\"grid\" x1=\"{left}\" x2=\"{left + pw}\" y1=\"{y:.1f}\" y2=\"{y:.1f}\"/>"
                   f"<text class=\"tick\" x=\"{left - 6}\" y=\"{y + 4:.1f}\" text-anchor=\"end\">{_e(tick)}</text>")
    n = max(len(categories), 1)
    slot = pw / n
    bw = slot * 0.8 / max(len(series), 1)
    rotate = n > 12 or max((len(c) for c in categories), default=0) * 7 > slot
    for i, cat in enumerate(categories):
        x0 = left + i * slot + slot * 0.1
        for j, (name, values, color) in enumerate(series):
            v = values[i]
            h = ph * v / ymax
            shown = f"{100 * v:.1f}%" if percent else _fmt(v)
            out.append(f"<rect class=\"bar\" data-series=\"{_e(name)}\" x=\"{x0 + j * bw:.1f}\" "
                       f"y=\"{top + ph - h:.1f}\" width=\"{max(bw - 1, 1):.1f}\" height=\"{h:.1f}\" fill=\"{color}\">"
                       f"<title>{_e(cat)} · {_e(name)}: {_e(shown)}</title></rect>")
        cx = left + (i + 0.5) * slot
        label = cat if len(cat) <= 14 else cat[:13] + "…"
        if rotate:
            out.append(f"<text class=\"tick\" transform=\"translate({cx:.1f},{top + ph + 10}) rotate(-45)\" "
                       f"text-anchor=\"end\">{_e(label)}<title>{_e(cat)}</title></text>")
        else:
            out.append(f"<text class=\"tick\" x=\"{cx:.1f}\" y=\"{top + ph + 16}\" text-anchor=\"middle\">"
                       f"{_e(label)}<title>{_e(cat)}</title></text>")
    out.append(f"<line class=\"axis\" x1=\"{left}\" x2=\"{left + pw}\" y1=\"{top + ph}\" y2=\"{top + ph}\"/>")
    lx = left
    for name, _, color in series:
        out.append(f"<rect x=\"{lx}\" y=\"8\" width=\"12\" height=\"12\" fill=\"{color}\"/>"
                   f"<text class=\"legend\" x=\"{lx + 16}\" y=\"18\">{_e(name)}</text>")
        lx += 24 + 7 * len(name)
    out.append(f"<text class=\"tick\" x=\"{left + pw}\" y=\"18\" text-anchor=\"end\">{_e(y_label)}</text></svg>")
    return "".join(out)


def _heat_map(classes: list[str], matrix: np.ndarray, *, row_links: dict[str, str | None] | None = None) -> str:
    n = len(classes)
    cell = max(16, min(44, 560 // max(n, 1)))
    longest = max((min(len(c), 12) for c in classes), default=1)
    pad_l = pad_t = 36 + 7 * longest  # room for the tick labels
    size_w, size_h = pad_l + n * cell + 20, pad_t + n * cell + 20
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    off_max = max(int(off.max()), 1)
    diag_max = max(int(np.diag(matrix).max()) if n else 1, 1)
    out = [f"<svg id=\"chart-confusion\" class=\"chart heat-map\" viewBox=\"0 0 {size_w} {size_h}\" "
           f"width=\"{size_w}\" height=\"{size_h}\" role=\"img\" aria-label=\"given vs suggested label\">",
           f"<text class=\"axis-title\" x=\"{pad_l + n * cell / 2:.0f}\" y=\"14\" text-anchor=\"middle\">"
           f"suggested label →</text>",
           f"<text class=\"axis-title\" transform=\"translate(14,{pad_t + n * cell / 2:.0f}) rotate(-90)\" "
           f"text-anchor=\"middle\">given label →</text>"]
    for i, c in enumerate(classes):
        short = c if len(c) <= 12 else c[:11] + "…"
        tick = (f"<text class=\"tick\" x=\"{pad_l - 6}\" y=\"{pad_t + i * cell + cell / 2 + 4:.1f}\" "
                f"text-anchor=\"end\">{_e(short)}<title>{_e(c)}</title></text>")
        link = (row_links or {}).get(c) if matrix[i].sum() else None
        out.append(f"<a class=\"row-link\" href=\"{_e(link)}\">{tick}</a>" if link else tick)
        out.append(f"<text class=\"tick\" transform=\"translate({pad_l + i * cell + cell / 2 + 4:.1f},{pad_t - 6}) "
                   f"rotate(-60)\">{_e(short)}<title>{_e(c)}</title></text>")
    for i in range(n):
        for j in range(n):
            v = int(matrix[i, j])
            if i == j:
                t = math.sqrt(v / diag_max) if v else 0.0
                fill = _mix((248, 250, 252), (148, 163, 184), t)
            else:
                t = math.sqrt(v / off_max) if v else 0.0
                fill = _mix((255, 255, 255), (220, 38, 38), t) if v else "#ffffff"
            dark = i != j and t > 0.6
            out.append(f"<rect class=\"cell\" x=\"{pad_l + j * cell}\" y=\"{pad_t + i * cell}\" width=\"{cell}\" "
                       f"height=\"{cell}\" fill=\"{fill}\"><title>given {_e(classes[i])}, suggested "
                       f"{_e(classes[j])}: {v}</title></rect>")
            if v and cell >= 22:
                out.append(f"<text class=\"cell-v{' dark' if dark else ''}\" x=\"{pad_l + j * cell + cell / 2:.1f}\" "
                           f"y=\"{pad_t + i * cell + cell / 2 + 4:.1f}\" text-anchor=\"middle\">{v}</text>")
    out.append(f"<rect x=\"{pad_l}\" y=\"{pad_t}\" width=\"{n * cell}\" height=\"{n * cell}\" fill=\"none\" "
               f"stroke=\"#cbd5e1\"/></svg>")
    return "".join(out)


def _histogram(values: np.ndarray, flagged: np.ndarray, *, cutoff: float | None, chart_id: str,
               width: int = 620, height: int = 240) -> str:
    ok = np.isfinite(values)
    v, f = values[ok], flagged[ok]
    left, right, top, bottom = 56, 14, 24, 36
    pw, ph = width - left - right, height - top - bottom
    head = (f"<svg id=\"{_e(chart_id)}\" class=\"chart histogram\" viewBox=\"0 0 {width} {height}\" "
            f"width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{_e(chart_id)}\">")
    if v.size == 0:
        return head + f"<text class=\"tick\" x=\"{width / 2}\" y=\"{height / 2}\">no values</text></svg>"
    lo, hi = float(v.min()), float(v.max())
    if cutoff is not None:
        lo, hi = min(lo, cutoff), max(hi, cutoff)
    if 0.0 <= lo and hi <= 1.0:
        lo, hi = 0.0, 1.0  # scores in [0, 1] (most are) get the same bins in every run
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, HIST_BINS + 1)
    h_rest, _ = np.histogram(v[~f], bins=edges)
    h_flag, _ = np.histogram(v[f], bins=edges)
    ymax = _nice_ceiling(max(int((h_rest + h_flag).max()), 1))
    out = [head]
    for i in range(5):
        y = top + ph - ph * i / 4
        out.append(f"<line class=\"grid\" x1=\"{left}\" x2=\"{left + pw}\" y1=\"{y:.1f}\" y2=\"{y:.1f}\"/>"
                   f"<text class=\"tick\" x=\"{left - 6}\" y=\"{y + 4:.1f}\" text-anchor=\"end\">"
                   f"{_fmt(int(ymax * i / 4))}</text>")
    bw = pw / HIST_BINS
    for i in range(HIST_BINS):
        x = left + i * bw
        base = top + ph
        for count, color, name in ((h_rest[i], "#94a3b8", "not flagged"), (h_flag[i], "#dc2626", "label issue")):
            if count == 0:
                continue
            h = ph * count / ymax
            out.append(f"<rect class=\"bin\" x=\"{x + 0.5:.1f}\" y=\"{base - h:.1f}\" width=\"{max(bw - 1, 1):.1f}\" "
                       f"height=\"{h:.1f}\" fill=\"{color}\"><title>{edges[i]:.3g}–{edges[i + 1]:.3g}: "
                       f"{int(count)} {name}</title></rect>")
            base -= h
    for i in range(0, HIST_BINS + 1, HIST_BINS // 4):
        x = left + i * bw
        out.append(f"<text class=\"tick\" x=\"{x:.1f}\" y=\"{top + ph + 16}\" text-anchor=\"middle\">"
                   f"{0.0 if abs(edges[i]) < (hi - lo) * 1e-6 else edges[i]:.3g}</text>")
    out.append(f"<line class=\"axis\" x1=\"{left}\" x2=\"{left + pw}\" y1=\"{top + ph}\" y2=\"{top + ph}\"/>")
    if cutoff is not None:
        x = left + pw * (cutoff - lo) / (hi - lo)
        anchor = "start" if x < left + pw * 0.7 else "end"
        dx = 4 if anchor == "start" else -4
        out.append(f"<line class=\"cutoff\" x1=\"{x:.1f}\" x2=\"{x:.1f}\" y1=\"{top - 6}\" y2=\"{top + ph}\"/>"
                   f"<text class=\"cutoff-label\" x=\"{x + dx:.1f}\" y=\"{top + 6}\" text-anchor=\"{anchor}\">"
                   f"cut-off {cutoff:.3g}</text>")
    out.append("</svg>")
    return "".join(out)


def _nice_ceiling(x: float) -> float:
    """The smallest 1, 2, 4, 6 or 8 times a power of ten that is >= x."""
    exp = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 4, 6, 8, 10):  # each splits into 4 readable ticks
        if m * exp >= x:
            return m * exp
    return 10 * exp


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> str:
    t = min(max(t, 0.0), 1.0)
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=True))


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

_CSS = """
:root { --fg:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; --card:#fff; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 20px 28px 60px; }
header { display:flex; align-items:baseline; gap:24px; flex-wrap:wrap; border-bottom:1px solid var(--line);
  padding-bottom:10px; }
h1 { font-size: 24px; margin: 0; }
h2 { font-size: 18px; margin: 28px 0 10px; }
.meta { display:flex; gap:18px; flex-wrap:wrap; color:var(--muted); }
.meta b { color:var(--fg); font-weight:600; }
.cards { display:grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap:10px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 14px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:26px; font-weight:650; }
.card .s { color:var(--muted); font-size:12px; min-height:1em; }
.card.ok .v { color:#15803d; } .card.warn .v { color:#b45309; } .card.bad .v { color:#b91c1c; }
table { border-collapse: collapse; background:var(--card); margin-top:12px; }
th, td { text-align:left; padding:5px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
td.num { text-align:right; font-variant-numeric: tabular-nums; }
table.kv th { color:var(--muted); font-weight:500; white-space:nowrap; }
table.kv.inner { margin:0; } table.kv.inner th, table.kv.inner td { padding:2px 8px; border:none; }
.note { color:var(--muted); margin:4px 0 10px; }
.pair { display:grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap:14px; align-items:start; }
.pair .charts2 { grid-template-columns: minmax(0, 1fr); }
.flow { display:flex; flex-wrap:wrap; gap:4px 14px; max-width:900px; } .muted { color:var(--muted); }
.charts2 { display:grid; grid-template-columns: repeat(auto-fit, minmax(600px, 1fr)); gap:14px; }
figure { margin:0; background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px; }
figcaption { color:var(--muted); margin-bottom:6px; }
svg.chart { max-width:100%; height:auto; display:block; }
svg .grid { stroke:#eef2f7; } svg .axis { stroke:#9ca3af; }
svg text { font: 11px system-ui, "DejaVu Sans", sans-serif; fill:#374151; }
svg .legend { font-size:12px; } svg .axis-title { font-size:12px; fill:#6b7280; }
svg .cell-v { font-size:11px; fill:#334155; } svg .cell-v.dark { fill:#fff; font-weight:600; }
svg .cutoff { stroke:#111827; stroke-width:1.5; stroke-dasharray:5 4; }
svg .cutoff-label { font-size:12px; font-weight:600; fill:#111827; }
.gallery { display:grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap:12px; }
.gallery-card { background:var(--card); border:1px solid var(--line); border-left:4px solid #9ca3af;
  border-radius:8px; padding:10px; min-width:0; }
.gallery-card.decision-relabel { border-left-color:#d97706; }
.gallery-card.decision-drop { border-left-color:#dc2626; }
.gallery-card.decision-keep { border-left-color:#16a34a; }
.gallery-card .main { display:flex; gap:12px; }
.thumb { width:96px; height:96px; object-fit:contain; background:#0f172a0d; border-radius:4px;
  image-rendering: pixelated; flex:none; }
.thumb.small { width:40px; height:40px; }
img.thumb.broken { outline:2px dashed #dc2626; }
.thumb.missing { display:flex; align-items:center; justify-content:center; color:var(--muted); font-size:11px;
  border:1px dashed var(--line); }
.info { min-width:0; flex:1; }
.labels { font-size:18px; font-weight:650; }
.given { color:#b91c1c; } .suggested { color:#15803d; }
.decision { display:inline-block; font-size:11px; text-transform:uppercase; letter-spacing:.05em;
  color:var(--muted); }
.scores { margin:2px 0; } .score { color:var(--muted); margin-right:8px; font-size:12px; }
.score b { color:var(--fg); font-variant-numeric: tabular-nums; }
.chip { display:inline-block; background:#fee2e2; color:#991b1b; border-radius:10px; padding:0 8px;
  font-size:11px; margin:2px 4px 2px 0; }
.path { color:var(--muted); font: 11px ui-monospace, "DejaVu Sans Mono", monospace; overflow:hidden;
  text-overflow:ellipsis; white-space:nowrap; }
.nbs { margin-top:8px; border-top:1px dashed var(--line); padding-top:6px; }
.nbs-title { color:var(--muted); font-size:11px; margin-bottom:4px; }
.nb-row { display:flex; gap:4px; flex-wrap:wrap; }
figure.nb { border:none; padding:0; background:none; text-align:center; width:42px; }
figure.nb figcaption { margin:0; font-size:11px; color:#374151; overflow:hidden; text-overflow:ellipsis;
  white-space:nowrap; }
figure.nb figcaption.agree { color:#15803d; font-weight:650; }
.dup-group { display:flex; gap:10px; overflow-x:auto; background:var(--card); border:1px solid var(--line);
  border-radius:8px; padding:10px; margin-bottom:8px; }
figure.dup { border:none; padding:0; width:150px; flex:none; }
figure.dup.kept .thumb { outline:3px solid #16a34a; }
figure.dup figcaption { font-size:12px; margin-top:4px; }
h3 { font-size:15px; margin:18px 0 8px; } h3 .muted { font-weight:400; font-size:13px; }
a { color:#1d4ed8; text-decoration:none; } a:hover { text-decoration:underline; }
a.given { color:#b91c1c; }
a.chip:hover { background:#fecaca; text-decoration:none; }
.crumbs { padding:6px 0 10px; border-bottom:1px solid var(--line); margin-bottom:10px; }
.pager { display:flex; flex-wrap:wrap; gap:4px 10px; margin:10px 0; align-items:baseline; }
.pager b { background:#1d4ed8; color:#fff; border-radius:4px; padding:0 6px; }
table.index { margin-top:4px; } table.index td, table.index th { padding:3px 8px; }
table.index thead th { max-width:120px; overflow-wrap:anywhere; vertical-align:bottom; }
table.index .pager { margin:0; gap:2px 6px; font-size:12px; }
.gallery-card.compact .main { display:block; }
.gallery-card.compact .labels { font-size:15px; }
.preview { margin-bottom:10px; } .scroll { overflow-x:auto; max-width:100%; }
svg a.row-link text { fill:#1d4ed8; }
"""
