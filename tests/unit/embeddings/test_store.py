"""The content-keyed embedding store: append, reopen, look up, a killed writer's orphan, a mismatch."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.embeddings import EmbeddingStore, StoreMismatch


def test_store_append_lookup_matrix_and_mismatch(tmp_path):
    store = EmbeddingStore(tmp_path, encoder_id="enc-a", dim=4)
    v = np.eye(4, dtype=np.float32)
    store.append(["h0", "h1"], v[:2])
    store.append(["h2", "h3"], v[2:])
    reopened = EmbeddingStore(tmp_path, encoder_id="enc-a", dim=4)
    assert len(reopened) == 4 and "h3" in reopened and reopened.missing(["h1", "h9"]) == ["h9"]
    m = np.load(reopened.write_matrix(["h3", "h0", "h3"], tmp_path / "m.npy"))
    np.testing.assert_array_equal(m, v[[3, 0, 3]])
    # An orphan vector file without its index (a killed writer) is ignored.
    (reopened.dir / "block-orphan.npy").write_bytes(b"junk")
    assert len(EmbeddingStore(tmp_path, encoder_id="enc-a", dim=4)) == 4
    with pytest.raises(StoreMismatch, match="enc-a"):
        EmbeddingStore(tmp_path, encoder_id="enc-a", dim=8)


def test_signals_are_kept_per_content_hash_and_old_blocks_say_absent(tmp_path):
    cols = {"phash": "int64", "blur": "float64"}
    store = EmbeddingStore(tmp_path, encoder_id="enc-s", dim=2)
    store.append(["old"], np.array([[1, 0]], dtype=np.float32))  # written before signals existed
    store.append(["a", "b"], np.eye(2, dtype=np.float32),
                 signals={"phash": np.array([-5, 7]), "blur": np.array([0.5, 0.25])})
    present, values = EmbeddingStore(tmp_path, encoder_id="enc-s", dim=2).signals(["b", "old", "a"], cols)
    assert present.tolist() == [True, False, True]
    assert values["phash"].tolist() == [7, 0, -5]
    assert values["blur"][[0, 2]].tolist() == [0.25, 0.5] and np.isnan(values["blur"][1])
    with pytest.raises(KeyError, match="zz"):
        store.signals(["zz"], cols)
    with pytest.raises(ValueError, match="blur"):
        store.append(["c"], np.eye(2, dtype=np.float32)[:1], signals={"blur": np.array([1.0, 2.0])})
