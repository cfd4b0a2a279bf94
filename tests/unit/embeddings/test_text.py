"""decode_text: usable text, or the reason code of a text that cannot be embedded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from winnow.catalogs import schemas as S
from winnow.embeddings.text import MAX_TEXT_CHARS, decode_text


def test_each_unusable_text_gets_its_reason():
    assert decode_text(b"") == (None, "empty_text")
    assert decode_text(b" \t\n\u3000".replace(b"\\u3000", "\u3000".encode())) == (None, "blank_text")
    assert decode_text(b"caf\xe9") == (None, "not_utf8")
    assert decode_text(b"x" * (MAX_TEXT_CHARS + 1)) == (None, "text_too_long")
    assert decode_text(b"x" * (4 * MAX_TEXT_CHARS + 1)) == (None, "text_too_long")  # refused before decoding
    assert decode_text("naïve  Text ".encode()) == ("naïve  Text ", None)  # as written, not normalised
    for code in ("empty_text", "blank_text", "not_utf8", "text_too_long"):
        assert code in S.UNUSABLE_REASON_CODES


@given(st.binary(max_size=64))
def test_decode_text_never_raises(data):
    text, reason = decode_text(data)
    assert (text is None) != (reason is None)
    if text is not None:
        assert text.encode("utf-8") == data and text.strip()
