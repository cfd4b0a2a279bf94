"""The kNN graph over the embeddings: FAISS lives here and nowhere else.

Every detector (label noise, duplicates, outliers) reads the same graph, built once.

The search is chosen by size (`IndexConfig`; a run's `KnnConfig` section builds one): exact inner-product search up to
`exact_below` samples; above it an inverted-file (IVF) search. Because every sample is
also a query, the IVF search is done list by list rather than query by query: FAISS
k-means gives `nlist` cells, each sample is assigned to its nearest cell and probes its
`nprobe` nearest cells, and for each cell one matrix product scores every sample that
probes it against every member. That turns the scan into large BLAS calls (about 10x
faster on CPU than per-query scanning) with exactly IVF's recall. `nprobe` is tuned on a
sample of queries until recall@k against exact search reaches `target_recall` (cheap: a
true neighbour is found iff its cell is probed), and the recall on a second, held-out
sample is reported with the graph. With a CUDA build of faiss (the `gpu` extra) the exact
search runs on the GPU, which is fast enough for millions of rows.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from winnow.curation.blocks import block_rows, iter_blocks, take_rows, take_slice
from winnow.curation.errors import InvalidArray, MissingDependency
from winnow.curation.validation import check_embeddings, check_unit_embeddings

INDEX_KINDS = ("auto", "exact", "ivf")
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexConfig:
    kind: str = "auto"  # "auto": exact up to `exact_below` samples, IVF above; or force "exact" / "ivf"
    # exact costs N^2 D: 1.9 s at 20k, 11 s at 50k (IVF: 0.3 s, 0.9 s) on 2 cores; measured on
    # benchmarks/scale.py's seeded 512-d synthetic embeddings (a speed choice, not a quality one)
    exact_below: int = 20_000
    nlist: int | None = None  # IVF cells; None: sqrt(N) (cells of ~sqrt(N) members keep each product square)
    nprobe: int | None = None  # cells probed per query; None: tuned until sampled recall >= target_recall
    max_nprobe: int = 64  # the tuner's ceiling (and a given nprobe's): cells probed per query at most
    target_recall: float = 0.97  # recall@k the nprobe tuner aims for (margin over the 0.95 we promise)
    recall_sample: int = 600  # queries compared with exact search (half tune nprobe, half report recall)
    device: str | None = None  # "cpu" or "cuda"; None: CUDA when the installed faiss has GPU support
    seed: int = 0  # seeds the training sample and the recall sample

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise InvalidArray(f"index kind must be one of {INDEX_KINDS}, got {self.kind!r}")
        if not 0 < self.target_recall <= 1:
            raise InvalidArray(f"target_recall must be in (0, 1], got {self.target_recall!r}")
        if self.device not in (None, "cpu") and not str(self.device).startswith("cuda"):
            raise InvalidArray(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        for name in ("exact_below", "max_nprobe", "recall_sample"):
            if isinstance(getattr(self, name), bool) or getattr(self, name) < 1:
                raise InvalidArray(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("nlist", "nprobe"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InvalidArray(f"{name} must be a positive integer or None, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class KnnConfig:
    """The `knn` section of winnow.Config: neighbours per sample and how the index finds them.

    The fields after `k` are IndexConfig's (see there; `index()` builds one); the seed is the
    run's (`run.seed`), so it is not repeated here.
    """

    k: int = 10  # neighbours per sample in the graph every detector reads
    kind: str = "auto"  # "auto": exact search up to `exact_below` samples, IVF above; or "exact" / "ivf"
    exact_below: int = IndexConfig.exact_below  # samples up to which "auto" searches exactly (speed: see IndexConfig)
    nlist: int | None = None  # IVF cells; None: sqrt(N)
    nprobe: int | None = None  # IVF cells probed per query; None: tuned until sampled recall >= target_recall
    max_nprobe: int = IndexConfig.max_nprobe  # the nprobe tuner's ceiling
    target_recall: float = IndexConfig.target_recall  # recall@k the nprobe tuner aims for
    recall_sample: int = IndexConfig.recall_sample  # queries compared with exact search (tuning + reported recall)
    # "cpu" or "cuda"; None: the embedding device's kind when one is set, else CUDA when the
    # installed faiss has GPU support
    device: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise InvalidArray(f"k must be a positive integer, got {self.k!r}")
        self.index()  # the index knobs are checked where they are defined

    def index(self, *, seed: int = 0, device: str | None = None) -> IndexConfig:
        """The IndexConfig of these knobs; `device` when this section leaves it None."""
        return IndexConfig(kind=self.kind, exact_below=self.exact_below, nlist=self.nlist, nprobe=self.nprobe,
                           max_nprobe=self.max_nprobe, target_recall=self.target_recall,
                           recall_sample=self.recall_sample, device=self.device or device, seed=seed)


def index_dtype(n: int) -> type:
    """The dtype of a graph's row numbers over `n` rows: int32 while they fit (below 2^31), else
    int64. The graph is the largest array a run holds: at 10M rows and 40 neighbours its ids are
    1.6 GB as int32 and were 3.2 GB as int64 (issue 18). Code that multiplies ids (pair keys
    a * n + b) casts them to int64 first."""
    return np.int32 if n < 2**31 else np.int64


@dataclass(frozen=True)
class KnnGraph:
    indices: np.ndarray  # (N, k) int32 (int64 from 2^31 rows, index_dtype): neighbours' row numbers, nearest first; -1 = none
    similarities: np.ndarray  # (N, k) float32: inner products (cosine for L2-normalised rows), descending
    method: str = "exact"  # how it was built: "exact", "ivf" (+ "-gpu")
    recall: float | None = None  # sampled recall@k against exact search (1.0 for exact)

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def head(self, k: int) -> KnnGraph:
        """The graph of each row's `k` nearest (the first k columns; itself when k >= self.k)."""
        if k >= self.k:
            return self
        return dataclasses.replace(self, indices=self.indices[:, :k], similarities=self.similarities[:, :k])


