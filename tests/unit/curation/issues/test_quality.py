"""image_quality: defects planted into real images are found with their reason; clean digits stay unflagged."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from tests.helpers import digit_images
from winnow.curation.issues import ISSUE_TYPES, IssueContext
from winnow.curation.issues.quality import _STATS, find_quality_issues
from winnow.curation.knn_graph import build_knn_graph
from winnow.embeddings.signals import image_signals, quality_stats


def _stats(images):
    rows = [quality_stats(im.convert("RGB")) for im in images]
    return {k: np.array([r[k] for r in rows]) for k in _STATS}


def _planted(img: Image.Image, kind: str) -> Image.Image:
    arr = np.asarray(img.convert("RGB")).astype(np.float64)
    if kind == "dark":  # under 10% brightness
        return Image.fromarray((arr * 0.08).astype(np.uint8))
    if kind == "light":  # washed out: the black ground turned light grey
        return Image.fromarray(np.clip(arr * 0.2 + 215, 0, 255).astype(np.uint8))
    if kind == "blurry":  # a blur that hides the edges
        return img.convert("RGB").filter(ImageFilter.GaussianBlur(radius=6))
    if kind == "low_information":  # a single flat colour
        return Image.new("RGB", img.size, (90, 140, 30))
    if kind == "odd_size":
        return img.convert("RGB").resize((img.size[0] * 5, img.size[1] * 5))
    if kind == "odd_aspect_ratio":
        return img.convert("RGB").resize((img.size[0] * 3, img.size[1]))
    raise ValueError(kind)


KINDS = ("dark", "light", "blurry", "low_information", "odd_size", "odd_aspect_ratio")


@pytest.fixture(scope="module")
def digits64():
    return [im for im, _ in digit_images(240, seed=5, size=64)]


@pytest.mark.parametrize("kind", KINDS)
def test_each_planted_defect_is_found_with_its_reason(digits64, kind):
    images = list(digits64)
    planted = [200 + i for i in range(4)]
    for i in planted:
        images[i] = _planted(images[i], kind)
    found = find_quality_issues(_stats(images), np.ones(len(images), dtype=bool))
    flagged = set(np.flatnonzero(found.flags[kind]).tolist())
    # Every planted image, and at most one clean digit (the blur tail of 8x8 digits upscaled
    # to 64 px holds one natural outlier, row 84 of this draw).
    assert set(planted) <= flagged and len(flagged - set(planted)) <= 1, (kind, sorted(flagged), found.facts)
    score = found.columns[f"{kind}_score"]
    assert score[planted].min() > np.quantile(np.delete(score, planted), 0.99)
    clean = np.setdiff1d(np.arange(len(images)), planted)
    everything = np.any(list(found.flags.values()), axis=0)
    assert everything[clean].sum() <= 1, found.facts


def test_grayscale_is_flagged_only_in_a_colour_dataset(digits64):
    rng = np.random.default_rng(0)
    tints = np.stack([np.ones(len(digits64)), rng.uniform(0.2, 0.6, len(digits64)), rng.uniform(0.0, 0.8, len(digits64))], 1)
    tints = np.take_along_axis(tints, rng.permuted(np.tile(np.arange(3), (len(digits64), 1)), axis=1), 1)
    colour = [Image.fromarray((np.asarray(im.convert("RGB")) * t).astype(np.uint8)) for im, t in zip(digits64, tints,
                                                                                                   strict=True)]
    colour[7] = digits64[7].convert("RGB")  # a grayscale image among colour ones
    found = find_quality_issues(_stats(colour), np.ones(len(colour), dtype=bool))
    assert np.flatnonzero(found.flags["grayscale"]).tolist() == [7]
    # In a grayscale dataset nothing is "grayscale".
    assert not find_quality_issues(_stats(digits64), np.ones(len(digits64), dtype=bool)).flags["grayscale"].any()


def test_at_most_five_of_the_bundled_clean_digits_are_flagged():
    from sklearn.datasets import load_digits

    d = load_digits()
    # The bundled catalog's PNGs (catalogs/builders.py): 8x8, 0..16 scaled to 0..255.
    images = [Image.fromarray(np.round(x * (255 / 16)).astype(np.uint8), mode="L") for x in d.images]
    found = find_quality_issues(_stats(images), np.ones(len(images), dtype=bool))
    flagged = np.any(list(found.flags.values()), axis=0)
    assert flagged.sum() <= 5, found.facts


def test_the_issue_type_reads_the_run_statistics_and_leaves_unmeasured_rows_alone(digits64):
    images = [_planted(im, "dark") if i == 3 else im.convert("RGB") for i, im in enumerate(digits64[:60])]
    sig = [image_signals(im) for im in images]
    stats = {k: np.array([s[k] for s in sig], dtype=np.float64) for k in sig[0]}
    stats["measured"] = np.ones(60, dtype=bool)
    stats["measured"][5] = False
    emb = np.eye(60, dtype=np.float32)
    ctx = IssueContext(embeddings=emb, graph=build_knn_graph(emb, k=3), labels=np.zeros(60, dtype=np.int64),
                       n_classes=1, keys=np.arange(60), sample_stats=stats)
    issue = ISSUE_TYPES["image_quality"]
    found = issue.find(ctx)
    assert np.flatnonzero(found.flags["dark"]).tolist() == [3]
    assert np.isnan(found.columns["dark_score"][5]) and issue.default_action == "keep"
    assert set(found.columns) == set(issue.columns)
    # A run embedded before decode-time signals existed: nothing flagged, nothing raised.
    bare = IssueContext(embeddings=emb, graph=ctx.graph, labels=ctx.labels, n_classes=1, keys=np.arange(60))
    assert issue.find(bare).flags == {}
