"""Encoders (image and text), safe image and text decoding, the on-disk embedding store and the batched embedder.

Samples reach the embedder through a reader (`winnow.reading.SampleReader`): `embed_samples`
takes locators and the reader of their source; `embed_files` is the same over local files.
"""

from winnow.embeddings.embed import EmbedReport, embed_files, embed_samples
from winnow.embeddings.encoders import (
    DEFAULT_ENCODER,
    DEFAULT_TEXT_ENCODER,
    ENCODERS,
    OFFLINE_CHOICES,
    Encoder,
    encoder_modality,
    get_encoder,
    list_encoders,
)
from winnow.embeddings.errors import EncoderError, EncoderUnavailable, StoreMismatch, UnknownEncoder
from winnow.embeddings.images import decode_image, load_image, read_file
from winnow.embeddings.store import EmbeddingStore
from winnow.embeddings.text import decode_text, load_text

__all__ = [
    "DEFAULT_ENCODER", "DEFAULT_TEXT_ENCODER", "ENCODERS", "OFFLINE_CHOICES", "EmbedReport", "EmbeddingStore", "Encoder",
    "EncoderError", "EncoderUnavailable", "StoreMismatch", "UnknownEncoder", "decode_image", "decode_text", "embed_files", "embed_samples", "encoder_modality", "get_encoder", "list_encoders", "load_image", "load_text", "read_file",
]
