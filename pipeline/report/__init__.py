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
report.html is replaced atomically (winnow.atomic).

The package: data.py chooses what to show (rows, listings and their order, neighbours,
duplicate groups), sections.py how each reason code is presented (a registry, with a generic
section for any code it does not know), thumbs.py makes the thumbnails, charts.py draws the
SVG charts, pages.py holds the cards, pagers and gallery pages, overview.py report.html,
style.css the style.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl

from winnow import atomic
from winnow.catalogs import schemas as S
from winnow.pipeline.layout import LATEST, RUNS, RunLayout
from winnow.pipeline.report.data import (
    DUPLICATE_GROUPS,
    class_groups,
    duplicate_groups,
    flagged_rows,
    keeper_paths,
    read_locations,
    read_neighbours,
    reason_groups,
    thumbnail_order,
)
from winnow.pipeline.report.overview import labels_judged, render_overview
from winnow.pipeline.report.pages import GALLERY, REPORT, PageContext, write_gallery
from winnow.pipeline.report.thumbs import THUMBS, is_text_reader, read_snippets, write_thumbnails

__all__ = ["RunNotFound", "resolve_run", "write_report"]

PAGE_SIZE = 100  # flagged samples per gallery page
THUMB_LIMIT = 5_000  # flagged samples that get a thumbnail (each reason's worst first)
NEIGHBOUR_LIMIT = 500  # of those, the ones shown with their nearest neighbours
NEIGHBOURS = 8  # nearest-neighbour thumbnails per gallery card


class RunNotFound(FileNotFoundError):
    """The folder is neither a run folder nor an output folder with a `latest` run."""


def resolve_run(run_or_out_dir: str | os.PathLike) -> Path:
    """A run folder as given, or OUT/latest resolved when given an output folder."""
    given = Path(run_or_out_dir).expanduser()
    run = given
    if (given / LATEST).exists():
        run = (given / LATEST).resolve()
    if not RunLayout(run).manifest.is_file():
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
    manifest = pl.read_parquet(RunLayout(run).manifest)
    summary_path = RunLayout(run).summary
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    flagged = flagged_rows(manifest)
    groups = reason_groups(flagged) + class_groups(flagged)
    with_thumb = thumbnail_order(flagged, groups)[:thumb_limit]
    neighbour_ids = read_neighbours(run, with_thumb[:neighbour_limit], neighbours)
    # The package-level name, so that setting winnow.pipeline.report.DUPLICATE_GROUPS takes effect.
    dup_groups = duplicate_groups(manifest, limit=DUPLICATE_GROUPS)
    wanted = set(with_thumb)
    for ids in neighbour_ids.values():
        wanted.update(sid for sid, _ in ids)
    for keeper, members in dup_groups:
        wanted.add(keeper)
        wanted.update(members)
    shown = manifest.filter(pl.col(S.SAMPLE_ID).is_in(list(wanted))).select(S.SAMPLE_ID, S.LABEL)

    reader, locations = read_locations(run, wanted)
    thumbs = write_thumbnails(run, {sid: locations.get(sid) for sid in wanted}, reader)
    snippets = read_snippets({sid: locations.get(sid) for sid in wanted}, reader) if is_text_reader(reader) else {}

    ctx = PageContext(
        catalog=str(summary.get("catalog", "run")), thumbs=thumbs, snippets=snippets, labels=dict(shown.iter_rows()),
        neighbour_ids=neighbour_ids, score_cols=[c for c in manifest.columns if c.startswith("score_")],
        keeper_paths=keeper_paths(manifest, flagged), thumb_limit=thumb_limit,
        capped=len(with_thumb) < flagged.filter(pl.col("_usable")).height, page_size=page_size,
        folders={(g.kind, g.key): g.folder for g in groups},
        sections={g.key: g.section for g in groups if g.kind == "reason"},
        labels_judged=labels_judged(summary, manifest),
    )
    write_gallery(run, flagged, groups, ctx)
    out = atomic.write_text(run / REPORT, render_overview(summary, manifest, flagged, groups, dup_groups, ctx,
                                                          map_html=_map_html(run, manifest)))
    _link_from_out(run)
    return out


def _map_html(run: Path, manifest: pl.DataFrame) -> str:
    """The embedding map's static figure, when the run has RUN/map.parquet."""
    from winnow.pipeline.review.projection import map_svg, read_map

    path = RunLayout(run).map
    if not path.is_file():
        return ""
    points, meta = read_map(path)
    labels = manifest.select(S.SAMPLE_ID, S.LABEL).filter(pl.col(S.SAMPLE_ID).is_in(points[S.SAMPLE_ID].implode()))
    classes = sorted(manifest[S.LABEL].unique().to_list())
    return map_svg(points, dict(labels.iter_rows()), classes, meta)


def _link_from_out(run: Path) -> None:
    """OUT/report.html is a link to latest/report.html, and a browser resolves the report's
    relative links against OUT/: point OUT/thumbs and OUT/gallery at latest/ the same way
    (what pipeline.versions.publish_run does for the other published files). Done here, before
    the run is published, so the first run's report works from OUT/ as soon as it is."""
    out = run.parent.parent
    if run.parent.name != RUNS or not (out / ".winnow.lock").exists():
        return  # not a versioned output folder
    for name in (THUMBS, GALLERY):
        link = out / name
        if link.is_symlink() or link.exists():
            continue
        atomic.replace_symlink(link, os.path.join(LATEST, name))
