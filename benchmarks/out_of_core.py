"""Out-of-core benchmark: full detection over a float16 memory-mapped (N, D) matrix, stage by stage.

Seeded clustered embeddings (200 concepts in 10 classes, each concept a low-rank blob, as
benchmarks/scale.py) are written to disk block by block as float16 (never N x D in RAM),
with 10% planted symmetric label flips. One process then opens the matrix memory-mapped and
runs what a run's knn and curate stages run (curation.build_knn_graph, IVF; curation.curate:
label detectors, duplicates, issue types, hierarchical k-means, decisions), timing each step
and reading peak RSS (ru_maxrss) against the process's baseline after imports. recall@10 is
measured on sampled queries against exact search (blocked brute force) independently of the
graph's own estimate.

    .venv/bin/python -m benchmarks.out_of_core --n 200000                  # ~1 min on 2 cores
    .venv/bin/python -m benchmarks.out_of_core --n 1000000 --markdown out/ooc-1m.md
    .venv/bin/python -m benchmarks.out_of_core --n 10000000 --folder /data/ooc  # ~10 GB file, about an hour
    .venv/bin/python -m benchmarks.out_of_core --n 20000 --compare-float32     # float16 vs float32 agreement

--json prints one JSON object (tests/e2e/test_out_of_core.py reads it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONCEPTS, CLASSES, RANK, NOISE_RATE = 200, 10, 32, 0.10
LOG = logging.getLogger("benchmarks.out_of_core")


def write_clustered(folder: Path, n: int, dim: int, *, seed: int = 0, block: int = 32768) -> tuple[Path, Path, Path]:
    """embeddings.npy (float16 (n, dim), unit rows), labels.npy and is_flipped.npy, written in blocks."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "embeddings.npy", folder / "labels.npy", folder / "is_flipped.npy"
    if all(p.exists() for p in paths) and np.load(paths[0], mmap_mode="r").shape == (n, dim):
        return paths
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CONCEPTS, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = rng.standard_normal((CONCEPTS, RANK, dim)).astype(np.float32)
    bases *= 0.5 / np.linalg.norm(bases, axis=2, keepdims=True)
    concept = rng.integers(0, CONCEPTS, n)
    tmp = folder / ".embeddings.tmp.npy"
    # Appended block by block through a file (a writable memory map would keep every written
    # page resident in this process).
    with open(tmp, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
                                                  "fortran_order": False, "shape": (n, dim)})
        _write_blocks(fh, concept, centres, bases, rng, dim, block)
    os.replace(tmp, paths[0])
    true = concept % CLASSES
    flipped = np.zeros(n, bool)
    flipped[rng.choice(n, int(NOISE_RATE * n), replace=False)] = True
    labels = true.copy()
    labels[flipped] = (true[flipped] + rng.integers(1, CLASSES, int(flipped.sum()))) % CLASSES
    np.save(paths[1], labels)
    np.save(paths[2], flipped)
    return paths


def _write_blocks(fh, concept, centres, bases, rng, dim: int, block: int) -> None:
    n = len(concept)
    for start in range(0, n, block):
        c_block = concept[start : start + block]
        out = np.empty((len(c_block), dim), np.float32)
        for c in np.unique(c_block):
            rows = np.flatnonzero(c_block == c)
            z = rng.standard_normal((len(rows), RANK)).astype(np.float32) / np.sqrt(RANK)
            out[rows] = centres[c] + z @ bases[c]
        out += rng.standard_normal(out.shape).astype(np.float32) * (0.3 / np.sqrt(dim))
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        fh.write(out.astype(np.float16).tobytes())


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def save_graph(path: Path, graph, seconds: float, peak_rss_mib: float) -> None:
    """Write a built graph (indices.npy, similarities.npy, meta.json) into the folder `path`."""
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "indices.npy", graph.indices)
    np.save(path / "similarities.npy", graph.similarities)
    meta = {"method": graph.method, "recall": graph.recall, "seconds": seconds, "peak_rss_mib": peak_rss_mib}
    (path / "meta.json").write_text(json.dumps(meta))


def load_graph(path: Path):
    """(KnnGraph, build seconds, the building process's peak RSS MiB) of a folder save_graph wrote.
    The arrays are read into memory (not mapped), as a run that built them would hold them."""
    from winnow import curation
    from winnow.curation.knn_graph import index_dtype

    meta = json.loads((path / "meta.json").read_text())
    # Row numbers in the dtype today's builder gives them (a graph saved as int64 is read as int32).
    mapped = np.load(path / "indices.npy", mmap_mode="r")
    indices = np.array(mapped, dtype=index_dtype(len(mapped)))
    del mapped
    graph = curation.KnnGraph(indices=indices, similarities=np.load(path / "similarities.npy"),
                              method=meta["method"], recall=meta["recall"])
    return graph, float(meta["seconds"]), float(meta["peak_rss_mib"])