def build_knn_graph(embeddings, *, k: int = 10, index: IndexConfig | None = None, recall_k: int | None = None,
                    block_size: int = 16384, progress: Callable[[int, int], None] | None = None) -> KnnGraph:
    """kNN graph of `embeddings` (N, D), excluding each sample itself.

    Rows should be L2-normalised (then similarity is cosine); others are normalised with a
    warning (validation.check_unit_embeddings). Data are read and searched
    in blocks of `block_size` rows, so a memory-mapped array is never copied whole. When
    N <= k, missing neighbours are -1 / -inf. See `IndexConfig` for the index choice.
    recall_k: the leading columns the IVF recall target (and the reported recall) applies to,
    when a search keeps more columns than the graph every detector reads (None: all k). The
    further columns are as good as the probed cells make them.
    progress(done, total) is called as the search advances (query blocks or IVF cells).
    """
    cfg = index or IndexConfig()
    emb = check_unit_embeddings(embeddings)
    n = emb.shape[0]
    if k < 1:
        raise InvalidArray(f"k must be at least 1, got {k}")
    gpu = _use_gpu(cfg.device)
    if search_kind(n, k, cfg, gpu=gpu) == "ivf":
        return _ivf_graph(emb, k, cfg, block_size, gpu, progress, recall_k=recall_k)
    out_i, out_s = exact_rows(emb, k, block_size=block_size, gpu=gpu, progress=progress)
    return KnnGraph(indices=out_i, similarities=out_s, method="exact-gpu" if gpu else "exact", recall=1.0)


