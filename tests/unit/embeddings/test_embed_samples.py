"""The embedder reads through any reader: locators in, hashes and reasons out, as for files."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest

from winnow.embeddings import EmbeddingStore, embed_files, embed_samples, get_encoder
from winnow.reading import SampleRead, hash_bytes


def _png(value: int, size: int = 12) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(value)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8), mode="L").save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class DictReader:
    """Locators are keys of an in-memory dict; an absent key is `missing`."""

    blobs: dict

    def read_many(self, locators):
        return [SampleRead.from_bytes(self.blobs[k]) if k in self.blobs else SampleRead.failed("missing")
                for k in locators]


@pytest.fixture
def encoder():
    return get_encoder("pixels:8")


def test_bytes_from_any_reader_embed_like_files(tmp_path, encoder):
    blobs = {f"k{i}": _png(i) for i in range(40)}
    blobs["broken"] = _png(3)[:25]
    blobs["copy"] = blobs["k7"]
    locators = [*blobs, "absent"]
    store = EmbeddingStore(tmp_path / "store", encoder_id=encoder.encoder_id, dim=encoder.dim)
    report = embed_samples(locators, DictReader(blobs), encoder, store, chunk_size=16, batch_size=8, workers=3)
    assert report.content_hash[:40] == [hash_bytes(_png(i)) for i in range(40)]
    assert report.reason[-3:] == ["unreadable", None, "missing"]
    assert report.content_hash[-2] == report.content_hash[7] and report.content_hash[-1] is None
    assert report.n_embedded == 40 and report.n_unusable == 2
    # The same bytes as files give the same hashes and reuse every vector.
    paths = []
    for i in range(40):
        path = tmp_path / f"{i}.png"
        path.write_bytes(_png(i))
        paths.append(str(path))
    again = embed_files(paths, encoder, store)
    assert again.content_hash == report.content_hash[:40] and again.n_reused == 40 and again.n_embedded == 0


def test_refused_samples_are_never_read(tmp_path, encoder):
    asked = []

    @dataclass(frozen=True)
    class Spy(DictReader):
        def read_many(self, locators):
            asked.extend(locators)
            return super().read_many(locators)

    blobs = {f"k{i}": _png(i) for i in range(6)}
    store = EmbeddingStore(tmp_path / "store", encoder_id=encoder.encoder_id, dim=encoder.dim)
    report = embed_samples(list(blobs), Spy(blobs), encoder, store,
                           refused=[None, "outside_root", None, None, "unsupported_format", None])
    assert sorted(asked) == ["k0", "k2", "k3", "k5"]
    assert report.reason == [None, "outside_root", None, None, "unsupported_format", None]


def test_a_reader_that_loses_samples_fails_loudly(tmp_path, encoder):
    @dataclass(frozen=True)
    class Lossy:
        def read_many(self, locators):
            return [SampleRead.from_bytes(_png(1))] * (len(locators) - 1)

    store = EmbeddingStore(tmp_path / "store", encoder_id=encoder.encoder_id, dim=encoder.dim)
    with pytest.raises(RuntimeError, match=r"Lossy.read_many returned \d+ reads for \d+ locators"):
        embed_samples([f"k{i}" for i in range(10)], Lossy(), encoder, store)


def test_decode_is_the_seam_for_other_kinds_of_data(tmp_path, encoder):
    """`decode` turns bytes into what the encoder's preprocess takes, or a reason; images by default."""
    from winnow.embeddings.images import decode_image

    blobs = {f"k{i}": _png(i) for i in range(8)}
    seen = []

    def decode(data: bytes):
        seen.append(data)
        if data == blobs["k2"]:
            return None, "unreadable"
        return decode_image(data)

    store = EmbeddingStore(tmp_path / "store", encoder_id=encoder.encoder_id, dim=encoder.dim)
    report = embed_samples(list(blobs), DictReader(blobs), encoder, store, decode=decode)
    assert len(seen) == 8 and report.reason == [None, None, "unreadable", *[None] * 5]


def test_reading_moved_but_the_old_names_stay():
    import winnow.embeddings.images as images
    import winnow.reading as reading

    assert images.read_file is reading.read_file and images.FileRead is reading.SampleRead
    assert images.hash_bytes is reading.hash_bytes and images.MAX_FILE_BYTES == reading.MAX_FILE_BYTES
    big = SampleRead.from_bytes(b"x" * 10)
    assert big.content_hash == hash_bytes(b"x" * 10) and SampleRead.failed("missing").data is None


def test_the_reader_contract_is_light():
    """winnow.reading sits below both layers: importing it loads neither of them, nor any heavy library."""
    import subprocess
    import sys

    heavy = ("numpy", "polars", "pyarrow", "PIL", "torch", "winnow.catalogs", "winnow.embeddings")
    code = f"import sys, winnow.reading; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
