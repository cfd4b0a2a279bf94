"""The calibration copies: each edit is a mild one, and probe_copies embeds one per kind of a sample."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import digit_images, write_image_folder
from winnow.embeddings import get_encoder
from winnow.embeddings.copies import COPY_KINDS, make_copy, probe_copies
from winnow.embeddings.signals import hamming, perceptual_hash
from winnow.reading import FileReader


def test_each_copy_kind_is_a_mild_edit_of_its_image():
    img = digit_images(1, seed=1, size=64)[0][0].convert("RGB")
    rng = np.random.default_rng(0)
    for kind in COPY_KINDS:
        copy = make_copy(img, kind, rng)
        assert copy.mode == "RGB"
        w, h = copy.size
        if kind == "crop":
            assert 0.88 <= w / 64 <= 0.99 and 0.88 <= h / 64 <= 0.99
        elif kind != "resize":
            assert copy.size == img.size
    with pytest.raises(ValueError, match="blur"):
        make_copy(img, "blur", rng)


def test_probe_copies_embeds_one_copy_per_kind_of_a_sample(tmp_path):
    images = digit_images(12, seed=2, size=64)
    paths = [str(p) for p in write_image_folder(tmp_path, images)]
    enc = get_encoder("pixels:16")
    probe = probe_copies(paths, FileReader(), enc, usable=[0, 2, 4, 6, 8], n_samples=3, seed=1)
    assert len(probe.source) == 3 * len(COPY_KINDS) and set(probe.source) <= {0, 2, 4, 6, 8}
    assert probe.vectors.shape == (15, enc.dim)
    np.testing.assert_allclose(np.linalg.norm(probe.vectors, axis=1), 1.0, rtol=1e-5)
    # A JPEG / colour copy hashes close to its original.
    own = {i: perceptual_hash(images[i][0].convert("RGB"))["phash"] for i in set(probe.source.tolist())}
    mild = np.isin(probe.kind, ["jpeg", "colour"])
    assert np.median(hamming(probe.phash[mild], [own[int(s)] for s in probe.source[mild]])) <= 4
    # Each copy's thumbnail is made too (the calibration of the thumbnail branch).
    assert probe.thumb.shape == (15, 256) and probe.thumb.dtype == np.uint8 and probe.thumb.std(axis=1).min() > 0
    empty = probe_copies(paths, FileReader(), enc, usable=[], n_samples=3)
    assert len(empty.source) == 0 and empty.vectors.shape == (0, enc.dim) and empty.thumb.shape == (0, 256)
