"""embed_files: store reuse, unreadable files as reasons, and reads confined to the dataset's root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import digit_images, write_image_folder
from tests.helpers.faults import make_faulty_folder
from winnow.catalogs import list_samples, resolve_catalog
from winnow.catalogs import schemas as S
from winnow.embeddings import EmbeddingStore, embed_files, get_encoder
from winnow.embeddings.images import read_file


@pytest.fixture(scope="module")
def digit():
    return digit_images(1, seed=3)[0][0]


def test_embed_files_reuses_store_and_reports_unreadable(tmp_path):
    root = tmp_path / "imgs"
    paths = write_image_folder(root, digit_images(30))
    (root / "1").mkdir(exist_ok=True)
    (root / "1" / "corrupt.png").write_bytes(paths[0].read_bytes()[:40])
    (root / "1" / "empty.png").write_bytes(b"")
    (root / "1" / "copy.png").write_bytes(paths[1].read_bytes())  # same content as paths[1]
    files = [str(p) for p in paths] + [str(root / "1" / "corrupt.png"), str(root / "1" / "empty.png"),
                                       str(root / "1" / "copy.png")]
    enc = get_encoder("pixels:16")
    store = EmbeddingStore(tmp_path / "store", encoder_id=enc.encoder_id, dim=enc.dim)
    first = embed_files(files, enc, store, chunk_size=8, batch_size=4)
    assert first.reason[-3:] == ["unreadable", "unreadable", None]
    assert first.n_embedded == 30 and first.content_hash[-1] == first.content_hash[1]
    # Grow the dataset: only the new files are embedded.
    new = write_image_folder(root, digit_images(5, seed=9), prefix="new")
    second = embed_files(files + [str(p) for p in new], enc, store, chunk_size=8)
    assert second.n_embedded == 5 and second.n_reused == 31


def test_file_swapped_for_an_outward_symlink_after_listing_is_refused(tmp_path):
    from winnow.catalogs import confinement_of, list_samples, resolve_catalog

    root = tmp_path / "data"
    paths = write_image_folder(root, digit_images(6))
    secret = tmp_path / "outside" / "secret.png"
    secret.parent.mkdir()
    digit_images(1, seed=3)[0][0].save(secret)
    table = list_samples(resolve_catalog(str(root)))
    victim = paths[0]
    victim.unlink()
    victim.symlink_to(secret)  # the race: listed as a plain file, read as a link out of the root
    enc = get_encoder("pixels:8")
    store = EmbeddingStore(tmp_path / "store", encoder_id=enc.encoder_id, dim=enc.dim)
    files = table.column("abs_path").to_pylist()
    report = embed_files(files, enc, store, confine_to=confinement_of(table))
    assert report.reason[files.index(str(victim))] == "outside_root"
    assert sum(r is None for r in report.reason) == 5
    # An in-root symlink is still fine.
    inside = root / paths[1].parent.name / "alias.png"
    inside.symlink_to(paths[1])
    assert read_file(str(inside), confine_to=confinement_of(table)).reason is None


def test_symlink_out_of_root_is_never_opened(tmp_path, digit, monkeypatch):
    root, outside = tmp_path / "data", tmp_path / "outside"
    make_faulty_folder(root, outside, n=6, faults=[("symlink_out", 0)])
    import winnow.reading as reading_mod  # every file read of a run goes through winnow.reading.read_file

    opened = []
    real_read = reading_mod.read_file
    monkeypatch.setattr(reading_mod, "read_file", lambda p, **kw: opened.append(p) or real_read(p, **kw))
    from winnow.embeddings import EmbeddingStore, embed_files, get_encoder

    table = list_samples(resolve_catalog(str(root)))
    refused = table.column("refused").to_pylist()
    assert refused.count("outside_root") == 1
    enc = get_encoder("pixels:8")
    report = embed_files(table.column(S.ABS_PATH).to_pylist(), enc,
                         EmbeddingStore(tmp_path / "s", encoder_id=enc.encoder_id, dim=enc.dim), refused=refused)
    assert opened and not [p for p in opened if Path(p).name.startswith("symlink_out")]
    assert report.reason.count("outside_root") == 1


def test_decode_time_signals_are_stored_by_content_and_reused(tmp_path, monkeypatch):
    import numpy as np

    from winnow.embeddings import embed as embed_module
    from winnow.embeddings.signals import perceptual_hash, quality_stats, signal_columns

    root = tmp_path / "imgs"
    images = digit_images(12, seed=4)
    paths = [str(p) for p in write_image_folder(root, images)]
    enc = get_encoder("pixels:16")
    store = EmbeddingStore(tmp_path / "store", encoder_id=enc.encoder_id, dim=enc.dim)
    first = embed_files(paths, enc, store, chunk_size=5)
    assert first.n_measured == 12
    present, values = EmbeddingStore(tmp_path / "store", encoder_id=enc.encoder_id, dim=enc.dim).signals(
        first.content_hash, signal_columns())
    assert present.all()
    expected = [perceptual_hash(im.convert("RGB"))["phash"] for im, _ in images]
    assert values["phash"].tolist() == expected
    assert values["entropy"][3] == pytest.approx(quality_stats(images[3][0].convert("RGB"))["entropy"])
    # A second run over the same files (and a renamed copy) decodes and measures nothing.
    calls = []
    real = embed_module.measure_image
    monkeypatch.setattr(embed_module, "measure_image", lambda d: calls.append(1) or real(d))
    (root / "0").mkdir(exist_ok=True)
    renamed = root / "0" / "renamed.png"
    renamed.write_bytes(Path(paths[2]).read_bytes())
    second = embed_files(paths + [str(renamed)], enc, store, chunk_size=5,
                         measure=embed_module.measure_image)
    assert second.n_embedded == 0 and second.n_measured == 0 and calls == []
    present, again = store.signals(second.content_hash, signal_columns())
    assert present.all() and again["phash"][-1] == expected[2]
    assert np.array_equal(again["blur"][:12], values["blur"])
    # The near-duplicate thumbnail too (issue 15): stored with the embedding, reused with it.
    from winnow.embeddings.signals import THUMB_COLUMNS

    assert all(np.array_equal(again[c][:12], values[c]) for c in THUMB_COLUMNS) and values["thumb07"].any()


def test_a_folder_of_camera_sized_photos_embeds_reduced_and_stores_their_full_size(tmp_path):
    """What users bring: 12 MP JPEGs next to small PNGs. The store's size signals are the files'
    own sizes (the odd-size detector reads them), though the pixels were decoded reduced."""
    import io

    from PIL import Image
    from sklearn.datasets import load_sample_image

    from winnow.embeddings.signals import signal_columns

    root = tmp_path / "photos"
    root.mkdir()
    photo = Image.fromarray(load_sample_image("flower.jpg")).resize((4000, 3000), Image.Resampling.BILINEAR)
    photo.save(root / "big.jpg", quality=85)
    photo.rotate(90, expand=True).save(root / "tall.jpg", quality=85)
    digit_images(1, seed=5)[0][0].save(root / "small.png")
    buf = io.BytesIO()
    photo.resize((2400, 1800)).save(buf, format="PNG")
    (root / "big.png").write_bytes(buf.getvalue())
    paths = [str(root / n) for n in ("big.jpg", "tall.jpg", "small.png", "big.png")]
    enc = get_encoder("pixels:16")
    store = EmbeddingStore(tmp_path / "store", encoder_id=enc.encoder_id, dim=enc.dim)
    report = embed_files(paths, enc, store)
    assert report.n_embedded == 4 and report.n_unusable == 0
    present, values = store.signals(report.content_hash, signal_columns())
    assert present.all()
    small = Image.open(root / "small.png").size
    assert values["width"].tolist() == [4000, 3000, small[0], 2400]
    assert values["height"].tolist() == [3000, 4000, small[1], 1800]


def test_progress_moves_batch_by_batch_within_a_chunk_and_ends_at_the_total(tmp_path):
    images = digit_images(12, seed=6)
    paths = [str(p) for p in write_image_folder(tmp_path / "imgs", images)]
    enc = get_encoder("pixels:16")
    store = EmbeddingStore(tmp_path / "store", encoder_id=enc.encoder_id, dim=enc.dim)
    seen = []
    embed_files(paths, enc, store, chunk_size=8, batch_size=2, progress=lambda done, total: seen.append((done, total)))
    done = [d for d, _ in seen]
    assert {t for _, t in seen} == {12} and done[-1] == 12
    assert done == sorted(done) and len(set(done)) == len(done), done  # strictly rising
    assert done == [2, 4, 6, 8, 10, 12], done  # chunks of 8 and 4 in batches of 2
    seen.clear()  # a re-run embeds nothing: one update per chunk
    embed_files(paths, enc, store, chunk_size=8, batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert [d for d, _ in seen] == [8, 12]


def test_decoding_keeps_what_the_encoder_resizes_to(tmp_path):
    """A large JPEG is decoded reduced, never below WORKING_SIDE nor below the side the encoder's
    transform resizes to (a timm model at 600 px with crop_pct: 633)."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    from winnow.embeddings.images import WORKING_SIDE

    path = tmp_path / "big.jpg"
    Image.fromarray(load_sample_image("china.jpg")).resize((4000, 3000)).save(path, quality=85)
    for side, expected in ((0, (1000, 750)), (800, (2000, 1500))):  # 1/4 scale keeps 750 >= 512; 800 needs 1/2
        enc = get_encoder("pixels:16")
        enc.input_side = side
        seen = []
        store = EmbeddingStore(tmp_path / f"store-{side}", encoder_id=enc.encoder_id, dim=enc.dim)
        embed_files([str(path)], enc, store, measure=lambda img, seen=seen: seen.append(img.size) or {})
        assert seen == [expected] and min(expected) >= max(WORKING_SIDE, side)
    assert get_encoder("efficientnet-lite0").input_side == 256  # resize 256, crop 224
