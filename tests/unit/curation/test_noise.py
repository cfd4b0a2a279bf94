"""Noise specs, planting and detection metrics."""

import numpy as np
import pytest

from winnow.curation.errors import InvalidArray, LengthMismatch
from winnow.curation.noise import (
    NoiseSpec,
    check_transition_matrix,
    detection_metrics,
    noise_transition_matrix,
    parse_noise_spec,
    plant_label_noise,
)


def test_parse_specs():
    assert parse_noise_spec("symmetric:0.2") == NoiseSpec("symmetric", 0.2, None)
    assert parse_noise_spec("pair:0.3") == NoiseSpec("pair", 0.3, None)
    assert parse_noise_spec("matrix:noise/T.npy") == NoiseSpec("matrix", None, "noise/T.npy")


@pytest.mark.parametrize("spec", ["symmetric", "gaussian:0.2", "pair:abc", "pair:1.5", "symmetric:-0.1", "matrix:"])
def test_bad_specs_quote_the_value(spec):
    with pytest.raises(InvalidArray, match="noise"):
        parse_noise_spec(spec)


def test_transition_matrices():
    sym = noise_transition_matrix("symmetric", 0.3, n_classes=4)
    np.testing.assert_allclose(sym.sum(axis=1), 1)
    np.testing.assert_allclose(np.diag(sym), 0.7)
    np.testing.assert_allclose(sym[0, 1:], 0.1)
    pair = noise_transition_matrix("pair", 0.4, n_classes=3)
    np.testing.assert_allclose(pair, [[0.6, 0.4, 0], [0, 0.6, 0.4], [0.4, 0, 0.6]])
    with pytest.raises(InvalidArray, match="row 1 sums to"):
        check_transition_matrix([[1, 0], [0.5, 0.6]])
    with pytest.raises(InvalidArray, match="square"):
        check_transition_matrix(np.ones((2, 3)) / 3)


def test_planting_is_exact_per_class_and_seeded():
    labels = np.repeat(np.arange(5), 200)
    noisy = plant_label_noise(labels, noise_transition_matrix("symmetric", 0.2, n_classes=5), seed=3)
    for c in range(5):
        assert (noisy[labels == c] != c).sum() == 40
    again = plant_label_noise(labels, noise_transition_matrix("symmetric", 0.2, n_classes=5), seed=3)
    np.testing.assert_array_equal(noisy, again)
    other = plant_label_noise(labels, noise_transition_matrix("symmetric", 0.2, n_classes=5), seed=4)
    assert (noisy != other).any()


def test_pair_noise_flips_to_next_class():
    labels = np.repeat(np.arange(4), 100)
    noisy = plant_label_noise(labels, noise_transition_matrix("pair", 0.3, n_classes=4), seed=0)
    flipped = noisy != labels
    assert flipped.sum() == 120
    np.testing.assert_array_equal(noisy[flipped], (labels[flipped] + 1) % 4)


def test_custom_matrix():
    t = np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    labels = np.repeat(np.arange(3), 10)
    noisy = plant_label_noise(labels, t, seed=0)
    assert (noisy[:10] == 1).sum() == 5
    np.testing.assert_array_equal(noisy[10:], labels[10:])


def test_detection_metrics():
    truth = np.array([1, 1, 0, 0, 0], dtype=bool)
    quality = np.array([0.1, 0.6, 0.2, 0.9, 0.8])
    flagged = np.array([1, 0, 1, 0, 0], dtype=bool)
    m = detection_metrics(truth, quality, flagged)
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5
    assert m["auroc"] == pytest.approx(5 / 6)
    assert 0 < m["average_precision"] <= 1
    with pytest.raises(LengthMismatch):
        detection_metrics(truth, quality[:4], flagged)
