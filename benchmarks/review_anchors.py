"""Do reviewed labels help detection? Confirmed labels as anchors for the label detectors.

    .venv/bin/python -m benchmarks.review_anchors
    .venv/bin/python -m benchmarks.review_anchors --markdown out/review_anchors.md

scikit-learn's digits (1,797, centred L2-normalised pixels), planted noise (symmetric 20%,
pair 30%), a kNN graph (k=10) and the detector ensemble (`curation.detect_label_issues`,
methods "auto": the kNN vote, the out-of-fold probe and the rest). A simulated reviewer checks
the R samples with the lowest label_quality and gives each its true label. "Anchored" runs
the detectors again with those confirmed labels in place (they vote, and train the probe, with
the truth); "plain" keeps the first run's flags. Both are scored (precision / recall / F1 of
the planted flips) on the samples NOT reviewed: does a review help find the rest?
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.common import emit, markdown_table
from winnow import curation
from winnow.curation.noise import noise_transition_matrix, plant_label_noise


def _digits(kind: str, rate: float, seed: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    y = d.target.astype(np.int64)
    return x, y, plant_label_noise(y, noise_transition_matrix(kind, rate, n_classes=10), seed=seed)


def _prf(flag: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    tp = int((flag & truth).sum())
    p, r = tp / max(int(flag.sum()), 1), tp / max(int(truth.sum()), 1)
    return p, r, 2 * p * r / max(p + r, 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reviewed", default="0,50,100,200", help="R values: samples reviewed, comma-separated")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown to this file")
    args = parser.parse_args()
    rows = []
    for kind, rate in (("symmetric", 0.2), ("pair", 0.3)):
        x, y, noisy = _digits(kind, rate, args.seed)
        graph = curation.build_knn_graph(x, k=10)
        truth = noisy != y
        base = curation.detect_label_issues(noisy, embeddings=x, knn=graph, n_classes=10, seed=args.seed).frame
        quality, flag0 = base["label_quality"].to_numpy(), base["is_label_issue"].to_numpy()
        for r in (int(v) for v in args.reviewed.split(",")):
            reviewed = np.zeros(len(y), dtype=bool)
            reviewed[np.argsort(quality, kind="stable")[:r]] = True
            anchored = np.where(reviewed, y, noisy)
            frame = curation.detect_label_issues(anchored, embeddings=x, knn=graph, n_classes=10, seed=args.seed).frame
            rest = ~reviewed
            plain = _prf(flag0[rest], truth[rest])
            anch = _prf(frame["is_label_issue"].to_numpy()[rest], truth[rest])
            rows.append([f"{kind} {rate:.0%}", str(r), str(int(truth[rest].sum())),
                         *(f"{v:.3f}" for v in plain), *(f"{v:.3f}" for v in anch),
                         f"{anch[2] - plain[2]:+.3f}"])
    table = markdown_table(["noise", "reviewed", "wrong left", "plain P", "plain R", "plain F1", "anchored P",
                            "anchored R", "anchored F1", "F1 change"], rows, align="lrrrrrrrrr")
    emit([table, "Scored on the samples not reviewed; the reviewer takes the lowest label_quality first."],
         args.markdown)


if __name__ == "__main__":
    main()
