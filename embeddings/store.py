"""The on-disk embedding store: vectors keyed by (content hash, encoder).

Layout, one folder per encoder under the store root::

    <root>/<encoder slug>/meta.json             encoder_id, dim, dtype (of the blocks it writes)
    <root>/<encoder slug>/block-<id>.npy        (n, dim) float16, memory-mappable (float32 in
                                                stores made before issue 18; both read the same)
    <root>/<encoder slug>/block-<id>.parquet    content_hash, row  (the block's index),
                                                and the block's decode-time signals (one column each,
                                                embeddings/signals.py; absent in blocks written without them)

A block is written vector file first, index second, each to a temp name and renamed
(winnow.atomic), so a block is either fully committed (its index exists) or invisible; a run
killed mid-write leaves at most an orphan .npy that the next writer ignores. Block ids are
unique per writer, so two processes can append at once without clobbering each other.

Vectors are L2-normalised, so float16 keeps them to ~5e-4 and halves the store; a run's
matrix is float16 anyway (pipeline: embeddings.npy), rounded once either way, so a run's
decisions do not depend on the store's dtype. A store keeps the dtype its meta.json names
(a store without one is float32), so an old store is written as it always was; any block
reads as float32 or float16 (`write_matrix` converts).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from winnow import atomic
from winnow.embeddings.errors import StoreMismatch

_INDEX_COLUMNS = ("content_hash", "row")
STORE_DTYPE = "float16"
"""The dtype of a new store's blocks."""


