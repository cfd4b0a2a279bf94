"""Duplicates and leakage: planted copies in a real image folder, brute force, invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.planted import ENCODER, N_BASE, PlantedFolder, mnist_images, planted_folder
from winnow.curation.duplicates import find_duplicates, find_leaks
from winnow.curation.errors import InvalidArray, LengthMismatch
from winnow.curation.knn_graph import build_knn_graph, search_knn


@pytest.fixture(scope="session")
def planted(tmp_path_factory) -> PlantedFolder:
    return planted_folder(str(tmp_path_factory.getbasetemp() / "planted"))


# --- ground truth on real images -----------------------------------------------------------------


@pytest.mark.slow
def test_planted_copies_are_found(planted):
    graph = build_knn_graph(planted.embeddings, k=10)
    dup = find_duplicates(graph, content_hashes=planted.hashes, labels=np.maximum(planted.labels, 0))
    copies = np.flatnonzero(planted.copy_of >= 0)
    # Found: the copy shares a group with its original.
    found = [dup.group[c] >= 0 and dup.group[c] == dup.group[planted.copy_of[c]] for c in copies]
    by_kind = {k: float(np.mean([f for f, c in zip(found, copies, strict=True) if planted.kind[c] == k]))
               for k in ("exact", "jpeg", "resize", "crop")}
    assert by_kind["exact"] == 1.0 and by_kind["jpeg"] == 1.0 and by_kind["resize"] == 1.0, by_kind
    assert by_kind["crop"] >= 0.75, by_kind
    truth = set(copies) | set(planted.copy_of[copies])
    flagged = set(np.flatnonzero(dup.group >= 0))
    precision = len(flagged & truth) / len(flagged)
    assert precision >= 0.85, sorted(flagged - truth)
    # Exact copies are reported as byte-identical to their representative.
    exact_rows = copies[planted.kind[copies] == "exact"]
    assert dup.exact[exact_rows].all()
    # One representative per group, and it is a member of its group.
    for g in range(dup.n_groups):
        reps = np.unique(dup.representative[dup.group == g])
        assert len(reps) == 1 and dup.group[reps[0]] == g


@pytest.mark.slow
def test_clean_folder_has_almost_no_duplicates(planted):
    base = planted.kind == "base"
    graph = build_knn_graph(planted.embeddings[base], k=10)
    dup = find_duplicates(graph, content_hashes=[h for h, b in zip(planted.hashes, base, strict=True) if b])
    # Real MNIST has a few near-identical digits (two pairs at cosine ~0.957 in this
    # draw, e.g. plain "1"s); allow at most 3% of the folder in groups.
    assert int((dup.group >= 0).sum()) <= 0.03 * base.sum()


@pytest.mark.slow
def test_leakage_across_two_catalogs_is_found(planted):
    # Train = the base digits; holdout = the planted copies (exact, jpeg, resize, crop) and
    # 20 unrelated digits from elsewhere in MNIST.
    base = np.flatnonzero(planted.kind == "base")
    copies = np.flatnonzero(planted.copy_of >= 0)
    images, _ = mnist_images(N_BASE + 20, seed=0)  # the same draw: the first N_BASE are the base rows
    from winnow.embeddings import get_encoder

    others = get_encoder(ENCODER).encode_images([im for im in images[N_BASE:]])
    holdout = np.vstack([planted.embeddings[copies], others])
    holdout_hashes = [planted.hashes[c] for c in copies] + [None] * len(others)
    leaks = find_leaks(planted.embeddings[base], holdout, content_hashes=[planted.hashes[b] for b in base],
                       holdout_hashes=holdout_hashes)
    leaked_truth = set(planted.copy_of[copies].tolist())
    flagged = set(base[leaks.is_leak].tolist())
    recall = len(flagged & leaked_truth) / len(leaked_truth)
    precision = len(flagged & leaked_truth) / max(1, len(flagged))
    assert recall >= 0.9 and precision >= 0.9, (recall, precision, sorted(flagged ^ leaked_truth))
    exact_src = planted.copy_of[copies[planted.kind[copies] == "exact"]]
    assert leaks.is_leak[np.searchsorted(base, exact_src)].all()
    assert np.all(leaks.similarity[np.searchsorted(base, exact_src)] >= 1.0 - 1e-5)


# --- synthetic ground truth and brute force -----------------------------------------------------


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _planted(n=300, d=32, n_copies=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    src = rng.choice(n, size=n_copies, replace=False)
    copies = x[src] + 0.02 * rng.standard_normal((n_copies, d))
    return _unit(np.vstack([x, copies])), src


def test_synthetic_near_copies_match_brute_force():
    emb, src = _planted()
    n = 300
    dup = find_duplicates(build_knn_graph(emb, k=10), min_similarity=0.95)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -1)
    brute = np.flatnonzero((sims >= 0.95).any(axis=1))
    assert set(np.flatnonzero(dup.group >= 0)) == set(brute) == set(src) | set(range(n, n + len(src)))
    for j, s in enumerate(src):
        assert dup.group[n + j] == dup.group[s]


def test_exact_hashes_group_even_without_graph_edges():
    emb = _unit(np.random.default_rng(1).standard_normal((50, 8)))
    hashes = [f"h{i}" for i in range(50)]
    hashes[7] = hashes[3] = hashes[40] = "same"
    dup = find_duplicates(build_knn_graph(emb, k=3), min_similarity=1.0, content_hashes=hashes)
    assert set(np.flatnonzero(dup.group >= 0)) == {3, 7, 40}
    assert dup.exact[[3, 7, 40]].all() and dup.is_duplicate.sum() == 2


def test_label_conflicts_are_reported_and_label_quality_picks_the_representative():
    emb, src = _planted(n_copies=5)
    labels = np.zeros(len(emb), dtype=np.int64)
    labels[300] = 1  # copy of src[0] with another label
    quality = np.full(len(emb), 0.5)
    quality[300] = 0.9
    dup = find_duplicates(build_knn_graph(emb, k=10), labels=labels, label_quality=quality, keep="label_quality")
    g = dup.group[300]
    assert dup.label_conflict[dup.group == g].all() and dup.label_conflict.sum() == 2
    assert dup.representative[src[0]] == 300


def test_search_knn_matches_brute_force():
    rng = np.random.default_rng(3)
    base, queries = _unit(rng.standard_normal((200, 16))), _unit(rng.standard_normal((30, 16)))
    nn = search_knn(base, queries, k=5)
    brute = np.argsort(-(queries @ base.T), axis=1)[:, :5]
    assert np.array_equal(nn.indices, brute)
    assert search_knn(base[:3], queries, k=5).indices[:, 3:].max() == -1


def test_bad_inputs_raise_named_errors():
    emb, _ = _planted(n=30, n_copies=2)
    graph = build_knn_graph(emb, k=4)
    with pytest.raises(LengthMismatch, match="32"):
        find_duplicates(graph, labels=np.zeros(31, dtype=np.int64))
    with pytest.raises(InvalidArray, match="1.5"):
        find_duplicates(graph, min_similarity=1.5)
    with pytest.raises(InvalidArray, match="'biggest'"):
        find_duplicates(graph, keep="biggest")
    with pytest.raises(InvalidArray, match="repeat"):
        find_duplicates(graph, keys=["a"] * 32)
    with pytest.raises(InvalidArray, match="dimensions"):
        find_leaks(emb, emb[:, :5])


# --- invariants ----------------------------------------------------------------------------------


@st.composite
def duplicated_sets(draw):
    n = draw(st.integers(5, 60))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    n_copies = draw(st.integers(0, n))
    src = rng.integers(0, n, n_copies)
    noise = draw(st.sampled_from([0.0, 0.01, 0.05]))
    emb = _unit(np.vstack([x, x[src] + noise * rng.standard_normal((n_copies, 6))]))
    labels = rng.integers(0, 3, len(emb))
    hashes = [f"h{i}" for i in range(n)] + [f"h{s}" if noise == 0 and rng.random() < 0.5 else f"c{j}"
                                             for j, s in enumerate(src)]
    return emb, labels, hashes, rng.permutation(len(emb))


@settings(deadline=None)
@given(duplicated_sets())
def test_one_representative_per_group_and_row_order_does_not_matter(case):
    emb, labels, hashes, perm = case
    keys = np.array([f"id{i:04d}" for i in range(len(emb))])
    a = find_duplicates(build_knn_graph(emb, k=5), content_hashes=hashes, labels=labels, keys=keys)
    for g in range(a.n_groups):
        members = np.flatnonzero(a.group == g)
        assert len(members) >= 2
        reps = np.unique(a.representative[members])
        assert len(reps) == 1 and reps[0] in members
    assert np.all(a.representative[a.group < 0] == -1)
    b = find_duplicates(build_knn_graph(emb[perm], k=5), content_hashes=[hashes[i] for i in perm],
                        labels=labels[perm], keys=keys[perm])
    # Same partition, same representatives, same conflicts, seen through the permutation.
    assert np.array_equal(a.group[perm] >= 0, b.group >= 0)
    in_b = b.group >= 0
    assert np.array_equal(perm[b.representative[in_b]], a.representative[perm][in_b])
    assert np.array_equal(a.label_conflict[perm], b.label_conflict)
    assert np.array_equal(a.exact[perm], b.exact)
