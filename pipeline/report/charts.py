"""The report's charts: inline SVG strings, no scripts, readable offline.

    bar_chart   one or more series of bars over categories (class counts, noise rates)
    heat_map    a square matrix of counts (given vs suggested label)
    histogram   a score's distribution, flagged samples stacked in red, with an optional cut-off
"""

from __future__ import annotations

import math

import numpy as np

from winnow.pipeline.report.markup import esc, fmt

HIST_BINS = 40


def bar_chart(categories: list[str], series: list[tuple[str, list[float], str]], *, chart_id: str,
              y_label: str, percent: bool = False, width: int = 620, height: int = 300) -> str:
    """series: (name, one value per category, colour); the y axis starts at 0."""
    left, right, top, bottom = 56, 12, 28, 58
    pw, ph = width - left - right, height - top - bottom
    vmax = max([max(v, default=0) for _, v, _ in series] + [0])
    ymax = _nice_ceiling(vmax if vmax > 0 else 1)
    out = [f"<svg id=\"{esc(chart_id)}\" class=\"chart bar-chart\" viewBox=\"0 0 {width} {height}\" "
           f"width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{esc(y_label)}\">"]
    for i in range(5):
        y_val = ymax * i / 4
        y = top + ph - ph * i / 4
        tick = f"{100 * y_val:.3g}%" if percent else fmt(round(y_val, 2) if y_val % 1 else int(y_val))
        out.append(f"<line class=\"grid\" x1=\"{left}\" x2=\"{left + pw}\" y1=\"{y:.1f}\" y2=\"{y:.1f}\"/>"
                   f"<text class=\"tick\" x=\"{left - 6}\" y=\"{y + 4:.1f}\" text-anchor=\"end\">{esc(tick)}</text>")
    n = max(len(categories), 1)
    slot = pw / n
    bw = slot * 0.8 / max(len(series), 1)
    rotate = n > 12 or max((len(c) for c in categories), default=0) * 7 > slot
    for i, cat in enumerate(categories):
        x0 = left + i * slot + slot * 0.1
        for j, (name, values, color) in enumerate(series):
            v = values[i]
            h = ph * v / ymax
            shown = f"{100 * v:.1f}%" if percent else fmt(v)
            out.append(f"<rect class=\"bar\" data-series=\"{esc(name)}\" x=\"{x0 + j * bw:.1f}\" "
                       f"y=\"{top + ph - h:.1f}\" width=\"{max(bw - 1, 1):.1f}\" height=\"{h:.1f}\" fill=\"{color}\">"
                       f"<title>{esc(cat)} · {esc(name)}: {esc(shown)}</title></rect>")
        cx = left + (i + 0.5) * slot
        label = cat if len(cat) <= 14 else cat[:13] + "…"
        if rotate:
            out.append(f"<text class=\"tick\" transform=\"translate({cx:.1f},{top + ph + 10}) rotate(-45)\" "
                       f"text-anchor=\"end\">{esc(label)}<title>{esc(cat)}</title></text>")
        else:
            out.append(f"<text class=\"tick\" x=\"{cx:.1f}\" y=\"{top + ph + 16}\" text-anchor=\"middle\">"
                       f"{esc(label)}<title>{esc(cat)}</title></text>")
    out.append(f"<line class=\"axis\" x1=\"{left}\" x2=\"{left + pw}\" y1=\"{top + ph}\" y2=\"{top + ph}\"/>")
    lx = left
    for name, _, color in series:
        out.append(f"<rect x=\"{lx}\" y=\"8\" width=\"12\" height=\"12\" fill=\"{color}\"/>"
                   f"<text class=\"legend\" x=\"{lx + 16}\" y=\"18\">{esc(name)}</text>")
        lx += 24 + 7 * len(name)
    out.append(f"<text class=\"tick\" x=\"{left + pw}\" y=\"18\" text-anchor=\"end\">{esc(y_label)}</text></svg>")
    return "".join(out)


def heat_map(classes: list[str], matrix: np.ndarray, *, row_links: dict[str, str | None] | None = None) -> str:
    """matrix: (K, K) counts, rows the given class, columns the suggested one; a row label links
    to row_links[class] when it has one."""
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
                f"text-anchor=\"end\">{esc(short)}<title>{esc(c)}</title></text>")
        link = (row_links or {}).get(c) if matrix[i].sum() else None
        out.append(f"<a class=\"row-link\" href=\"{esc(link)}\">{tick}</a>" if link else tick)
        out.append(f"<text class=\"tick\" transform=\"translate({pad_l + i * cell + cell / 2 + 4:.1f},{pad_t - 6}) "
                   f"rotate(-60)\">{esc(short)}<title>{esc(c)}</title></text>")
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
                       f"height=\"{cell}\" fill=\"{fill}\"><title>given {esc(classes[i])}, suggested "
                       f"{esc(classes[j])}: {v}</title></rect>")
            if v and cell >= 22:
                out.append(f"<text class=\"cell-v{' dark' if dark else ''}\" x=\"{pad_l + j * cell + cell / 2:.1f}\" "
                           f"y=\"{pad_t + i * cell + cell / 2 + 4:.1f}\" text-anchor=\"middle\">{v}</text>")
    out.append(f"<rect x=\"{pad_l}\" y=\"{pad_t}\" width=\"{n * cell}\" height=\"{n * cell}\" fill=\"none\" "
               f"stroke=\"#cbd5e1\"/></svg>")
    return "".join(out)


def histogram(values: np.ndarray, flagged: np.ndarray, *, cutoff: float | None, chart_id: str,
              width: int = 620, height: int = 240) -> str:
    """values: (N,) float, NaN skipped; flagged: (N,) bool, stacked in red."""
    ok = np.isfinite(values)
    v, f = values[ok], flagged[ok]
    left, right, top, bottom = 56, 14, 24, 36
    pw, ph = width - left - right, height - top - bottom
    head = (f"<svg id=\"{esc(chart_id)}\" class=\"chart histogram\" viewBox=\"0 0 {width} {height}\" "
            f"width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{esc(chart_id)}\">")
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
                   f"{fmt(int(ymax * i / 4))}</text>")
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