class EmbeddingStore:
    def __init__(self, root: str | os.PathLike, *, encoder_id: str, dim: int) -> None:
        self.encoder_id = encoder_id
        self.dim = int(dim)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_id)
        self.dir = Path(root) / slug
        self.dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.dir / "meta.json"
        meta = {"encoder_id": encoder_id, "dim": self.dim, "dtype": STORE_DTYPE}
        if meta_path.exists():
            found = json.loads(meta_path.read_text())
            if found.get("encoder_id") != encoder_id or found.get("dim") != self.dim:
                raise StoreMismatch(f"store {str(self.dir)!r} holds {found!r}, not {meta!r}")
            meta["dtype"] = found.get("dtype", "float32")
            if meta["dtype"] not in ("float16", "float32"):
                raise StoreMismatch(f"store {str(self.dir)!r} holds dtype {meta['dtype']!r}, not float16 or float32")
        else:
            atomic.write_json(meta, meta_path, indent=None)
        self.dtype = np.dtype(meta["dtype"])  # of the blocks this store writes
        self._index: dict[str, tuple[str, int]] | None = None

    # --- reading ------------------------------------------------------------------------
    def index(self) -> dict[str, tuple[str, int]]:
        """content_hash -> (block id, row) for every committed block."""
        if self._index is None:
            found: dict[str, tuple[str, int]] = {}
            for idx_path in sorted(self.dir.glob("block-*.parquet")):
                block = idx_path.stem
                if not (self.dir / f"{block}.npy").exists():
                    continue
                t = pq.read_table(idx_path, columns=list(_INDEX_COLUMNS))
                for h, r in zip(t.column("content_hash").to_pylist(), t.column("row").to_pylist(), strict=True):
                    found.setdefault(h, (block, r))
            self._index = found
        return self._index

    def __contains__(self, content_hash: str) -> bool:
        return content_hash in self.index()

    def __len__(self) -> int:
        return len(self.index())

    def missing(self, hashes: Sequence[str]) -> list[str]:
        idx = self.index()
        return [h for h in dict.fromkeys(hashes) if h not in idx]

    def write_matrix(self, hashes: Sequence[str], out_path: str | os.PathLike, *, dtype=np.float32) -> Path:
        """Write the vectors of `hashes`, in that order, to an (n, dim) .npy file (atomic).

        Reads each block memory-mapped and copies only the rows needed. dtype: float32, or
        float16 (a run's matrix: half the bytes, read in float32 blocks by curation).
        """
        idx = self.index()
        absent = [h for h in hashes if h not in idx]
        if absent:
            raise KeyError(f"{len(absent)} hashes are not in the store, e.g. {absent[0]!r}")
        out_path = Path(out_path)
        by_block: dict[str, list[tuple[int, int]]] = {}
        for pos, h in enumerate(hashes):
            block, row = idx[h]
            by_block.setdefault(block, []).append((pos, row))
        # Not fsynced (as before winnow.atomic): a run's working copy, rebuilt from the store.
        with atomic.writing(out_path, suffix=".tmp.npy", fsync=False) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=(len(hashes), self.dim))
            for block, pairs in by_block.items():
                vecs = np.load(self.dir / f"{block}.npy", mmap_mode="r")
                pos, rows = np.array(pairs, dtype=np.int64).T
                order = np.argsort(rows)  # sequential reads of the block
                out[pos[order]] = vecs[rows[order]]
            out.flush()
            del out
        return out_path

    def signals(self, hashes: Sequence[str], columns: dict[str, str], *,
                by_column: bool = False) -> tuple[np.ndarray | dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The stored decode-time signals of `hashes`, in that order: (present (n,) bool, column -> (n,)).

        columns: name -> "int64" | "float64" (`signals.signal_columns()`). A hash whose block was
        written without a column has present False there: int64 0, float64 NaN. by_column: present
        is column -> (n,) bool instead (a block written before a later signal keeps the others).
        """
        idx = self.index()
        absent = [h for h in hashes if h not in idx]
        if absent:
            raise KeyError(f"{len(absent)} hashes are not in the store, e.g. {absent[0]!r}")
        n = len(hashes)
        have_column = {c: np.ones(n, dtype=bool) for c in columns}
        out = {c: (np.zeros(n, dtype=np.int64) if d == "int64" else np.full(n, np.nan)) for c, d in columns.items()}
        by_block: dict[str, list[tuple[int, int]]] = {}
        for pos, h in enumerate(hashes):
            block, row = idx[h]
            by_block.setdefault(block, []).append((pos, row))
        for block, pairs in by_block.items():
            pos, rows = np.array(pairs, dtype=np.int64).T
            path = self.dir / f"{block}.parquet"
            have = [c for c in columns if c in pq.read_schema(path).names]
            for c in columns:
                if c not in have:
                    have_column[c][pos] = False
            if not have:
                continue
            t = pq.read_table(path, columns=have)
            for c in have:
                out[c][pos] = t.column(c).to_numpy()[rows]
        if by_column:
            return have_column, out
        present = np.ones(n, dtype=bool)
        for have_it in have_column.values():
            present &= have_it
        return present, out

    # --- writing ------------------------------------------------------------------------
    def append(self, hashes: Sequence[str], vectors: np.ndarray, *, signals: dict[str, np.ndarray] | None = None) -> str:
        """Commit one block of vectors (and the samples' decode-time signals: column -> (n,)); returns its block id."""
        signals = dict(signals or {})
        for c, values in signals.items():
            if c in _INDEX_COLUMNS or len(values) != len(hashes):
                raise ValueError(f"signal column {c!r} has {len(values)} values for {len(hashes)} hashes")
        vectors = np.asarray(vectors)
        if vectors.shape != (len(hashes), self.dim):
            raise ValueError(f"vectors have shape {vectors.shape}, expected ({len(hashes)}, {self.dim})")
        # float32 first: float64 input rounds to float16 through float32, as the run's matrix always did
        vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32), dtype=self.dtype)
        block = f"block-{uuid.uuid4().hex[:16]}"
        with atomic.writing(self.dir / f"{block}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, vectors)
        table = pa.table({"content_hash": list(hashes), "row": pa.array(range(len(hashes)), pa.int64()),
                          **{c: np.asarray(v) for c, v in signals.items()}})
        atomic.write_parquet(table, self.dir / f"{block}.parquet")
        if self._index is not None:
            for r, h in enumerate(hashes):
                self._index.setdefault(h, (block, r))
        return block