def detect(emb, labels: np.ndarray, *, k: int = 10, nlist: int | None = None, nprobe: int | None = None,
           recall_sample: int = 600, cluster_levels: tuple[int, ...] = (), seed: int = 0,
           graph_dir: Path | None = None, graph_only: bool = False) -> dict:
    """Graph + curate over `emb` (a float16 memory map), each step timed (seconds).

    graph_dir: a folder for the wide graph. When it holds one (save_graph), it is loaded instead of
    built and its build time and building peak RSS are the ones reported; otherwise the graph is
    built and saved there. graph_only: stop after the graph (a long graph build survives a
    session; detection runs later in a fresh process)."""
    import importlib

    from winnow import curation

    curate_module = importlib.import_module("winnow.curation.curate")  # the package exports a function of that name

    duplicates_module = importlib.import_module("winnow.curation.duplicates")  # the issue context imports it on call
    seconds: dict[str, float] = {}
    originals = {}
    for name in ("detect_label_issues", "find_duplicates", "hierarchical_kmeans", "decide"):
        module = duplicates_module if name == "find_duplicates" else curate_module
        fn = getattr(module, name)
        originals[name] = (module, fn)

        def timed(*a, _fn=fn, _name=name, **kw):
            t0 = time.perf_counter()
            try:
                return _fn(*a, **kw)
            finally:
                seconds[_name] = seconds.get(_name, 0.0) + time.perf_counter() - t0
                LOG.info("%s: %.1f s (peak RSS %.2f GiB)", _name, time.perf_counter() - t0, _rss_mib() / 1024)

        setattr(module, name, timed)
    try:
        t0 = time.perf_counter()
        index = curation.IndexConfig(kind="ivf", nlist=nlist, nprobe=nprobe, recall_sample=recall_sample, seed=seed)
        # One search for every detector, as a run's knn stage does: the out_of_distribution group
        # test reads 2 x ood_max_group neighbours, every other detector the first k.
        config = curation.DetectConfig(cluster_levels=cluster_levels)
        from winnow.curation.outliers import group_scale

        wide_k = max(k, 2 * group_scale(len(labels), config.ood_max_group))
        graph_peak = None
        if graph_dir is not None and (graph_dir / "meta.json").exists():
            wide, seconds["knn_graph"], graph_peak = load_graph(graph_dir)
            if wide.indices.shape != (len(labels), wide_k):
                raise SystemExit(f"{graph_dir} holds a graph of shape {wide.indices.shape}, not ({len(labels)}, {wide_k})")
            LOG.info("graph loaded from %s in %.1f s (built in %.1f s, that process's peak RSS %.2f GiB)",
                     graph_dir, time.perf_counter() - t0, seconds["knn_graph"], graph_peak / 1024)
        else:
            wide = curation.build_knn_graph(emb, k=wide_k, index=index, recall_k=k, progress=_graph_progress(t0))
            seconds["knn_graph"] = time.perf_counter() - t0
            if graph_dir is not None:
                save_graph(graph_dir, wide, seconds["knn_graph"], _rss_mib())
        graph = wide.head(k)
        LOG.info("knn_graph: %.1f s, %s, recall estimate %s (peak RSS %.2f GiB)", seconds["knn_graph"], graph.method,
                 graph.recall, _rss_mib() / 1024)
        rss_graph = _rss_mib() if graph_peak is None else max(graph_peak, _rss_mib())
        if graph_only:
            return {"graph": graph, "curation": None, "seconds": seconds, "rss_after_graph_mib": rss_graph,
                    "graph_peak_mib": graph_peak}
        n = len(labels)
        t1 = time.perf_counter()
        result = curation.curate(labels, emb, graph, rows=np.arange(n), n_classes=int(labels.max()) + 1,
                                 unusable_reason=[None] * n, keys=np.arange(n), seed=seed,
                                 detect=config, wide_graph=wide)
        seconds["curate_total"] = time.perf_counter() - t1
    finally:
        for name, (module, fn) in originals.items():
            setattr(module, name, fn)
    seconds["issue_types_and_rest"] = seconds["curate_total"] - sum(
        seconds.get(s, 0.0) for s in ("detect_label_issues", "find_duplicates", "hierarchical_kmeans", "decide"))
    return {"graph": graph, "curation": result, "seconds": seconds, "rss_after_graph_mib": rss_graph,
            "graph_peak_mib": graph_peak}


