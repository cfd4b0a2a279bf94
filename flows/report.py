"""The run report: RUN/report.html plus RUN/thumbs/, one static page that works offline.

    summary cards, reason table, run details      from summary.json (every key shown)
    class counts before/after, per-class noise     bar charts (inline SVG)
    given vs suggested label                       heat map (inline SVG)
    label_quality and every score_<detector>       histograms with the label-issue cut-off
    flagged samples                                a gallery: thumbnail, given -> suggested,
                                                   scores, reasons, nearest neighbours
    duplicate groups                               kept sample and its copies side by side
    unusable files                                 a table of path and reason

Only the samples shown get a thumbnail (at most `gallery_limit` flagged samples with
`neighbours` neighbours each, plus the duplicate groups shown), so the report costs the
same for 1,000 samples as for 10 million. Every string that comes from the data (paths,
labels, summary values) is HTML-escaped: file names are hostile input.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from PIL import Image

from catalogs import schemas as S
from embeddings import load_image
from embeddings.images import to_rgb
from flows.io import load_knn_graph

GALLERY_LIMIT = 60  # flagged samples shown in the gallery, worst label quality first
NEIGHBOURS = 8  # nearest-neighbour thumbnails per gallery card
DUPLICATE_GROUPS = 30  # duplicate groups shown
GROUP_MEMBERS = 8  # copies shown per duplicate group
UNUSABLE_ROWS = 200  # rows of the unusable-files table
MAX_BAR_CLASSES = 40  # classes in the bar charts (the noisiest when there are more)
MAX_HEAT_CLASSES = 30  # classes in the heat map (the most confused when there are more)
THUMB_PX = 128  # longest side of a stored thumbnail; tiny images are upscaled (nearest)
HIST_BINS = 40

THUMBS = "thumbs"
REPORT = "report.html"


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


def write_report(run_or_out_dir: str | os.PathLike, *, gallery_limit: int = GALLERY_LIMIT,
                 neighbours: int = NEIGHBOURS) -> Path:
    """Build RUN/report.html and RUN/thumbs/ from a run's files; returns the report's path.

    Reads manifest.parquet and summary.json, plus work/samples.parquet, work/embed.parquet
    and work/knn.npz when they are still there (old runs lose work/: their report then has
    no neighbours and thumbnails only where clean.parquet knows the file).
    """
    if gallery_limit < 0 or neighbours < 0:
        raise ValueError(f"gallery_limit and neighbours must be >= 0, got {gallery_limit} and {neighbours}")
    run = resolve_run(run_or_out_dir)
    manifest = pl.read_parquet(run / "manifest.parquet")
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    gallery = _gallery_rows(manifest, gallery_limit)
    groups = _duplicate_groups(manifest)
    neighbour_ids = _neighbours(run, gallery[S.SAMPLE_ID].to_list(), neighbours)
    wanted = set(gallery[S.SAMPLE_ID].to_list())
    for ids in neighbour_ids.values():
        wanted.update(sid for sid, _ in ids)
    for keeper, members in groups:
        wanted.add(keeper)
        wanted.update(members)
    shown = manifest.filter(pl.col(S.SAMPLE_ID).is_in(list(wanted))).select(S.SAMPLE_ID, S.LABEL)
    labels = dict(shown.iter_rows())

    tmp_thumbs = run / f".{THUMBS}.{uuid.uuid4().hex}.tmp"
    tmp_thumbs.mkdir()
    try:
        locations = _locations(run, wanted)
        thumbs = _make_thumbnails({sid: locations.get(sid) for sid in wanted}, tmp_thumbs)
        _swap_folder(tmp_thumbs, run / THUMBS)
    finally:
        if tmp_thumbs.exists():
            shutil.rmtree(tmp_thumbs)

    page = _render_page(summary, manifest, labels, gallery, neighbour_ids, groups, thumbs,
                        gallery_limit=gallery_limit)
    out = run / REPORT
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(page, encoding="utf-8")
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    _link_thumbs_from_out(run)
    return out


# --- reading the run ---------------------------------------------------------------------------


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


def _gallery_rows(manifest: pl.DataFrame, limit: int) -> pl.DataFrame:
    """Flagged, usable samples: label issues first (worst label quality first), then the rest.

    Samples flagged only as duplicates are shown in the duplicate groups instead, and
    unusable files (no image) in their own table.
    """
    shown_elsewhere = list(S.UNUSABLE_REASONS | {"exact_duplicate", "near_duplicate"})
    reasons = pl.col(S.REASONS)
    flagged = manifest.filter(
        (reasons.list.len() > 0)
        & ~reasons.list.eval(pl.element().is_in(list(S.UNUSABLE_REASONS))).list.any()
        & ~reasons.list.eval(pl.element().is_in(shown_elsewhere)).list.all()
    )
    return (
        flagged.with_columns((~reasons.list.contains("label_issue")).alias("_not_issue"))
        .sort(["_not_issue", S.LABEL_QUALITY, S.SAMPLE_ID], nulls_last=True)
        .drop("_not_issue")
        .head(limit)
    )


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


def _link_thumbs_from_out(run: Path) -> None:
    """OUT/report.html is a link to latest/report.html, and a browser resolves the report's
    relative thumbnail paths against OUT/: point OUT/thumbs at latest/thumbs the same way
    (what flows.versions.publish_run does for the other published files)."""
    out = run.parent.parent
    if run.parent.name != "runs" or not (out / REPORT).is_symlink():
        return
    link = out / THUMBS
    if link.is_symlink() or link.exists():
        return
    tmp = out / f".{THUMBS}.{uuid.uuid4().hex}.link"
    os.symlink(os.path.join("latest", THUMBS), tmp)
    os.replace(tmp, link)


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


def _label_issue_cutoff(summary: dict, manifest: pl.DataFrame) -> float | None:
    if isinstance(summary.get("label_issue_cutoff"), int | float):
        return float(summary["label_issue_cutoff"])
    issues = manifest.filter(pl.col(S.REASONS).list.contains("label_issue"))[S.LABEL_QUALITY].drop_nulls()
    return float(issues.max()) if issues.len() else None


def _render_page(summary: dict, manifest: pl.DataFrame, labels: dict[str, str], gallery: pl.DataFrame,
                 neighbour_ids: dict[str, list[tuple[str, float]]], groups: list[tuple[str, list[str]]],
                 thumbs: dict[str, str], *, gallery_limit: int) -> str:
    cutoff = _label_issue_cutoff(summary, manifest)
    score_cols = [c for c in manifest.columns if c.startswith("score_")]
    n_flagged = int(manifest.filter(pl.col(S.REASONS).list.len() > 0).height)
    title = f"Winnow report: {summary.get('catalog', 'run')}"
    parts = [
        f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        _header(summary, manifest),
        _summary_section(summary, manifest, n_flagged, cutoff),
        _class_section(manifest),
        "<div class=\"pair\">",
        _confusion_section(manifest),
        _histogram_section(manifest, score_cols, cutoff),
        "</div>",
        _gallery_section(gallery, labels, neighbour_ids, thumbs, score_cols, n_flagged, gallery_limit),
        _duplicates_section(manifest, groups, thumbs),
        _unusable_section(manifest),
        _details_section(summary),
        f"</main><script>{_JS}</script></body></html>\n",
    ]
    return "\n".join(parts)


def _header(summary: dict, manifest: pl.DataFrame) -> str:
    bits = [f"<span>catalog <b>{_e(summary.get('catalog', '?'))}</b></span>"]
    for key, name in (("encoder", "encoder"), ("run_id", "run"), ("k", "k"), ("seconds", "took (s)")):
        if key in summary:
            bits.append(f"<span>{name} <b>{_e(_fmt(summary[key]))}</b></span>")
    return (f"<header id=\"report-header\"><h1>Winnow report</h1><div class=\"meta\">{''.join(bits)}</div>"
            f"</header>")


def _summary_section(summary: dict, manifest: pl.DataFrame, n_flagged: int, cutoff: float | None) -> str:
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
        f"<tr><td><code>{_e(code)}</code></td><td class=\"num\">{_e(_fmt(count))}</td>"
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


def _confusion_section(manifest: pl.DataFrame) -> str:
    pairs = manifest.filter(pl.col(S.SUGGESTED_LABEL).is_not_null()).group_by(
        [S.LABEL, S.SUGGESTED_LABEL]).agg(pl.len().alias("n"))
    if pairs.height == 0:
        return ("<section id=\"confusion\"><h2>Given vs suggested label</h2>"
                "<p class=\"note\">No sample has a suggested label.</p></section>")
    classes = sorted(set(pairs[S.LABEL].to_list()) | set(pairs[S.SUGGESTED_LABEL].to_list()))
    note = ""
    if len(classes) > MAX_HEAT_CLASSES:
        off = pairs.filter(pl.col(S.LABEL) != pl.col(S.SUGGESTED_LABEL))
        mass: dict[str, int] = {}
        for g, s, c in off.iter_rows():
            mass[g] = mass.get(g, 0) + c
            mass[s] = mass.get(s, 0) + c
        classes = sorted(sorted(classes, key=lambda c: (-mass.get(c, 0), c))[:MAX_HEAT_CLASSES])
        note = (f"<p class=\"note\">Showing the {MAX_HEAT_CLASSES} most confused classes of "
                f"{len(set(pairs[S.LABEL].to_list()))}.</p>")
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for g, s, c in pairs.iter_rows():
        if g in index and s in index:
            matrix[index[g], index[s]] += c
    return (f"<section id=\"confusion\"><h2>Given vs suggested label</h2>{note}<figure><figcaption>"
            f"Rows: the given label; columns: the label the neighbours suggest. Off-diagonal cells are "
            f"the suspected flips (red, darker = more); the diagonal (grey) agrees.</figcaption>"
            f"{_heat_map(classes, matrix)}</figure></section>")


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


def _thumb(sid: str | None, thumbs: dict[str, str], *, label: str, cls: str = "") -> str:
    rel = thumbs.get(sid) if sid is not None else None
    if rel is None:
        return f"<div class=\"thumb missing {cls}\" title=\"{_e(label)}\">no image</div>"
    return f"<img class=\"thumb {cls}\" src=\"{_e(rel)}\" alt=\"{_e(label)}\" title=\"{_e(label)}\" onerror=\"this.classList.add('broken')\">"


def _gallery_section(gallery: pl.DataFrame, labels: dict[str, str], neighbour_ids: dict, thumbs: dict[str, str],
                     score_cols: list[str], n_flagged: int, gallery_limit: int) -> str:
    cards = []
    for row in gallery.iter_rows(named=True):
        sid = row[S.SAMPLE_ID]
        given, suggested = row[S.LABEL], row[S.SUGGESTED_LABEL]
        scores = [(S.LABEL_QUALITY, row[S.LABEL_QUALITY])] + [
            (c, row[c]) for c in score_cols if row[c] is not None and row[c] != row[S.LABEL_QUALITY]]
        score_html = " ".join(f"<span class=\"score\">{_e(k)} <b>{_e(_fmt(v) if v is not None else '–')}</b></span>"
                              for k, v in scores)
        reasons = "".join(f"<span class=\"chip\" title=\"{_e(S.REASON_CODES.get(r, ''))}\">{_e(r)}</span>"
                          for r in row[S.REASONS])
        nbrs = "".join(
            f"<figure class=\"nb\">{_thumb(n, thumbs, label=labels.get(n, '?'), cls='small')}"
            f"<figcaption class=\"{'agree' if labels.get(n) == suggested else ''}\">"
            f"{_e(labels.get(n, '?'))}</figcaption></figure>"
            for n, _sim in neighbour_ids.get(sid, []))
        arrow = (f"<span class=\"given\">{_e(given)}</span> → <span class=\"suggested\">{_e(suggested)}</span>"
                 if suggested is not None and suggested != given else f"<span class=\"given\">{_e(given)}</span>")
        cards.append(
            f"<article class=\"gallery-card decision-{_e(row[S.DECISION])}\" data-sample-id=\"{_e(sid)}\">"
            f"<div class=\"main\">{_thumb(sid, thumbs, label=given)}<div class=\"info\">"
            f"<div class=\"labels\">{arrow}</div>"
            f"<div class=\"decision\">{_e(row[S.DECISION])}</div>"
            f"<div class=\"scores\">{score_html}</div><div class=\"chips\">{reasons}</div>"
            f"<div class=\"path\" title=\"{_e(row[S.PATH])}\">{_e(row[S.PATH])}</div></div></div>"
            + (f"<div class=\"nbs\"><div class=\"nbs-title\">nearest neighbours (their given labels)</div>"
               f"<div class=\"nb-row\">{nbrs}</div></div>" if nbrs else "")
            + "</article>")
    n_candidates = gallery.height
    note = (f"Showing {n_candidates} flagged samples (at most {gallery_limit}), label issues first, lowest "
            f"label quality first; {_fmt(n_flagged)} samples are flagged in all. A neighbour's label in "
            f"green agrees with the suggestion.")
    body = "".join(cards) or "<p class=\"note\">No sample to show.</p>"
    return (f"<section id=\"gallery\"><h2>Flagged samples</h2><p class=\"note\">{_e(note)}</p>"
            f"<div class=\"gallery\">{body}</div></section>")


def _duplicates_section(manifest: pl.DataFrame, groups: list[tuple[str, list[str]]],
                        thumbs: dict[str, str]) -> str:
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
        return (f"<figure class=\"dup {role}\">{_thumb(sid, thumbs, label=r[S.LABEL])}"
                f"<figcaption><b>{_e(r[S.LABEL])}</b> · {_e(role)} · {_e(r[S.DECISION])}"
                f"<br><span class=\"path\" title=\"{_e(r[S.PATH])}\">{_e(r[S.PATH])}</span>"
                f"{'<br><small>' + _e(tags) + '</small>' if tags else ''}</figcaption></figure>")

    rows = "".join(
        f"<div class=\"dup-group\">{member(keeper, 'kept')}{''.join(member(m, 'copy') for m in members)}</div>"
        for keeper, members in groups)
    return (f"<section id=\"duplicates\"><h2>Duplicate groups</h2><p class=\"note\">{len(groups)} of "
            f"{_fmt(n_groups)} groups, largest first; each row is the kept sample and its copies.</p>{rows}</section>")


def _unusable_section(manifest: pl.DataFrame) -> str:
    bad = manifest.filter(pl.col(S.REASONS).list.eval(pl.element().is_in(list(S.UNUSABLE_REASONS))).list.any())
    if bad.height == 0:
        return ""
    rows = "".join(f"<tr><td class=\"path\">{_e(p)}</td><td>{_e(lab)}</td><td>{_e(', '.join(r))}</td></tr>"
                   for p, lab, r in bad.select(S.PATH, S.LABEL, S.REASONS).head(UNUSABLE_ROWS).iter_rows())
    more = (f"<p class=\"note\">and {bad.height - UNUSABLE_ROWS:,} more (see manifest.parquet).</p>"
            if bad.height > UNUSABLE_ROWS else "")
    return (f"<section id=\"unusable\"><h2>Unusable files ({bad.height:,})</h2><table><thead><tr><th>path</th>"
            f"<th>label</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>{more}</section>")


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


def _heat_map(classes: list[str], matrix: np.ndarray) -> str:
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
        out.append(f"<text class=\"tick\" x=\"{pad_l - 6}\" y=\"{pad_t + i * cell + cell / 2 + 4:.1f}\" "
                   f"text-anchor=\"end\">{_e(short)}<title>{_e(c)}</title></text>")
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
"""
