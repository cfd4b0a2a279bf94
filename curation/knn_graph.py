"""The kNN graph over the embeddings: FAISS lives here and nowhere else.

Every detector (label noise, duplicates, outliers) reads the same graph, built once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.errors import InvalidArray
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


def search_knn(base, queries, *, k: int = 1, block_size: int = 16384) -> KnnGraph:
    """Exact inner-product neighbours of each row of `queries` (Q, D) among `base` (M, D).

    Unlike `build_knn_graph` nothing is excluded: query and base are different sample
    sets (a training catalog against a holdout one, for leakage). Returns a (Q, k) graph
    whose indices are rows of `base`; when M < k the missing columns are -1 / -inf.
    """
    import faiss

    base = check_embeddings(base, name="base")
    queries = check_embeddings(queries, name="queries")
    if base.shape[1] != queries.shape[1]:
        raise InvalidArray(f"queries has {queries.shape[1]} dimensions but base has {base.shape[1]}")
    if k < 1:
        raise InvalidArray(f"k must be at least 1, got {k}")
    index = faiss.IndexFlatIP(base.shape[1])
    for start in range(0, len(base), block_size):
        index.add(np.ascontiguousarray(base[start : start + block_size], dtype=np.float32))
    kk = min(k, len(base))
    indices = np.full((len(queries), k), -1, dtype=np.int64)
    sims = np.full((len(queries), k), -np.inf, dtype=np.float32)
    for start in range(0, len(queries), block_size):
        q = np.ascontiguousarray(queries[start : start + block_size], dtype=np.float32)
        s, i = index.search(q, kk)
        indices[start : start + len(q), :kk] = i
        sims[start : start + len(q), :kk] = s
    return KnnGraph(indices=indices, similarities=sims)


def kmeans(
    embeddings, n_clusters: int, *, niter: int = 20, seed: int = 0, spherical: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """FAISS k-means of `embeddings` (N, D): (centroids (C, D) float32, assignment (N,) int64).

    `spherical` re-normalises the centroids after each step (cosine k-means, as SemDeDup
    and the DINOv2 / Vo et al. curation use on L2-normalised rows). C is clipped to N.
    The rows are put into a canonical order (by a fixed random projection) before FAISS
    sees them, so the result does not depend on the order of the input rows.
    """
    import faiss

    emb = check_embeddings(embeddings)
    if n_clusters < 1:
        raise InvalidArray(f"n_clusters must be at least 1, got {n_clusters}")
    n, d = emb.shape
    c = min(int(n_clusters), n)
    order = canonical_order(emb)
    x = np.ascontiguousarray(emb[order], dtype=np.float32)
    if c == 1:
        centroids = x.mean(axis=0, keepdims=True)
        if spherical:
            centroids /= max(float(np.linalg.norm(centroids)), 1e-12)
        return centroids.astype(np.float32), np.zeros(n, dtype=np.int64)
    km = faiss.Kmeans(d, c, niter=niter, seed=seed, spherical=spherical, verbose=False)
    # FAISS subsamples to 256 points per centroid by default; say so instead of warning.
    km.cp.max_points_per_centroid = 256
    km.cp.min_points_per_centroid = 1
    km.train(x)
    centroids = np.asarray(km.centroids, dtype=np.float32)
    assign = np.empty(n, dtype=np.int64)
    _, a = km.index.search(x, 1)
    assign[order] = a[:, 0]
    return centroids, assign


def canonical_order(embeddings: np.ndarray) -> np.ndarray:
    """A permutation of the rows that depends on their values only (identical rows tie).

    Sorting by a fixed random projection (then the first coordinates) makes any
    order-sensitive step (k-means seeding and subsampling) independent of the input order.
    """
    emb = np.asarray(embeddings)
    rng = np.random.default_rng(12345)
    proj = np.asarray(emb, dtype=np.float64) @ rng.standard_normal(emb.shape[1])
    return np.lexsort((emb[:, 0], proj)) if emb.shape[1] else np.argsort(proj, kind="stable")
