"""What users bring: a real image folder in every format Winnow reads, plus the odd files found beside them.

`make_user_folder(root)` writes, from real scikit-learn digits (each file in the folder of
its true digit):

- every supported format and the variants cameras, phones and tools produce (`VARIANTS`):
  PNG (L, RGB, RGBA, palette with transparency, 16-bit), JPEG (RGB, grey, CMYK,
  EXIF-rotated, progressive, a multi-picture MPO from a phone, upper-case `.JPG`),
  WebP (lossy, lossless), GIF (static, animated), BMP, TIFF (raw, LZW, deflate, JPEG
  inside, multi-page), AVIF, an upper-case `.PNG`, and a PNG named `.jpg` (content decides);
- odd files: notes `.txt`, a `.csv`, an extension-less file, a `.heic` name (not a
  format Winnow reads) -> `unsupported_format`; a truncated PNG and a `.png` holding text
  -> `unreadable`; a byte copy of another image (kept as its own row);
- hidden files (`.DS_Store`, `._img.png` AppleDouble, a `.cache/` folder): not rows,
  counted as skipped;
- a CSV manifest variant of the same data (`labels.csv`: path,label; its paths are
  relative to `root`), holding every file of the folder that has an image extension.

Fast (well under 2 s): images are 32 x 32. Pure Pillow and numpy; no Winnow imports, so
any suite (and the acceptance suite) can use it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("0", "1", "2")  # the digits written; each file lies in the folder of its true digit


def _save(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def _exif_rotated(img: Image.Image) -> bytes:
    # Stored lying on its side (rotated 90 counter-clockwise) with orientation 6 saying
    # "rotate 90 clockwise to show": decoded upright, it matches the digit again.
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(img.convert("RGB").transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes(),
                 quality=95)


def _palette(img: Image.Image) -> bytes:
    pal = img.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _save(pal, "PNG", transparency=255)  # an unused index: transparency info without holes


def _rgba(img: Image.Image) -> bytes:
    rgba = img.convert("RGBA")
    rgba.putalpha(255)  # fully opaque alpha channel: composited on white it is the digit itself
    return _save(rgba, "PNG")


def _sixteen_bit(img: Image.Image) -> bytes:
    return _save(Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257), "PNG")


def _mpo(img: Image.Image) -> bytes:
    # What phones write for depth / burst shots: two JPEGs in one file (multi-picture).
    second = Image.eval(img.convert("RGB"), lambda v: 255 - v)
    return _save(img.convert("RGB"), "MPO", save_all=True, append_images=[second], quality=95)


def _animated_gif(img: Image.Image) -> bytes:
    # The first frame is the digit; Winnow reads the first frame of an animation.
    second = Image.eval(img.convert("L"), lambda v: 255 - v)
    return _save(img.convert("L"), "GIF", save_all=True, append_images=[second], duration=100, loop=0)


def _multipage_tiff(img: Image.Image) -> bytes:
    second = Image.eval(img.convert("L"), lambda v: 255 - v)
    return _save(img.convert("L"), "TIFF", save_all=True, append_images=[second])


# name -> (file suffix, writer). Every one is a valid image whose (first) frame, upright and
# converted to grey, is the digit it was made from.
VARIANTS: dict[str, tuple[str, Callable[[Image.Image], bytes]]] = {
    "png_grey": (".png", lambda im: _save(im.convert("L"), "PNG")),
    "png_rgb": (".png", lambda im: _save(im.convert("RGB"), "PNG")),
    "png_rgba": (".png", _rgba),
    "png_palette": (".png", _palette),
    "png_16bit": (".png", _sixteen_bit),
    "png_upper_ext": (".PNG", lambda im: _save(im.convert("RGB"), "PNG")),
    "jpeg_rgb": (".jpg", lambda im: _save(im.convert("RGB"), "JPEG", quality=95)),
    "jpeg_grey": (".jpeg", lambda im: _save(im.convert("L"), "JPEG", quality=95)),
    "jpeg_cmyk": (".jpg", lambda im: _save(im.convert("RGB").convert("CMYK"), "JPEG", quality=95)),
    "jpeg_exif_rotated": (".jpg", _exif_rotated),
    "jpeg_progressive": (".jpg", lambda im: _save(im.convert("RGB"), "JPEG", quality=95, progressive=True)),
    "jpeg_upper_ext": (".JPG", lambda im: _save(im.convert("RGB"), "JPEG", quality=95)),
    "jpeg_mpo": (".jpg", _mpo),
    "webp_lossy": (".webp", lambda im: _save(im.convert("RGB"), "WEBP", quality=90)),
    "webp_lossless": (".webp", lambda im: _save(im.convert("RGB"), "WEBP", lossless=True)),
    "gif_static": (".gif", lambda im: _save(im.convert("L"), "GIF")),
    "gif_animated": (".gif", _animated_gif),
    "bmp": (".bmp", lambda im: _save(im.convert("RGB"), "BMP")),
    "tiff_raw": (".tif", lambda im: _save(im.convert("RGB"), "TIFF")),
    "tiff_lzw": (".tiff", lambda im: _save(im.convert("RGB"), "TIFF", compression="tiff_lzw")),
    "tiff_deflate": (".tif", lambda im: _save(im.convert("L"), "TIFF", compression="tiff_adobe_deflate")),
    "tiff_jpeg": (".tif", lambda im: _save(im.convert("RGB"), "TIFF", compression="jpeg")),
    "tiff_multipage": (".tiff", _multipage_tiff),
    "avif": (".avif", lambda im: _save(im.convert("RGB"), "AVIF", quality=90)),
    "png_named_jpg": (".jpg", lambda im: _save(im.convert("RGB"), "PNG")),  # content decides, not the name
}

# Files in a class folder that are not images Winnow reads: (name, bytes, reason code).
ODD_FILES: tuple[tuple[str, bytes, str], ...] = (
    ("notes.txt", b"shot on my phone, sorted by hand\n", "unsupported_format"),
    ("labels.csv", b"path,label\nimg.png,1\n", "unsupported_format"),
    ("README", b"no extension at all\n", "unsupported_format"),
    ("IMG_0001.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "unsupported_format"),
    ("text_named.png", b"this is a text file with an image name\n", "unreadable"),
)
HIDDEN = (".DS_Store", "._img_0000.png")  # Finder / AppleDouble litter inside class folders


def digit_images_by_class(per_class: int, *, classes=CLASSES, seed: int = 0,
                          size: int = 32) -> dict[str, list[Image.Image]]:
    """`per_class` real scikit-learn digits of each class, upscaled to `size` pixels (grey)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    out = {}
    for c in classes:
        idx = rng.choice(np.flatnonzero(d.target == int(c)), size=per_class, replace=False)
        out[c] = [Image.fromarray(np.round(d.images[i] * (255.0 / 16.0)).astype(np.uint8), mode="L")
                  .resize((size, size), Image.Resampling.BICUBIC) for i in idx]
    return out


