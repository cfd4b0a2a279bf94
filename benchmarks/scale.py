"""Scale benchmark: kNN graph + full label-noise detection as N grows, side by side.

For N = 20k, 100k, 300k, 1M seeded clustered embeddings (512-d, 200 concepts in 10
classes, each concept a low-rank blob) with 20% planted symmetric label flips, it runs,
each in its own process so peak RSS is measured per tool:

- winnow:   curation.build_knn_graph (exact up to 20k, IVF above) + find_label_issues
- datalab:  cleanlab Datalab's label check on the same embeddings (kNN + its detector)
- sklearn:  scikit-learn NearestNeighbors (brute, cosine) for the kNN graph alone

and prints one table: seconds, peak RSS, recall@10 of the graph (sampled against exact
search), and F1 of the flagged samples against the planted flips. A tool that exceeds the
time limit is reported as such, not extrapolated.

    .venv/bin/python benchmarks/scale.py                       # all sizes
    .venv/bin/python benchmarks/scale.py --sizes 20000 100000 --tools winnow datalab
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM, CONCEPTS, CLASSES, RANK, NOISE_RATE = 512, 200, 10, 32, 0.20


def make_data(n: int, cache: Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """Write (embeddings.npy float32 (n, 512), labels.npy, truth.npy) once; returns their paths."""
    folder = cache / f"scale-{n}-{seed}"
    paths = folder / "embeddings.npy", folder / "labels.npy", folder / "is_flipped.npy"
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CONCEPTS, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = rng.standard_normal((CONCEPTS, RANK, DIM)).astype(np.float32)
    bases *= 0.5 / np.linalg.norm(bases, axis=2, keepdims=True)  # a concept spreads ~0.5 around its centre
    concept = rng.integers(0, CONCEPTS, n)
    emb = np.lib.format.open_memmap(folder / ".emb.tmp.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, 100_000):
        c_block = concept[start : start + 100_000]
        block = np.empty((len(c_block), DIM), np.float32)
        for c in np.unique(c_block):
            rows = np.flatnonzero(c_block == c)
            z = rng.standard_normal((len(rows), RANK)).astype(np.float32) / np.sqrt(RANK)
            block[rows] = centres[c] + z @ bases[c]
        block += rng.standard_normal(block.shape).astype(np.float32) * (0.3 / np.sqrt(DIM))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        emb[start : start + len(block)] = block
    emb.flush()
    del emb
    os.replace(folder / ".emb.tmp.npy", paths[0])
    true = concept % CLASSES
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


def worker(tool: str, emb_path: str, labels_path: str, truth_path: str) -> dict:
    import resource

    result = _work(tool, emb_path, labels_path, truth_path)
    result["rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return result


def _work(tool: str, emb_path: str, labels_path: str, truth_path: str) -> dict:
    emb = np.load(emb_path, mmap_mode="r")
    labels, truth = np.load(labels_path), np.load(truth_path)
    # Imports happen before the clock starts, for every tool: we time the work, not Python.
    if tool == "winnow":
        import torch  # noqa: F401  (the probe's)

        import curation
    elif tool == "datalab":
        from cleanlab import Datalab
    else:
        from sklearn.neighbors import NearestNeighbors
    t0 = time.perf_counter()
    if tool == "winnow":
        graph = curation.build_knn_graph(emb, k=10)
        t_graph = time.perf_counter() - t0
        result = curation.find_label_issues(labels, embeddings=emb, knn=graph, n_classes=CLASSES)
        flagged = result["is_label_issue"].to_numpy()
        return {"seconds": time.perf_counter() - t0, "graph_seconds": t_graph, "recall": graph.recall,
                "method": graph.method, "f1": f1(flagged, truth)}
    if tool == "datalab":
        lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
        lab.find_issues(features=np.asarray(emb), issue_types={"label": {"k": 10}})
        flagged = lab.get_issues("label")["is_label_issue"].to_numpy()
        return {"seconds": time.perf_counter() - t0, "recall": 1.0, "f1": f1(flagged, truth)}
    if tool == "sklearn":
        nn = NearestNeighbors(n_neighbors=11, algorithm="brute", metric="cosine").fit(np.asarray(emb))
        nn.kneighbors(np.asarray(emb))
        return {"seconds": time.perf_counter() - t0, "recall": 1.0, "f1": None}
    raise SystemExit(f"unknown tool {tool!r}")


def run_worker(tool: str, paths, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", tool, *map(str, paths)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
        return {"timeout": timeout}
    out, err = proc.communicate()
    if proc.returncode != 0:
        return {"error": err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"}
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 300_000, 1_000_000])
    parser.add_argument("--tools", nargs="+", default=["winnow", "datalab", "sklearn"])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per tool and size")
    parser.add_argument("--baseline-max-n", type=int, default=100_000,
                        help="skip datalab / sklearn above this N (they are quadratic: 100k already takes "
                             "6-8 minutes on 2 cores, so 300k would take about an hour)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "winnow" / "bench")
    parser.add_argument("--worker", nargs=4, metavar=("TOOL", "EMB", "LABELS", "TRUTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    rows = []
    print(f"{'N':>9} {'tool':<8} {'seconds':>9} {'peak RSS GiB':>13} {'recall@10':>10} {'F1':>6}  note", flush=True)
    for n in args.sizes:
        paths = make_data(n, args.cache)
        for tool in args.tools:
            if tool != "winnow" and n > args.baseline_max_n:
                print(f"{n:>9} {tool:<8} {'skipped':>9} {'':>13} {'':>10} {'':>6}  quadratic: over 10 min "
                      f"(see --baseline-max-n)", flush=True)
                continue
            r = run_worker(tool, paths, args.timeout)
            rows.append({"n": n, "tool": tool, **r})
            secs = f"{r['seconds']:.1f}" if "seconds" in r else (f">{r['timeout']:.0f}" if "timeout" in r else "error")
            rec = f"{r['recall']:.3f}" if r.get("recall") is not None else "-"
            score = f"{r['f1']:.3f}" if r.get("f1") is not None else "-"
            note = r.get("method", "") + (f" graph {r['graph_seconds']:.1f}s" if "graph_seconds" in r else "")
            note = r.get("error", note) if "error" in r else note
            print(f"{n:>9} {tool:<8} {secs:>9} {r.get('rss_gib', float('nan')):>13.2f} {rec:>10} {score:>6}  {note}",
                  flush=True)
    out = args.cache / "scale-results.json"
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
