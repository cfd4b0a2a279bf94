"""Reading (N, D) embeddings in blocks, so nothing holds N x D float32 at once.

A run's embeddings are a float16 memory map (pipeline: embeddings.npy); every curation
step reads them through these helpers, which convert one block at a time to float32 and
hand the block back to the kernel afterwards. The last part matters: pages of a memory
map that were read stay in the process's resident set (ru_maxrss counts them) until they
are unmapped, so reading a 10 GB map once would "use" 10 GB. `release_pages` drops them
(madvise MADV_DONTNEED on the read-only mapping; the data stay in the page cache, a later
read faults them back in for free).

In-memory arrays (float32 or float16) go through the same functions unchanged, so the
algorithms have one code path: small data pay a copy per block, large data never more.
Like faiss `contrib/exhaustive_search.py` (`knn_ground_truth` over a block iterator).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import numpy as np

BLOCK_BYTES = 1 << 26
"""float32 bytes per block (64 MiB: 32k rows of 512): big enough for BLAS, small next to RAM."""


def block_rows(dim: int, *, block_bytes: int = BLOCK_BYTES) -> int:
    """Rows per block so that one float32 block of `dim` columns is about `block_bytes`."""
    return max(1, int(block_bytes) // (4 * max(1, int(dim))))


GATHER_ROWS = 512
"""Scattered rows read between two releases of a map's pages: each read of a scattered row
maps its neighbourhood too (the kernel's fault-around, 64 KiB), so 512 rows keep at most
~32 MiB of the map resident, however many rows are gathered."""


def take_rows(embeddings, rows) -> np.ndarray:
    """float32 copy of `embeddings[rows]` ((len(rows), D)); a memory map's pages are released
    every GATHER_ROWS rows."""
    rows = np.asarray(rows)
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    out = np.empty((len(rows), embeddings.shape[1]), dtype=np.float32)
    mapped = is_mapped(embeddings)
    if len(rows) > 1 and not (np.diff(rows) >= 0).all():
        # Sequential reads of the map; the result keeps the caller's order.
        order = np.argsort(rows, kind="stable")
    else:
        order = None
    step = GATHER_ROWS if mapped else max(1, len(rows))
    for a in range(0, len(rows), step):
        part = order[a : a + step] if order is not None else slice(a, a + step)
        out[part] = embeddings[rows[part]]
        if mapped:
            release_pages(embeddings)
    return out


def take_slice(embeddings, start: int, stop: int) -> np.ndarray:
    """float32 copy of `embeddings[start:stop]`; a memory map's pages are released after."""
    out = np.array(embeddings[start:stop], dtype=np.float32, order="C")
    release_pages(embeddings)
    return out


def iter_blocks(embeddings, *, rows_per_block: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(start, float32 block) over the rows of `embeddings` (N, D), in order."""
    n, d = embeddings.shape
    step = rows_per_block or block_rows(d)
    for start in range(0, n, step):
        yield start, take_slice(embeddings, start, start + step)


def matmul_blocks(embeddings, other: np.ndarray, *, rows_per_block: int | None = None) -> np.ndarray:
    """`embeddings @ other` ((N, D) @ (D, C) -> (N, C) float32), one block of rows at a time."""
    other = np.asarray(other, dtype=np.float32)
    out = np.empty((embeddings.shape[0], other.shape[1]), dtype=np.float32)
    for start, block in iter_blocks(embeddings, rows_per_block=rows_per_block):
        out[start : start + len(block)] = block @ other
    return out


def is_mapped(embeddings) -> bool:
    """True when `embeddings` (or what it views) is a read-only memory map."""
    return _read_only_map(embeddings) is not None


def release_pages(embeddings) -> None:
    """Drop the resident pages of a read-only memory map `embeddings` views (no-op otherwise)."""
    mm = _read_only_map(embeddings)
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def _read_only_map(arr) -> mmap.mmap | None:
    # Walk the views down to the mmap object. Only a mode "r" numpy memmap qualifies:
    # dropping pages of a copy-on-write ("c") map would lose its writes.
    read_only = False
    seen = 0
    obj = arr
    while obj is not None and seen < 64:
        if isinstance(obj, np.memmap) and getattr(obj, "mode", None) == "r":
            read_only = True
        if isinstance(obj, mmap.mmap):
            return obj if read_only else None
        obj = getattr(obj, "base", None)
        seen += 1
    return None
