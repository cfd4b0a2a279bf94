"""Versioned outputs: OUT/runs/<run id>/, an atomically switched `latest`, and run diffs.

    OUT/runs/<run id>/manifest.parquet ...   one folder per run; `work/` holds its stages
    OUT/runs/<run id>/COMPLETE               written last: the run finished
    OUT/latest -> runs/<run id>              the newest complete run (a symlink, replaced atomically)
    OUT/manifest.parquet -> latest/manifest.parquet   (and clean, summary, diff, report, thumbs)

A reader that opens OUT/manifest.parquet always gets a complete version: the pointer is
switched only after every file of the new run is in place. A run that dies leaves a folder
without COMPLETE; the next run resumes in it, reusing the stages that finished.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import polars as pl

from winnow import atomic
from winnow.catalogs import schemas as S
from winnow.pipeline.layout import LATEST, PUBLISHED, RUNS, RunLayout

__all__ = ["PUBLISHED", "DIFF_CHANGES", "diff_manifests", "latest_run", "moved_thresholds", "new_run_id",
           "prune_old_work", "publish_run", "run_to_resume", "runs_dir", "start_run"]


def runs_dir(out: Path) -> Path:
    return out / RUNS


def new_run_id() -> str:
    """Sortable by time, unique across processes."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def latest_run(out: Path) -> Path | None:
    """The newest complete run, or None."""
    link = out / LATEST
    if link.is_symlink() or link.exists():
        target = link.resolve()
        if RunLayout(target).complete.exists():
            return target
    return None


def run_to_resume(out: Path) -> Path | None:
    """The newest run folder that did not complete and is newer than `latest`, if any."""
    runs = runs_dir(out)
    if not runs.is_dir():
        return None
    latest = latest_run(out)
    candidates = sorted(p for p in runs.iterdir() if p.is_dir() and not RunLayout(p).complete.exists())
    if not candidates:
        return None
    newest = candidates[-1]
    if latest is not None and newest.name < latest.name:
        return None
    return newest


def start_run(out: Path) -> Path:
    """The folder this run writes into: a resumed incomplete run, or a new one."""
    resumed = run_to_resume(out)
    if resumed is not None:
        # Temp files and folders of the killed run were never renamed into place; nothing reads them.
        for folder in (resumed, RunLayout(resumed).work.folder):
            atomic.remove_temps(folder)
        return resumed
    run = runs_dir(out) / new_run_id()
    RunLayout(run).work.folder.mkdir(parents=True, exist_ok=True)
    return run


def publish_run(out: Path, run: Path) -> None:
    """Mark `run` complete and point OUT/latest (and the top-level files) at it, atomically."""
    atomic.write_text(RunLayout(run).complete, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
    atomic.replace_symlink(out / LATEST, os.path.relpath(run, out))
    for name in PUBLISHED:
        link = out / name
        if not link.is_symlink():
            if link.exists():  # an output from before versioning: replace it with the pointer
                link.unlink()
            atomic.replace_symlink(link, os.path.join(LATEST, name))


def prune_old_work(out: Path, *, keep: int = 2) -> list[Path]:
    """Delete the `work/` folders (embeddings copy, graph) of all but the newest `keep`
    complete runs; their manifests, summaries and diffs stay. Returns what was removed."""
    import shutil

    runs = runs_dir(out)
    complete = sorted(p for p in runs.iterdir() if RunLayout(p).complete.exists()) if runs.is_dir() else []
    removed = []
    for run in complete[:-keep] if keep > 0 else complete:
        work = RunLayout(run).work.folder
        if work.is_dir():
            shutil.rmtree(work)
            removed.append(work)
    return removed


DIFF_CHANGES = ("added", "removed", "decision_changed", "newly_flagged", "no_longer_flagged")
# Data-driven cut-offs in the summary: when one moves, old rows can change without their data changing.
THRESHOLD_FACTS = ("estimated_noise_rate", "label_issue_cutoff", "outlier_threshold", "near_duplicate_min_similarity")


def diff_manifests(old: pl.DataFrame | None, new: pl.DataFrame) -> pl.DataFrame:
    """What changed between two runs' manifests: one row per sample with any change.

    `changes` lists every change of the row, in DIFF_CHANGES order: added, removed,
    decision_changed (keep / drop / relabel differs), newly_flagged (no reasons before, some
    now), no_longer_flagged (the reverse). One row can have several (a sample newly flagged
    and now dropped is both), so counting rows per change never hides one behind another.
    """
    cols = [S.SAMPLE_ID, S.PATH, S.DECISION, S.REASONS]
    schema = {S.SAMPLE_ID: pl.String, S.PATH: pl.String, S.CHANGES: pl.List(pl.String),
              S.OLD_DECISION: pl.String, S.NEW_DECISION: pl.String,
              S.OLD_REASONS: pl.List(pl.String), S.NEW_REASONS: pl.List(pl.String)}
    if old is None:
        return pl.DataFrame(schema=schema)
    joined = old.select(cols).join(new.select(cols), on=S.SAMPLE_ID, how="full", suffix="_new", coalesce=True)
    was, now = pl.col(S.DECISION), pl.col(f"{S.DECISION}_new")
    old_flag = pl.col(S.REASONS).list.len().fill_null(0) > 0
    new_flag = pl.col(f"{S.REASONS}_new").list.len().fill_null(0) > 0
    both = was.is_not_null() & now.is_not_null()
    flags = {
        "added": was.is_null(),
        "removed": now.is_null(),
        "decision_changed": both & (was != now),
        "newly_flagged": both & ~old_flag & new_flag,
        "no_longer_flagged": both & old_flag & ~new_flag,
    }
    changes = pl.concat_list([pl.when(flags[c]).then(pl.lit(c)).otherwise(None) for c in DIFF_CHANGES]).list.drop_nulls()
    return (
        joined.with_columns(changes.alias(S.CHANGES))
        .filter(pl.col(S.CHANGES).list.len() > 0)
        .select(
            S.SAMPLE_ID,
            pl.coalesce(f"{S.PATH}_new", S.PATH).alias(S.PATH),
            S.CHANGES,
            pl.col(S.DECISION).alias(S.OLD_DECISION),
            pl.col(f"{S.DECISION}_new").alias(S.NEW_DECISION),
            pl.col(S.REASONS).alias(S.OLD_REASONS),
            pl.col(f"{S.REASONS}_new").alias(S.NEW_REASONS),
        )
        .sort(S.SAMPLE_ID)
        .cast(schema)
    )


def moved_thresholds(before: dict, after: dict) -> dict[str, dict[str, float | None]]:
    """The data-driven cut-offs of two runs' summaries, old and new, by name."""
    return {name: {"old": before.get(name), "new": after.get(name)} for name in THRESHOLD_FACTS}
