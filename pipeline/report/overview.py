"""RUN/report.html, the overview: from summary.json and the manifest.

    summary cards, reason table, run details      from summary.json (every key shown)
    class counts before/after, per-class noise     bar charts
    label issues: given vs suggested label         heat map of the rows flagged label_issue
    label_quality and every score_<detector>       histograms with the label-issue cut-off
    flagged samples                                the index: every reason and every class with its
                                                   pages, and each reason's worst samples
    duplicate groups, unusable files               the largest groups; the first unusable rows
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl

from winnow.catalogs import schemas as S
from winnow.pipeline.report.charts import bar_chart, heat_map, histogram
from winnow.pipeline.report.data import Group, class_table, group_rows
from winnow.pipeline.report.markup import esc, fmt, plural
from winnow.pipeline.report.pages import (
    GALLERY,
    INDEX_CLASSES,
    PageContext,
    card,
    class_index,
    document_end,
    document_head,
    pager,
    reason_heading,
    reason_link,
    thumb_html,
)
from winnow.pipeline.report.sections import reason_meaning

PREVIEW_CARDS = 6  # cards per reason on report.html (the rest are on the gallery pages)
UNUSABLE_ROWS = 200  # rows of the unusable-files table on report.html (all are on the gallery pages)
MAX_BAR_CLASSES = 40  # classes in the bar charts (the noisiest when there are more)
MAX_HEAT_CLASSES = 30  # classes in the heat map (the most confused when there are more)


def _label_issue_cutoff(summary: dict, manifest: pl.DataFrame) -> float | None:
    if isinstance(summary.get("label_issue_cutoff"), int | float):
        return float(summary["label_issue_cutoff"])
    issues = manifest.filter(pl.col(S.REASONS).list.contains("label_issue"))[S.LABEL_QUALITY].drop_nulls()
    return float(issues.max()) if issues.len() else None


def labels_judged(summary: dict, manifest: pl.DataFrame) -> bool:
    """False when the run had one class (an unlabeled folder, a table of one label): nothing to judge."""
    classes = summary.get("classes_before")
    if isinstance(classes, dict) and classes:
        return len(classes) > 1
    return manifest[S.LABEL].n_unique() > 1


def render_overview(summary: dict, manifest: pl.DataFrame, flagged: pl.DataFrame, groups: list[Group],
                    dup_groups: list[tuple[str, list[str]]], ctx: PageContext, *, map_html: str = "") -> str:
    """The text of report.html (`map_html`: the embedding map's static figure, if the run has one)."""
    cutoff = _label_issue_cutoff(summary, manifest) if ctx.labels_judged else None
    if ctx.labels_judged:
        label_parts = [_class_section(manifest), "<div class=\"pair\">", _confusion_section(manifest, ctx),
                       _histogram_section(manifest, ctx.score_cols, cutoff), "</div>"]
    else:
        label_parts = [_one_class_section(manifest)]
    parts = [
        f"{document_head(f'Winnow report: {ctx.catalog}')}<body><main>",
        _header(summary),
        _summary_section(summary, manifest, flagged.height, cutoff, ctx),
        *label_parts,
        _map_section(map_html),
        _gallery_section(flagged, groups, ctx),
        _duplicates_section(manifest, dup_groups, ctx),
        _unusable_section(manifest, ctx),
        _details_section(summary),
        document_end(),
    ]
    return "\n".join(parts)


def _header(summary: dict) -> str:
    bits = [f"<span>catalog <b>{esc(summary.get('catalog', '?'))}</b></span>"]
    for key, name in (("encoder", "encoder"), ("run_id", "run"), ("k", "k"), ("seconds", "took (s)")):
        if key in summary:
            bits.append(f"<span>{name} <b>{esc(fmt(summary[key]))}</b></span>")
    return (f"<header id=\"report-header\"><h1>Winnow report</h1><div class=\"meta\">{''.join(bits)}</div>"
            f"</header>")


def _summary_section(summary: dict, manifest: pl.DataFrame, n_flagged: int, cutoff: float | None,
                     ctx: PageContext) -> str:
    n = manifest.height
    decisions = summary.get("decisions") or {
        d: int((manifest[S.DECISION] == d).sum()) for d in S.DECISIONS}
    cards = [("samples", summary.get("samples", n), "", "")]
    for d, cls in (("keep", "ok"), ("relabel", "warn"), ("drop", "bad")):
        c = int(decisions.get(d, 0))
        cards.append((d, c, f"{100 * c / n:.1f}% of samples" if n else "", cls))
    cards.append(("flagged", n_flagged, "samples with any reason", ""))
    reviews = summary.get("reviews")
    if reviews:
        cards.append(("reviewed", reviews.get("reviewed", 0), "decided by a person (OUT/reviews/)", "ok"))
        cards.append(("pending review", reviews.get("pending", 0),
                      f"flagged, not reviewed; {fmt(reviews.get('stale', 0))} changed since review", ""))
    emb = summary.get("embedding") or {}
    if emb:
        cards.append(("embedded", emb.get("embedded", "?"), f"reused {fmt(emb.get('reused', '?'))}", ""))
    if cutoff is not None:
        cards.append(("label-issue cut-off", round(cutoff, 4), "label_quality at or below", ""))
    card_html = "".join(
        f"<div class=\"card {cls}\" data-key=\"{esc(k)}\"><div class=\"k\">{esc(k)}</div>"
        f"<div class=\"v\">{esc(fmt(v))}</div><div class=\"s\">{esc(sub)}</div></div>"
        for k, v, sub, cls in cards
    )
    reasons = summary.get("reasons")
    if reasons is None:
        vc = manifest.select(pl.col(S.REASONS).explode()).drop_nulls()[S.REASONS].value_counts(sort=True)
        reasons = dict(zip(vc[S.REASONS].to_list(), vc["count"].to_list(), strict=True))
    rows = "".join(
        f"<tr><td>{reason_link(code, ctx)}</td><td class=\"num\">{esc(fmt(count))}</td>"
        f"<td>{esc(reason_meaning(code))}</td></tr>"
        for code, count in reasons.items()
    ) or "<tr><td colspan=\"3\">No sample was flagged.</td></tr>"
    return (f"<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">{card_html}</div>"
            f"<table id=\"reasons\"><thead><tr><th>reason</th><th>samples</th><th>meaning</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>")


def _map_section(map_html: str) -> str:
    if not map_html:
        return ""
    style = ("<style>#embedding-map svg{background:#fafafa;border:1px solid #ddd;max-width:100%;height:auto}"
             "#embedding-map .lg{display:inline-block;margin-right:.8em;font-size:.85em}"
             "#embedding-map .lg i{display:inline-block;width:.8em;height:.8em;margin-right:.3em;"
             "border-radius:50%}</style>")
    return (f"<section id=\"map\"><h2>Embedding map</h2>{style}{map_html}"
            f"<p class=\"note\">Interactive version: <code>winnow review OUT</code>.</p></section>")


def _one_class_section(manifest: pl.DataFrame) -> str:
    """What stands in for the label sections when every sample has one label."""
    label = manifest[S.LABEL].drop_nulls()
    name = f" (<b>{esc(label[0])}</b>)" if label.len() else ""
    return (f"<section id=\"labels\"><h2>Labels</h2><p class=\"note\">Every sample has the same label{name}, so "
            f"labels were not judged: there is no other class to confuse it with. Exact and near duplicates, "
            f"outliers, quality and unusable files were checked as usual.</p></section>")


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
    counts = bar_chart(labels, [("before", table["before"].to_list(), "#9ca3af"),
                                 ("after", table["after"].to_list(), "#2563eb")],
                        chart_id="chart-class-counts", y_label="samples")
    noise = bar_chart(labels, [("label-issue rate", table["noise"].to_list(), "#dc2626")],
                       chart_id="chart-noise-rate", y_label="share of given label flagged", percent=True)
    return (f"<section id=\"classes\"><h2>Classes</h2>{note}<div class=\"charts2\">"
            f"<figure><figcaption>Class counts before and after cleaning</figcaption>{counts}</figure>"
            f"<figure><figcaption>Per-class noise rate: share of each given label flagged as a label issue"
            f"</figcaption>{noise}</figure></div></section>")


def _confusion_section(manifest: pl.DataFrame, ctx: PageContext) -> str:
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
    caption = (f"Every row flagged <code>label_issue</code> ({fmt(issues.height)}: "
               f"{fmt(by_decision['relabel'])} relabelled, {fmt(by_decision['drop'])} dropped, "
               f"{fmt(by_decision['keep'])} kept; all three are counted). Rows: the given label; columns: "
               f"the suggested label (red, darker = more; a grey diagonal cell: flagged, but no other "
               f"label is suggested). Rows not flagged are not counted, whatever their suggestion. A given "
               f"label links to its flagged samples.")
    note = "".join(f"<p class=\"note\">{esc(n)}</p>" for n in notes)
    return (f"{head}{note}<figure><figcaption>{caption}</figcaption>"
            f"{heat_map(classes, matrix, row_links=links)}</figure></section>")


def _gallery_section(flagged: pl.DataFrame, groups: list[Group], ctx: PageContext) -> str:
    head = "<section id=\"gallery\"><h2>Flagged samples</h2>"
    if flagged.height == 0:
        return head + "<p class=\"note\">No sample was flagged.</p></section>"
    reasons = [g for g in groups if g.kind == "reason"]
    classes = [g for g in groups if g.kind == "class"]
    n_usable = flagged.filter(pl.col("_usable")).height
    cap = (f"Thumbnails for the first {fmt(ctx.thumb_limit)} flagged samples (each reason's worst first); "
           f"the other {fmt(n_usable - ctx.thumb_limit)} are listed without one." if ctx.capped
           else "Every flagged sample with an image has a thumbnail.")
    note = (f"{fmt(flagged.height)} samples are flagged. Every one is listed on the pages below, by reason "
            f"and by given label, {fmt(ctx.page_size)} a page, the most telling first. {cap}")
    reason_rows = "".join(
        f"<tr><td><a href=\"{ctx.href('reason', g.key)}\"><code>{esc(g.key)}</code></a></td>"
        f"<td class=\"num\">{fmt(g.count)}</td><td>{esc(reason_meaning(g.key))}</td>"
        f"<td>{pager(g.pages(ctx.page_size), 0, lambda q, g=g: ctx.href('reason', g.key, q))}</td></tr>"
        for g in reasons)
    by_reason = (f"<h3>By reason</h3><table id=\"reason-index\" class=\"index\"><thead><tr><th>reason</th>"
                 f"<th class=\"num\">samples</th><th>meaning</th><th>pages</th></tr></thead>"
                 f"<tbody>{reason_rows}</tbody></table>")
    more = (f"<p class=\"note\">The {INDEX_CLASSES} most flagged of {fmt(len(classes))} classes; "
            f"<a href=\"{GALLERY}/classes/1.html\">all classes</a>.</p>" if len(classes) > INDEX_CLASSES
            else f"<p class=\"note\"><a href=\"{GALLERY}/classes/1.html\">the class index on its own page</a></p>")
    by_class = (f"<h3>By given label</h3>{more}<div class=\"scroll\">"
                + class_index(classes[:INDEX_CLASSES], class_table(flagged, reasons), reasons, ctx, prefix="")
                + "</div>")
    previews = []
    for g in reasons:
        rows = group_rows(flagged, g).head(PREVIEW_CARDS)
        cards = "".join(card(row, ctx, prefix="") for row in rows.iter_rows(named=True))
        previews.append(
            f"<div class=\"preview\" data-reason=\"{esc(g.key)}\"><h3>{reason_heading(g)} "
            f"<span class=\"muted\">{plural(g.count, 'sample')}"
            f"{f'; the first {PREVIEW_CARDS} shown' if g.count > PREVIEW_CARDS else ''}</span> "
            f"<a href=\"{ctx.href('reason', g.key)}\">all {fmt(g.count)} →</a></h3>"
            f"<div class=\"gallery\">{cards}</div></div>")
    return (f"{head}<p class=\"note\">{esc(note)} A neighbour's label in green agrees with the suggestion.</p>"
            f"{by_reason}{by_class}{''.join(previews)}</section>")


def _duplicates_section(manifest: pl.DataFrame, groups: list[tuple[str, list[str]]], ctx: PageContext) -> str:
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
        return (f"<figure class=\"dup {role}\">{thumb_html(sid, ctx, label=r[S.LABEL])}"
                f"<figcaption><b>{esc(r[S.LABEL])}</b> · {esc(role)} · {esc(r[S.DECISION])}"
                f"<br><span class=\"path\" title=\"{esc(r[S.PATH])}\">{esc(r[S.PATH])}</span>"
                f"{'<br><small>' + esc(tags) + '</small>' if tags else ''}</figcaption></figure>")

    rows = "".join(
        f"<div class=\"dup-group\">{member(keeper, 'kept')}{''.join(member(m, 'copy') for m in members)}</div>"
        for keeper, members in groups)
    every = ", ".join(f"<a href=\"{ctx.href('reason', code)}\"><code>{code}</code></a>"
                      for code in ("exact_duplicate", "near_duplicate") if ctx.href("reason", code))
    return (f"<section id=\"duplicates\"><h2>Duplicate groups</h2><p class=\"note\">{len(groups)} of "
            f"{fmt(n_groups)} groups, largest first; each row is the kept sample and its copies. Every copy "
            f"is listed under {every or 'its reason'}.</p>{rows}</section>")


def _unusable_section(manifest: pl.DataFrame, ctx: PageContext) -> str:
    bad = manifest.filter(pl.col(S.REASONS).list.eval(pl.element().is_in(list(S.UNUSABLE_REASONS))).list.any())
    if bad.height == 0:
        return ""
    rows = "".join(f"<tr data-sample-id=\"{esc(sid)}\"><td class=\"path\">{esc(p)}</td><td>{esc(lab)}</td>"
                   f"<td>{esc(', '.join(r))}</td></tr>"
                   for sid, p, lab, r in bad.select(S.SAMPLE_ID, S.PATH, S.LABEL, S.REASONS)
                   .head(UNUSABLE_ROWS).iter_rows())
    codes = sorted(set(bad[S.REASONS].explode().to_list()) & S.UNUSABLE_REASONS)
    every = ", ".join(f"<a href=\"{ctx.href('reason', c)}\"><code>{esc(c)}</code></a>" for c in codes)
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
        caption = esc(name) + (f" (= {', '.join(esc(a) for a in aliases)})" if aliases else "")
        if line is not None:
            caption += f"; dashed line: the label-issue cut-off {line:.4g}"
        charts.append(f"<figure class=\"hist\" data-score=\"{esc(name)}\"><figcaption>{caption}</figcaption>"
                      f"{histogram(values, issue, cutoff=line, chart_id='hist-' + name)}</figure>")
    return (f"<section id=\"scores\"><h2>Score distributions</h2><p class=\"note\">Red: samples flagged as "
            f"a label issue; grey: the rest. Low label quality means the neighbours disagree with the "
            f"given label.</p><div class=\"charts2\">{''.join(charts)}</div></section>")


def _details_section(summary: dict) -> str:
    if not summary:
        return ""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{_value_html(v)}</td></tr>" for k, v in summary.items())
    return f"<section id=\"details\"><h2>Run details (summary.json)</h2><table class=\"kv\">{rows}</table></section>"


def _value_html(value: Any, depth: int = 0) -> str:
    if isinstance(value, dict) and not value:
        return "–"
    if isinstance(value, dict) and all(not isinstance(v, dict | list) for v in value.values()):
        return "<div class=\"flow\">" + " ".join(
            f"<span><span class=\"muted\">{esc(k)}</span> {_value_html(v, depth + 1)}</span>"
            for k, v in value.items()) + "</div>"
    if isinstance(value, dict) and depth < 2:
        return "<table class=\"kv inner\">" + "".join(
            f"<tr><th>{esc(k)}</th><td>{_value_html(v, depth + 1)}</td></tr>" for k, v in value.items()) + "</table>"
    if isinstance(value, dict | list):
        return f"<code>{esc(json.dumps(value, default=str))}</code>"
    if value is None:
        return "–"
    return esc(fmt(value))
