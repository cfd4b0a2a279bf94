"""Duplicates among texts that embeddings alone miss or blur: exact after normalisation, and near
copies by MinHash LSH.

Three tiers, cheapest first, as NeMo Curator dedups text (exact, fuzzy, semantic):

1. exact after normalisation (`text_duplicate_keys`): Unicode NFKC, case folded, whitespace
   collapsed; texts with the same key are copies (`exact_duplicate`);
2. near copies by MinHash LSH over character shingles (`find_minhash_pairs`, datasketch): pairs
   whose shingle sets have a Jaccard similarity at or above the threshold, checked exactly
   after the LSH proposes them (so a pair is never a false positive of the sketch);
3. semantic duplicates: the kNN graph of the embeddings, as for images (curation/duplicates.py).

curate() joins the three into one set of duplicate groups (`duplicate_keys`, `duplicate_pairs`).
Pure functions over lists of strings; nothing here reads a file.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from winnow.curation.errors import InvalidArray

_SPACE = re.compile(r"\s+")

MINHASH_THRESHOLD = 0.8  # Jaccard of character 5-gram sets at or above which two texts are near copies
SHINGLE_CHARS = 5  # characters per shingle (short texts: word shingles would leave too few)
NUM_PERM = 128  # MinHash permutations: the LSH's recall at the threshold is ~1 with datasketch's bands


def normalise_text(text: str) -> str:
    """The form two texts must share to be exact duplicates: NFKC (full-width and compatibility
    characters folded), case folded, runs of whitespace as one space, trimmed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def text_duplicate_keys(texts: Sequence[str | None]) -> list[str | None]:
    """(N,) keys, equal exactly for texts equal after `normalise_text`; None where the text is None."""
    return [None if t is None else hashlib.blake2b(normalise_text(t).encode("utf-8", "surrogatepass"),
                                                   digest_size=16).hexdigest() for t in texts]


def _shingles(text: str, size: int) -> set[str]:
    norm = normalise_text(text)
    if len(norm) <= size:
        return {norm}
    return {norm[i : i + size] for i in range(len(norm) - size + 1)}


def find_minhash_pairs(texts: Sequence[str | None], *, threshold: float = MINHASH_THRESHOLD,
                       shingle_chars: int = SHINGLE_CHARS, num_perm: int = NUM_PERM,
                       seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Near-copy pairs among N texts: (rows, cols, jaccard), rows < cols, each pair once.

    Candidates come from MinHash LSH (datasketch) at `threshold`; each is kept only when the
    exact Jaccard similarity of the two shingle sets reaches it. Texts that are equal after
    normalisation are left to `text_duplicate_keys` (not listed here). None texts are skipped.
    """
    if not 0.0 < threshold <= 1.0:
        raise InvalidArray(f"threshold must be a Jaccard similarity in (0, 1], got {threshold!r}")
    if shingle_chars < 1 or num_perm < 16:
        raise InvalidArray(f"shingle_chars must be >= 1 and num_perm >= 16, got {shingle_chars!r}, {num_perm!r}")
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError as exc:
        raise InvalidArray("near-duplicate text detection needs datasketch: pip install datasketch") from exc
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    keys = text_duplicate_keys(texts)
    # One representative per normalised text: copies of it are exact duplicates already.
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k is not None:
            first.setdefault(k, i)
    reps = sorted(first.values())
    if len(reps) < 2:
        return empty
    sets = {i: _shingles(texts[i], shingle_chars) for i in reps}
    hashes = MinHash.bulk([[s.encode("utf-8", "surrogatepass") for s in sets[i]] for i in reps],
                          num_perm=num_perm, seed=seed)
    # Bands tuned for recall: every candidate is checked exactly below, so a false candidate costs
    # one set intersection while a missed one is a copy left in the data.
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.05, 0.95))
    with lsh.insertion_session() as session:
        for i, m in zip(reps, hashes, strict=True):
            session.insert(i, m)
    pairs: dict[tuple[int, int], float] = {}
    for i, m in zip(reps, hashes, strict=True):
        for j in lsh.query(m):
            if j <= i:
                continue
            a, b = sets[i], sets[j]
            jaccard = len(a & b) / len(a | b)
            if jaccard >= threshold:
                pairs[(i, j)] = jaccard
    # Every copy of a representative joins its pairs too (through the exact keys in curate()).
    if not pairs:
        return empty
    ordered = sorted(pairs)
    return (np.array([p[0] for p in ordered], np.int64), np.array([p[1] for p in ordered], np.int64),
            np.array([pairs[p] for p in ordered], np.float32))


__all__ = ["MINHASH_THRESHOLD", "find_minhash_pairs", "normalise_text", "text_duplicate_keys"]
