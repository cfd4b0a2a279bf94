"""Scale benchmark: kNN graph + label-noise detection as N grows, every tool side by side, like for like.

For each N (default 20k and 100k) seeded clustered embeddings (512-d, 200 concepts in 10
classes, each concept a low-rank blob) with 20% planted symmetric label flips. Each tool runs
in its own process (imports excluded from the clock, peak RSS per process):

- winnow:         curation.build_knn_graph (exact up to 20k, IVF above) + find_label_issues
- winnow-exact:   the same detector on FAISS's exact graph (IndexFlatIP): separates "our index
                  is approximate" from "our detector is fast"
- datalab:        cleanlab Datalab's label check from features (its own scikit-learn kNN)
- datalab-graph:  Datalab's label check given Winnow's graph (the graph of the winnow row; its
                  label check takes no graph, so it gets the pred_probs its kNN classifier would
                  compute from that graph, see benchmarks.common.graph_pred_probs)
- datalab-probs:  Datalab's label check given Winnow's out-of-fold pred_probs (the probe's)
- sklearn:        scikit-learn NearestNeighbors (brute, cosine): the exact graph alone

Before its clock starts, each tool runs its work once on the first --warmup rows (2,000; 0 turns
it off): a fresh process's first call pays lazy imports and library initialisation (about 1 s
of Winnow's detection at 50k: scipy.special, polars, scipy.sparse.csgraph), which is not the
work being compared, and every tool gets the same warm-up.

and prints one table: seconds (graph, detection, total), CPU seconds, peak RSS, recall@10 of
the graph (sampled against exact search) and F1 against the planted flips. Datalab given
Winnow's graph counts the winnow row's graph time (in brackets) in its total; Datalab given
Winnow's pred_probs counts only its own check (the probe is in the winnow row's detection). A tool that exceeds
the time limit is reported as such, not extrapolated.

    .venv/bin/python -m benchmarks.scale                                  # 20k and 100k, every tool
    .venv/bin/python -m benchmarks.scale --sizes 300000 1000000 --tools winnow
    .venv/bin/python -m benchmarks.scale --markdown out/scale.md          # also as markdown
    .venv/bin/python -m benchmarks.scale --data latent16 --sizes 50000 100000   # issue 16's speed data
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import emit, graph_pred_probs, markdown_table

DIM, CONCEPTS, CLASSES, RANK, NOISE_RATE = 512, 200, 10, 32, 0.20


DATA = ("blobs", "latent16")
LATENT_DIM, LATENT_CONCEPTS = 16, 50


def make_data(n: int, cache: Path, seed: int = 0, data: str = "blobs") -> tuple[Path, Path, Path]:
    """Write (embeddings.npy float32 (n, 512), labels.npy, truth.npy) once; returns their paths.

    data "blobs": 200 concepts, each a rank-32 blob around its own centre. "latent16" (issue
    16's speed data, harder for IVF): 50 concepts as Gaussians in one 16-d latent space, lifted
    to 512-d by one random linear map plus a little isotropic noise, so every concept shares the
    same 16 directions and neighbourhoods are dense and overlapping.
    """
    folder = cache / (f"scale-{n}-{seed}" if data == "blobs" else f"scale-{data}-{n}-{seed}")
    paths = folder / "embeddings.npy", folder / "labels.npy", folder / "is_flipped.npy"
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if data == "latent16":
        return _write_latent(folder, paths, n, rng)
    centres = rng.standard_normal((CONCEPTS, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = rng.standard_normal((CONCEPTS, RANK, DIM)).astype(np.float32)
    bases *= 0.5 / np.linalg.norm(bases, axis=2, keepdims=True)  # a concept spreads ~0.5 around its centre
    concept = rng.integers(0, CONCEPTS, n)

    def blob_rows(c_block: np.ndarray) -> np.ndarray:
        block = np.empty((len(c_block), DIM), np.float32)
        for c in np.unique(c_block):
            rows = np.flatnonzero(c_block == c)
            z = rng.standard_normal((len(rows), RANK)).astype(np.float32) / np.sqrt(RANK)
            block[rows] = centres[c] + z @ bases[c]
        return block + rng.standard_normal(block.shape).astype(np.float32) * (0.3 / np.sqrt(DIM))

    _write_rows(folder, paths[0], concept, blob_rows)
    return _write_labels(paths, concept % CLASSES, rng)


def _write_latent(folder: Path, paths, n: int, rng) -> tuple[Path, Path, Path]:
    centres = rng.standard_normal((LATENT_CONCEPTS, LATENT_DIM)).astype(np.float32)
    lift = rng.standard_normal((LATENT_DIM, DIM)).astype(np.float32) / np.sqrt(LATENT_DIM)
    concept = rng.integers(0, LATENT_CONCEPTS, n)

    def latent_rows(c_block: np.ndarray) -> np.ndarray:
        z = centres[c_block] + 0.5 * rng.standard_normal((len(c_block), LATENT_DIM)).astype(np.float32)
        return z @ lift + rng.standard_normal((len(c_block), DIM)).astype(np.float32) * (0.1 / np.sqrt(DIM))

    _write_rows(folder, paths[0], concept, latent_rows)
    return _write_labels(paths, concept % CLASSES, rng)


def _write_rows(folder: Path, path: Path, concept: np.ndarray, rows_of) -> None:
    """embeddings.npy (float32 unit rows) from rows_of(concepts of a block), 100k rows at a time."""
    emb = np.lib.format.open_memmap(folder / ".emb.tmp.npy", mode="w+", dtype=np.float32, shape=(len(concept), DIM))
    for start in range(0, len(concept), 100_000):
        block = rows_of(concept[start : start + 100_000])
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        emb[start : start + len(block)] = block
    emb.flush()
    del emb
    os.replace(folder / ".emb.tmp.npy", path)


def _write_labels(paths, true: np.ndarray, rng) -> tuple[Path, Path, Path]:
    n = len(true)
    flipped = np.zeros(n, bool)
    flipped[rng.choice(n, int(NOISE_RATE * n), replace=False)] = True
    labels = true.copy()
    labels[flipped] = (true[flipped] + rng.integers(1, CLASSES, flipped.sum())) % CLASSES
    np.save(paths[1], labels)
    np.save(paths[2], flipped)
    return paths


def f1(flagged: np.ndarray, truth: np.ndarray) -> float:
    tp = int((flagged & truth).sum())
    p, r = tp / max(1, flagged.sum()), tp / max(1, truth.sum())
    return 2 * p * r / (p + r) if p + r else 0.0


TOOLS = ["winnow", "winnow-exact", "datalab", "datalab-graph", "datalab-probs", "sklearn"]
FOLLOWERS = {"datalab-graph", "datalab-probs"}  # read the winnow row's graph / pred_probs


def worker(tool: str, emb_path: str, labels_path: str, truth_path: str) -> dict:
    import resource

    result = _work(tool, Path(emb_path), labels_path, truth_path)
    result["rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return result


def _warm_up(tool: str, emb, labels: np.ndarray, rows: int, probs: np.ndarray | None) -> None:
    """The tool's work once on the first `rows` rows, untimed and discarded (see the module notes)."""
    m = min(rows, len(labels))
    x = np.asarray(emb[:m], dtype=np.float32)
    if tool.startswith("winnow"):
        from winnow import curation

        index = curation.IndexConfig(kind="exact" if tool == "winnow-exact" else "ivf")
        graph = curation.build_knn_graph(x, k=10, index=index)
        curation.detect_label_issues(labels[:m], embeddings=x, knn=graph, n_classes=CLASSES)
    elif tool == "datalab":
        from benchmarks.common import datalab_label_issues

        datalab_label_issues(labels[:m], features=x, k=10)
    elif tool in FOLLOWERS:
        from benchmarks.common import datalab_label_issues

        datalab_label_issues(labels[:m], pred_probs=probs[:m] / probs[:m].sum(axis=1, keepdims=True))
    else:
        from sklearn.neighbors import NearestNeighbors

        NearestNeighbors(n_neighbors=11, algorithm="brute", metric="cosine").fit(x).kneighbors(x)


def _work(tool: str, emb_path: Path, labels_path: str, truth_path: str) -> dict:
    emb = np.load(emb_path, mmap_mode="r")
    labels, truth = np.load(labels_path), np.load(truth_path)
    shared = emb_path.parent / "winnow-run"  # what the winnow row hands to the datalab-graph / -probs rows
    # Imports happen before the clock starts, for every tool: we time the work, not Python.
    if tool.startswith("winnow"):
        import torch  # noqa: F401  (the probe's)

        from winnow import curation
    elif tool.startswith("datalab"):
        from benchmarks.common import datalab_label_issues
    elif tool == "sklearn":
        from sklearn.neighbors import NearestNeighbors
    else:
        raise SystemExit(f"unknown tool {tool!r}; choose from {TOOLS}")
    if tool in FOLLOWERS:
        given = json.loads((shared / "graph.json").read_text())
        indices = np.load(shared / "indices.npy")
        probs = np.load(shared / "pred_probs.npy")
    warmup = int(os.environ.get("WINNOW_BENCH_WARMUP", "0"))
    if warmup:
        _warm_up(tool, emb, labels, warmup, probs if tool in FOLLOWERS else None)
    t0, c0 = time.perf_counter(), time.process_time()

    def done(**fields) -> dict:
        return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, **fields}

    if tool.startswith("winnow"):
        index = curation.IndexConfig(kind="exact") if tool == "winnow-exact" else None
        graph = curation.build_knn_graph(emb, k=10, index=index)
        t_graph = time.perf_counter() - t0
        report = curation.detect_label_issues(labels, embeddings=emb, knn=graph, n_classes=CLASSES)
        flagged = report.frame["is_label_issue"].to_numpy()
        out = done(graph_seconds=t_graph, recall=graph.recall, graph=graph.method, f1=f1(flagged, truth))
        if tool == "winnow":
            shared.mkdir(exist_ok=True)
            np.save(shared / "indices.npy", graph.indices)
            np.save(shared / "pred_probs.npy", report.pred_probs)
            (shared / "graph.json").write_text(json.dumps({"graph": graph.method, "recall": graph.recall,
                                                           "graph_seconds": t_graph}))
        return out
    if tool == "datalab":
        flagged, _, _ = datalab_label_issues(labels, features=np.asarray(emb), k=10)
        return done(recall=1.0, graph="its own (scikit-learn)", f1=f1(flagged, truth))
    if tool == "datalab-graph":
        flagged, _, _ = datalab_label_issues(labels, pred_probs=graph_pred_probs(indices, labels, CLASSES))
        return done(recall=given["recall"], graph=f"Winnow's ({given['graph']})", f1=f1(flagged, truth),
                    given_graph_seconds=given["graph_seconds"])
    if tool == "datalab-probs":
        flagged, _, _ = datalab_label_issues(labels, pred_probs=probs)
        return done(recall=None, graph="-", f1=f1(flagged, truth))
    nn = NearestNeighbors(n_neighbors=11, algorithm="brute", metric="cosine").fit(np.asarray(emb))
    nn.kneighbors(np.asarray(emb))
    return done(recall=1.0, graph="exact (scikit-learn brute)", f1=None, graph_seconds=time.perf_counter() - t0)


