"""Validation of the arrays the curation functions take, in one place.

Every check raises a named error whose message quotes the bad value, so a user sees
"labels has 997 rows but embeddings has 1000", never an IndexError three calls down.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from winnow.curation.blocks import release_pages
from winnow.curation.errors import InvalidArray, LengthMismatch

# A row whose L2 norm is off 1 by more than this is "not unit length" (float32 encoders
# land within 1e-6; float16 storage within 1e-3).
UNIT_NORM_ATOL = 1e-3


def check_embeddings(embeddings, *, name: str = "embeddings") -> np.ndarray:
    """(N, D) float array, finite. Returned as float32, or as given when float16 or float32.

    float16 (a run's memory-mapped store) is not converted here: that would hold N x D
    float32 at once. Every curation step reads it in float32 blocks (curation/blocks.py).
    Memory maps pass through uncopied.
    """
    arr = np.asarray(embeddings)
    if arr.ndim != 2:
        raise InvalidArray(f"{name} must be 2-D (N, D), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidArray(f"{name} is empty, shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InvalidArray(f"{name} must be floating point, got dtype {arr.dtype}")
    _check_finite(arr, name)
    if arr.dtype in (np.float16, np.float32):
        return arr
    return arr.astype(np.float32)


def check_unit_embeddings(embeddings, *, name: str = "embeddings", warn: bool = True) -> np.ndarray:
    """(N, D) float rows, finite, none all zero; returned L2-normalised as float32 (unit
    float16 rows stay float16: see check_embeddings).

    Every curation function compares rows by inner product, which is cosine only for unit
    rows: raw encoder outputs would make "similar" mean "long". Rows already of unit length
    (within UNIT_NORM_ATOL) pass through untouched (a memory map is not copied); otherwise
    all rows are divided by their norms and, with `warn`, a UserWarning says how many were
    off. A zero row has no direction: an error quoting the row, as for NaN / inf.
    """
    arr = check_embeddings(embeddings, name=name)
    norms = _row_norms(arr)
    zero = norms <= np.finfo(np.float32).tiny
    if zero.any():
        bad = int(np.flatnonzero(zero)[0])
        raise InvalidArray(f"{name} row {bad} has L2 norm {float(norms[bad])!r} (all zeros): it has no direction "
                           f"to compare; {int(zero.sum())} such row(s)")
    off = np.abs(norms - 1.0) > UNIT_NORM_ATOL
    if not off.any():
        return arr
    if warn:
        warnings.warn(
            f"{int(off.sum())} of {len(arr)} rows of {name} are not unit length (L2 norms {norms.min():.4g} to "
            f"{norms.max():.4g}); normalised them. Pass L2-normalised rows to silence this.",
            UserWarning, stacklevel=_caller_stacklevel(),
        )
    return (np.asarray(arr, dtype=np.float64) / norms[:, None]).astype(np.float32)


def check_cosine_graph(similarities, *, name: str = "knn") -> None:
    """A kNN graph's (N, k) similarities are cosines (at most 1): built from unit rows."""
    sims = np.asarray(similarities)
    finite = np.isfinite(sims)
    if finite.any():
        top = float(sims[finite].max())
        if top > 1.0 + 10 * UNIT_NORM_ATOL:
            r, c = np.argwhere(finite & (sims == top))[0]
            raise InvalidArray(f"{name} similarity [{r}, {c}] is {top:.6g} > 1: the graph was built from rows that "
                               f"are not L2-normalised; build it from the same normalised embeddings")


def _row_norms(arr: np.ndarray) -> np.ndarray:
    # Block-wise (32 MiB of float64) so a memory-mapped (N, D) array is never copied whole.
    step = max(1, (1 << 22) // max(1, arr.shape[1]))
    out = np.empty(arr.shape[0], dtype=np.float64)
    tiny = np.finfo(np.float32).tiny
    for start in range(0, arr.shape[0], step):
        block = np.asarray(arr[start : start + step])
        if block.dtype != np.float32:
            out[start : start + step] = np.linalg.norm(np.asarray(block, dtype=np.float64), axis=1)
            release_pages(arr)
            continue
        # float32 sums of squares: relative error about 1e-7 against UNIT_NORM_ATOL's 1e-3, and
        # no float64 copy of the block (20x faster at 50k x 512, where this ran three times per
        # detection: issue 16's speed item). Rows whose squares under- or overflow float32 are
        # redone in float64, so a tiny row is not taken for an all-zero one.
        sq = np.einsum("ij,ij->i", block, block).astype(np.float64)
        redo = ~((sq >= tiny) & np.isfinite(sq))
        if redo.any():
            sq[redo] = np.einsum("ij,ij->i", *(2 * [block[redo].astype(np.float64)]))
        out[start : start + step] = np.sqrt(sq)
        release_pages(arr)
    return out


def _caller_stacklevel() -> int:
    """stacklevel for warnings.warn that names the first frame outside this package."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "curation":
        frame, level = frame.f_back, level + 1
    return level


def check_labels(labels, *, n_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """(N,) integer class indices in 0..K-1. Returned as int64."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise InvalidArray(f"{name} must be 1-D (N,), got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidArray(f"{name} is empty")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise InvalidArray(f"{name}[{bad}] is {float(arr[bad])!r}; labels must be integers")
        if not np.all(arr == np.round(arr)):
            bad = int(np.flatnonzero(arr != np.round(arr))[0])
            raise InvalidArray(f"{name}[{bad}] is {float(arr[bad])!r}; labels must be integers")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise InvalidArray(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        bad = int(np.argmin(arr))
        raise InvalidArray(f"{name}[{bad}] is {arr[bad]}; labels must be in 0..K-1")
    if n_classes is not None and arr.max() >= n_classes:
        bad = int(np.argmax(arr))
        raise InvalidArray(f"{name}[{bad}] is {arr[bad]}, outside 0..{n_classes - 1} (K={n_classes})")
    return arr


def check_pred_probs(pred_probs, *, name: str = "pred_probs", atol: float = 1e-3) -> np.ndarray:
    """(N, K) probabilities, finite, in [0, 1], rows summing to 1 (within `atol`)."""
    arr = np.asarray(pred_probs)
    if arr.ndim != 2:
        raise InvalidArray(f"{name} must be 2-D (N, K), got shape {arr.shape}")
    if arr.shape[1] < 2:
        raise InvalidArray(f"{name} needs at least 2 classes (columns), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InvalidArray(f"{name} must be floating point, got dtype {arr.dtype}")
    _check_finite(arr, name)
    if arr.min() < 0 or arr.max() > 1:
        bad = np.unravel_index(np.argmax((arr < 0) | (arr > 1)), arr.shape)
        raise InvalidArray(f"{name}[{bad[0]}, {bad[1]}] is {float(arr[bad])!r}; probabilities must be in [0, 1]")
    sums = arr.sum(axis=1)
    off = np.abs(sums - 1) > atol
    if off.any():
        bad = int(np.flatnonzero(off)[0])
        raise InvalidArray(f"{name} row {bad} sums to {sums[bad]:.6g}, not 1")
    return arr.astype(np.float64, copy=False)


def check_same_length(**arrays) -> int:
    """All named arrays have the same number of rows; returns it."""
    lengths = {k: len(v) for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        items = sorted(lengths.items(), key=lambda kv: kv[0])
        (a, na), (b, nb) = items[0], next(kv for kv in items if kv[1] != items[0][1])
        raise LengthMismatch(f"{a} has {na} rows but {b} has {nb}")
    return next(iter(lengths.values()))


def check_every_class_present(labels: np.ndarray, n_classes: int, *, name: str = "labels") -> None:
    """Each of the K classes has at least one sample (otherwise per-class estimates are undefined)."""
    counts = np.bincount(labels, minlength=n_classes)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise InvalidArray(f"class(es) {empty.tolist()} have no samples in {name} (K={n_classes})")


def _check_finite(arr: np.ndarray, name: str) -> None:
    # Block-wise so a memory-mapped (N, D) array is never copied whole.
    step = max(1, (1 << 24) // max(1, arr.shape[1]))
    for start in range(0, arr.shape[0], step):
        block = np.asarray(arr[start : start + step])
        finite = bool(np.all(np.isfinite(block)))
        release_pages(arr)
        if not finite:
            r, c = np.argwhere(~np.isfinite(block))[0]
            raise InvalidArray(f"{name}[{start + r}, {c}] is {float(block[r, c])!r}; values must be finite")


def check_rows(rows, m: int, n: int) -> np.ndarray:
    """(M,) distinct row numbers in 0..N-1, one per finding on a subset of N rows."""
    rows = np.asarray(rows)
    if rows.ndim != 1 or len(rows) != m or not np.issubdtype(rows.dtype, np.integer):
        raise InvalidArray(f"rows must be {m} integer row numbers (one per finding), got shape {rows.shape} dtype {rows.dtype}")
    if m and (rows.min() < 0 or rows.max() >= n or len(np.unique(rows)) != m):
        raise InvalidArray(f"rows must be distinct row numbers in 0..{n - 1}, got min {rows.min()} max {rows.max()}")
    return rows.astype(np.int64)


def scatter_rows(rows: np.ndarray, values, n: int, fill) -> np.ndarray:
    """(N,) array holding `values` at `rows` and `fill` elsewhere (dtype of values, widened for fill)."""
    values = np.asarray(values)
    out = np.full(n, fill, dtype=np.result_type(values.dtype, fill))
    out[rows] = values
    return out


def rank_keys(keys, n: int, *, unique: bool = False) -> np.ndarray:
    """(N,) int64 rank of each sortable key (row number when keys is None).

    Every tie-break in curation orders by this rank, so results do not depend on row
    order. Ranks are themselves valid keys: computing them once and passing them on
    saves re-sorting N strings in every step. unique: raise if a key repeats.
    """
    if keys is None:
        return np.arange(n, dtype=np.int64)
    arr = np.asarray(keys)
    if arr.ndim != 1:
        raise InvalidArray(f"keys must be 1-D (N,), got shape {arr.shape}")
    uniq, rank = np.unique(arr, return_inverse=True)
    if unique and len(uniq) != len(arr):
        seen: set = set()
        repeat = next(x for x in arr.tolist() if x in seen or seen.add(x))
        raise InvalidArray(f"keys must be unique; {len(arr) - len(uniq)} repeat(s), e.g. {repeat!r}")
    return rank.astype(np.int64)
