"""What the report shows: the flagged rows, their listings (by reason, by class) in page
order, the thumbnail order under the cap, nearest neighbours and duplicate groups.

Everything here reads the run's tables and returns rows or ids; nothing here writes HTML.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from winnow.catalogs import CatalogError, open_reader
from winnow.catalogs import schemas as S
from winnow.pipeline.files import load_knn_graph
from winnow.pipeline.layout import RunLayout
from winnow.pipeline.report.sections import ReasonSection, section_for
from winnow.reading import SampleReader

DUPLICATE_GROUPS = 30  # duplicate groups shown
GROUP_MEMBERS = 8  # copies shown per duplicate group
_SAFE_CODE = re.compile(r"[a-z0-9_]{1,40}")  # reason codes that may name a folder as they are


@dataclass(frozen=True)
class Group:
    """One listing of the gallery: the flagged samples with one reason, or of one given class."""

    kind: str  # "reason" or "class"
    key: str  # the reason code or the class name, as in the manifest (data: escape it)
    folder: str  # its folder under gallery/, never made from the data's text
    count: int  # samples listed
    section: ReasonSection | None = None  # how a reason is presented (sections.py); None for a class

    def pages(self, page_size: int) -> int:
        return max(1, -(-self.count // page_size))


def flagged_rows(manifest: pl.DataFrame) -> pl.DataFrame:
    """Every sample with at least one reason, with `_usable` (it has an image) added."""
    unusable = list(S.UNUSABLE_REASONS)
    return manifest.filter(pl.col(S.REASONS).list.len() > 0).with_columns(
        (~pl.col(S.REASONS).list.eval(pl.element().is_in(unusable)).list.any()).alias("_usable"))


def reason_groups(flagged: pl.DataFrame) -> list[Group]:
    """One group per reason present: those listed first (label_issue), then the most frequent."""
    counts = flagged.select(pl.col(S.REASONS).explode()).drop_nulls()[S.REASONS].value_counts()
    groups = [Group("reason", code, "reason-" + (code if _SAFE_CODE.fullmatch(code) else "x" + digest(code)), n,
                    section_for(code, flagged.columns))
              for code, n in zip(counts[S.REASONS].to_list(), counts["count"].to_list(), strict=True)]
    return sorted(groups, key=lambda g: (not g.section.listed_first, -g.count, g.key))


def class_groups(flagged: pl.DataFrame) -> list[Group]:
    """One group per given label with flagged samples, the most flagged first."""
    counts = flagged[S.LABEL].value_counts()
    pairs = sorted(zip(counts[S.LABEL].to_list(), counts["count"].to_list(), strict=True),
                   key=lambda lc: (-lc[1], lc[0]))
    return [Group("class", label, "class-" + digest(label), n) for label, n in pairs]


def digest(text: str) -> str:
    """A fixed-length hex name for any text (gallery folders are never made from the data)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def group_rows(flagged: pl.DataFrame, group: Group) -> pl.DataFrame:
    """The group's samples in page order: the most telling first."""
    if group.kind == "class":
        return (flagged.filter(pl.col(S.LABEL) == group.key)
                .with_columns((~pl.col(S.REASONS).list.contains("label_issue")).alias("_not_issue"))
                .sort(["_not_issue", S.LABEL_QUALITY, S.PATH], nulls_last=True).drop("_not_issue"))
    section = group.section or section_for(group.key, flagged.columns)
    rows = flagged.filter(pl.col(S.REASONS).list.contains(group.key))
    if section.sort_by == S.PATH:
        return rows.sort(S.PATH)
    return rows.sort([section.sort_by, S.PATH], descending=[section.descending, False], nulls_last=True)


def thumbnail_order(flagged: pl.DataFrame, groups: list[Group]) -> list[str]:
    """Flagged samples with an image, in the order they get thumbnails: the first of every
    reason's listing, then the second of every reason's, and so on (a cap then keeps the
    worst of each reason, not only label issues)."""
    ranked = [
        group_rows(flagged, g).filter(pl.col("_usable")).select(
            S.SAMPLE_ID, pl.int_range(pl.len()).alias("_rank"), pl.lit(i).alias("_group"))
        for i, g in enumerate(groups) if g.kind == "reason"
    ]
    if not ranked:
        return []
    best = (pl.concat(ranked).group_by(S.SAMPLE_ID).agg(pl.col("_rank").min(), pl.col("_group").min())
            .sort(["_rank", "_group", S.SAMPLE_ID]))
    return best[S.SAMPLE_ID].to_list()


