"""Decoding samples safely: bytes -> upright 8-bit RGB image, or a reason code.

Bytes come from a reader (`winnow.reading`: local files, or a sample source's own reader). A
bad image is data, not a crash: every function here returns a reason code from
`catalogs.schemas.UNUSABLE_REASON_CODES` instead of raising for per-sample problems.
"""

from __future__ import annotations

import io
import logging
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from winnow.reading import MAX_FILE_BYTES, SampleRead, SampleReader, hash_bytes, read_file, read_one

LOG = logging.getLogger(__name__)

# PIL's own default bomb limit (about 89 MP); above it we refuse without decoding.
MAX_IMAGE_PIXELS = 89_478_485
# The formats Winnow reads, by Pillow's format names. Only their decoders ever see a
# sample's bytes, whatever its extension says: PIL would otherwise pick any plugin by magic
# bytes, EPS included, which runs Ghostscript. "MPO" (multi-picture JPEG, what phones write)
# is its own plugin in older Pillows; Pillow 13 opens it through the JPEG plugin. AVIF (what
# phones, browsers and CDNs now write) is Pillow's own plugin since 11.2 (pyproject: >= 11.3).
SUPPORTED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
# The shorter side a decoded image keeps, when it had at least that much. Nothing downstream
# looks closer: open_clip's encoders take 224-512 px (224 by default), the image signals a 512 px
# thumbnail, the report and the review app 256 px; an encoder that resizes to more says so
# (Encoder.input_side) and embed_samples keeps that much. So a JPEG is decoded at the smallest DCT
# scale (1/2, 1/4, 1/8: Pillow's draft) that keeps this side, and any other image at least twice
# this is box-reduced by an integer factor right after decoding. A 12 MP photo then costs about
# 65 ms of one core instead of 380 (decode 31 vs 91, EfficientNet-Lite0's resize 7 vs 65, the
# signals 28 vs 224; session 25), and its embedding moves about as much as a JPEG re-encode at
# quality 75 moves it (cosine 0.9997 vs 0.9998; tests/unit/embeddings/test_images.py). The full
# size is kept in the image's info under FULL_SIZE (the size signals report it).
WORKING_SIDE = 512
FULL_SIZE = "winnow_full_size"


def _registered(formats: tuple[str, ...]) -> tuple[str, ...]:
    """The formats this Pillow can open. Image.open raises KeyError on a name it does not
    register (every file after it would read as unreadable), so the list is built from what
    is registered; a promised format that is missing is logged, and tests/unit/embeddings/test_images.py fails."""
    Image.init()
    found = tuple(f for f in formats if f in Image.OPEN)
    lost = [f for f in formats if f not in found and f != "MPO"]
    if lost:
        LOG.warning("Pillow %s cannot open %s: such files will be unreadable", Image.__version__, lost)
    return found


ALLOWED_FORMATS = _registered(SUPPORTED_FORMATS)


# The reading half moved to `winnow.reading` (shared with the sample sources of winnow.catalogs);
# these names stay importable from here.
FileRead = SampleRead


def decode_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS,
                 min_side: int | None = WORKING_SIDE) -> tuple[Image.Image | None, str | None]:
    """Decode bytes into an upright 8-bit RGB image, or return (None, reason).

    Only ALLOWED_FORMATS are tried, and the bytes decide which: a PNG named .jpg decodes.
    The declared size is checked before any pixel is decoded, so a decompression bomb
    costs nothing. Animations and multi-page files give their first frame. EXIF
    orientation is applied; 16-bit, palette, CMYK and alpha images are converted (alpha
    composited on white, 16-bit rescaled to 8-bit).
    min_side: a larger image comes back reduced, its shorter side still at least this
    (see WORKING_SIDE); None: full resolution. Either way `image.info[FULL_SIZE]` is the
    upright (width, height) of the full image.
    """
    if not data:
        return None, "unreadable"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
                w, h = img.size
                if w * h > max_pixels or w <= 0 or h <= 0:
                    return None, "too_large" if w * h > max_pixels else "unreadable"
                if min_side and img.format in ("JPEG", "MPO"):
                    img.draft(None, (min_side, min_side))  # decodes at 1/2, 1/4 or 1/8 scale, never below min_side
                img.load()
                stored = img.size
                upright = _upright(img)
                swapped = upright.size != stored  # a 90-degree EXIF orientation
                out = to_rgb(upright)
                factor = min(out.size) // min_side if min_side else 1
                if factor >= 2:
                    out = out.reduce(factor)
                out.info[FULL_SIZE] = (h, w) if swapped else (w, h)
                return out, None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, "too_large"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError):
        # Truncated or corrupt streams raise any of these depending on the codec.
        return None, "unreadable"
    except Exception:  # struct.error, ZeroDivisionError...: a hostile stream must cost one row, not the run
        return None, "unreadable"


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; junk EXIF leaves the pixels as stored rather than losing them."""
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:  # a malformed EXIF block is metadata damage, not an unreadable image
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        img = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("RGB")


def load_image(locator: str, *, reader: SampleReader | None = None) -> tuple[Image.Image | None, str | None]:
    """Read and decode one sample: (image, None) or (None, reason code).

    reader: the sample source's reader (`winnow.catalogs.open_reader(samples)`); None reads
    `locator` as a local file path.
    """
    read = read_one(reader, locator) if reader is not None else read_file(locator)
    if read.reason is not None:
        return None, read.reason
    return decode_image(read.data)


__all__ = ["ALLOWED_FORMATS", "FULL_SIZE", "MAX_FILE_BYTES", "MAX_IMAGE_PIXELS", "SUPPORTED_FORMATS", "WORKING_SIDE", "FileRead", "SampleRead",
           "decode_image", "hash_bytes", "load_image", "read_file", "to_rgb"]