def exact_rows(embeddings, k: int, *, start: int = 0, stop: int | None = None, block_size: int = 16384,
               gpu: bool = False, progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows start:stop of the exact kNN graph of `embeddings` (N, D) (unit rows), each sample
    itself excluded: (indices (stop - start, k) index_dtype(N), similarities float32), -1 / -inf pads.

    `build_knn_graph` calls it for all rows; pipeline/knn_dask.py gives each worker a range.
    """
    n = embeddings.shape[0]
    stop = n if stop is None else stop
    indices, sims = _exact_search(embeddings, embeddings[start:stop], k + 1, block_size, gpu, progress)
    out_i = np.full((stop - start, k), -1, dtype=index_dtype(n))
    out_s = np.full((stop - start, k), -np.inf, dtype=np.float32)
    kept_i, kept_s = drop_self(indices[:, : min(k + 1, n)], sims[:, : min(k + 1, n)], np.arange(start, stop))
    out_i[:, : kept_i.shape[1]] = kept_i
    out_s[:, : kept_s.shape[1]] = kept_s
    return out_i, out_s


def search_kind(n: int, k: int, cfg: IndexConfig, *, gpu: bool = False) -> str:
    """"exact" or "ivf": how the graph of `n` rows is searched (cfg.kind, "auto" by size; a GPU
    and tiny data search exactly)."""
    kind = cfg.kind if cfg.kind != "auto" else ("exact" if n <= cfg.exact_below else "ivf")
    return "ivf" if kind == "ivf" and not gpu and n > 4 * (k + 1) else "exact"


def _use_gpu(device: str | None) -> bool:
    import faiss

    has_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if device is not None and str(device).startswith("cuda") and not has_gpu:
        raise MissingDependency(
            "device='cuda' needs a faiss build with GPU support: pip install 'winnow-curate[gpu]' "
            "(faiss-gpu-cu12) on a machine with CUDA"
        )
    return has_gpu and device != "cpu"


EXACT_BASE_BYTES = 1 << 26
"""float32 bytes of base rows one exact FAISS index holds (64 MiB); a larger base is searched
block by block and the top-k lists merged (faiss contrib exhaustive_search.knn_ground_truth)."""


def _exact_search(base, queries, k: int, block_size: int, gpu: bool,
                  progress: Callable[[int, int], None] | None = None):
    """Exact inner-product top-k of every query row among the base rows (blocks in and out).

    Up to EXACT_BASE_BYTES of base one index holds it all (as before); above, one index per
    base block, each searched by every query block and merged, so float32 copies of the base
    never exceed a block. Rows are read through curation/blocks.py (float16 maps included).
    """
    n_base, d = base.shape
    kk = min(k, n_base)
    n_q = len(queries)
    indices = np.full((n_q, k), -1, dtype=np.int64)
    sims = np.full((n_q, k), -np.inf, dtype=np.float32)
    block_size = min(block_size, block_rows(d))  # rows per block, and at most BLOCK_BYTES of float32
    base_step = block_rows(d, block_bytes=EXACT_BASE_BYTES)
    if n_base <= base_step:
        index = _flat_index(d, gpu)
        for start in range(0, n_base, block_size):
            index.add(take_slice(base, start, start + block_size))
        for start in range(0, n_q, block_size):
            q = take_slice(queries, start, start + block_size)
            s, i = index.search(q, kk)
            indices[start : start + len(q), :kk] = i
            sims[start : start + len(q), :kk] = s
            if progress:
                progress(start + len(q), n_q)
        return indices, sims
    n_steps = -(-n_base // base_step)
    for step, b0 in enumerate(range(0, n_base, base_step)):
        index = _flat_index(d, gpu)
        block = take_slice(base, b0, b0 + base_step)
        index.add(block)
        kb = min(kk, len(block))
        del block
        for start in range(0, n_q, block_size):
            q = take_slice(queries, start, start + block_size)
            s, i = index.search(q, kb)
            rows = slice(start, start + len(q))
            indices[rows], sims[rows] = merge_topk(indices[rows], sims[rows], i + b0, s, k)
        del index
        if progress:
            progress(step + 1, n_steps)
    return indices, sims


def _flat_index(d: int, gpu: bool):
    import faiss

    if gpu:
        return faiss.GpuIndexFlatIP(faiss.StandardGpuResources(), d)
    return faiss.IndexFlatIP(d)


def merge_topk(best_i: np.ndarray, best_s: np.ndarray, cand_i: np.ndarray, cand_s: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k highest of two candidate lists ((R, a) and (R, b) -> (R, k)); earlier lists win ties."""
    merged_s = np.concatenate([best_s, cand_s.astype(np.float32, copy=False)], axis=1)
    merged_i = np.concatenate([best_i, cand_i.astype(np.int64, copy=False)], axis=1)
    order = np.argsort(-merged_s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(merged_i, order, axis=1), np.take_along_axis(merged_s, order, axis=1)


@dataclass(frozen=True)
class IvfPlan:
    """What every IVF search of one graph shares (small: no per-sample data but the recall sample).

    The driver makes it once (`plan_ivf`); the cells can then be searched anywhere,
    by one process (`_ivf_graph`) or by workers that own cells (pipeline/knn_dask.py).
    """

    centroids: np.ndarray  # (nlist, D) float32 spherical k-means centroids: the cells
    nprobe: int  # cells probed per query (given, or tuned on the sample)
    sample: np.ndarray  # (S,) rows whose exact neighbours were computed; the second half reports recall
    truth: np.ndarray  # (S, recall_k) their exact neighbours (self excluded; -1 pads): what recall is measured on

    @property
    def nlist(self) -> int:
        return int(self.centroids.shape[0])

    def recall(self, graph_rows: np.ndarray) -> float:
        """Recall@recall_k of `graph_rows` (the graph's rows of the reporting half of `sample`)."""
        report = len(self.sample) // 2
        truth = {int(q): row[row >= 0] for q, row in zip(self.sample[report:], self.truth[report:], strict=True)}
        return _recall(graph_rows[:, : self.truth.shape[1]], self.sample[report:], truth)


def plan_ivf(embeddings, k: int, cfg: IndexConfig, *, block_size: int = 16384, recall_k: int | None = None) -> IvfPlan:
    """Train the cells (on 40 x nlist sampled rows) and fix nprobe (on the recall sample) so
    that recall@recall_k (default k) reaches cfg.target_recall.

    A true neighbour is found iff its cell is probed, so nprobe is tuned from the cells of
    the sample's exact neighbours alone: no pass over all rows is needed here.
    """
    import faiss

    emb = embeddings
    n, d = emb.shape
    rng = np.random.default_rng(cfg.seed)
    nlist = cfg.nlist or int(min(65536, max(8, math.sqrt(n))))
    train_rows = np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))
    km = faiss.Kmeans(d, nlist, niter=10, seed=cfg.seed, spherical=True, verbose=False)
    km.cp.max_points_per_centroid = 40  # the sample already has 40 per cell
    km.train(take_rows(emb, train_rows))
    centroids = np.asarray(km.centroids, dtype=np.float32)
    quantizer = faiss.IndexFlatIP(d)
    quantizer.add(centroids)
    max_probe = min(nlist, cfg.max_nprobe)

    # Exact neighbours of a sample of queries; a true neighbour is found iff its cell is probed.
    sample = rng.choice(n, size=min(n, cfg.recall_sample), replace=False)
    queries = take_rows(emb, sample)
    k = min(k, recall_k or k)
    exact_i, _ = _exact_search(emb, queries, k + 1, block_size, False)
    truth = np.full((len(sample), k), -1, dtype=np.int64)
    for j, (q, row) in enumerate(zip(sample, exact_i, strict=True)):
        keep = row[(row != q) & (row >= 0)][:k]
        truth[j, : len(keep)] = keep
    _, sample_probes = quantizer.search(queries, max_probe)
    neighbours = np.unique(truth[truth >= 0])
    _, home = quantizer.search(take_rows(emb, neighbours), 1) if len(neighbours) else (None, np.zeros((0, 1), np.int64))
    home_of = np.full(n, -1, dtype=np.int64) if n <= 1 << 22 else None
    if home_of is not None:
        home_of[neighbours] = home[:, 0]

    def cells(rows: np.ndarray) -> np.ndarray:
        if home_of is not None:
            return home_of[rows]
        return home[np.searchsorted(neighbours, rows), 0]

    tune = np.arange(len(sample) // 2)

    def recall_at(nprobe: int) -> float:
        hits = total = 0
        for j in tune:
            t = truth[j][truth[j] >= 0]
            hits += int(np.isin(cells(t), sample_probes[j, :nprobe]).sum())
            total += len(t)
        return hits / max(1, total)

    nprobe = cfg.nprobe or next((p for p in range(1, max_probe + 1) if recall_at(p) >= cfg.target_recall), max_probe)
    return IvfPlan(centroids=centroids, nprobe=min(nprobe, max_probe), sample=sample, truth=truth)


def assign_probes(embeddings, centroids: np.ndarray, nprobe: int, *, start: int = 0, stop: int | None = None,
                  block_size: int = 16384) -> np.ndarray:
    """(stop - start, nprobe) int32: the cells each row probes, nearest (its home cell) first."""
    import faiss

    stop = len(embeddings) if stop is None else stop
    block_size = min(block_size, block_rows(embeddings.shape[1]))
    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    probes = np.empty((stop - start, nprobe), dtype=np.int32)
    for b in range(start, stop, block_size):
        _, p = quantizer.search(take_slice(embeddings, b, min(stop, b + block_size)), nprobe)
        probes[b - start : b - start + len(p)] = p
    return probes


def group_cells(probes: np.ndarray, nlist: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(members, askers) per cell from the (N, nprobe) probes: the rows living in it (home = first
    probe) and the rows probing it, each ascending."""
    members = _group(probes[:, 0], nlist)
    flat = probes.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(nlist + 1))
    owners = (order // probes.shape[1]).astype(np.int64)
    del order
    askers = [owners[bounds[c] : bounds[c + 1]] for c in range(nlist)]
    return members, askers


TOPK_MIN_MEMBERS = 1000
"""Cells with fewer members take their top-k with np.argpartition, larger ones with torch.topk
(one thread, CPU time per row of a block: 224 members 1.2 vs 2.2 us, 700 5.5 vs 6.1 us; 1,000
members 7.9 vs 3.2 us, 3,162 25.6 vs 6.4 us, where torch switches algorithm; session 24).
Both give the same neighbours but for exact ties at the k-th place."""


def search_cell(embeddings, members: np.ndarray, askers: np.ndarray, k: int):
    """Exact top-k of each asker row among one cell's member rows (itself excluded).

    Returns (askers, ids (A, min(k, M)), sims): one candidate list per asker, to merge
    with its other probed cells' (merge_topk). The top-k is torch.topk for cells of at least
    TOPK_MIN_MEMBERS rows (a (1,326 x 3,162) block, the size this makes at 10M rows: 19 ms of one
    core where np.argpartition took 60 ms and the matrix product 42 ms; session 22, CPU time, one
    thread each) and np.argpartition below (small data's cells).
    """
    # (D, M) contiguous: OpenBLAS multiplies by it ~1.1-1.6x faster than by the transposed view.
    base_t = np.ascontiguousarray(take_rows(embeddings, members).T)
    take = min(k, len(members))
    out_i = np.empty((len(askers), take), dtype=np.int64)
    out_s = np.empty((len(askers), take), dtype=np.float32)
    # Bound each similarity block to 4M cosines (16 MB), whatever the cell's size (a crowded
    # cell of 5k rows would otherwise take ~500 MB).
    step = max(64, (1 << 22) // max(1, len(members)))
    for qs in range(0, len(askers), step):
        rows = askers[qs : qs + step]
        sims = take_rows(embeddings, rows) @ base_t
        # Never a sample's own neighbour: an asker living in this cell is one of its members.
        pos = np.minimum(np.searchsorted(members, rows), len(members) - 1)
        own = np.flatnonzero(members[pos] == rows)
        sims[own, pos[own]] = -np.inf
        top, top_s = _top_k(sims, take)
        out_i[qs : qs + len(rows)] = members[top]
        out_s[qs : qs + len(rows)] = top_s
    return askers, out_i, out_s


def _top_k(sims: np.ndarray, take: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, values) of the `take` largest of each row of `sims` (R, M), unordered."""
    m = sims.shape[1]
    if m < TOPK_MIN_MEMBERS:
        top = np.argpartition(sims, m - take, axis=1)[:, m - take :]
        return top, np.take_along_axis(sims, top, axis=1)
    import torch

    # torch.topk on one thread: on two it was 2.5-3x slower at every block size measured
    # ((900 x 224) at 50k rows: 2.5 vs 7.5 ms; (1,326 x 3,162) at 10M: 8 vs 20 ms; session 24).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        values, top = torch.topk(torch.from_numpy(sims), take, dim=1, sorted=False)
    finally:
        torch.set_num_threads(threads)
    return top.numpy(), values.numpy()


def _ivf_graph(emb, k: int, cfg: IndexConfig, block_size: int, gpu: bool,
               progress: Callable[[int, int], None] | None = None, recall_k: int | None = None) -> KnnGraph:
    n = emb.shape[0]
    plan = plan_ivf(emb, k, cfg, block_size=block_size, recall_k=recall_k)
    nlist, nprobe = plan.nlist, plan.nprobe
    # A long search says early what it will cost: every row is scored against ~nprobe cells' members.
    LOG.info("IVF plan for %d rows: nlist=%d, nprobe=%d (~%d candidates a row)", n, nlist, nprobe,
             nprobe * n // max(1, nlist))
    probes = assign_probes(emb, plan.centroids, nprobe, block_size=block_size)
    members, askers = group_cells(probes, nlist)
    del probes
    # Group the work by cell: every query probing cell c against every member of c.
    best_i = np.full((n, k), -1, dtype=index_dtype(n))
    best_s = np.full((n, k), -np.inf, dtype=np.float32)
    for c in range(nlist):
        m, q = members[c], askers[c]
        if len(m) and len(q):
            rows, cand_i, cand_s = search_cell(emb, m, q, k)
            best_i[rows], best_s[rows] = merge_topk(best_i[rows], best_s[rows], cand_i, cand_s, k)
        if progress:
            progress(c + 1, nlist)
    best_i[~np.isfinite(best_s)] = -1
    recall = plan.recall(best_i[plan.sample[len(plan.sample) // 2 :]])
    return KnnGraph(indices=best_i, similarities=best_s, method=f"ivf(nlist={nlist},nprobe={nprobe})", recall=recall)


def _group(keys: np.ndarray, n_groups: int, *, owners: np.ndarray | None = None) -> list[np.ndarray]:
    """For each group id, the (owner) rows whose key is that group, in ascending order."""
    owners = np.arange(len(keys)) if owners is None else owners
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(n_groups + 1))
    sorted_owners = owners[order].astype(np.int64)
    return [sorted_owners[bounds[g] : bounds[g + 1]] for g in range(n_groups)]


def _recall(ids: np.ndarray, rows: np.ndarray, truth: dict[int, np.ndarray]) -> float:
    hits = sum(len(set(truth[int(q)].tolist()) & set(row.tolist())) for q, row in zip(rows, ids, strict=True))
    total = sum(len(truth[int(q)]) for q in rows)
    return hits / total if total else 1.0


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
    base = check_unit_embeddings(base, name="base")
    queries = check_unit_embeddings(queries, name="queries")
    if base.shape[1] != queries.shape[1]:
        raise InvalidArray(f"queries has {queries.shape[1]} dimensions but base has {base.shape[1]}")
    if k < 1:
        raise InvalidArray(f"k must be at least 1, got {k}")
    indices, sims = _exact_search(base, queries, k, block_size, _use_gpu(None))
    return KnnGraph(indices=indices, similarities=sims)


KMEANS_TRAIN_BYTES = 1 << 27
"""float32 bytes of rows k-means trains on (128 MiB). Data up to this size train on every row
(FAISS then subsamples 256 per centroid itself, as before); larger data train on a seeded
sample of this size drawn in the canonical order, and every row is assigned block by block."""


def kmeans(
    embeddings, n_clusters: int, *, niter: int = 20, seed: int = 0, spherical: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """FAISS k-means of `embeddings` (N, D): (centroids (C, D) float32, assignment (N,) int64).

    `spherical` re-normalises the centroids after each step (cosine k-means, as SemDeDup
    and the DINOv2 / Vo et al. curation use on L2-normalised rows). C is clipped to N.
    The rows are put into a canonical order (by a fixed random projection) before FAISS
    sees them, so the result does not depend on the order of the input rows. Above
    KMEANS_TRAIN_BYTES of float32 it trains on a sample and assigns in blocks (out of core).
    """
    import faiss

    emb = check_unit_embeddings(embeddings) if spherical else check_embeddings(embeddings)
    if n_clusters < 1:
        raise InvalidArray(f"n_clusters must be at least 1, got {n_clusters}")
    n, d = emb.shape
    c = min(int(n_clusters), n)
    order = canonical_order(emb)
    whole = n * d * 4 <= KMEANS_TRAIN_BYTES
    if whole:
        x = take_rows(emb, order)
    else:  # a sample, still in canonical order, so the result does not depend on row order
        n_train = min(n, max(c, min(256 * c, block_rows(d, block_bytes=KMEANS_TRAIN_BYTES))))
        picked = np.sort(np.random.default_rng(seed).choice(n, size=n_train, replace=False))
        x = take_rows(emb, order[picked])
    if c == 1:
        if whole:
            centroids = x.mean(axis=0, keepdims=True)
        else:
            total = np.zeros(d, dtype=np.float64)
            for _, block in iter_blocks(emb):
                total += block.sum(axis=0, dtype=np.float64)
            centroids = (total / n)[None, :].astype(np.float32)
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
    if whole:
        _, a = km.index.search(x, 1)
        assign[order] = a[:, 0]
        return centroids, assign
    del x
    for start, block in iter_blocks(emb):
        _, a = km.index.search(block, 1)
        assign[start : start + len(block)] = a[:, 0]
    return centroids, assign


def canonical_order(embeddings: np.ndarray) -> np.ndarray:
    """A permutation of the rows that depends on their values only (identical rows tie).

    Sorting by a fixed random projection (then the first coordinates) makes any
    order-sensitive step (k-means seeding and subsampling) independent of the input order.
    Computed block by block (a float16 memory map is never copied whole).
    """
    emb = embeddings if hasattr(embeddings, "shape") and np.ndim(embeddings) == 2 else np.asarray(embeddings)
    rng = np.random.default_rng(12345)
    direction = rng.standard_normal(emb.shape[1])
    n = emb.shape[0]
    proj = np.empty(n, dtype=np.float64)
    first = np.empty(n, dtype=np.float64)
    for start, block in iter_blocks(emb, rows_per_block=block_rows(emb.shape[1], block_bytes=1 << 24)):
        proj[start : start + len(block)] = np.asarray(block, dtype=np.float64) @ direction if emb.shape[1] else 0.0
        first[start : start + len(block)] = block[:, 0] if emb.shape[1] else 0.0
    return np.lexsort((first, proj)) if emb.shape[1] else np.argsort(proj, kind="stable")
