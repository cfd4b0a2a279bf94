"""What a copy looks like in this embedding space: augmented copies of a sample of the dataset.

The near-duplicate cut is calibrated per run (curation/duplicates.py:
`calibrate_near_duplicates`) from two sets of similarities: an image against a made copy of
itself, and an image against its nearest distinct sample. This module makes the copies: it
reads a random sample of the dataset's own images, applies one edit of the kinds users call
"the same image" (a 2-10% crop, a resize, a JPEG re-encode at quality 50-90, a small rotation,
a mild colour change), and embeds, hashes and thumbnails each copy with the run's encoder.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageEnhance

from winnow.embeddings.encoders import Encoder
from winnow.embeddings.images import decode_image
from winnow.embeddings.signals import (
    THUMB_COLUMNS,
    THUMB_SIZE,
    perceptual_hash,
    thumbnail,
    unpack_thumbnails,
)
from winnow.reading import SampleReader

LOG = logging.getLogger(__name__)

COPY_KINDS = ("crop", "resize", "jpeg", "rotate", "colour")
"""The edits a calibration copy is made with (one per copy)."""


@dataclass(frozen=True)
class CopyProbe:
    source: np.ndarray  # (C,) int64: the input position (locator index) each copy was made from
    kind: np.ndarray  # (C,) str: the edit (COPY_KINDS)
    vectors: np.ndarray  # (C, D) float32: the copies' L2-normalised embeddings
    phash: np.ndarray  # (C,) int64: the copies' perceptual hashes
    thumb: np.ndarray  # (C, THUMB_SIZE^2) uint8: the copies' grayscale thumbnails (signals.thumbnail)


def make_copy(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One edited copy of `img` (RGB): `kind` from COPY_KINDS, its strength drawn from `rng`."""
    w, h = img.size
    if kind == "crop":  # 2-10% of each side's length cut off, split at random between its two ends
        fw, fh = rng.uniform(0.02, 0.10, 2)
        cw, ch = max(1, round(w * fw)), max(1, round(h * fh))
        left, top = int(rng.integers(0, cw + 1)), int(rng.integers(0, ch + 1))
        return img.crop((left, top, left + max(1, w - cw), top + max(1, h - ch)))
    if kind == "resize":
        s = float(rng.choice([rng.uniform(0.5, 0.9), rng.uniform(1.2, 2.0)]))
        return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
    if kind == "jpeg":
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(50, 91)))
        return decode_image(buf.getvalue())[0] or img
    if kind == "rotate":  # small tilt, the corners filled with the image's own border colour
        arr = np.asarray(img)
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        fill = tuple(int(v) for v in np.median(border, axis=0))
        return img.rotate(float(rng.uniform(2, 5) * rng.choice([-1, 1])), resample=Image.Resampling.BILINEAR,
                          fillcolor=fill)
    if kind == "colour":
        out = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.85, 1.15)))
        out = ImageEnhance.Contrast(out).enhance(float(rng.uniform(0.85, 1.15)))
        return ImageEnhance.Color(out).enhance(float(rng.uniform(0.8, 1.2)))
    raise ValueError(f"unknown copy kind {kind!r}; one of {COPY_KINDS}")


def probe_copies(
    locators: Sequence[str],
    reader: SampleReader,
    encoder: Encoder,
    *,
    usable: Sequence[int],
    n_samples: int = 64,
    seed: int = 0,
    batch_size: int = 64,
) -> CopyProbe:
    """Embed one edited copy per kind of `n_samples` random usable samples (`usable`: input positions).

    The originals' own embeddings and hashes are the store's; only the copies are computed here
    (n_samples * len(COPY_KINDS) encoder calls).
    """
    rng = np.random.default_rng(seed)
    usable = np.asarray(usable, dtype=np.int64)
    chosen = np.sort(rng.choice(usable, size=min(n_samples, len(usable)), replace=False)) if len(usable) else usable
    reads = reader.read_many([locators[i] for i in chosen])
    sources, kinds, images = [], [], []
    for pos, read in zip(chosen, reads, strict=True):
        img = decode_image(read.data)[0] if read.reason is None else None
        if img is None:  # vanished or changed since it was embedded: calibrate on the others
            continue
        for kind in COPY_KINDS:
            sources.append(int(pos))
            kinds.append(kind)
            images.append(make_copy(img, kind, rng))
    if not images:
        return CopyProbe(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=str),
                         np.zeros((0, encoder.dim), dtype=np.float32), np.zeros(0, dtype=np.int64),
                         np.zeros((0, THUMB_SIZE * THUMB_SIZE), dtype=np.uint8))
    vecs = []
    for b in range(0, len(images), batch_size):
        vecs.append(encoder.encode_batch(torch.stack([encoder.preprocess(im) for im in images[b:b + batch_size]])))
    LOG.info("calibration: %d copies of %d samples embedded", len(images), len(set(sources)))
    return CopyProbe(source=np.asarray(sources, dtype=np.int64), kind=np.asarray(kinds),
                     vectors=np.concatenate(vecs).astype(np.float32),
                     phash=np.asarray([perceptual_hash(im)["phash"] for im in images], dtype=np.int64),
                     thumb=_thumbnails(images))


def _thumbnails(images: list[Image.Image]) -> np.ndarray:
    per_image = [thumbnail(im) for im in images]
    return unpack_thumbnails({c: np.asarray([t[c] for t in per_image], dtype=np.int64) for c in THUMB_COLUMNS})


__all__ = ["COPY_KINDS", "CopyProbe", "make_copy", "probe_copies"]
