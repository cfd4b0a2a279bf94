"""The embedding map: a 2-D projection of (a sample of) a run's embeddings, computed once per run.

    RUN/map.parquet     sample_id, x, y, flagged; metadata: method, sampled, total

At most MAP_SAMPLE (5,000) points: every flagged sample first (up to the cap), then a seeded
random sample of the rest, so a 10-million-row run projects 5,000 points, never all of them.
openTSNE when it is installed (pip install openTSNE; the `map` extra), else PCA (numpy), which
is always there; the metadata says which ran. The review app draws it; the report draws a
static version (map_svg).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from winnow import atomic
from winnow.catalogs import schemas as S

LOG = logging.getLogger(__name__)

MAP_SAMPLE = 5_000  # most points projected (flagged first, then a seeded sample of the rest)
# t-SNE's iterations (openTSNE's defaults are 250 + 500): a map to look at, not a publication
# figure; the shorter schedule halves a run's map time (5,000 random 64-d points: 38 s on one core of
# the shared 2-core build machine, against 115 s with the defaults).
TSNE_EXAGGERATION_ITER, TSNE_ITER = 125, 250
TSNE_MIN = 30  # fewer points than this: PCA (t-SNE's perplexity needs neighbours)
MAP_SCHEMA = pa.schema([
    pa.field(S.SAMPLE_ID, pa.string(), nullable=False),
    pa.field("x", pa.float32(), nullable=False),
    pa.field("y", pa.float32(), nullable=False),
    pa.field("flagged", pa.bool_(), nullable=False),
])


def choose_map_rows(flagged: np.ndarray, *, limit: int = MAP_SAMPLE, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of at most `limit` of the M embedded rows: flagged ones first, then random."""
    flagged = np.asarray(flagged, dtype=bool)
    m = len(flagged)
    if m <= limit:
        return np.arange(m)
    rng = np.random.default_rng(seed)
    hot = np.flatnonzero(flagged)
    if len(hot) >= limit:
        return np.sort(rng.choice(hot, size=limit, replace=False))
    rest = np.flatnonzero(~flagged)
    return np.sort(np.concatenate([hot, rng.choice(rest, size=limit - len(hot), replace=False)]))


