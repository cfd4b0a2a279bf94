"""File helpers for a run: atomic writes (checked against their schema), the kNN graph on disk, the output-folder lock."""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from winnow.catalogs.schemas import check_table
from winnow.curation import KnnGraph


class RunLocked(RuntimeError):
    """Another Winnow run holds the output folder."""


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def _replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_parquet(table: pa.Table | pl.DataFrame, path: str | os.PathLike, *, schema: pa.Schema | None = None,
                  extra: Callable[[str], bool] | None = None) -> Path:
    """Write a table atomically: readers see the old file or the new one, never half of one.

    `schema`: the table's schema (catalogs.schemas), checked before anything is written
    (`extra`: which further columns it may have; see schemas.check_table).
    """
    path = Path(path)
    if schema is not None:
        check_table(table, schema, what=path.name, extra=extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    if isinstance(table, pl.DataFrame):
        table.write_parquet(tmp)
    else:
        pq.write_table(table, tmp)
    _replace(tmp, path)
    return path


def write_json(data: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n", encoding="utf-8")
    _replace(tmp, path)
    return path


def save_knn_graph(graph: KnnGraph, path: str | os.PathLike) -> Path:
    """The graph as one .npz of two arrays (no pickle)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp.npz")
    np.savez(tmp, indices=graph.indices, similarities=graph.similarities)
    _replace(tmp, path)
    return path


def load_knn_graph(path: str | os.PathLike) -> KnnGraph:
    with np.load(path, allow_pickle=False) as z:
        return KnnGraph(indices=z["indices"], similarities=z["similarities"])


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


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
