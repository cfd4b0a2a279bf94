"""Planted out-of-domain groups: small sets of images that do not belong in a digit folder.

Ground truth for tests/unit/curation/test_outliers.py and benchmarks/outliers_ood.py. Each
group is 5-20 images of one kind, each image different (a different seed), so that the group
members are each other's nearest neighbours and a per-sample kNN distance cannot see them:

- noise:   colour noise;
- stripes: coloured sinusoidal stripes, random frequency, angle and phase;
- blank:   one flat colour (or grey) per image;
- text:    a few words of dark text on a light, slightly tinted page;
- photo:   another dataset's images: crops of scikit-learn's two bundled photographs
           (china.jpg, flower.jpg), real photos, not random stand-ins.
"""

from __future__ import annotations

import functools

import numpy as np

KINDS = ("noise", "stripes", "blank", "text", "photo")
SIZE = 64
WORDS = ("invoice", "total", "page", "winnow", "label", "the", "data", "copy", "scan", "error", "note", "draft")


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(np.asarray(im, dtype=np.uint8) for im in load_sample_images().images)


def ood_image(kind: str, rng: np.random.Generator, *, size: int = SIZE):
    """One out-of-domain image of `kind` (KINDS), drawn with `rng`."""
    from PIL import Image, ImageDraw

    yy, xx = np.mgrid[0:size, 0:size] / (size - 1.0)
    if kind == "noise":
        arr = rng.integers(0, 256, (size, size, 3))
    elif kind == "stripes":
        f, a = rng.uniform(2, 8), rng.uniform(0, np.pi)
        t = np.cos(a) * xx + np.sin(a) * yy
        arr = np.stack([127 + 127 * np.sin(2 * np.pi * f * t + p) for p in rng.uniform(0, 2 * np.pi, 3)], -1)
    elif kind == "blank":
        arr = np.broadcast_to(rng.integers(0, 256, 3), (size, size, 3))
    elif kind == "text":
        page = tuple(int(v) for v in rng.integers(200, 256, 3))
        im = Image.new("RGB", (size, size), page)
        draw = ImageDraw.Draw(im)
        for line in range(int(rng.integers(3, 6))):
            words = " ".join(rng.choice(WORDS, size=2))
            draw.text((int(rng.integers(0, 6)), 4 + 12 * line), words, fill=tuple(int(v) for v in rng.integers(0, 60, 3)))
        return im
    elif kind == "photo":
        photo = _photos()[int(rng.integers(0, len(_photos())))]
        side = int(rng.integers(96, 256))
        y0, x0 = int(rng.integers(0, photo.shape[0] - side)), int(rng.integers(0, photo.shape[1] - side))
        return Image.fromarray(photo[y0 : y0 + side, x0 : x0 + side]).resize((size, size), Image.Resampling.BILINEAR)
    else:
        raise ValueError(f"unknown out-of-domain kind {kind!r}; one of {KINDS}")
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def ood_group(kind: str, n: int, *, seed: int, size: int = SIZE) -> list:
    """`n` different images of one `kind`."""
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    return [ood_image(kind, rng, size=size) for _ in range(n)]


def plant_groups(n_classes: int, *, seed: int, sizes=(5, 20), kinds=KINDS, one_folder: bool = False):
    """One group per kind, of a size drawn from `sizes` (inclusive), with labels spread over the
    classes (dropped into random class folders) or, with `one_folder`, all in one folder.
    Returns (images, labels (M,), group (M,) int: index into `kinds`)."""
    rng = np.random.default_rng(seed)
    images, labels, group = [], [], []
    for g, kind in enumerate(kinds):
        n = int(rng.integers(sizes[0], sizes[1] + 1))
        images += ood_group(kind, n, seed=seed, size=SIZE)
        labels += [int(rng.integers(0, n_classes))] * n if one_folder else rng.integers(0, n_classes, n).tolist()
        group += [g] * n
    return images, np.array(labels, dtype=np.int64), np.array(group, dtype=np.int64)
