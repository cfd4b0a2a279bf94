"""Real scikit-learn digits: as PIL images, as class folders of PNGs, as unit-norm pixel rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def digit_images(n: int, *, seed: int = 0, size: int = 32):
    """`n` real scikit-learn digits as (PIL image, label) pairs, upscaled to `size` pixels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.random.default_rng(seed).choice(len(d.target), size=n, replace=False)
    out = []
    for i in idx:
        pixels = np.round(d.images[i] * (255.0 / 16.0)).astype(np.uint8)
        out.append((Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC), int(d.target[i])))
    return out


def write_image_folder(root: Path, images, *, prefix: str = "img") -> list[Path]:
    """Write (image, label) pairs as root/<label>/<prefix>_<i>.png; returns the paths."""
    paths = []
    for i, (img, label) in enumerate(images):
        p = root / str(label) / f"{prefix}_{i:04d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p)
        paths.append(p)
    return paths


def digits_world(n=400, n_unusable=5, seed=0):
    """Real scikit-learn digits as centred, L2-normalised pixels; `n_unusable` rows without embeddings."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(d.target), size=n, replace=False)
    x = d.data[idx].astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    labels = d.target[idx].astype(np.int64)
    unusable = np.zeros(n, dtype=bool)
    unusable[rng.choice(n, size=n_unusable, replace=False)] = True
    rows = np.flatnonzero(~unusable)
    reasons = ["unreadable" if u else None for u in unusable]
    keys = np.array([f"s{i:05d}" for i in range(n)])
    return labels, x[rows], rows, reasons, keys
