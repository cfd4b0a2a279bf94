"""File helpers for a run: atomic writes (checked against their schema), the kNN graph on disk, the output-folder lock."""

from __future__ import annotations

import fcntl
import os
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


class RunLocked(RuntimeError):
    """Another Winnow run holds the output folder."""


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
