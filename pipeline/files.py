"""File helpers for a run: atomic writes (checked against their schema), the kNN graph on disk, the output-folder lock."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from winnow import atomic
from winnow.catalogs.schemas import check_table
from winnow.curation import KnnGraph
from winnow.pipeline.config import ConfigError


class RunLocked(RuntimeError):
    """Another Winnow run holds the output folder."""


def check_output_folder(text: str | os.PathLike, option: str) -> Path:
    """The resolved path of a folder Winnow may create and write (not an existing file, under a
    writable folder), checked before any work starts; ConfigError naming `option` if not."""
    path = Path(text).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {str(path)!r} exists and is not a folder")
    _check_creatable(path, path, option)
    return path


def check_output_file(text: str | os.PathLike, option: str) -> Path:
    """The resolved path of a file Winnow may write (its missing folders created): not a folder,
    under a writable folder; ConfigError naming `option` if not."""
    path = Path(text).expanduser().resolve()
    if path.is_dir():
        raise ConfigError(f"{option} {str(path)!r} is a folder; give a file path")
    _check_creatable(path.parent, path, option)
    return path


def _check_creatable(folder: Path, shown: Path, option: str) -> None:
    """`folder` exists or can be made, and files can be written in it (for `option` `shown`)."""
    parent = folder
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {str(shown)!r} cannot be created: {str(parent)!r} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {str(shown)!r} cannot be written: no write permission on {str(parent)!r}")
    # Permission bits do not tell everything (root, a read-only mount, /proc): make a folder
    # there and remove it, so nothing is left behind when the command stops on another check.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".winnow-check-", dir=parent))
    except OSError as exc:
        raise ConfigError(f"{option} {str(shown)!r} cannot be written in {str(parent)!r}: "
                          f"{exc.strerror or exc}") from None


def write_parquet(table: pa.Table | pl.DataFrame, path: str | os.PathLike, *, schema: pa.Schema | None = None,
                  extra: Callable[[str], bool] | None = None) -> Path:
    """Write a table atomically (winnow.atomic), checked against its schema first.

    `schema`: the table's schema (catalogs.schemas), checked before anything is written
    (`extra`: which further columns it may have; see schemas.check_table).
    """
    path = Path(path)
    if schema is not None:
        check_table(table, schema, what=path.name, extra=extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_parquet(table, path)


def write_json(data: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_json(data, path)


def save_knn_graph(graph: KnnGraph, path: str | os.PathLike) -> Path:
    """The graph as one .npz of two arrays (no pickle)."""
    path = Path(path)
    with atomic.writing(path, suffix=".tmp.npz") as tmp:  # savez appends .npz to other names
        np.savez(tmp, indices=graph.indices, similarities=graph.similarities)
    return path


def load_knn_graph(path: str | os.PathLike) -> KnnGraph:
    with np.load(path, allow_pickle=False) as z:
        return KnnGraph(indices=z["indices"], similarities=z["similarities"])


@contextmanager
def locked(folder: Path, *, wait: bool = False):
    """Hold an exclusive lock on `folder` for one run; a second run fails (or waits) clearly."""
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / ".winnow.lock"
    fh = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise RunLocked(
                f"another winnow run (pid {holder}) is using {str(folder)!r}; wait for it to finish "
                f"or pass --wait to queue behind it"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()  # closing releases the lock, also when the process is killed
