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