@dataclass
class UserData:
    root: Path  # holds images/ and labels.csv
    folder: Path  # the class-folder tree: images/<digit>/<file>
    manifest: Path  # labels.csv: path (relative to root), label
    expected: dict[str, str | None] = field(default_factory=dict)  # folder-relative path -> reason, None: valid
    sources: dict[str, Image.Image] = field(default_factory=dict)  # valid path -> the digit it holds (grey)
    variant: dict[str, str] = field(default_factory=dict)  # valid path -> VARIANTS name
    hidden: list[str] = field(default_factory=list)  # folder-relative hidden entries (not rows)
    copies: dict[str, str] = field(default_factory=dict)  # byte copy -> the file it copies

    def label(self, rel: str) -> str:
        return rel.split("/", 1)[0]

    @property
    def manifest_expected(self) -> dict[str, str | None]:
        """Manifest-relative path -> expected reason, for the rows of labels.csv."""
        return {f"images/{rel}": reason for rel, reason in self.expected.items() if _has_image_suffix(rel)}


def _has_image_suffix(rel: str) -> bool:
    return Path(rel).suffix.lower() in {s.lower() for s, _ in VARIANTS.values()}


def make_user_folder(root: str | Path, *, plain_per_class: int = 6, seed: int = 0) -> UserData:
    """Write the folder (see the module docstring) under `root`; returns what each file must become.

    Each class gets `plain_per_class` extra plain PNGs so a kNN over the folder has neighbours.
    """
    root = Path(root)
    folder = root / "images"
    n_variants = -(-len(VARIANTS) // len(CLASSES))
    images = digit_images_by_class(n_variants + plain_per_class + 1, seed=seed)
    data = UserData(root=root, folder=folder, manifest=root / "labels.csv")

    def write(rel: str, payload: bytes) -> None:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)

    for i, (name, (suffix, writer)) in enumerate(VARIANTS.items()):
        cls = CLASSES[i % len(CLASSES)]
        img = images[cls][i // len(CLASSES)]
        rel = f"{cls}/{name}{suffix}"
        write(rel, writer(img))
        data.expected[rel], data.sources[rel], data.variant[rel] = None, img, name
    for cls in CLASSES:
        for j in range(plain_per_class):
            img = images[cls][n_variants + j]
            rel = f"{cls}/img_{j:04d}.png"
            write(rel, _save(img, "PNG"))
            data.expected[rel], data.sources[rel], data.variant[rel] = None, img, "png_grey"
    # A byte copy: its own row, the same content hash as the file it copies.
    original = f"{CLASSES[1]}/img_0000.png"
    copy = f"{CLASSES[1]}/img_0000 copy.png"
    write(copy, (folder / original).read_bytes())
    data.expected[copy], data.sources[copy], data.variant[copy] = None, data.sources[original], "png_grey"
    data.copies[copy] = original
    # Broken: a PNG cut in half.
    whole = _save(images[CLASSES[2]][-1], "PNG")
    write(f"{CLASSES[2]}/truncated.png", whole[: len(whole) // 2])
    data.expected[f"{CLASSES[2]}/truncated.png"] = "unreadable"
    for i, (name, payload, reason) in enumerate(ODD_FILES):
        rel = f"{CLASSES[i % len(CLASSES)]}/{name}"
        write(rel, payload)
        data.expected[rel] = reason
    for i, name in enumerate(HIDDEN):
        rel = f"{CLASSES[i % len(CLASSES)]}/{name}"
        write(rel, b"\x00\x05\x16\x07 Mac OS X resource fork")
        data.hidden.append(rel)
    write(f"{CLASSES[0]}/.cache/thumb.png", _save(images[CLASSES[0]][0], "PNG"))  # a hidden folder
    data.hidden.append(f"{CLASSES[0]}/.cache")
    with open(data.manifest, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "label"])
        for rel in sorted(data.manifest_expected):
            out.writerow([rel, data.label(rel[len("images/"):])])
    return data
