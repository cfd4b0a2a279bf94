"""Decoding and reading files: every image format users bring reads, and odd or hostile bytes
(bombs, truncation, EXIF, unusual modes, FIFOs, links) become a reason code, never a crash.

Real files written by Pillow from real digits (tests/helpers/userdata.py), checked against the
digit each one holds: decoding must not only succeed, it must give back that digit, upright.
"""

from __future__ import annotations

import io
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import digit_images
from tests.helpers.faults import FAULTS, bomb_png, exif_rotated_jpeg, fault_fifo, png_bytes
from tests.helpers.userdata import VARIANTS, digit_images_by_class
from winnow.embeddings.images import (
    ALLOWED_FORMATS,
    FULL_SIZE,
    WORKING_SIDE,
    decode_image,
    load_image,
    read_file,
)

REPO = Path(__file__).resolve().parents[3]
# The formats the README promises. A Pillow that stops registering or decoding one of them
# must turn this suite red, not turn users' files into `unreadable` rows.
PROMISED = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")


@pytest.fixture(scope="module")
def digit() -> Image.Image:
    return digit_images_by_class(1, classes=("7",), seed=1)["7"][0]


def _correlation(decoded: Image.Image, source: Image.Image) -> float:
    a = np.asarray(decoded.convert("L"), dtype=np.float64).ravel()
    b = np.asarray(source.convert("L"), dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_supported_variant_decodes_to_its_digit(variant, digit):
    suffix, write = VARIANTS[variant]
    decoded, reason = decode_image(write(digit))
    assert reason is None, f"{variant} ({suffix}) decoded as {reason!r}"
    assert decoded.mode == "RGB" and decoded.size == digit.size
    # The digit itself comes back: upright (EXIF), first frame (GIF, MPO, multi-page TIFF).
    assert _correlation(decoded, digit) > 0.95, variant


@pytest.mark.parametrize("fmt", PROMISED)
def test_every_promised_format_is_allowed_by_this_pillow(fmt):
    assert fmt in ALLOWED_FORMATS, f"Pillow {Image.__version__} does not register {fmt}: its files would be unreadable"


def test_every_allowed_format_is_registered_and_decodes_a_real_file(digit):
    """The allow-list holds only formats this Pillow opens, and each decodes a file written in it."""
    Image.init()
    for fmt in ALLOWED_FORMATS:
        buf = io.BytesIO()
        digit.convert("RGB").save(buf, format=fmt)
        with Image.open(io.BytesIO(buf.getvalue()), formats=[fmt]) as img:  # KeyError if unregistered
            img.load()
        decoded, reason = decode_image(buf.getvalue())
        assert reason is None and _correlation(decoded, digit) > 0.95, fmt


def test_listed_extensions_are_exactly_those_of_the_allowed_formats():
    """A class folder lists as images the files of formats the decoder reads, and no others."""
    from winnow.catalogs.sources.image_folder import IMAGE_EXTENSIONS

    registered = Image.registered_extensions()
    ours = {ext for ext, fmt in registered.items() if fmt in ALLOWED_FORMATS}
    ours |= {".mpo"}  # Pillow 13 opens MPO through JPEG but still names the extension MPO
    assert set(IMAGE_EXTENSIONS) == ours


def test_content_decides_not_the_extension(tmp_path, digit):
    # A PNG named .jpg decodes; text named .png does not; nothing outside the allow-list is
    # ever handed to Pillow's other plugins (EPS would start Ghostscript).
    assert decode_image(VARIANTS["png_named_jpg"][1](digit))[1] is None
    assert decode_image(b"hello, I am a text file\n") == (None, "unreadable")
    assert decode_image(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n") == (None, "unreadable")
    ppm = io.BytesIO()
    digit.save(ppm, format="PPM")  # a real image, but not a format Winnow promises
    assert decode_image(ppm.getvalue()) == (None, "unreadable")


def test_animated_gif_reads_its_first_frame(digit):
    decoded, reason = decode_image(VARIANTS["gif_animated"][1](digit))
    assert reason is None and _correlation(decoded, digit) > 0.95  # frame 2 is the negative


# --- the class-folder listing --------------------------------------------------------------


# --- end to end: `winnow run FOLDER` in a real subprocess ----------------------------------


# --- odd and hostile bytes (the fault makers of tests/helpers/faults.py) --------------------------


@pytest.fixture(scope="module")
def fault_digit():
    return digit_images(1, seed=3)[0][0]


def test_decompression_bomb_is_refused_without_decoding():
    data = bomb_png()
    assert len(data) < 100
    img, reason = decode_image(data)
    assert (img, reason) == (None, "too_large")
    # Just over Winnow's limit but under PIL's hard error: still refused, not decoded.
    img, reason = decode_image(bomb_png(10_000, 10_000))
    assert (img, reason) == (None, "too_large")
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # another library switched PIL's guard off: ours still holds
    try:
        with Image.open(io.BytesIO(data)) as probe:
            assert probe.size == (100_000, 100_000)  # the header really declares 10 G pixels
        assert decode_image(data) == (None, "too_large")
    finally:
        Image.MAX_IMAGE_PIXELS = old


def test_exif_orientation_is_applied(fault_digit):
    img = fault_digit.convert("RGB").resize((40, 20))
    arr = np.asarray(img).copy()
    arr[:, :5] = (255, 0, 0)  # a red band on the left edge
    decoded, reason = decode_image(exif_rotated_jpeg(Image.fromarray(arr), orientation=6))
    assert reason is None and decoded.size == (20, 40)  # width and height swapped: upright
    top = np.asarray(decoded)[:3].astype(int)  # orientation 6 = rotate 90 clockwise: left edge -> top
    assert top[..., 0].mean() > 200 and top[..., 1].mean() < 80


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_junk_exif_keeps_the_image(fault_digit):
    buf = io.BytesIO()
    fault_digit.convert("RGB").save(buf, format="JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\xff")
    decoded, reason = decode_image(buf.getvalue())
    assert reason is None and decoded.size == fault_digit.size


@pytest.mark.parametrize("kind", ["sixteen_bit", "cmyk", "palette", "alpha"])
def test_unusual_modes_decode_to_8bit_rgb(tmp_path, fault_digit, kind):
    dest = tmp_path / "x.png"
    assert FAULTS[kind](dest, fault_digit, tmp_path) is None
    decoded, reason = decode_image(dest.read_bytes())
    assert reason is None and decoded.mode == "RGB" and decoded.size == fault_digit.size
    arr = np.asarray(decoded)
    assert arr.max() > arr.min() + 100, "contrast lost in the conversion"
    if kind == "sixteen_bit":
        assert Image.open(dest).mode.startswith("I")


def test_alpha_is_composited_on_white():
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    decoded, _ = decode_image(png_bytes(clear))
    assert np.asarray(decoded).min() == 255


@pytest.mark.parametrize("kind", ["truncated", "zero_byte", "not_image", "eps_disguised"])
def test_broken_bytes_are_unreadable(tmp_path, fault_digit, kind, monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"decoding a sample started a subprocess: {args!r}")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    dest = tmp_path / "x.png"
    FAULTS[kind](dest, fault_digit, tmp_path)
    assert decode_image(dest.read_bytes()) == (None, "unreadable")


def test_read_file_reasons(tmp_path, fault_digit):
    ok = tmp_path / "ok.png"
    ok.write_bytes(png_bytes(fault_digit))
    assert read_file(str(ok)).reason is None
    assert read_file(str(tmp_path / "gone.png")).reason == "missing"
    assert read_file(str(tmp_path)).reason == "unreadable"  # a folder
    assert read_file(str(tmp_path / "nul\x00.png")).reason == "unreadable"
    os.symlink(tmp_path / "nowhere.png", tmp_path / "dangling.png")
    assert read_file(str(tmp_path / "dangling.png")).reason == "missing"
    assert read_file("/dev/zero").reason == "unreadable"  # endless stream: never read


def test_fifo_is_refused_without_blocking(tmp_path, fault_digit):
    dest = tmp_path / "pipe.png"
    fault_fifo(dest, fault_digit, tmp_path)
    result = []
    reader = threading.Thread(target=lambda: result.append(read_file(str(dest))), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "read_file blocked on a FIFO"
    assert result[0].reason == "unreadable"


def test_decode_handles_bad_and_odd_files(tmp_path):
    good = tmp_path / "ok.png"
    Image.new("RGB", (20, 10), "red").save(good)
    data = good.read_bytes()
    assert decode_image(data)[0].size == (20, 10)
    assert decode_image(b"")[1] == "unreadable"
    assert decode_image(data[: len(data) // 2])[1] == "unreadable"
    assert decode_image(b"GIF89a not really")[1] == "unreadable"
    assert load_image(str(tmp_path / "gone.png"))[1] == "missing"
    # Palette with transparency, 16-bit and CMYK all come out as 8-bit RGB.
    pal = Image.new("P", (8, 8))
    pal.info["transparency"] = 0
    i16 = Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype(np.uint16))
    for img, fmt in ((pal, "PNG"), (i16, "PNG"), (Image.new("CMYK", (8, 8)), "JPEG")):
        import io

        buf = io.BytesIO()
        img.save(buf, format=fmt)
        out, reason = decode_image(buf.getvalue())
        assert reason is None and out.mode == "RGB"


# --- large images: decoded reduced, their full size kept (embeddings/images.py WORKING_SIDE) ---

def _photo(size: tuple[int, int], fmt: str = "JPEG", **save) -> tuple[Image.Image, bytes]:
    """A camera-sized image of real content: sklearn's china.jpg sample photo, resized."""
    from sklearn.datasets import load_sample_image

    img = Image.fromarray(load_sample_image("china.jpg")).resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return img, buf.getvalue()


def test_a_camera_sized_jpeg_is_decoded_reduced_keeping_its_full_size_and_content():
    source, data = _photo((4000, 3000), quality=90)
    decoded, reason = decode_image(data)
    assert reason is None and decoded.mode == "RGB"
    assert decoded.size == (1000, 750)  # 1/4 DCT scale: the smallest that keeps 512 on the shorter side
    assert min(decoded.size) >= WORKING_SIDE and decoded.info[FULL_SIZE] == (4000, 3000)
    full, _ = decode_image(data, min_side=None)
    assert full.size == (4000, 3000) and full.info[FULL_SIZE] == (4000, 3000)
    # The same picture: the full decode, reduced the same way, matches it pixel for pixel but for JPEG rounding.
    assert _correlation(decoded, full.resize(decoded.size, Image.Resampling.BOX)) > 0.995


def test_a_reduced_jpeg_is_still_turned_upright_and_its_full_size_follows():
    source, _ = _photo((3000, 2000))
    arr = np.asarray(source).copy()
    arr[:, :150] = (255, 0, 0)  # a red band on the left edge
    decoded, reason = decode_image(exif_rotated_jpeg(Image.fromarray(arr), orientation=6))
    assert reason is None and decoded.size == (1000, 1500)  # 1/2 scale (1/4 would leave 500 < 512), portrait
    assert decoded.info[FULL_SIZE] == (2000, 3000)
    top = np.asarray(decoded)[:8].astype(int)  # orientation 6: the left edge is now the top
    assert top[..., 0].mean() > 200 and top[..., 1].mean() < 80


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_other_large_images_are_box_reduced_after_decoding(fmt):
    _, data = _photo((2200, 1300), fmt)
    decoded, reason = decode_image(data)
    assert reason is None and decoded.size == (1100, 650) and decoded.info[FULL_SIZE] == (2200, 1300)
    small, reason = decode_image(_photo((1500, 1000), fmt)[1])  # under twice WORKING_SIDE: left whole
    assert reason is None and small.size == (1500, 1000) and small.info[FULL_SIZE] == (1500, 1000)


def test_the_signals_of_a_reduced_image_report_its_full_size():
    from winnow.embeddings.signals import image_signals

    _, data = _photo((4000, 3000), quality=90)
    reduced, full = decode_image(data)[0], decode_image(data, min_side=None)[0]
    fast, slow = image_signals(reduced), image_signals(full)
    assert (fast["width"], fast["height"], fast["aspect"]) == (4000.0, 3000.0, 4000 / 3000)
    for key in ("brightness", "brightness_p01", "brightness_p99", "entropy", "colourfulness"):
        assert fast[key] == pytest.approx(slow[key], abs=0.02), key
    assert fast["blur"] == pytest.approx(slow["blur"], rel=0.05)
    assert fast["phash"] == slow["phash"] and fast["dhash"] == slow["dhash"]


def test_a_reduced_decode_moves_a_real_encoders_embedding_no_more_than_a_jpeg_reencode():
    from winnow.embeddings import get_encoder

    enc = get_encoder("efficientnet-lite0")
    _, data = _photo((4000, 3000), quality=90)
    full = decode_image(data, min_side=None)[0]
    buf = io.BytesIO()
    full.save(buf, format="JPEG", quality=75)
    vecs = enc.encode_images([full, decode_image(data)[0], decode_image(buf.getvalue(), min_side=None)[0]])
    reduced_cos, reencoded_cos = float(vecs[0] @ vecs[1]), float(vecs[0] @ vecs[2])
    assert reduced_cos > 0.999 and reduced_cos > reencoded_cos - 0.0005, (reduced_cos, reencoded_cos)
