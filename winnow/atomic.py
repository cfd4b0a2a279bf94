"""Atomic writes: a reader sees a file's (or a folder's) old content or its new content, never a part.

Every writer builds the new content under a temp sibling name (same folder, so rename(2)
stays on one filesystem), makes it durable, and renames it over the target:

    write_bytes, write_text, write_json, write_parquet   one file, fsynced, then renamed
    writing(path)                                        the same for any writer that takes a path
    replace_folder(path)                                 build a folder beside it, swap it in, drop the old
    replace_symlink(link, target)                        point a link elsewhere in one rename

A writer killed at any moment leaves the target as it was plus at most one hidden temp
sibling named `.<name>.<hex>.tmp...` (TEMP_GLOB matches them; remove_temps sweeps a folder).
A writer that raises removes its temp sibling itself.

This module is floor 0 of the namespace: it imports nothing heavier than the standard
library (pyarrow or polars only inside write_parquet, for the table it is given), so
catalogs, embeddings, curation and pipeline may all use it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

TEMP_GLOB = ".*.tmp*"
"""Matches every temp sibling this module names (and nothing a user names: they are hidden)."""


def temp_sibling(path: str | os.PathLike, *, suffix: str = ".tmp") -> Path:
    """A fresh hidden name beside `path`: `.<name>.<32 hex><suffix>`, unique across processes.

    `suffix` is for writers that insist on an extension (numpy's savez appends `.npz` to a
    name without one, so pass `suffix=".tmp.npz"`).
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}{suffix}")


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


@contextmanager
def writing(path: str | os.PathLike, *, suffix: str = ".tmp", fsync: bool = True) -> Iterator[Path]:
    """Yields a temp sibling of `path` for the caller to write; on a clean exit it is fsynced
    (unless `fsync=False`) and renamed over `path`; if the block raises, it is removed and
    `path` is left as it was.

        with atomic.writing(dest) as tmp:
            frame.write_csv(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path, suffix=suffix)
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (fsynced before the rename); returns the path."""
    path = Path(path)
    with writing(path, fsync=False) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically; returns the path."""
    return write_bytes(path, text.encode(encoding))


def write_json(data: Any, path: str | os.PathLike, *, indent: int | None = 2) -> Path:
    """Write `data` as JSON (one trailing newline) atomically; numpy scalars and paths are
    written as their values. Returns the path."""
    return write_text(path, json.dumps(data, indent=indent, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    # A numpy scalar (np.float32, np.int64, np.bool_), recognised without importing numpy.
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == () and hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_parquet(table: Any, path: str | os.PathLike) -> Path:
    """Write a pyarrow Table or a polars DataFrame as Parquet atomically; returns the path."""
    path = Path(path)
    write: Callable[[Path], object] | None = getattr(table, "write_parquet", None)  # a polars DataFrame
    if write is None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not isinstance(table, pa.Table):
            raise TypeError(f"write_parquet takes a pyarrow Table or a polars DataFrame, not "
                            f"{type(table).__name__}")
        write = lambda tmp: pq.write_table(table, tmp)  # noqa: E731
    with writing(path) as tmp:
        write(tmp)
    return path


@contextmanager
def replace_folder(path: str | os.PathLike, *, keep_existing: bool = False) -> Iterator[Path]:
    """Yields a new, empty temp sibling folder of `path` to fill; on a clean exit it takes
    `path`'s place and the old folder is removed; if the block raises, the temp folder is
    removed and `path` is left as it was.

    The swap is two renames (old folder aside, new one in): a reader between them finds no
    folder for an instant, never a half-written one. With `keep_existing=True` a folder
    that exists at `path` when the block ends wins (a concurrent builder finished first)
    and the new one is discarded.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        if keep_existing:
            if not (path.exists() or path.is_symlink()):
                try:
                    os.rename(tmp, path)
                except OSError:  # a concurrent builder renamed its folder in first: theirs stays
                    if not (path.exists() or path.is_symlink()):
                        raise
            return
        old = None
        if path.exists() or path.is_symlink():
            old = temp_sibling(path, suffix=".tmp.old")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            _remove(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _remove(old: Path) -> None:
    """Remove a swapped-out file or folder (symlinks inside are unlinked, never followed)."""
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
    if old.exists() or old.is_symlink():
        # The new content is in place; only the old copy is left behind, under a temp name.
        LOG.warning("could not remove the replaced %s; delete it by hand", str(old))


def replace_symlink(link: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Make `link` a symlink to `target` (stored as given: pass a relative target for a
    relocatable link), replacing whatever link or file is there in one rename. Returns the link."""
    link = Path(link)
    tmp = temp_sibling(link, suffix=".tmp.link")
    os.symlink(os.fspath(target), tmp)
    try:
        os.replace(tmp, link)
    finally:
        tmp.unlink(missing_ok=True)
    return link


def remove_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp siblings that killed writers left in `folder` (not below it); returns them.

    Only for a folder no live writer is using: a temp name is also what a writer in flight holds.
    """
    removed = []
    for tmp in sorted(Path(folder).glob(TEMP_GLOB)):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
