"""Duplicates are one voter: a mislabelled image and its byte copies must not shelter each
other in kNN voting, in the probe's folds, or in the noise count (real digit images)."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

from tests.helpers import digit_images
from winnow.curation import build_knn_graph, curate, detect_label_issues, find_duplicates
from winnow.curation.duplicates import near_duplicate_threshold

N_FLIPS = 8


def _png_hash(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return hashlib.blake2b(buf.getvalue(), digest_size=16).hexdigest()


@pytest.fixture(scope="module")
def digits():
    from winnow.embeddings.encoders import get_encoder

    images = digit_images(400, seed=0)
    x = get_encoder("pixels:16").encode_images([im for im, _ in images])
    labels = np.array([label for _, label in images], dtype=np.int64)
    hashes = [_png_hash(im) for im, _ in images]
    rng = np.random.default_rng(2)
    flips = rng.choice(len(labels), N_FLIPS, replace=False)
    noisy = labels.copy()
    noisy[flips] = (labels[flips] + 1 + rng.integers(0, 9, N_FLIPS)) % 10
    return x, noisy, hashes, flips


def _flagged_with_copies(digits, copies: int):
    """curate() on the folder plus `copies` byte copies of every flipped image (same wrong label)."""
    x, noisy, hashes, flips = digits
    n = len(noisy)
    src = np.repeat(flips, copies)  # copy j of flip f sits at row n + position in src
    emb = np.vstack([x, x[src]])
    labels = np.r_[noisy, noisy[src]]
    all_hashes = hashes + [hashes[i] for i in src]
    keys = np.array([f"k{i:05d}" for i in range(len(labels))])
    result = curate(labels, emb, build_knn_graph(emb, k=10), rows=np.arange(len(labels)), n_classes=10,
                    unusable_reason=[None] * len(labels), keys=keys, content_hashes=all_hashes)
    flagged = np.array(["label_issue" in r for r in result.decisions.reasons])
    copies_of = {int(f): n + np.flatnonzero(src == f) for f in flips}
    return flagged, copies_of


@pytest.fixture(scope="module")
def alone(digits):
    flagged, _ = _flagged_with_copies(digits, 0)
    return flagged


@pytest.mark.parametrize("copies", [1, 2, 3])
def test_a_flipped_image_and_its_byte_copies_are_all_flagged(digits, alone, copies):
    _, noisy, _, flips = digits
    found_alone = [int(f) for f in flips if alone[f]]
    assert len(found_alone) >= N_FLIPS - 2  # the detector sees most single flips in this folder
    flagged, copies_of = _flagged_with_copies(digits, copies)
    missed = [f for f in found_alone if not (flagged[f] and flagged[copies_of[f]].all())]
    assert missed == [], f"flips sheltered by their {copies} byte cop(ies): {missed}"
    planted = np.zeros(len(flagged), dtype=bool)
    planted[flips] = True
    planted[len(noisy):] = True
    assert flagged[~planted].sum() <= alone[: len(noisy)][~planted[: len(noisy)]].sum() + 1  # no new false flags


def test_a_folder_without_copies_is_judged_as_before(digits):
    x, noisy, _, _ = digits
    grouped = detect_label_issues(noisy, embeddings=x)  # "auto": near duplicates by the data-driven cut
    plain = detect_label_issues(noisy, embeddings=x, duplicate_groups=None)
    # At 16x16 pixels this folder holds one near-identical pair of distinct images (cosine 0.985),
    # which "auto" groups: the pair counts once, so the noise estimate moves by at most the
    # samples merged away, and the per-class flag counts that follow it by a handful of rows.
    graph = build_knn_graph(x, k=10)
    groups = find_duplicates(graph, min_similarity=near_duplicate_threshold(graph)).group
    merged = int((groups >= 0).sum() - len(set(groups[groups >= 0])))
    assert merged <= 2, merged  # no copies were planted: at most a near-identical pair or two
    assert abs(grouped.noise_rate - plain.noise_rate) <= merged / len(noisy) + 1e-9
    changed = int((grouped.frame["is_label_issue"].to_numpy() != plain.frame["is_label_issue"].to_numpy()).sum())
    assert changed <= 3 * max(merged, 1) and changed <= 0.01 * len(noisy), changed


def _blobs(n=300, d=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((5, d))[rng.integers(0, 5, n)] + 0.7 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_voter_graph_rules_against_brute_force():
    from winnow.curation.knn_noise import build_voter_graph

    base = _blobs()
    # Row 300+j is a copy of row j for j < 20; rows 0..19 with their copies form 20 groups.
    x = np.vstack([base, base[:20]])
    n, k = len(x), 8
    groups = np.full(n, -1)
    groups[:20] = groups[300:] = np.arange(20)
    exclude = np.zeros(n, dtype=bool)
    exclude[[50, 51, 52]] = True
    g = build_knn_graph(x, k=k)
    assert build_voter_graph(g) is g  # nothing to collapse or exclude: the graph itself
    v = build_voter_graph(g, groups=groups, exclude=exclude, embeddings=x)
    voter = np.where(groups >= 0, n + groups, np.arange(n))
    sims = x @ x.T
    agree = []
    for i in np.flatnonzero(~exclude):
        row = v.indices[i]
        assert (row >= 0).all()  # refilled to k voters
        assert not exclude[row].any() and i not in row and not (voter[row] == voter[i]).any()
        assert len(set(voter[row].tolist())) == k  # a group votes once
        members = np.flatnonzero(voter == voter[i])
        np.testing.assert_allclose(v.similarities[i], sims[members][:, row].max(axis=0), atol=1e-5)
        assert np.all(np.diff(v.similarities[i]) <= 1e-6)
        # Brute force: the k most similar distinct voters, for a grouped row over its members.
        best = sims[members].max(axis=0)
        best[exclude | (voter == voter[i])] = -np.inf
        order = np.argsort(-best, kind="stable")
        seen, want = set(), []
        for j in order:
            if voter[j] not in seen:
                seen.add(voter[j])
                want.append(voter[j])
            if len(want) == k:
                break
        agree.append(len(set(want) & set(voter[row].tolist())) / k)
    for g_id in range(20):
        assert np.array_equal(v.indices[g_id], v.indices[300 + g_id])  # copies share one list
    assert np.mean(agree) > 0.97  # the neighbours' neighbours almost always hold the refill
    # Without embeddings, nothing is refilled: the rules only remove.
    short = build_voter_graph(g, groups=groups, exclude=exclude)
    assert ((short.indices >= 0).sum(axis=1) <= k).all() and not exclude[short.indices[short.indices >= 0]].any()


def test_the_probe_sees_a_group_as_one_sample(digits):
    # Exact copies in one group: same folds, same feature statistics and the same loss as
    # the folder without them, so the original rows get the same out-of-fold predictions.
    from winnow.curation.small_loss import fit_probe

    x, noisy, _, flips = digits
    alone = fit_probe(x, noisy, n_classes=10, seed=0)
    src = np.repeat(flips, 3)
    groups = np.full(len(noisy) + len(src), -1)
    groups[flips] = np.arange(len(flips))
    groups[len(noisy):] = [int(np.flatnonzero(flips == s)[0]) for s in src]
    copied = fit_probe(np.vstack([x, x[src]]), np.r_[noisy, noisy[src]], n_classes=10, seed=0, groups=groups)
    np.testing.assert_allclose(copied.pred_probs[: len(noisy)], alone.pred_probs, atol=1e-4)
    np.testing.assert_allclose(copied.aum[: len(noisy)], alone.aum, atol=1e-3)
