"""Text duplicates: exact after normalisation, near copies by MinHash (checked against exact
Jaccard), and both joined with the embedding duplicates in curate()."""

from __future__ import annotations

import itertools
import random

import numpy as np

from winnow.curation import find_duplicates, find_minhash_pairs, normalise_text, text_duplicate_keys
from winnow.curation.knn_graph import KnnGraph
from winnow.curation.text_duplicates import _shingles


def test_normalisation_folds_case_whitespace_and_unicode_forms():
    assert normalise_text("  The\tCAT\n sat ") == "the cat sat"
    assert normalise_text("ｆｕｌｌ　ｗｉｄｔｈ") == "full width"  # NFKC
    assert normalise_text("Straße") == normalise_text("STRASSE")
    keys = text_duplicate_keys(["The cat", "the  CAT", "the dog", None])
    assert keys[0] == keys[1] != keys[2] and keys[3] is None


def _sentences(n, seed=0):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(400)]
    return [" ".join(rng.choice(words) for _ in range(30)) for _ in range(n)]


def test_minhash_pairs_are_exactly_the_pairs_above_the_threshold():
    rng = random.Random(1)
    texts = _sentences(60)
    planted = []
    for i in range(10):  # near copies: a word or two changed
        words = texts[i].split()
        words[rng.randrange(len(words))] = "zz"
        texts.append(" ".join(words))
        planted.append((i, len(texts) - 1))
    texts.append(texts[3].upper())  # an exact copy after normalisation: left to the keys
    texts.append(None)
    rows, cols, jac = find_minhash_pairs(texts, threshold=0.8)
    found = set(zip(rows.tolist(), cols.tolist(), strict=True))
    truth = set()
    for i, j in itertools.combinations(range(len(texts)), 2):
        if texts[i] is None or texts[j] is None or normalise_text(texts[i]) == normalise_text(texts[j]):
            continue
        a, b = _shingles(texts[i], 5), _shingles(texts[j], 5)
        if len(a & b) / len(a | b) >= 0.8:
            truth.add((i, j))
    assert set(planted) <= truth and set(planted) <= found
    assert found <= truth  # never a false positive: the candidates are checked exactly
    assert len(found) >= 0.9 * len(truth)  # and LSH recall at the threshold is high
    assert (jac >= 0.8).all() and (rows < cols).all()


def test_find_duplicates_joins_given_pairs_with_the_graph():
    # Four samples, no graph edge above the cut; a pair (0, 2) found another way makes a group.
    graph = KnnGraph(indices=np.array([[1], [0], [3], [2]]), similarities=np.full((4, 1), 0.1, np.float32))
    plain = find_duplicates(graph, min_similarity=0.9)
    assert (plain.group == -1).all()
    joined = find_duplicates(graph, min_similarity=0.9, pairs=(np.array([0]), np.array([2]), np.array([0.85])),
                             keys=np.array(["d", "c", "b", "a"]))
    assert joined.group[0] == joined.group[2] >= 0 and joined.group[1] == joined.group[3] == -1
    assert not joined.exact[[0, 2]].any()
