"""The kNN graph over the embeddings: FAISS lives here and nowhere else.

Every detector (label noise, duplicates, outliers) reads the same graph, built once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.validation import check_embeddings


@dataclass(frozen=True)
class KnnGraph:
    indices: np.ndarray  # (N, k) int64: row numbers of each sample's neighbours, nearest first; -1 = none
    similarities: np.ndarray  # (N, k) float32: inner products (cosine for L2-normalised rows), descending

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def build_knn_graph(embeddings, *, k: int = 10, block_size: int = 16384) -> KnnGraph:
    """Exact inner-product kNN graph of `embeddings` (N, D), excluding each sample itself.

    Rows should be L2-normalised (then similarity is cosine). The index is filled and
    searched in blocks of `block_size` rows, so a memory-mapped array is read once in
    pieces and never copied whole. When N <= k, missing neighbours are -1 / -inf.
    """
    import faiss

    emb = check_embeddings(embeddings)
    n, d = emb.shape
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    index = faiss.IndexFlatIP(d)
    for start in range(0, n, block_size):
        index.add(np.ascontiguousarray(emb[start : start + block_size], dtype=np.float32))
    kk = min(k + 1, n)
    indices = np.full((n, k), -1, dtype=np.int64)
    sims = np.full((n, k), -np.inf, dtype=np.float32)
    for start in range(0, n, block_size):
        q = np.ascontiguousarray(emb[start : start + block_size], dtype=np.float32)
        s, i = index.search(q, kk)
        i_kept, s_kept = drop_self(i, s, np.arange(start, start + len(q)))
        indices[start : start + len(q), : i_kept.shape[1]] = i_kept
        sims[start : start + len(q), : s_kept.shape[1]] = s_kept
    return KnnGraph(indices=indices, similarities=sims)


def drop_self(indices: np.ndarray, sims: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own row from its (k+1)-neighbour list, keeping k columns.

    The query is usually first, but exact duplicates can tie with it in any order; when
    it is absent (more than k+1 ties) the farthest neighbour is dropped instead.
    """
    is_self = indices == rows[:, None]
    no_self = ~is_self.any(axis=1)
    is_self[no_self, -1] = True
    keep = ~is_self
    k = indices.shape[1] - 1
    return indices[keep].reshape(-1, k), sims[keep].reshape(-1, k)
