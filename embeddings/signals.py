"""Decode-time signals: numbers taken from an image while it is decoded for the encoder.

One mechanism for every per-image statistic that needs the pixels: a perceptual hash and a
small grayscale thumbnail (for near duplicates: the thumbnail lets curation/duplicates.py compare
two images while undoing a crop or a tilt), brightness, blur, information, colour and size (for image quality). The
embedder computes them on the decoded image (no second pass over the files) and the store
keeps them by content hash beside the embedding, so a run that reuses a file's embedding
reuses its signals too.

    SIGNALS          name -> (function of an RGB PIL image -> {column: value}, its columns)
    list_signals()   the registered names
    image_signals(img)  every registered signal's columns for one image
    signal_columns()    column -> numpy dtype, in registry order

Adding a signal: one function below and one line in SIGNALS (its columns must not clash).
Every column is a number (int64 or float64); NaN means "not computed" (a store block written
before the signal existed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from winnow.embeddings.images import FULL_SIZE

HASH_BITS = 64

# Fixed working size of the blur measure: the variance of the Laplacian depends on the
# resolution it is taken at, so every image is measured at the same one.
BLUR_SIZE = 128
# A pixel at or above this luminance (0..1) counts as over-exposed (blown out).
OVEREXPOSED = 250 / 255


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II basis (n, n): dct(x) = D @ x."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d


_DCT32 = _dct_matrix(32)
_BIT_WEIGHTS = (np.uint64(1) << np.arange(HASH_BITS - 1, -1, -1, dtype=np.uint64))


def _pack_bits(bits: np.ndarray) -> int:
    """64 booleans -> a signed int64 (the uint64's bit pattern), first bit most significant."""
    value = np.bitwise_or.reduce(np.where(bits.ravel(), _BIT_WEIGHTS, np.uint64(0)))
    return int(np.array(value, dtype=np.uint64).view(np.int64))


def _gray(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Luminance in 0..1 at `size` (w, h), antialiased, resized in floating point (8-bit rounding
    would put a noise floor under the blur measure of smooth images)."""
    lum = Image.fromarray(np.asarray(img.convert("L"), dtype=np.float32) / 255.0, mode="F")
    return np.asarray(lum.resize(size, Image.Resampling.BILINEAR if min(size) > 16 else Image.Resampling.BOX),
                      dtype=np.float64)


def perceptual_hash(img: Image.Image) -> dict[str, int]:
    """pHash (64-bit DCT hash) and dHash (64-bit difference hash) of an image.

    pHash: grayscale at 32x32, 2-D DCT, the 8x8 lowest frequencies against their median
    (the imagehash / pHash.org recipe): stable under resize, re-encoding, mild colour change.
    dHash: grayscale at 9x8, each pixel brighter than its right neighbour.
    """
    g = _gray(img, (32, 32))
    low = (_DCT32 @ g @ _DCT32.T)[:8, :8]
    phash = _pack_bits(low > np.median(low))
    d = _gray(img, (9, 8))
    dhash = _pack_bits(d[:, 1:] > d[:, :-1])
    return {"phash": phash, "dhash": dhash}


# The thumbnail's side: 16 x 16 luminance, 256 bytes a sample (curation/duplicates.py THUMB_SIZE reads it).
THUMB_SIZE = 16
THUMB_COLUMNS = tuple(f"thumb{i:02d}" for i in range(THUMB_SIZE * THUMB_SIZE // 8))
"""The thumbnail's bytes, 8 to a column (little-endian int64): the store keeps numbers, one column each."""


def thumbnail(img: Image.Image) -> dict[str, int]:
    """A THUMB_SIZE x THUMB_SIZE grayscale thumbnail (box-averaged luminance, 0..255, rows first),
    packed 8 bytes to an int64 column (THUMB_COLUMNS); `unpack_thumbnails` undoes it."""
    g = np.clip(np.round(_gray(img, (THUMB_SIZE, THUMB_SIZE)) * 255.0), 0, 255).astype(np.uint8)
    return dict(zip(THUMB_COLUMNS, np.frombuffer(g.tobytes(), dtype="<i8").tolist(), strict=True))


def unpack_thumbnails(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """(N, THUMB_SIZE^2) uint8 thumbnails from their THUMB_COLUMNS ((N,) int64 each)."""
    packed = np.stack([np.asarray(columns[c], dtype=np.int64) for c in THUMB_COLUMNS], axis=1).astype("<i8")
    return np.ascontiguousarray(packed).view(np.uint8).reshape(len(packed), THUMB_SIZE * THUMB_SIZE)


def quality_stats(img: Image.Image) -> dict[str, float]:
    """Brightness, exposure, blur, information, colour and size of an RGB image.

    brightness: mean luminance (0..1); brightness_p01 / _p99: its 1st / 99th percentiles (a thin stroke on a dark ground is 5% of the pixels);
    overexposed: share of pixels at or above OVEREXPOSED; blur: variance of the Laplacian of
    the luminance at BLUR_SIZE x BLUR_SIZE over the luminance's variance (contrast-free: a
    darkened image is not blurrier; 0 for a flat image; low = no edges); entropy: Shannon
    entropy of the 256-bin luminance histogram in bits (0 flat .. 8); colourfulness: the 95th
    percentile of per-pixel max(R,G,B) - min(R,G,B) (0..1; 0 = grayscale; a percentile, so a
    colour stroke on a black ground counts as colour); width, height, aspect (w / h) of the full
    image (`img.info[FULL_SIZE]` when decode_image reduced it, else its own size).
    """
    # The full image's size: decode_image may hand over a reduced copy (images.WORKING_SIDE).
    w, h = img.info.get(FULL_SIZE, img.size)
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if rgb.shape[0] * rgb.shape[1] > 512 * 512:  # statistics of a thumbnail: the same numbers, a fraction of the work
        small = img.copy()
        small.thumbnail((512, 512), Image.Resampling.BILINEAR)
        rgb = np.asarray(small.convert("RGB"), dtype=np.uint8)
    lum = (rgb @ np.array([0.299, 0.587, 0.114])) / 255.0
    p01, p99 = np.percentile(lum, [1, 99])
    hist = np.bincount(np.clip(np.round(lum * 255), 0, 255).astype(np.int64).ravel(), minlength=256)
    p = hist[hist > 0] / hist.sum()
    g = _gray(img, (BLUR_SIZE, BLUR_SIZE))
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    var = float(g.var())
    blur = float(lap.var() / var) if var > 1e-8 else 0.0
    spread = np.percentile(rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2), 95) / 255.0
    return {
        "brightness": float(lum.mean()), "brightness_p01": float(p01), "brightness_p99": float(p99),
        "overexposed": float((lum >= OVEREXPOSED).mean()), "blur": blur,
        "entropy": float(-(p * np.log2(p)).sum()), "colourfulness": float(spread),
        "width": float(w), "height": float(h), "aspect": float(w) / float(h),
    }


SIGNALS: dict[str, tuple[Callable[[Image.Image], Mapping[str, float | int]], dict[str, str]]] = {
    "perceptual_hash": (perceptual_hash, {"phash": "int64", "dhash": "int64"}),
    "quality": (quality_stats, {c: "float64" for c in ("brightness", "brightness_p01", "brightness_p99", "overexposed",
                                                       "blur", "entropy", "colourfulness", "width", "height",
                                                       "aspect")}),
    "thumbnail": (thumbnail, dict.fromkeys(THUMB_COLUMNS, "int64")),
}
"""Every decode-time signal: name -> (function, its columns -> dtype)."""


def list_signals() -> list[str]:
    return list(SIGNALS)


def signal_columns(names: Sequence[str] | None = None) -> dict[str, str]:
    """Every signal column (or those of the signals `names`) -> dtype ("int64" | "float64"), in registry order."""
    return {c: d for name, (_, cols) in SIGNALS.items() if names is None or name in names for c, d in cols.items()}


def image_signals(img: Image.Image) -> dict[str, float | int]:
    """Every registered signal's columns for one decoded image."""
    out: dict[str, float | int] = {}
    for fn, cols in SIGNALS.values():
        got = fn(img)
        out.update({c: got[c] for c in cols})
    return out


def hamming(a, b) -> np.ndarray:
    """Bitwise Hamming distance between int64 hash codes (broadcasting)."""
    x = np.asarray(np.bitwise_xor(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)))
    return np.bitwise_count(x.view(np.uint64)).astype(np.int64)


__all__ = ["BLUR_SIZE", "HASH_BITS", "OVEREXPOSED", "SIGNALS", "THUMB_COLUMNS", "THUMB_SIZE", "hamming", "image_signals",
           "list_signals", "perceptual_hash", "quality_stats", "signal_columns", "thumbnail", "unpack_thumbnails"]
