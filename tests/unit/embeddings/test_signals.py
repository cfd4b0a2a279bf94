"""Decode-time signals on real digits: the perceptual hash's robustness, the quality statistics' meaning."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from tests.helpers import digit_images
from winnow.embeddings.signals import (
    SIGNALS,
    hamming,
    image_signals,
    perceptual_hash,
    quality_stats,
    signal_columns,
)


@pytest.fixture(scope="module")
def digits():
    return [im.convert("RGB") for im, _ in digit_images(60, seed=2, size=64)]


def _jpeg(im, q=60):
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_phash_is_stable_under_resize_and_reencode_and_separates_distinct_images(digits):
    ph = np.array([perceptual_hash(im)["phash"] for im in digits])
    resized = np.array([perceptual_hash(im.resize((40, 40)))["phash"] for im in digits])
    jpeg = np.array([perceptual_hash(_jpeg(im))["phash"] for im in digits])
    assert np.median(hamming(ph, resized)) <= 2 and np.median(hamming(ph, jpeg)) <= 2
    pairs = hamming(ph[:, None], ph[None, :])[np.triu_indices(len(ph), 1)]
    assert np.median(pairs) >= 20  # distinct digits: far apart (random codes differ in 32 of 64 bits)
    # Agrees with the reference implementation's notion of distance (imagehash's pHash), where installed.
    imagehash = pytest.importorskip("imagehash")
    theirs = [imagehash.phash(im) for im in digits[:10]]
    ours = ph[:10]
    for i in range(1, 10):
        assert abs(int(hamming(ours[0], ours[i])) - (theirs[0] - theirs[i])) <= 16


def test_hamming_counts_bits_of_negative_codes_too():
    assert hamming(-1, 0) == 64 and hamming(np.array([5, 6]), 4).tolist() == [1, 1]


def test_quality_stats_read_what_users_call_the_defect(digits):
    im = digits[0]
    base = quality_stats(im)
    dark = quality_stats(Image.fromarray((np.asarray(im) * 0.08).astype(np.uint8)))
    assert dark["brightness_p99"] < 0.1 < base["brightness_p99"]
    # Blur that hides the edges: the contrast-free Laplacian ratio falls several-fold;
    # a darkened image is not blurrier.
    blurred = quality_stats(im.filter(ImageFilter.GaussianBlur(6)))
    assert blurred["blur"] < 0.3 * base["blur"] and dark["blur"] > 0.5 * base["blur"]
    flat = quality_stats(Image.new("RGB", (50, 30), (200, 10, 10)))
    assert flat["entropy"] == 0 and flat["blur"] == 0 and flat["colourfulness"] > 0.7
    assert (flat["width"], flat["height"], flat["aspect"]) == (50, 30, pytest.approx(50 / 30))
    assert base["colourfulness"] == 0 and base["entropy"] > 1
    assert quality_stats(im.point(lambda v: min(255, v + 230)))["brightness_p01"] > 0.85


def test_every_signal_column_is_declared_and_computed_once(digits):
    got = image_signals(digits[1])
    assert list(got) == list(signal_columns())
    assert all(isinstance(got[c], int) for c, d in signal_columns().items() if d == "int64")
    cols = [c for _, declared in SIGNALS.values() for c in declared]
    assert len(cols) == len(set(cols))


def test_the_thumbnail_round_trips_through_its_int64_columns_and_curation_reads_it_alike(digits):
    from winnow.curation.duplicates import THUMB_SIZE as CURATION_SIZE
    from winnow.curation.duplicates import thumbnails_from_columns
    from winnow.embeddings.signals import THUMB_COLUMNS, THUMB_SIZE, thumbnail, unpack_thumbnails

    assert THUMB_SIZE == CURATION_SIZE and len(THUMB_COLUMNS) * 8 == THUMB_SIZE ** 2
    per = [thumbnail(im) for im in digits[:5]]
    columns = {c: np.array([t[c] for t in per], dtype=np.int64) for c in THUMB_COLUMNS}
    thumbs = unpack_thumbnails(columns)
    assert thumbs.shape == (5, THUMB_SIZE ** 2) and thumbs.dtype == np.uint8
    np.testing.assert_array_equal(thumbs, thumbnails_from_columns(columns))
    # It is the image's luminance at 16 x 16 (box-averaged): rows first, 0..255.
    want = np.asarray(digits[0].convert("L").resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BOX), dtype=np.float64)
    assert np.abs(thumbs[0].reshape(THUMB_SIZE, THUMB_SIZE) - want).max() <= 2
    assert signal_columns(["thumbnail"]) == dict.fromkeys(THUMB_COLUMNS, "int64")


def test_a_store_block_without_thumbnails_keeps_its_hash_and_quality_signals_in_a_run(tmp_path):
    # The embed stage's hand-off (pipeline/stages.py, one signal at a time): a block written before
    # the thumbnail signal existed must not lose its pHash and quality numbers.
    from types import SimpleNamespace

    from winnow.embeddings import EmbeddingStore
    from winnow.embeddings.signals import THUMB_COLUMNS
    from winnow.pipeline.stages import _write_signals, read_signals

    store = EmbeddingStore(tmp_path / "store", encoder_id="enc-t", dim=2)
    older = {c: (np.array([5, 6]) if d == "int64" else np.array([0.5, 0.25]))
             for c, d in signal_columns().items() if c not in THUMB_COLUMNS}
    store.append(["a", "b"], np.eye(2, dtype=np.float32), signals=older)  # written before the thumbnail signal
    newer = {c: (np.array([7]) if d == "int64" else np.array([0.75])) for c, d in signal_columns().items()}
    store.append(["c"], np.ones((1, 2), dtype=np.float32) / np.sqrt(2), signals=newer)
    path = tmp_path / "signals.parquet"
    _write_signals(store, ["s0", "s1", "s2", "s3"], ["a", None, "b", "c"], [0, 2, 3], path)
    got = read_signals(SimpleNamespace(signals=path))
    assert got["measured"].tolist() == [True, False, True, True]  # the unembedded row only
    assert got["phash"].tolist() == [5, 0, 6, 7] and got["blur"][2] == 0.25
    assert got["thumb00"].tolist() == [0, 0, 0, 7]  # absent thumbnails read as zeros: they match nothing
