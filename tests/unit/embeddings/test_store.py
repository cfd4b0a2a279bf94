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


def _unit_rows(n, d, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_new_store_holds_float16_and_a_run_matrix_is_the_same_bits_as_from_float32(tmp_path):
    v = _unit_rows(50, 64)
    hashes = [f"h{i}" for i in range(50)]
    store = EmbeddingStore(tmp_path / "new", encoder_id="enc", dim=64)
    block = store.append(hashes, v)
    assert store.dtype == np.float16 and np.load(store.dir / f"{block}.npy").dtype == np.float16
    assert (store.dir / f"{block}.npy").stat().st_size < 50 * 64 * 2 + 200  # half of float32's 12.8 kB
    old = _old_float32_store(tmp_path / "old", hashes, v)
    # A run's matrix is float16: rounded once, from either store, to the same bits.
    a = np.load(store.write_matrix(hashes[::-1], tmp_path / "a.npy", dtype=np.float16))
    b = np.load(old.write_matrix(hashes[::-1], tmp_path / "b.npy", dtype=np.float16))
    assert a.tobytes() == b.tobytes()
    # float32 out of a float16 store: the vectors to float16's precision.
    np.testing.assert_allclose(np.load(store.write_matrix(hashes, tmp_path / "c.npy")), v, atol=1e-3)


def _old_float32_store(root, hashes, v):
    """A store as written before issue 18: meta dtype float32, float32 blocks."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    d = root / "enc"
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"encoder_id": "enc", "dim": v.shape[1], "dtype": "float32"}))
    np.save(d / "block-old.npy", v.astype(np.float32))
    pq.write_table(pa.table({"content_hash": hashes, "row": pa.array(range(len(hashes)), pa.int64())}),
                   d / "block-old.parquet")
    return EmbeddingStore(root, encoder_id="enc", dim=v.shape[1])


def test_an_old_float32_store_still_reads_and_keeps_writing_float32(tmp_path):
    v = _unit_rows(20, 8)
    store = _old_float32_store(tmp_path, [f"h{i}" for i in range(10)], v[:10])
    assert store.dtype == np.float32 and len(store) == 10
    block = store.append([f"h{i}" for i in range(10, 20)], v[10:])
    assert np.load(store.dir / f"{block}.npy").dtype == np.float32
    m = np.load(store.write_matrix([f"h{i}" for i in range(20)], tmp_path / "m.npy"))
    np.testing.assert_array_equal(m, v)
    # A block of the other dtype (another writer's) reads too.
    np.save(store.dir / "block-half.npy", v[:2].astype(np.float16))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content_hash": ["x0", "x1"], "row": pa.array([0, 1], pa.int64())}),
                   store.dir / "block-half.parquet")
    reopened = EmbeddingStore(tmp_path, encoder_id="enc", dim=8)
    np.testing.assert_allclose(np.load(reopened.write_matrix(["x1", "h3"], tmp_path / "n.npy")), v[[1, 3]], atol=1e-3)
