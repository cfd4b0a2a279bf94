"""A planted Gaussian mixture on the unit sphere: ground truth for the label-noise unit tests."""

from __future__ import annotations

import numpy as np


def mixture(counts, *, d=32, scales=None, seed=0):
    """(N, d) L2-normalised Gaussian mixture with len(counts) classes; class c's mean is scaled
    by scales[c] (a smaller scale: a class nearer the centre, harder to tell apart)."""
    rng = np.random.default_rng(seed)
    k = len(counts)
    means = rng.normal(size=(k, d)) * np.asarray(scales if scales is not None else [1.0] * k)[:, None]
    y = np.repeat(np.arange(k), counts)
    x = means[y] + rng.normal(size=(len(y), d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y