def keeper_paths(manifest: pl.DataFrame, flagged: pl.DataFrame) -> dict[str, str]:
    """Path of every sample that a flagged copy duplicates."""
    if S.DUPLICATE_OF not in flagged.columns:
        return {}
    keepers = flagged[S.DUPLICATE_OF].drop_nulls().unique()
    found = manifest.filter(pl.col(S.SAMPLE_ID).is_in(keepers.implode())).select(S.SAMPLE_ID, S.PATH)
    return dict(found.iter_rows())


def read_locations(run: Path, ids: set[str]) -> tuple[SampleReader | None, dict[str, str]]:
    """The samples' reader and sample id -> locator, for `ids` only (a run may hold millions of rows).

    Thumbnails are read through the run's source (catalogs/sources), so byte-sourced samples get
    them too; no reader (None) when the run's source is a plug-in this process does not have.
    """
    layout = RunLayout(run)
    source = layout.work.samples.table
    if not source.is_file():
        source = layout.outputs.clean  # old runs lose work/; clean.parquet knows the kept samples
    if not source.is_file() or not ids:
        return None, {}
    try:
        reader = open_reader(source)
    except CatalogError:
        return None, {}
    column = S.LOCATOR if S.LOCATOR in pl.read_parquet_schema(source) else S.ABS_PATH  # runs before locators
    found = (pl.scan_parquet(source).select(S.SAMPLE_ID, column)
             .filter(pl.col(S.SAMPLE_ID).is_in(list(ids))).collect())
    return reader, dict(zip(found[S.SAMPLE_ID].to_list(), found[column].to_list(), strict=True))


def read_neighbours(run: Path, ids: list[str], k: int) -> dict[str, list[tuple[str, float]]]:
    """sample id -> up to k (neighbour id, similarity), nearest first, from work/knn.npz.

    Empty when the run's work/ folder is gone (old runs) or k is 0.
    """
    work = RunLayout(run).work
    if k == 0 or not ids or not work.embed.table.is_file() or not work.knn.graph.is_file():
        return {}
    graph = load_knn_graph(work.knn.graph)
    embed = pl.read_parquet(work.embed.table, columns=[S.SAMPLE_ID, S.ROW]).filter(pl.col(S.ROW) >= 0)
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


def duplicate_groups(manifest: pl.DataFrame, *, limit: int = DUPLICATE_GROUPS,
                     members: int = GROUP_MEMBERS) -> list[tuple[str, list[str]]]:
    """(kept sample id, [copy ids]) for the `limit` largest duplicate groups, `members` copies each."""
    if S.DUPLICATE_OF not in manifest.columns:
        return []
    dups = manifest.filter(pl.col(S.DUPLICATE_OF).is_not_null())
    if dups.height == 0:
        return []
    grouped = (
        dups.group_by(S.DUPLICATE_OF)
        .agg(pl.col(S.SAMPLE_ID).sort().alias("members"), pl.len().alias("n"))
        .sort(["n", S.DUPLICATE_OF], descending=[True, False])
        .head(limit)
    )
    return [(k, m[:members]) for k, m in zip(grouped[S.DUPLICATE_OF].to_list(),
                                                  grouped["members"].to_list(), strict=True)]


def class_table(flagged: pl.DataFrame, reasons: list[Group]) -> dict[str, dict[str, int]]:
    """given label -> reason -> flagged samples."""
    counts = (flagged.select(S.LABEL, pl.col(S.REASONS)).explode(S.REASONS)
              .group_by([S.LABEL, S.REASONS]).agg(pl.len().alias("n")))
    table: dict[str, dict[str, int]] = {}
    for label, reason, n in counts.iter_rows():
        table.setdefault(label, {})[reason] = n
    return table

