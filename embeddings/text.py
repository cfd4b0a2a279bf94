"""Decoding text samples safely: bytes -> str, or a reason code.

A text sample's bytes come from its source's reader (a table cell's UTF-8 bytes; the content
hash is over exactly those bytes, as for an image file). Text that cannot be embedded is
data, not a crash: `decode_text` returns a reason code from
`catalogs.schemas.UNUSABLE_REASON_CODES` (`empty_text`, `blank_text`, `not_utf8`,
`text_too_long`) and the sample becomes a row with that reason.
"""

from __future__ import annotations

from winnow.reading import SampleReader, read_one

MAX_TEXT_CHARS = 100_000
"""Longer texts are refused as `text_too_long` (encoders truncate far earlier; a cell this long is
a parsing accident, a whole file in one cell, not a sample)."""


def decode_text(data: bytes, *, max_chars: int = MAX_TEXT_CHARS) -> tuple[str | None, str | None]:
    """(text, None) for usable UTF-8 text, else (None, reason code). Never raises.

    The text is returned as written (no normalisation): the encoder sees what the user wrote.
    """
    if data is None or len(data) == 0:
        return None, "empty_text"
    if len(data) > 4 * max_chars:  # UTF-8 is at most 4 bytes a character
        return None, "text_too_long"
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return None, "not_utf8"
    if len(text) > max_chars:
        return None, "text_too_long"
    if not text.strip():
        return None, "blank_text"
    return text, None


def load_text(locator: str, *, reader: SampleReader) -> tuple[str | None, str | None]:
    """Read and decode one text sample through its source's reader: (text, None) or (None, reason)."""
    read = read_one(reader, locator)
    if read.reason is not None:
        return None, read.reason
    return decode_text(read.data)


__all__ = ["MAX_TEXT_CHARS", "decode_text", "load_text"]
