"""Thumbnails: RUN/thumbs/<hash>.png for the samples the report shows, built beside and swapped in;
for text samples, snippets of the text in their place (`read_snippets`)."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from winnow import atomic
from winnow.embeddings import load_image
from winnow.embeddings.images import to_rgb
from winnow.embeddings.text import decode_text
from winnow.reading import SampleReader

THUMBS = "thumbs"  # the run's thumbnail folder; pages link to "thumbs/<name>"
THUMB_PX = 128  # longest side of a stored thumbnail; tiny images are upscaled (nearest)


def write_thumbnails(run: Path, locators: dict[str, str | None], reader: SampleReader | None) -> dict[str, str]:
    """Replace RUN/thumbs with a thumbnail of every sample in `locators` (sample id -> locator,
    None: none) whose image still decodes, read through `reader`; returns sample id -> "thumbs/<name>"."""
    with atomic.replace_folder(run / THUMBS) as folder:
        if is_text_reader(reader):  # texts have snippets instead (read_snippets)
            return {}
        return make_thumbnails(locators, folder, reader)


SNIPPET_CHARS = 240  # characters of a text sample shown where an image would have its thumbnail


def is_text_reader(reader: SampleReader | None) -> bool:
    """Whether a source's samples are texts (shown as snippets), not images."""
    return getattr(reader, "modality", "image") == "text"


def read_snippets(locators: dict[str, str | None], reader: SampleReader | None) -> dict[str, str]:
    """sample id -> the start of its text (whitespace collapsed, cut at SNIPPET_CHARS with "…"),
    for every text sample in `locators` that still decodes. Plain text: the pages escape it."""
    wanted = sorted((sid, loc) for sid, loc in locators.items() if loc)
    if reader is None or not wanted:
        return {}
    out = {}
    for (sid, _), read in zip(wanted, reader.read_many([loc for _, loc in wanted]), strict=True):
        text, _reason = decode_text(read.data) if read.reason is None else (None, read.reason)
        if text is None:
            continue
        flat = " ".join(text.split())
        out[sid] = flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"
    return out


def _thumb_name(sample_id: str) -> str:
    # Never the user's file name: a hash of the id is always a safe, fixed-length name.
    return hashlib.blake2b(sample_id.encode("utf-8"), digest_size=10).hexdigest() + ".png"


def make_thumbnails(locators: dict[str, str | None], folder: Path, reader: SampleReader | None) -> dict[str, str]:
    """sample id -> "thumbs/<name>" for every sample whose image still decodes, written into `folder`."""

    def one(item: tuple[str, str | None]) -> tuple[str, str | None]:
        sid, locator = item
        if not locator or reader is None:  # never open a locator that is not a file as a path
            return sid, None
        img, _reason = load_image(locator, reader=reader)
        if img is None:
            return sid, None
        img = to_rgb(img)
        longest = max(img.size)
        if longest < THUMB_PX:
            factor = max(1, THUMB_PX // longest)  # whole-pixel blocks keep 8x8 digits crisp
            img = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
        else:
            img.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
        name = _thumb_name(sid)
        img.save(folder / name, format="PNG", optimize=False)
        return sid, f"{THUMBS}/{name}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        return {sid: rel for sid, rel in pool.map(one, sorted(locators.items())) if rel is not None}