def run_worker(tool: str, paths, timeout: float, warmup: int = 0) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.scale", "--worker", tool, *map(str, paths)]
    env = {**os.environ, "WINNOW_BENCH_WARMUP": str(warmup)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"timeout": timeout}
    if proc.returncode != 0:
        return {"error": err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"}
    return json.loads(out.strip().splitlines()[-1])


DESCRIBE = {
    "winnow": "Winnow (its default graph)",
    "winnow-exact": "Winnow on FAISS exact (IndexFlatIP)",
    "datalab": "Datalab from features",
    "datalab-graph": "Datalab given Winnow's graph",
    "datalab-probs": "Datalab given Winnow's pred_probs",
    "sklearn": "scikit-learn brute kNN (graph only)",
}


def _cells(n: int, tool: str, r: dict) -> list[str]:
    def num(key, fmt="{:.1f}"):
        return fmt.format(r[key]) if r.get(key) is not None else "-"

    if "timeout" in r:
        return [f"{n:,}", DESCRIBE[tool], "", "", "", f"> {r['timeout']:.0f} (limit)", "", "", "", ""]
    if "error" in r:
        return [f"{n:,}", DESCRIBE[tool], "", "", "", "error: " + r["error"], "", "", "", ""]
    detect = r["seconds"] - r["graph_seconds"] if r.get("graph_seconds") is not None and r.get("f1") is not None \
        else (r["seconds"] if tool in FOLLOWERS else None)
    graph_s, total = num("graph_seconds"), num("seconds")
    if tool == "datalab-graph":  # the winnow row's graph, then Datalab's check on it
        graph_s, total = f"({r['given_graph_seconds']:.1f})", f"{r['given_graph_seconds'] + r['seconds']:.1f}"
    return [f"{n:,}", DESCRIBE[tool], r.get("graph", "-"), graph_s, "-" if detect is None else f"{detect:.1f}",
            total, num("cpu_seconds"), num("rss_gib", "{:.2f}"), num("recall", "{:.3f}"),
            num("f1", "{:.3f}")]


def _ratios(n: int, by_tool: dict) -> str:
    """One line per N that splits the end-to-end gap into the index and the detector."""
    def get(tool, key="seconds"):
        return by_tool.get(tool, {}).get(key)

    parts = []
    w, d = get("winnow"), get("datalab")
    if w and d:
        parts.append(f"end to end Winnow {w:.1f} s, Datalab from features {d:.1f} s ({d / w:.1f}x)")
    wg, eg, sk = get("winnow", "graph_seconds"), get("winnow-exact", "graph_seconds"), get("sklearn")
    graphs = [f"FAISS exact {eg:.1f} s" if eg else "", f"scikit-learn brute {sk:.1f} s" if sk else ""]
    method = get("winnow", "graph") or ""
    if wg is not None and not method.startswith("exact"):
        graphs.append(f"Winnow's {method} {wg:.1f} s (recall {get('winnow', 'recall'):.3f})")
    if any(graphs):
        parts.append("the graph alone: " + ", ".join(filter(None, graphs)))
    we = get("winnow-exact")
    if w and we and not method.startswith("exact"):
        parts.append(f"Winnow on the exact graph {we:.1f} s in all ({we / w:.1f}x its time on {method}, "
                     f"F1 {get('winnow-exact', 'f1'):.3f} vs {get('winnow', 'f1'):.3f})")
    dg = get("datalab-graph")
    if w and wg is not None and dg:
        parts.append(f"given the same graph, detection: Winnow {w - wg:.1f} s (5-fold probe and every detector), "
                     f"Datalab {dg:.1f} s")
    return f"{n:,}: " + "; ".join(parts) + "." if parts else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--tools", nargs="+", default=TOOLS, choices=TOOLS)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per tool and size")
    parser.add_argument("--baseline-max-n", type=int, default=100_000,
                        help="skip datalab / sklearn / winnow-exact above this N (they are quadratic)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "winnow" / "bench")
    parser.add_argument("--data", choices=DATA, default="blobs",
                        help="blobs: 200 rank-32 concepts; latent16: 50 concepts in one 16-d latent space (issue 16)")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown to this file")
    parser.add_argument("--warmup", type=int, default=2000,
                        help="rows each tool's untimed first run gets before its clock starts (0: none)")
    parser.add_argument("--worker", nargs=4, metavar=("TOOL", "EMB", "LABELS", "TRUTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    tools = [t for t in TOOLS if t in args.tools]
    if FOLLOWERS & set(tools) and "winnow" not in tools:
        parser.error("datalab-graph and datalab-probs use the winnow row's graph and pred_probs: add --tools winnow")
    rows, notes, raw = [], [], []
    for n in args.sizes:
        paths = make_data(n, args.cache, data=args.data)
        by_tool = {}
        for tool in tools:
            quadratic = tool in ("winnow-exact", "datalab", "sklearn")
            if quadratic and n > args.baseline_max_n:
                rows.append([f"{n:,}", DESCRIBE[tool], "", "", "", "skipped (--baseline-max-n)", "", "", "", ""])
                continue
            print(f"  {n:,} {tool} ...", file=sys.stderr, flush=True)
            r = run_worker(tool, paths, args.timeout, args.warmup)
            by_tool[tool] = r
            raw.append({"n": n, "tool": tool, **r})
            rows.append(_cells(n, tool, r))
            print("  " + " | ".join(rows[-1]), file=sys.stderr, flush=True)
        notes.append(_ratios(n, by_tool))
    header = ["N", "tool", "kNN graph", "graph s", "detect s", "total s", "CPU s", "peak RSS GiB", "recall@10", "F1"]
    table = markdown_table(header, rows, align="rlllrrrrrr")
    cpus = os.cpu_count()
    preface = (f"Seconds are wall time on {cpus} cores (CPU s: all threads of the process, which shows how "
               f"busy the machine was); the graph column of Datalab given Winnow's graph is the winnow row's. "
               + (f"Each tool ran once on the first {args.warmup:,} rows before its clock started (warm-up)."
                  if args.warmup else "No warm-up: each tool's first call in a fresh process is timed."))
    emit([table, preface, *filter(None, notes)], args.markdown)
    (args.cache / "scale-results.json").write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