def _graph_progress(t0: float):
    """Logs the graph's progress at every 5% of its steps (IVF cells): a long run's partial
    rate is a measurement too (the first line's time is the index plan plus the probes)."""
    last = [-1]

    def progress(done: int, total: int) -> None:
        step = done * 20 // max(1, total)
        if step != last[0]:
            last[0] = step
            LOG.info("knn_graph: %d/%d steps at %.1f s (peak RSS %.2f GiB)", done, total, time.perf_counter() - t0,
                     _rss_mib() / 1024)

    return progress


def sampled_recall(emb, graph, *, queries: int = 500, seed: int = 1) -> float:
    """recall@k of `graph` on `queries` sampled rows against exact (blocked brute-force) search."""
    from winnow import curation
    from winnow.curation.blocks import take_rows

    rows = np.sort(np.random.default_rng(seed).choice(len(emb), size=min(queries, len(emb)), replace=False))
    exact = curation.search_knn(emb, take_rows(emb, rows), k=graph.k + 1)
    hits = total = 0
    for q, truth, got in zip(rows, exact.indices, graph.indices[rows], strict=True):
        truth = truth[truth != q][: graph.k]
        hits += len(set(truth.tolist()) & set(got.tolist()))
        total += len(truth)
    return hits / max(1, total)


def f1(flagged: np.ndarray, truth: np.ndarray) -> float:
    tp = int((flagged & truth).sum())
    p, r = tp / max(1, flagged.sum()), tp / max(1, truth.sum())
    return 2 * p * r / (p + r) if p + r else 0.0


