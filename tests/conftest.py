"""Shared fixtures: real digit images written as class folders, an isolated cache, Prefect harness."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# These profiles govern every property test (no test sets max_examples; test_promise.py checks).
# CI replays the same 50 examples per property every run (derandomized: a red CI must mean a
# regression, not a new draw); HYPOTHESIS_PROFILE=explore searches 500 fresh examples per
# property locally and keeps the failures it finds in .hypothesis/.
CI_EXAMPLES = 50
settings.register_profile("ci", max_examples=CI_EXAMPLES, derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session", autouse=True)
def winnow_cache(tmp_path_factory) -> Path:
    """Bundled datasets are materialised into a per-session cache, never the user's."""
    path = tmp_path_factory.mktemp("winnow-cache")
    os.environ["WINNOW_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect database for every test that runs a whole flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


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


@pytest.fixture
def digit_folder(tmp_path) -> Path:
    """120 real digits (10 classes) as PNGs in class folders."""
    root = tmp_path / "digits"
    write_image_folder(root, digit_images(120))
    return root
