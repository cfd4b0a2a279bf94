"""Reading sample files safely: bytes -> content hash -> decoded RGB image, or a reason code.

A bad file is data, not a crash: every function here returns a reason code from
`catalogs.schemas.UNUSABLE_REASON_CODES` instead of raising for per-file problems.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import stat
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

LOG = logging.getLogger(__name__)

# PIL's own default bomb limit (about 89 MP); above it we refuse without decoding.
MAX_IMAGE_PIXELS = 89_478_485
# Files above this many bytes are refused before being read into memory.
MAX_FILE_BYTES = 256 * 1024 * 1024
# The formats Winnow reads, by Pillow's format names. Only their decoders ever see a
# sample's bytes, whatever its extension says: PIL would otherwise pick any plugin by magic
# bytes, EPS included, which runs Ghostscript. "MPO" (multi-picture JPEG, what phones write)
# is its own plugin in older Pillows; Pillow 13 opens it through the JPEG plugin.
SUPPORTED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF")


def _registered(formats: tuple[str, ...]) -> tuple[str, ...]:
    """The formats this Pillow can open. Image.open raises KeyError on a name it does not
    register (every file after it would read as unreadable), so the list is built from what
    is registered; a promised format that is missing is logged, and tests/test_formats.py fails."""
    Image.init()
    found = tuple(f for f in formats if f in Image.OPEN)
    lost = [f for f in formats if f not in found and f != "MPO"]
    if lost:
        LOG.warning("Pillow %s cannot open %s: such files will be unreadable", Image.__version__, lost)
    return found


ALLOWED_FORMATS = _registered(SUPPORTED_FORMATS)


@dataclass(frozen=True)
class FileRead:
    data: bytes | None  # the file's bytes; None when unreadable
    content_hash: str | None  # blake2b-128 of the bytes, hex; None when unreadable
    reason: str | None  # reason code when the file could not be read


def hash_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_file(path: str, *, confine_to: str | None = None) -> FileRead:
    """Read a sample's bytes and hash them; OS problems become reason codes.

    Only regular files are read: a FIFO or device named `x.png` would otherwise block
    the run forever or stream without end. The size is checked before any byte is read.
    confine_to: a resolved folder; the file actually opened must lie inside it, else the
    read is refused as `outside_root`. The check is on the open descriptor, so a file
    swapped for an outward symlink after listing is caught too.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return FileRead(None, None, "missing")
    except PermissionError:
        return FileRead(None, None, "permission_denied")
    except (OSError, ValueError):  # a dangling link loop, an I/O error, a NUL byte in the path
        return FileRead(None, None, "unreadable")
    try:
        if confine_to is not None and not _inside(_opened_path(fd, path), confine_to):
            return FileRead(None, None, "outside_root")
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return FileRead(None, None, "unreadable")
        if info.st_size > MAX_FILE_BYTES:
            return FileRead(None, None, "too_large")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except PermissionError:
        return FileRead(None, None, "permission_denied")
    except OSError as exc:
        return FileRead(None, None, "missing" if exc.errno == errno.ENOENT else "unreadable")
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:  # grew after fstat
        return FileRead(None, None, "too_large")
    return FileRead(data, hash_bytes(data), None)


def _opened_path(fd: int, path: str) -> str:
    """The real path of the file behind `fd` (Linux /proc); elsewhere the resolved `path`."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def decode_image(data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[Image.Image | None, str | None]:
    """Decode bytes into an upright 8-bit RGB image, or return (None, reason).

    Only ALLOWED_FORMATS are tried, and the bytes decide which: a PNG named .jpg decodes.
    The declared size is checked before any pixel is decoded, so a decompression bomb
    costs nothing. Animations and multi-page files give their first frame. EXIF
    orientation is applied; 16-bit, palette, CMYK and alpha images are converted (alpha
    composited on white, 16-bit rescaled to 8-bit).
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
                img.load()
                return to_rgb(_upright(img)), None
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


def load_image(path: str) -> tuple[Image.Image | None, str | None]:
    """Read and decode one file: (image, None) or (None, reason code)."""
    read = read_file(path)
    if read.reason is not None:
        return None, read.reason
    return decode_image(read.data)