def compare_float32(emb16, labels: np.ndarray, **kw) -> dict:
    """Decisions and graph on the float16 matrix vs on its float32 twin (in RAM: small N only)."""
    from winnow.curation.blocks import take_slice

    emb32 = np.asarray(emb16, dtype=np.float32)
    emb32 /= np.linalg.norm(emb32, axis=1, keepdims=True)
    a = detect(take_slice(emb16, 0, len(emb16)).astype(np.float16), labels, **kw)
    b = detect(emb32, labels, **kw)
    da, db = a["curation"].decisions, b["curation"].decisions
    same_ids = np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a["graph"].indices, b["graph"].indices,
                                                                          strict=True)])
    return {"decision_agreement": float((da.decision == db.decision).mean()),
            "label_issue_agreement": float(np.mean([("label_issue" in x) == ("label_issue" in y)
                                                    for x, y in zip(da.reasons, db.reasons, strict=True)])),
            "graph_neighbour_overlap": float(same_ids)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--nlist", type=int, default=None, help="IVF cells (default sqrt(N))")
    ap.add_argument("--nprobe", type=int, default=None, help="cells probed (default: tuned to recall 0.97)")
    ap.add_argument("--recall-sample", type=int, default=600)
    ap.add_argument("--queries", type=int, default=500, help="sampled queries for the independent recall@10")
    ap.add_argument("--cluster-levels", type=int, nargs="*", default=[], help="k-means levels (default sqrt(N), ...)")
    ap.add_argument("--write-only", action="store_true", help="only write the matrix into --folder (a child does this)")
    ap.add_argument("--folder", type=Path, default=None, help="where the float16 matrix is written (default: a temp dir)")
    ap.add_argument("--compare-float32", action="store_true", help="also run on the float32 twin and report agreement")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--graph-dir", type=Path, default=None,
                    help="load the wide graph from this folder when it holds one, else build it and save it there")
    ap.add_argument("--graph-only", action="store_true", help="stop after building (and saving) the graph")
    args = ap.parse_args(argv)
    if args.write_only:
        write_clustered(args.folder, args.n, args.dim)
        return 0

    # Baseline: the libraries a run imports, before any data.
    import faiss  # noqa: F401
    import polars  # noqa: F401
    import torch  # noqa: F401

    import winnow.curation  # noqa: F401

    baseline = _rss_mib()
    # Stage times on stderr as they finish: a run of an hour says where it is (and a killed one what it measured).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(message)s")
    LOG.setLevel(logging.INFO)
    logging.getLogger("winnow.curation.knn_graph").setLevel(logging.INFO)  # the IVF plan (nlist, nprobe)
    LOG.info("n=%d dim=%d baseline RSS %.2f GiB", args.n, args.dim, baseline / 1024)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp)
        t0 = time.perf_counter()
        # In a child process: the generator's own arrays must not count in this process's peak.
        subprocess.run([sys.executable, "-m", "benchmarks.out_of_core", "--write-only", "--n", str(args.n),
                        "--dim", str(args.dim), "--folder", str(folder)], check=True)
        emb_path, labels_path, flipped_path = folder / "embeddings.npy", folder / "labels.npy", folder / "is_flipped.npy"
        write_s = time.perf_counter() - t0
        LOG.info("matrix written (or reused) in %.1f s", write_s)
        after_write = _rss_mib()
        emb = np.load(emb_path, mmap_mode="r")
        labels, flipped = np.load(labels_path), np.load(flipped_path)
        out = detect(emb, labels, nlist=args.nlist, nprobe=args.nprobe, recall_sample=args.recall_sample,
                     cluster_levels=tuple(args.cluster_levels), graph_dir=args.graph_dir, graph_only=args.graph_only)
        if args.graph_only:
            LOG.info("graph built in %.1f s and saved in %s; peak RSS %.2f GiB", out["seconds"]["knn_graph"],
                     args.graph_dir, _rss_mib() / 1024)
            return 0
        # A loaded graph's building process counts too: the run's peak is the larger of the two.
        peak = max(_rss_mib(), out["graph_peak_mib"] or 0.0)
        recall = sampled_recall(emb, out["graph"], queries=args.queries)
        LOG.info("recall@10 %.4f on %d sampled queries; peak RSS %.2f GiB", recall, args.queries, peak / 1024)
        d = out["curation"].decisions
        flagged = np.array(["label_issue" in r for r in d.reasons])
        result = {
            "n": args.n, "dim": args.dim, "matrix_float32_mib": args.n * args.dim * 4 / 2**20,
            "matrix_float16_mib": args.n * args.dim * 2 / 2**20, "write_seconds": round(write_s, 2),
            "seconds": {k: round(v, 2) for k, v in out["seconds"].items()},
            "graph_method": out["graph"].method, "graph_recall_estimate": out["graph"].recall,
            "recall_at_10": round(recall, 4), "label_issue_f1": round(f1(flagged, flipped), 4),
            "baseline_rss_mib": round(baseline, 1), "rss_after_write_mib": round(after_write, 1),
            "rss_after_graph_mib": round(out["rss_after_graph_mib"], 1), "peak_rss_mib": round(peak, 1),
            "graph_loaded": out["graph_peak_mib"] is not None,
        }
        if args.compare_float32:
            result["float16_vs_float32"] = compare_float32(emb, labels, nlist=args.nlist, nprobe=args.nprobe,
                                                           recall_sample=args.recall_sample,
                                                           cluster_levels=tuple(args.cluster_levels))
    if args.json:
        print(json.dumps(result))
        return 0
    from benchmarks.common import emit, markdown_table

    s = result["seconds"]
    stages = ["knn_graph", "detect_label_issues", "find_duplicates", "hierarchical_kmeans", "decide",
              "issue_types_and_rest"]
    rows = [[f"{args.n:,} x {args.dim}", *(f"{s.get(k, 0):.1f}" for k in stages),
             f"{sum(s.get(k, 0) for k in stages):.1f}", f"{result['peak_rss_mib'] / 1024:.2f}",
             f"{(result['peak_rss_mib'] - baseline) / 1024:.2f}", f"{result['matrix_float32_mib'] / 1024:.2f}",
             f"{recall:.3f}", f"{result['label_issue_f1']:.3f}"]]
    table = markdown_table(["N x D", "graph s", "label detectors s", "duplicates s", "k-means s", "decide s",
                            "issue types + rest s", "total s", "peak RSS GiB", "over baseline GiB",
                            "float32 matrix GiB", "recall@10", "F1 flips"], rows, align="l" + "r" * 12)
    notes = [f"graph: {result['graph_method']}, its own recall estimate {result['graph_recall_estimate']:.3f}; "
             f"baseline RSS after imports {baseline / 1024:.2f} GiB; writing the float16 matrix took {write_s:.0f} s"]
    if result["graph_loaded"]:
        notes.append(f"the graph was built and saved by an earlier process (--graph-dir {args.graph_dir}); its build "
                     "time is that process's, and peak RSS is the larger of that process's and this one's")
    if "float16_vs_float32" in result:
        notes.append(f"float16 vs float32: {json.dumps(result['float16_vs_float32'])}")
    emit([table, *notes], args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
