"""The kNN graph and the global reductions of detection on a Dask cluster (Dask is the distributed runner).

Sharded by IVF cell, as faiss `contrib/big_batch_search.py` does on one machine:

1. The driver plans the index from samples only (curation.knn_graph.plan_ivf: the cells'
   centroids and nprobe; kilobytes to megabytes).
2. Workers assign probes to row ranges of the float16 matrix (every worker opens the same
   file by path; stages pass paths, not arrays) and return (rows, nprobe) int32.
3. The driver groups rows by cell (members: rows living in a cell; askers: rows probing it)
   and gives each worker a set of cells, balanced by cost (members x askers). A worker
   searches its cells (curation.knn_graph.search_cell), merges each asker's candidates
   across its own cells, and returns one (k ids, k cosines) list per asker row.
4. The driver merges the workers' lists per row into one graph (merge_topk).

Up to IndexConfig.exact_below rows (what `build_knn_graph` searches exactly) the workers
instead search ranges of query rows against every row: the single-process exact graph.
A run on the Dask runner builds its graph here, on the runner's cluster
(pipeline/stages.py build_knn(dask_address=...), `build_knn_graph_at`).

The graph equals the single-process IVF graph of the same plan (the same candidates meet
the same top-k), up to the order of exact ties. Detectors that need global state reduce
small summaries, not the data: the confident joint from per-class sums and counts then
(K, K) counts per partition; spherical k-means from per-cluster sums (C, D) and counts.

Bytes moved (N rows, D dims, k neighbours, p = nprobe, W workers; see README "Scale"):
probes 4 N p up, cell row lists 8 N (p + 1) down, candidate lists 12 N k per worker that
saw the row (at most min(p, W) lists per row) up; the matrix itself never travels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from winnow import curation
from winnow.curation.knn_graph import (
    IndexConfig,
    KnnGraph,
    assign_probes,
    exact_rows,
    group_cells,
    index_dtype,
    merge_topk,
    plan_ivf,
    search_cell,
    search_kind,
)

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardedGraph:
    graph: KnnGraph  # the merged (N, k) graph
    cells_by_worker: dict[str, int]  # worker address -> IVF cells it searched
    rows_by_worker: dict[str, int]  # worker address -> asker rows it searched (a row may be searched by several)
    bytes_moved: int  # index and result bytes sent between driver and workers (the matrix is read by path)


def build_knn_graph_dask(matrix_path: str, client, *, k: int = 10, index: IndexConfig | None = None,
                         block_size: int = 16384, recall_k: int | None = None) -> ShardedGraph:
    """The IVF kNN graph of the (N, D) .npy at `matrix_path` (float16 or float32, unit rows),
    searched cell by cell on the workers of the dask.distributed `client` (recall_k: as
    curation.build_knn_graph's)."""
    cfg = index or IndexConfig()
    emb = np.load(matrix_path, mmap_mode="r")
    n = emb.shape[0]
    if k < 1 or n <= k:
        raise curation.InvalidArray(f"k must be in 1..N-1 (N={n}), got {k}")
    workers = sorted(client.scheduler_info()["workers"])
    if not workers:
        raise RuntimeError("the Dask cluster has no workers")
    path = str(matrix_path)
    if search_kind(n, k, cfg) == "exact":
        return _exact_graph(path, client, workers, n, k, block_size)
    plan = plan_ivf(emb, k, cfg, block_size=block_size, recall_k=recall_k)
    # Probes of row ranges, two ranges per worker.
    edges = np.linspace(0, n, 2 * len(workers) + 1).astype(int)
    futures = [client.submit(_probe_range, path, plan.centroids, plan.nprobe, int(a), int(b), block_size, pure=False)
               for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    probes = np.concatenate(client.gather(futures))
    moved = probes.nbytes + len(futures) * plan.centroids.nbytes
    members, askers = group_cells(probes, plan.nlist)
    del probes
    owner = _balance([len(m) * len(q) for m, q in zip(members, askers, strict=True)], len(workers))
    tasks = []
    for w, address in enumerate(workers):
        cells = [(c, members[c], askers[c]) for c in np.flatnonzero(owner == w) if len(members[c]) and len(askers[c])]
        moved += sum(m.nbytes + q.nbytes for _, m, q in cells)
        tasks.append((address, client.submit(_search_cells, path, cells, k, workers=[address],
                                             allow_other_workers=False, pure=False)))
    best_i = np.full((n, k), -1, dtype=index_dtype(n))
    best_s = np.full((n, k), -np.inf, dtype=np.float32)
    cells_by, rows_by = {}, {}
    for address, fut in tasks:
        rows, ids, sims, n_cells = fut.result()
        moved += rows.nbytes + ids.nbytes + sims.nbytes
        cells_by[address], rows_by[address] = n_cells, len(rows)
        best_i[rows], best_s[rows] = merge_topk(best_i[rows], best_s[rows], ids, sims, k)
    best_i[~np.isfinite(best_s)] = -1
    recall = plan.recall(best_i[plan.sample[len(plan.sample) // 2 :]])
    graph = KnnGraph(indices=best_i, similarities=best_s, recall=recall,
                     method=f"ivf-dask(nlist={plan.nlist},nprobe={plan.nprobe},workers={len(workers)})")
    LOG.info("sharded kNN graph over %d workers: cells %s, %.1f MB moved", len(workers), cells_by, moved / 1e6)
    return ShardedGraph(graph=graph, cells_by_worker=cells_by, rows_by_worker=rows_by, bytes_moved=int(moved))


def _exact_graph(path: str, client, workers: list[str], n: int, k: int, block_size: int) -> ShardedGraph:
    """Exact search (what `build_knn_graph` does up to IndexConfig.exact_below rows) sharded by
    query rows: each worker searches two row ranges against every row; the same graph as one
    process's."""
    edges = np.linspace(0, n, 2 * len(workers) + 1).astype(int)
    ranges = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    tasks = [(workers[i % len(workers)], a, b,
              client.submit(_exact_range, path, a, b, k, block_size, workers=[workers[i % len(workers)]],
                            allow_other_workers=False, pure=False))
             for i, (a, b) in enumerate(ranges)]
    best_i = np.empty((n, k), dtype=index_dtype(n))
    best_s = np.empty((n, k), dtype=np.float32)
    rows_by: dict[str, int] = {}
    moved = 0
    for address, a, b, fut in tasks:
        best_i[a:b], best_s[a:b] = fut.result()
        rows_by[address] = rows_by.get(address, 0) + b - a
        moved += (b - a) * k * 12
    graph = KnnGraph(indices=best_i, similarities=best_s, recall=1.0, method=f"exact-dask(workers={len(workers)})")
    LOG.info("exact kNN graph over %d workers, %.1f MB moved", len(workers), moved / 1e6)
    return ShardedGraph(graph=graph, cells_by_worker={w: 0 for w in rows_by}, rows_by_worker=rows_by,
                        bytes_moved=moved)


def _exact_range(path: str, start: int, stop: int, k: int, block_size: int):
    return exact_rows(np.load(path, mmap_mode="r"), k, start=start, stop=stop, block_size=block_size)


def build_knn_graph_at(address: str, matrix_path: str, *, k: int = 10, index: IndexConfig | None = None,
                       recall_k: int | None = None, timeout: float = 60) -> KnnGraph:
    """`build_knn_graph_dask` on the cluster whose scheduler is at `address` (the Dask runner's:
    pipeline/stages.py build_knn). The workers open `matrix_path` by path, so they must see it
    (one machine, or a shared file system as for the embedding store)."""
    try:
        import distributed
    except ImportError as exc:
        raise curation.MissingDependency("the kNN graph on Dask needs dask.distributed: "
                                         "pip install 'winnow-curate[dask]'") from exc
    with distributed.Client(address, set_as_default=False, timeout=timeout) as client:
        return build_knn_graph_dask(str(matrix_path), client, k=k, index=index, recall_k=recall_k).graph


def _balance(costs: list[int], n_workers: int) -> np.ndarray:
    """Cell -> worker, greedy: the costliest cell first, to the least loaded worker."""
    load = np.zeros(n_workers)
    owner = np.zeros(len(costs), dtype=np.int64)
    for c in np.argsort(costs, kind="stable")[::-1]:
        w = int(np.argmin(load))
        owner[c] = w
        load[w] += costs[c] + 1
    return owner


def _probe_range(path: str, centroids: np.ndarray, nprobe: int, start: int, stop: int, block_size: int) -> np.ndarray:
    emb = np.load(path, mmap_mode="r")
    return assign_probes(emb, centroids, nprobe, start=start, stop=stop, block_size=block_size)


def _search_cells(path: str, cells: list, k: int):
    """On a worker: search its cells, merge each asker row's candidates across them."""
    emb = np.load(path, mmap_mode="r")
    if not cells:
        return np.zeros(0, np.int64), np.zeros((0, k), np.int64), np.zeros((0, k), np.float32), 0
    rows = np.unique(np.concatenate([q for _, _, q in cells]))
    best_i = np.full((len(rows), k), -1, dtype=index_dtype(len(emb)))
    best_s = np.full((len(rows), k), -np.inf, dtype=np.float32)
    for _, m, q in cells:
        askers, ids, sims = search_cell(emb, m, q, k)
        pos = np.searchsorted(rows, askers)
        best_i[pos], best_s[pos] = merge_topk(best_i[pos], best_s[pos], ids, sims, k)
    return rows, best_i, best_s, len(cells)


# --- global state from small summaries -------------------------------------------------------


def confident_joint_dask(client, parts: list[tuple[np.ndarray, np.ndarray]], n_classes: int) -> np.ndarray:
    """curation's calibrated confident joint (K, K) of labels / pred_probs held in `parts`,
    reduced from per-partition summaries: pass 1 per-class sums of self-confidence and label
    counts (2K numbers) -> thresholds; pass 2 per-partition (K, K) counts."""
    from winnow.curation.confident_learning import _EPS, calibrate_confident_joint

    scattered = client.scatter(parts)
    sums = client.gather([client.submit(_self_confidence_sums, p, n_classes) for p in scattered])
    total = np.sum([s for s, _ in sums], axis=0)
    counts = np.sum([c for _, c in sums], axis=0)
    thresholds = np.maximum(np.where(counts > 0, total / np.maximum(counts, 1), 2.0), 2 * _EPS)
    joints = client.gather([client.submit(_confident_counts, p, thresholds, _EPS) for p in scattered])
    cj = np.sum(joints, axis=0).astype(np.int64)
    np.fill_diagonal(cj, np.maximum(cj.diagonal(), 1))
    label_counts = np.zeros(n_classes, dtype=np.int64)
    label_counts[: len(counts)] = counts.astype(np.int64)
    # calibrate_confident_joint only reads the label counts: hand it labels with those counts.
    return calibrate_confident_joint(cj, np.repeat(np.arange(n_classes), label_counts))


def _self_confidence_sums(part, n_classes: int):
    labels, probs = part
    own = probs[np.arange(len(labels)), labels]
    return (np.bincount(labels, weights=own, minlength=n_classes).astype(np.float64),
            np.bincount(labels, minlength=n_classes).astype(np.float64))


def _confident_counts(part, thresholds: np.ndarray, eps: float) -> np.ndarray:
    labels, probs = part
    k = probs.shape[1]
    confident = probs >= thresholds - eps
    n_confident = confident.sum(axis=1)
    guess = np.where(n_confident > 1, probs.argmax(axis=1), confident.argmax(axis=1))
    counted = n_confident > 0
    cj = np.zeros((k, k), dtype=np.int64)
    np.add.at(cj, (labels[counted], guess[counted]), 1)
    return cj


def spherical_kmeans_dask(matrix_path: str, client, centroids: np.ndarray, *, niter: int = 10,
                          n_parts: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd iterations of spherical k-means over the .npy at `matrix_path`, from `centroids` (C, D):
    each worker returns per-cluster sums (C, D) and counts (C,) of its row range; the driver adds
    them and re-normalises. Returns (centroids, assignment (N,))."""
    n = np.load(matrix_path, mmap_mode="r").shape[0]
    parts = n_parts or 2 * max(1, len(client.scheduler_info()["workers"]))
    edges = np.linspace(0, n, parts + 1).astype(int)
    ranges = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    cent = np.asarray(centroids, dtype=np.float32)
    for _ in range(niter):
        out = client.gather([client.submit(_cluster_sums, str(matrix_path), cent, a, b, pure=False) for a, b in ranges])
        sums = np.sum([s for s, _ in out], axis=0)
        counts = np.sum([c for _, c in out], axis=0)
        new = np.where(counts[:, None] > 0, sums, cent.astype(np.float64))  # an empty cluster keeps its centroid
        cent = (new / np.maximum(np.linalg.norm(new, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    assign = np.concatenate(client.gather([client.submit(_assign_range, str(matrix_path), cent, a, b, pure=False)
                                           for a, b in ranges]))
    return cent, assign


def _cluster_sums(path: str, centroids: np.ndarray, start: int, stop: int):
    a = _assign_range(path, centroids, start, stop)
    emb = np.load(path, mmap_mode="r")
    sums = np.zeros(centroids.shape, dtype=np.float64)
    from winnow.curation.blocks import iter_blocks

    for b, block in iter_blocks(emb[start:stop]):
        np.add.at(sums, a[b : b + len(block)], block.astype(np.float64))
    return sums, np.bincount(a, minlength=len(centroids))


def _assign_range(path: str, centroids: np.ndarray, start: int, stop: int) -> np.ndarray:
    from winnow.curation.blocks import iter_blocks

    emb = np.load(path, mmap_mode="r")
    out = np.empty(stop - start, dtype=np.int64)
    for b, block in iter_blocks(emb[start:stop]):
        out[b : b + len(block)] = np.argmax(block @ centroids.T, axis=1)
    return out
