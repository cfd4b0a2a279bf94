"""Encoders, safe image reading, the on-disk embedding store and the batched embedder."""

from winnow.embeddings.embed import EmbedReport, embed_files
from winnow.embeddings.encoders import (
    DEFAULT_ENCODER,
    ENCODERS,
    OFFLINE_CHOICES,
    Encoder,
    get_encoder,
    list_encoders,
)
from winnow.embeddings.errors import EncoderError, EncoderUnavailable, StoreMismatch, UnknownEncoder
from winnow.embeddings.images import decode_image, load_image, read_file
from winnow.embeddings.store import EmbeddingStore

__all__ = [
    "DEFAULT_ENCODER", "ENCODERS", "OFFLINE_CHOICES", "EmbedReport", "EmbeddingStore", "Encoder",
    "EncoderError", "EncoderUnavailable", "StoreMismatch", "UnknownEncoder", "decode_image",
    "embed_files", "get_encoder", "list_encoders", "load_image", "read_file",
]
