"""Fault makers: broken, hostile and odd files, a class folder of them, and the promise check.

Each maker writes one file (or link) at `dest` and returns the reason code the manifest must show
for it, or None when the file is a valid image that must be embedded. Used by the fault tests
(tests/e2e/test_faults.py, tests/unit/embeddings/test_images.py), the property suite
(tests/e2e/test_promise.py), the crash tests and the soak benchmark (benchmarks/soak.py).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from tests.helpers.images import digit_images, write_image_folder
from winnow.catalogs import schemas as S
from winnow.pipeline.issues import reason_codes


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny valid PNG whose IHDR declares width x height (10 G pixels by default)."""
    raw = png_bytes(Image.new("L", (1, 1)))
    assert raw[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + raw[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return raw[:16] + ihdr + crc + raw[33:]


def exif_rotated_jpeg(img: Image.Image, orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def _write(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)


def fault_truncated(dest: Path, img: Image.Image, outside: Path) -> str | None:
    data = png_bytes(img)
    _write(dest, data[: len(data) // 2])
    return "unreadable"


def fault_zero_byte(dest: Path, img: Image.Image, outside: Path) -> str | None:
    _write(dest, b"")
    return "unreadable"


def fault_not_image(dest: Path, img: Image.Image, outside: Path) -> str | None:
    _write(dest, b"name,label\nthis is a csv file with a .png name\n")
    return "unreadable"


def fault_eps_disguised(dest: Path, img: Image.Image, outside: Path) -> str | None:
    # PIL would hand an EPS to Ghostscript (a subprocess) if it were allowed to pick the codec.
    _write(dest, b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    return "unreadable"


def fault_unsupported(dest: Path, img: Image.Image, outside: Path) -> str | None:
    # Notes beside the images (make_faulty_folder names it .txt): listed as a row, never opened.
    _write(dest, b"shot on my phone, sorted by hand\n")
    return "unsupported_format"


def fault_bomb(dest: Path, img: Image.Image, outside: Path) -> str | None:
    _write(dest, bomb_png())
    return "too_large"


def fault_sixteen_bit(dest: Path, img: Image.Image, outside: Path) -> str | None:
    arr = np.asarray(img.convert("L"), dtype=np.uint16) * 257
    dest.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(dest, format="PNG")
    return None


def fault_cmyk(dest: Path, img: Image.Image, outside: Path) -> str | None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    img.convert("RGB").convert("CMYK").save(dest, format="JPEG")
    return None


def fault_palette(dest: Path, img: Image.Image, outside: Path) -> str | None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    img.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(dest, format="PNG")
    return None


def fault_alpha(dest: Path, img: Image.Image, outside: Path) -> str | None:
    rgba = img.convert("RGBA")
    rgba.putalpha(Image.eval(img.convert("L"), lambda v: 255 - v // 2))
    dest.parent.mkdir(parents=True, exist_ok=True)
    rgba.save(dest, format="PNG")
    return None


def fault_exif_rotated(dest: Path, img: Image.Image, outside: Path) -> str | None:
    _write(dest, exif_rotated_jpeg(img.resize((img.width, img.height // 2))))
    return None


def fault_symlink_out(dest: Path, img: Image.Image, outside: Path) -> str | None:
    target = outside / f"secret_{dest.stem}.png"
    _write(target, png_bytes(img))
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, dest)
    return "outside_root"


def fault_fifo(dest: Path, img: Image.Image, outside: Path) -> str | None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(dest)  # opening it for reading would block forever without a writer
    return "unreadable"


def fault_symlink_loop(dest: Path, img: Image.Image, outside: Path) -> str | None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(dest.name, dest)  # points at itself
    return "unreadable"


def fault_dangling(dest: Path, img: Image.Image, outside: Path) -> str | None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(f"gone_{dest.name}", dest)  # inside the root, but nothing there
    return "missing"


def fault_duplicate(dest: Path, img: Image.Image, outside: Path) -> str | None:
    # A byte copy of a sibling: shares one embedding, must still get its own row.
    siblings = sorted(dest.parent.glob("img_*.png"))
    _write(dest, siblings[0].read_bytes() if siblings else png_bytes(img))
    return None


FAULTS = {
    "truncated": fault_truncated,
    "zero_byte": fault_zero_byte,
    "not_image": fault_not_image,
    "unsupported": fault_unsupported,
    "eps_disguised": fault_eps_disguised,
    "bomb": fault_bomb,
    "sixteen_bit": fault_sixteen_bit,
    "cmyk": fault_cmyk,
    "palette": fault_palette,
    "alpha": fault_alpha,
    "exif_rotated": fault_exif_rotated,
    "symlink_out": fault_symlink_out,
    "fifo": fault_fifo,
    "symlink_loop": fault_symlink_loop,
    "dangling": fault_dangling,
    "duplicate": fault_duplicate,
}
"""Fault kind -> maker. `vanish` and `permission` need a running reader and are injected separately."""


SUFFIXES = {"cmyk": ".jpg", "exif_rotated": ".jpg", "unsupported": ".txt"}  # file name ending per kind; else .png


# Names that must round-trip exactly into the manifest's `path` column.
ODD_NAMES = ("with space.png", "ünïcødé 名前.png", "emoji 🙂.png", "quote's.png")


def make_faulty_folder(root: Path, outside: Path, *, n: int, faults: list[tuple[str, int]], seed: int = 0,
                       n_classes: int = 3) -> dict[str, str | None]:
    """A class-folder dataset of `n` real digits plus the given faults; returns path -> expected reason.

    faults: (kind, class index) pairs; a fault file lands in that class's folder.
    """
    images = [(im, label % n_classes) for im, label in digit_images(n + len(faults), seed=seed)]
    expected: dict[str, str | None] = {}
    for path in write_image_folder(root, images[:n]):
        expected[path.relative_to(root).as_posix()] = None
    for j, (kind, cls) in enumerate(faults):
        img = images[n + j][0]
        suffix = SUFFIXES.get(kind, ".png")
        rel = f"{cls % n_classes}/{kind}_{j:03d}{suffix}"
        expected[rel] = FAULTS[kind](root / rel, img, outside)
    return expected


def check_promise(manifest: pl.DataFrame, expected: dict[str, str | None]) -> None:
    """Every input appears exactly once with a decision and known reasons; faults carry theirs."""
    assert sorted(manifest[S.PATH].to_list()) == sorted(expected), "rows lost or invented"
    assert manifest[S.SAMPLE_ID].n_unique() == manifest.height
    assert set(manifest[S.DECISION].to_list()) <= set(S.DECISIONS)
    assert manifest[S.REASONS].null_count() == 0
    for path, decision, reasons, quality in manifest.select(
        S.PATH, S.DECISION, S.REASONS, S.LABEL_QUALITY
    ).iter_rows():
        assert set(reasons) <= set(reason_codes()), (path, reasons)
        want = expected[path]
        if want is None:
            assert not set(reasons) & S.UNUSABLE_REASONS, (path, reasons)
            # Embedded rows are judged, unless their class is too rare to judge (rare_class).
            assert quality is not None or "rare_class" in reasons, path
        else:
            assert (decision, reasons, quality) == ("drop", [want], None), (path, decision, reasons)
