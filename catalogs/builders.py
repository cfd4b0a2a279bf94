"""Builders that materialise bundled datasets into the cache folder on first use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from winnow import atomic
from winnow.catalogs.errors import InvalidCatalog
from winnow.catalogs.spec import CatalogSpec


def build_digits(dest: Path, *, seed: int = 0, noise_rate: float = 0.10) -> None:
    """scikit-learn's 1,797 real 8x8 digits as PNGs in `dest/images/<label>/`, with
    `noise_rate` of the labels flipped (seeded) to a different random class.

    The folder a PNG sits in is its *given* (possibly flipped) label; the truth is in
    `dest/ground_truth.parquet` (path, given_label, true_label, is_flipped).
    """
    import polars as pl
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    true = digits.target.astype(np.int64)
    n = len(true)
    rng = np.random.default_rng(seed)
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.choice(n, size=round(noise_rate * n), replace=False)] = True
    given = true.copy()
    # A flip moves to one of the 9 other classes, uniformly (symmetric noise).
    given[flipped] = (true[flipped] + rng.integers(1, 10, size=flipped.sum())) % 10
    # Built beside dest and renamed into place: a half-built dataset is never visible, and
    # when a concurrent build finished first, theirs is kept.
    with atomic.replace_folder(dest, keep_existing=True) as tmp:
        paths = []
        for i in range(n):
            rel = f"{given[i]}/digit_{i:04d}.png"
            out = tmp / "images" / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            pixels = np.round(digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(out)
            paths.append(rel)
        pl.DataFrame(
            {
                "path": paths,
                "given_label": [str(g) for g in given],
                "true_label": [str(t) for t in true],
                "is_flipped": flipped,
            }
        ).write_parquet(tmp / "ground_truth.parquet")


BUILDERS: dict[str, Callable[[Path], None]] = {"digits": build_digits}


def ensure_built(spec: CatalogSpec) -> None:
    """Run the catalog's builder if its data is not there yet."""
    name = spec.builder
    if name is None:
        return
    if name not in BUILDERS:
        raise InvalidCatalog(f"unknown builder {name!r}; known: {sorted(BUILDERS)}")
    data = spec.source.local_path()
    if data is None:
        raise InvalidCatalog(f"builder {name!r} needs a source of local files; the {spec.source.kind!r} source "
                             f"has none")
    # Builders own the folder above the source's data (images/ + ground truth beside it).
    dest = data.parent
    if not dest.exists():
        BUILDERS[name](dest)
