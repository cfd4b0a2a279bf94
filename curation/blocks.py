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
import os
from collections.abc import Iterator

import numpy as np

BLOCK_BYTES = 1 << 26
"""float32 bytes per block (64 MiB: 32k rows of 512): big enough for BLAS, small next to RAM."""


def block_rows(dim: int, *, block_bytes: int = BLOCK_BYTES) -> int:
    """Rows per block so that one float32 block of `dim` columns is about `block_bytes`."""
    return max(1, int(block_bytes) // (4 * max(1, int(dim))))


GATHER_ROWS = 4096
"""Scattered rows read per pass (one float16 buffer of at most 4096 x D at a time)."""

SMALL_MAP_BYTES = 1 << 28
"""A memory map up to this size (256 MiB: 128k rows of 512 float32, 256k of float16) is gathered
through the map: at most its own size becomes resident, and numpy's gather beats one pread per
scattered row (50k x 512 float16: the preads were 0.64 s of a 2.9 s IVF graph, session 23; 100k x
512 float32, a 205 MB map: 608k preads, 2.4 s of a 10.9 s graph, which took 8.8 s through the map
with the same result, session 24, one thread)."""


def take_rows(embeddings, rows) -> np.ndarray:
    """float32 copy of `embeddings[rows]` ((len(rows), D)).

    Rows of a read-only memory map of a file are read with pread, not through the map:
    touching one scattered row of a map makes the kernel map the whole page-cache folio around
    it (up to 2 MiB on a kernel with large folios; 0.87 MiB per row measured here, session 22:
    500 rows of a 512 MiB map put 434 MiB in RSS), where a read copies the row's bytes only.
    """
    rows = np.asarray(rows)
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    out = np.empty((len(rows), embeddings.shape[1]), dtype=np.float32)
    located = _file_rows(embeddings) if _mapped_bytes(embeddings) > SMALL_MAP_BYTES and len(rows) else None
    if located is None:
        out[:] = embeddings[rows]
        return out
    path, first, stride = located
    # Sequential reads of the file; the result keeps the caller's order.
    order = np.argsort(rows, kind="stable") if len(rows) > 1 and not (np.diff(rows) >= 0).all() else None
    fd = os.open(path, os.O_RDONLY)
    try:
        for a in range(0, len(rows), GATHER_ROWS):
            part = order[a : a + GATHER_ROWS] if order is not None else np.arange(a, min(a + GATHER_ROWS, len(rows)))
            out[part] = _pread_rows(fd, rows[part], first, stride, embeddings.dtype, embeddings.shape[1])
    finally:
        os.close(fd)
    return out


def _pread_rows(fd: int, rows: np.ndarray, first: int, stride: int, dtype, dim: int) -> np.ndarray:
    """Ascending `rows` of a row-major file region (row r at byte first + r * stride), one
    read per run of consecutive rows."""
    buf = np.empty((len(rows), dim), dtype=dtype)
    row_bytes = dim * buf.itemsize
    if len(rows) == 0:
        return buf
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1 if stride == row_bytes else np.arange(1, len(rows))
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(rows)]])
    flat = buf.reshape(-1).view(np.uint8)
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        want = (b - a) * row_bytes
        got = os.preadv(fd, [flat[a * row_bytes : b * row_bytes]], first + int(rows[a]) * stride)
        if got != want:
            raise OSError(f"short read of the embeddings file: {got} of {want} bytes at row {int(rows[a])}")
    return buf


def _file_rows(embeddings) -> tuple[str, int, int] | None:
    """(file path, byte offset of row 0, bytes between rows) of a read-only file map whose rows
    are contiguous; None when `embeddings` is not such a map (then the map is read directly)."""
    if embeddings.ndim != 2 or embeddings.strides[1] != embeddings.itemsize or embeddings.strides[0] <= 0:
        return None
    top = embeddings
    while isinstance(getattr(top, "base", None), np.ndarray):
        top = top.base
    if not isinstance(top, np.memmap) or getattr(top, "filename", None) is None:
        return None
    # np.memmap's `offset` is the file position of its own first byte; a view's rows sit at the
    # same distance from it in the file as in memory.
    first = int(top.offset) + (embeddings.__array_interface__["data"][0] - top.__array_interface__["data"][0])
    return str(top.filename), first, int(embeddings.strides[0])


def take_slice(embeddings, start: int, stop: int) -> np.ndarray:
    """float32 copy of `embeddings[start:stop]`; a memory map's pages are released after."""
    out = np.array(embeddings[start:stop], dtype=np.float32, order="C")
    release_pages(embeddings)
    return out


def iter_blocks(embeddings, *, rows_per_block: int | None = None,
                buffer: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(start, float32 block) over the rows of `embeddings` (N, D), in order.

    buffer: a float32 (rows, D) array to read every block into (len(buffer) rows at a time);
    each block is then a view of it, overwritten by the next (no fresh array per block)."""
    n, d = embeddings.shape
    if buffer is not None:
        for start in range(0, n, len(buffer)):
            block = buffer[: min(len(buffer), n - start)]
            np.copyto(block, embeddings[start : start + len(block)])
            release_pages(embeddings)
            yield start, block
        return
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


def _mapped_bytes(embeddings) -> int:
    """Bytes of the whole memory map `embeddings` views (0 when it is not a read-only map)."""
    mm = _read_only_map(embeddings)
    return len(mm) if mm is not None else 0


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