def project_2d(embeddings: np.ndarray, *, seed: int = 0, method: str = "auto") -> tuple[np.ndarray, str]:
    """(P, D) -> (P, 2) float32 in [0, 1] per axis, and the method that ran ("tsne" or "pca")."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"project_2d needs a non-empty (P, D) array, got shape {x.shape}")
    use = method
    if method == "auto":
        use = "pca"
        if x.shape[0] >= TSNE_MIN:
            try:
                import openTSNE  # noqa: F401

                use = "tsne"
            except ImportError:
                LOG.info("openTSNE is not installed (pip install openTSNE): the map is a PCA projection")
    if use == "tsne":
        from openTSNE import TSNE

        perplexity = float(min(30, max(5, (x.shape[0] - 1) // 3)))
        xy = np.asarray(TSNE(n_components=2, perplexity=perplexity, random_state=seed, n_jobs=1, verbose=False,
                             early_exaggeration_iter=TSNE_EXAGGERATION_ITER, n_iter=TSNE_ITER)
                        .fit(x.astype(np.float64)), dtype=np.float32)
    elif use == "pca":
        centred = x - x.mean(axis=0, keepdims=True)
        if x.shape[0] == 1:
            xy = np.zeros((1, 2), dtype=np.float32)
        else:
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            xy = centred @ vt[:2].T
            if xy.shape[1] < 2:
                xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    else:
        raise ValueError(f"map method must be 'auto', 'tsne' or 'pca', got {method!r}")
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return ((xy - lo) / span).astype(np.float32), use


def write_map(run: str | Path, *, limit: int = MAP_SAMPLE, seed: int = 0, method: str = "auto") -> Path | None:
    """RUN/map.parquet from the run's embeddings (work/) and manifest; None when work/ is gone.

    Skipped when the run already has its map (a resumed run)."""
    from winnow.pipeline.layout import RunLayout

    layout = RunLayout(Path(run))
    dest = layout.map
    if dest.is_file():
        return dest
    embed = layout.work.embed
    if not embed.matrix.is_file() or not embed.table.is_file() or not layout.manifest.is_file():
        return None
    t0 = time.perf_counter()
    table = pl.read_parquet(embed.table, columns=[S.SAMPLE_ID, S.ROW]).filter(pl.col(S.ROW) >= 0).sort(S.ROW)
    reasons = pl.read_parquet(layout.manifest, columns=[S.SAMPLE_ID, S.REASONS])
    table = table.join(reasons, on=S.SAMPLE_ID, how="left", maintain_order="left")
    flagged = (table[S.REASONS].list.len().fill_null(0) > 0).to_numpy()
    if table.height == 0:
        return None
    chosen = choose_map_rows(flagged, limit=limit, seed=seed)
    matrix = np.load(embed.matrix, mmap_mode="r")
    xy, used = project_2d(np.asarray(matrix[table[S.ROW].to_numpy()[chosen]]), seed=seed, method=method)
    out = pa.table({S.SAMPLE_ID: pa.array(table[S.SAMPLE_ID].gather(chosen).to_list(), pa.string()),
                    "x": pa.array(xy[:, 0], pa.float32()), "y": pa.array(xy[:, 1], pa.float32()),
                    "flagged": pa.array(flagged[chosen], pa.bool_())}, schema=MAP_SCHEMA)
    meta = {"method": used, "sampled": int(len(chosen)), "total": int(table.height), "limit": int(limit),
            "seconds": round(time.perf_counter() - t0, 3)}
    out = out.replace_schema_metadata({"map": json.dumps(meta)})
    with atomic.writing(dest) as tmp:
        pq.write_table(out, tmp)
    LOG.info("embedding map: %d of %d points (%s) in %.1f s", len(chosen), table.height, used, meta["seconds"])
    return dest


def read_map(path: str | Path) -> tuple[pl.DataFrame, dict]:
    """The map's points and its metadata (method, sampled, total)."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(b"map", b"{}"))
    return pl.from_arrow(table), meta


PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d")
"""Class colours (tab10 without its red, then tab20's light tones): black rings flagged points, red marks the selection in the app."""


def class_colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def map_svg(points: pl.DataFrame, labels: dict[str, str], classes: list[str], meta: dict, *,
            limit: int = 4_000, size: int = 520) -> str:
    """A static SVG scatter of the map (at most `limit` points, flagged first), coloured by label,
    flagged samples ringed in red. `labels`: sample id -> given label."""
    from html import escape

    if points.height > limit:
        order = points.with_row_index("_i").sort(["flagged", "_i"], descending=[True, False]).head(limit)
        points = order.drop("_i")
    colour_of = {c: class_colour(i) for i, c in enumerate(classes)}
    pad = 10
    dots = []
    for sid, x, y, flag in points.select(S.SAMPLE_ID, "x", "y", "flagged").iter_rows():
        cx, cy = pad + x * (size - 2 * pad), pad + (1 - y) * (size - 2 * pad)
        fill = colour_of.get(labels.get(sid, ""), "#999")
        stroke = ' stroke="#111" stroke-width="1.4"' if flag else ""
        r = 3.6 if flag else 2.4
        dots.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r}" fill="{fill}"{stroke}>'
                    f'<title>{escape(labels.get(sid, ""))}{" (flagged)" if flag else ""}</title></circle>')
    legend = "".join(f'<span class="lg"><i style="background:{colour_of[c]}"></i>{escape(c)}</span>'
                     for c in classes[:24])
    note = (f"{meta.get('method', '?')} projection of {meta.get('sampled', points.height):,} of "
            f"{meta.get('total', points.height):,} embedded samples; {points.height:,} drawn; black ring: flagged")
    return (f'<figure id="embedding-map"><svg viewBox="0 0 {size} {size}" width="{size}" height="{size}" '
            f'role="img" aria-label="embedding map">{"".join(dots)}</svg>'
            f'<figcaption>{escape(note)}<div class="legend">{legend}</div></figcaption></figure>')
