"""Fault injection: hostile and broken files, bad catalogs and bad arrays.

Every broken input becomes either the right row with the right reason code, or a named
error quoting the bad value before any work; never a traceback, never a lost sample.
The fault makers here are reused by the property suite (test_promise.py) and the soak
benchmark (benchmarks/soak.py).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import digit_images, write_image_folder
from winnow import curation
from winnow.catalogs import (
    InvalidCatalog,
    TooFewClasses,
    UnknownLabel,
    UnsafePath,
    classes_of,
    list_samples,
    load_catalog,
    resolve_catalog,
)
from winnow.catalogs import schemas as S
from winnow.embeddings.images import decode_image, read_file

REPO = Path(__file__).resolve().parents[2]

# --- fault makers -----------------------------------------------------------------------------
# Each writes one file (or link) at `dest` and returns the reason code the manifest must
# show for it, or None when the file is a valid image that must be embedded.


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


def fault_symlink_loop(dest: Path, img: Image.Image, outside: Path) -> str | None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(dest.name, dest)  # points at itself
    return "unreadable"


def fault_dangling(dest: Path, img: Image.Image, outside: Path) -> str | None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(f"gone_{dest.name}", dest)  # inside the root, but nothing there
    return "missing"


def fault_fifo(dest: Path, img: Image.Image, outside: Path) -> str | None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(dest)  # opening it for reading would block forever without a writer
    return "unreadable"


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
        assert set(reasons) <= set(S.REASON_CODES), (path, reasons)
        want = expected[path]
        if want is None:
            assert not set(reasons) & S.UNUSABLE_REASONS, (path, reasons)
            # Embedded rows are judged, unless their class is too rare to judge (rare_class).
            assert quality is not None or "rare_class" in reasons, path
        else:
            assert (decision, reasons, quality) == ("drop", [want], None), (path, decision, reasons)


# --- the decoder, file by file ------------------------------------------------------------------


@pytest.fixture(scope="module")
def digit():
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


def test_exif_orientation_is_applied(digit):
    img = digit.convert("RGB").resize((40, 20))
    arr = np.asarray(img).copy()
    arr[:, :5] = (255, 0, 0)  # a red band on the left edge
    decoded, reason = decode_image(exif_rotated_jpeg(Image.fromarray(arr), orientation=6))
    assert reason is None and decoded.size == (20, 40)  # width and height swapped: upright
    top = np.asarray(decoded)[:3].astype(int)  # orientation 6 = rotate 90 clockwise: left edge -> top
    assert top[..., 0].mean() > 200 and top[..., 1].mean() < 80


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_junk_exif_keeps_the_image(digit):
    buf = io.BytesIO()
    digit.convert("RGB").save(buf, format="JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\xff")
    decoded, reason = decode_image(buf.getvalue())
    assert reason is None and decoded.size == digit.size


@pytest.mark.parametrize("kind", ["sixteen_bit", "cmyk", "palette", "alpha"])
def test_unusual_modes_decode_to_8bit_rgb(tmp_path, digit, kind):
    dest = tmp_path / "x.png"
    assert FAULTS[kind](dest, digit, tmp_path) is None
    decoded, reason = decode_image(dest.read_bytes())
    assert reason is None and decoded.mode == "RGB" and decoded.size == digit.size
    arr = np.asarray(decoded)
    assert arr.max() > arr.min() + 100, "contrast lost in the conversion"
    if kind == "sixteen_bit":
        assert Image.open(dest).mode.startswith("I")


def test_alpha_is_composited_on_white():
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    decoded, _ = decode_image(png_bytes(clear))
    assert np.asarray(decoded).min() == 255


@pytest.mark.parametrize("kind", ["truncated", "zero_byte", "not_image", "eps_disguised"])
def test_broken_bytes_are_unreadable(tmp_path, digit, kind, monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"decoding a sample started a subprocess: {args!r}")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    dest = tmp_path / "x.png"
    FAULTS[kind](dest, digit, tmp_path)
    assert decode_image(dest.read_bytes()) == (None, "unreadable")


def test_read_file_reasons(tmp_path, digit):
    ok = tmp_path / "ok.png"
    ok.write_bytes(png_bytes(digit))
    assert read_file(str(ok)).reason is None
    assert read_file(str(tmp_path / "gone.png")).reason == "missing"
    assert read_file(str(tmp_path)).reason == "unreadable"  # a folder
    assert read_file(str(tmp_path / "nul\x00.png")).reason == "unreadable"
    os.symlink(tmp_path / "nowhere.png", tmp_path / "dangling.png")
    assert read_file(str(tmp_path / "dangling.png")).reason == "missing"
    assert read_file("/dev/zero").reason == "unreadable"  # endless stream: never read


def test_fifo_is_refused_without_blocking(tmp_path, digit):
    dest = tmp_path / "pipe.png"
    fault_fifo(dest, digit, tmp_path)
    result = []
    reader = threading.Thread(target=lambda: result.append(read_file(str(dest))), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "read_file blocked on a FIFO"
    assert result[0].reason == "unreadable"


# --- a real folder with every fault, through the flow and the CLI ----------------------------------

ALL_FAULTS = [(kind, i) for i, kind in enumerate(FAULTS)] + [("bomb", 1), ("truncated", 2)]


@pytest.fixture(scope="module")
def faulty_run(prefect_harness, tmp_path_factory):
    """One flow run over 60 digits + every fault + odd names + a file that vanishes mid-run."""
    from winnow.flows.clean import clean_dataset
    from winnow.pipeline.config import RunConfig

    base = tmp_path_factory.mktemp("faulty")
    root, outside = base / "data", base / "outside"
    expected = make_faulty_folder(root, outside, n=60, faults=ALL_FAULTS)
    originals = sorted(root.glob("*/img_*.png"))
    for i, name in enumerate(ODD_NAMES):
        shutil.copy(originals[-1 - i], root / str(i % 3) / name)
        expected[f"{i % 3}/{name}"] = None
    # A file listed but deleted before it is read: patch the reader to delete it first.
    vanish = root / "2" / "vanish.png"
    vanish.write_bytes(png_bytes(digit_images(1, seed=9)[0][0]))
    expected["2/vanish.png"] = "missing"
    import winnow.embeddings.embed as embed_mod

    real_read = embed_mod.read_file

    def read_after_vanishing(path, **options):
        if path.endswith("vanish.png") and os.path.exists(path):
            os.remove(path)
        return real_read(path, **options)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(embed_mod, "read_file", read_after_vanishing)
        paths = clean_dataset(RunConfig(target=str(root), out=str(base / "out"), encoder="pixels:16", k=5))
    return paths, expected, base


def test_every_fault_becomes_its_row_and_reason(faulty_run):
    paths, expected, base = faulty_run
    manifest = pl.read_parquet(paths["manifest"])
    check_promise(manifest, expected)
    assert manifest.height == 60 + len(ALL_FAULTS) + len(ODD_NAMES) + 1
    reasons = json.loads(Path(paths["summary"]).read_text())["reasons"]
    assert reasons["too_large"] == 2 and reasons["outside_root"] == 1 and reasons["missing"] == 2
    # The duplicate shares the embedding of the file it copies, and keeps its own row.
    dup = manifest.filter(pl.col(S.PATH).str.contains("duplicate_"))
    assert dup.height == 1 and manifest[S.CONTENT_HASH].to_list().count(dup[S.CONTENT_HASH][0]) == 2
    # The clean set never points at a refused or unreadable file.
    clean = pl.read_parquet(paths["clean"])
    assert not set(clean[S.PATH]) & {p for p, r in expected.items() if r}


def test_odd_names_round_trip_exactly(faulty_run):
    paths, _, _ = faulty_run
    manifest_paths = set(pl.read_parquet(paths["manifest"])[S.PATH].to_list())
    for i, name in enumerate(ODD_NAMES):
        assert f"{i % 3}/{name}" in manifest_paths
    clean = pl.read_parquet(paths["clean"])
    for abs_path in clean[S.ABS_PATH].to_list():
        assert os.path.isfile(abs_path)  # the absolute paths open as given, unicode included


def test_symlink_out_of_root_is_never_opened(tmp_path, digit, monkeypatch):
    root, outside = tmp_path / "data", tmp_path / "outside"
    make_faulty_folder(root, outside, n=6, faults=[("symlink_out", 0)])
    import winnow.embeddings.embed as embed_mod

    opened = []
    real_read = embed_mod.read_file
    monkeypatch.setattr(embed_mod, "read_file", lambda p, **kw: opened.append(p) or real_read(p, **kw))
    from winnow.embeddings import EmbeddingStore, embed_files, get_encoder

    table = list_samples(resolve_catalog(str(root)))
    refused = table.column("refused").to_pylist()
    assert refused.count("outside_root") == 1
    enc = get_encoder("pixels:8")
    report = embed_files(table.column(S.ABS_PATH).to_pylist(), enc,
                         EmbeddingStore(tmp_path / "s", encoder_id=enc.encoder_id, dim=enc.dim), refused=refused)
    assert opened and not [p for p in opened if Path(p).name.startswith("symlink_out")]
    assert report.reason.count("outside_root") == 1


def test_symlinks_inside_the_root_or_allowed_by_the_catalog_are_read(tmp_path, digit):
    root, outside = tmp_path / "data", tmp_path / "outside"
    make_faulty_folder(root, outside, n=6, faults=[("symlink_out", 0)])
    inner = sorted(root.glob("1/img_*.png"))[0]
    os.symlink(inner, root / "0" / "inner_link.png")
    rows = list_samples(resolve_catalog(str(root))).select([S.PATH, "refused"]).to_pylist()
    refused = {r[S.PATH]: r["refused"] for r in rows}
    assert refused["0/inner_link.png"] is None and refused["0/symlink_out_000.png"] == "outside_root"
    cat = write_toml(tmp_path / "c.toml", 'name = "x"\n' + FOLDER + "allow_outside_root = true\n")
    table = list_samples(load_catalog(cat))
    assert table.column("refused").null_count == table.num_rows  # the user named the way out


def test_class_folder_linked_out_of_root_is_refused(tmp_path, digit):
    root, outside = tmp_path / "data", tmp_path / "outside"
    write_image_folder(root, [(digit, 0), (digit, 1)])
    write_image_folder(outside, [(digit, "x"), (digit, "x")], prefix="secret")
    os.symlink(outside / "x", root / "2")
    table = list_samples(resolve_catalog(str(root)))
    rows = dict(zip(table.column(S.PATH).to_pylist(), table.column("refused").to_pylist(), strict=True))
    assert rows["2/secret_0000.png"] == "outside_root" and rows["0/img_0000.png"] is None


def test_cli_run_over_faulty_folder(faulty_run, tmp_path):
    from winnow.flows.cli import app

    _, expected, base = faulty_run
    result = CliRunner().invoke(app, ["run", str(base / "data"), "--out", str(tmp_path / "o"),
                                      "--encoder", "pixels:16", "--k", "5", "--json"])
    assert result.exit_code == 0, result.output
    manifest = pl.read_parquet(tmp_path / "o" / "manifest.parquet")
    check_promise(manifest, {p: r for p, r in expected.items() if p != "2/vanish.png"})  # gone for good


# --- unreadable (permission) file: privileges really dropped --------------------------------------

_PERMISSION_DRIVER = textwrap.dedent(
    """
    import ctypes, json, os, sys
    from winnow.flows.clean import clean_dataset
    from winnow.pipeline.config import RunConfig
    from PIL import Image
    Image.init()  # load every codec plugin before privileges go
    if os.geteuid() == 0:
        # Root reads chmod-000 files through CAP_DAC_OVERRIDE: drop every capability
        # (uid stays 0 so the interpreter under /root stays importable).
        class Hdr(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
        class Data(ctypes.Structure):
            _fields_ = [("eff", ctypes.c_uint32), ("prm", ctypes.c_uint32), ("inh", ctypes.c_uint32)]
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.capset(ctypes.byref(Hdr(0x20080522, 0)), (Data * 2)()) != 0:
            os.setgid(65534); os.setuid(65534)  # no capset here: become nobody instead
    try:
        open(sys.argv[2], "rb").close()
        sys.exit("privileges were not dropped: the chmod-000 file is still readable")
    except PermissionError:
        pass
    if sys.argv[4] == "--list-only":
        from winnow.catalogs import CatalogError, list_samples, resolve_catalog
        try:
            list_samples(resolve_catalog(sys.argv[3]))
        except CatalogError as exc:
            print("RESULT " + json.dumps([type(exc).__name__, str(exc)]))
        sys.exit(0)
    paths = clean_dataset(RunConfig(target=sys.argv[3], out=sys.argv[4], encoder="pixels:16", k=3))
    print("RESULT " + json.dumps(paths))
    """
)


def run_unprivileged(tmp_path: Path, locked: Path, *args: str) -> str:
    """Run the driver with privileges dropped; returns what it printed after RESULT."""
    from prefect.settings import PREFECT_API_URL

    driver = tmp_path / "driver.py"
    driver.write_text(_PERMISSION_DRIVER)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.run([sys.executable, str(driver), str(REPO), str(locked), *args],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0 and "RESULT " in proc.stdout, proc.stdout + proc.stderr
    return proc.stdout.split("RESULT ", 1)[1]


def test_permission_denied_file_becomes_a_row(prefect_harness, tmp_path, digit):
    root = tmp_path / "data"
    expected = make_faulty_folder(root, tmp_path / "outside", n=12, faults=[])
    locked_file = root / "1" / "locked.png"
    locked_file.write_bytes(png_bytes(digit))
    expected["1/locked.png"] = "permission_denied"
    out = tmp_path / "out"
    out.mkdir()
    for p in [tmp_path, root, out, *root.rglob("*")]:
        p.chmod(0o777 if p.is_dir() else 0o644)  # world-usable, for the `nobody` fallback
    locked_file.chmod(0o000)
    paths = json.loads(run_unprivileged(tmp_path, locked_file, str(root), str(out)))
    check_promise(pl.read_parquet(paths["manifest"]), expected)


def test_unlistable_folder_is_a_named_error_not_a_silent_skip(prefect_harness, tmp_path, digit):
    root = tmp_path / "data"
    write_image_folder(root, [(digit, 0), (digit, 1), (digit, 1)])
    (root / "1" / "sub").mkdir()
    for p in [tmp_path, *root.rglob("*")]:
        p.chmod(0o777 if p.is_dir() else 0o644)
    (root / "1" / "sub").chmod(0o000)
    try:
        name, message = json.loads(run_unprivileged(tmp_path, root / "1" / "sub", str(root), "--list-only"))
    finally:
        (root / "1" / "sub").chmod(0o755)
    assert name == "UnreadableFolder" and "1/sub" in message


# --- bad catalogs: named errors quoting the bad value, before any work ---------------------------


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


FOLDER = '[source]\nkind = "image_folder"\nroot = "data"\n'


@pytest.mark.parametrize(
    "text, error, match",
    [
        ('name = "x"\nlabels = ["a"]\n' + FOLDER, InvalidCatalog, "'labels'"),
        ('name = "x"\n' + FOLDER + 'follow_links = true\n', InvalidCatalog, "'follow_links'"),
        ('name = "x"\nencoder = 7\n' + FOLDER, InvalidCatalog, "'encoder' must be str, got 7"),
        ('name = "x"\n' + FOLDER + 'allow_outside_root = "yes"\n', InvalidCatalog, "got 'yes'"),
        ('name = "x"\nclasses = [1, 2]\n' + FOLDER, InvalidCatalog, r"\[1, 2\]"),
        ('name = "x"\nclasses = ["a", " "]\n' + FOLDER, InvalidCatalog, "' '"),
        ('name = "x"\nclasses = ["a", "a"]\n' + FOLDER, InvalidCatalog, "'a'"),
        ('name = "x"\npolicy = 3\n' + FOLDER, InvalidCatalog, "got 3"),
        ('name = ""\n' + FOLDER, InvalidCatalog, "''"),
    ],
)
def test_bad_catalog_keys_and_types(tmp_path, text, error, match):
    with pytest.raises(error, match=match):
        load_catalog(write_toml(tmp_path / "c.toml", text))


@pytest.fixture
def small_folder(tmp_path):
    write_image_folder(tmp_path / "data", digit_images(12, seed=2))
    return tmp_path / "data"


@pytest.mark.parametrize(
    "classes, error, match",
    [
        ('["0", "1"]', UnknownLabel, r"has label '\d', which is not in the class list"),
        ("[]", TooFewClasses, r"\[\]"),
        ('["0"]', TooFewClasses, r"\['0'\]"),
    ],
)
def test_class_list_problems(tmp_path, small_folder, classes, error, match):
    cat = write_toml(tmp_path / "c.toml", f'name = "x"\nclasses = {classes}\n' + FOLDER)
    with pytest.raises(error, match=match):
        list_samples(load_catalog(cat))


def test_empty_class_and_single_class(tmp_path, small_folder):
    labels = sorted(p.name for p in small_folder.iterdir())
    cat = write_toml(tmp_path / "c.toml", f'name = "x"\nclasses = {labels + ["zebra"]!r}\n'.replace("'", '"') + FOLDER)
    with pytest.raises(TooFewClasses, match="'zebra'"):
        list_samples(load_catalog(cat))
    for d in small_folder.iterdir():
        if d.name != labels[0]:
            shutil.rmtree(d)
    with pytest.raises(TooFewClasses, match=repr([labels[0]]).replace("[", r"\[").replace("]", r"\]")):
        list_samples(load_catalog(write_toml(tmp_path / "d.toml", 'name = "x"\n' + FOLDER)))


MANIFEST = 'name = "m"\n[source]\nkind = "manifest"\npath = "sub/m.csv"\n'


def write_manifest(tmp_path: Path, paths: list[str], labels: list[str] | None = None) -> None:
    (tmp_path / "sub").mkdir(exist_ok=True)
    labels = labels or [str(i % 2) for i in range(len(paths))]
    pl.DataFrame({"path": paths, "label": labels}).write_csv(tmp_path / "sub" / "m.csv")


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "a/../../x.png", "..\\..\\x.png"])
def test_manifest_paths_escaping_the_folder_are_refused(tmp_path, bad):
    write_manifest(tmp_path, ["a.png", bad, "b.png"])
    with pytest.raises(UnsafePath, match=re.escape(repr(bad)[1:-1])) as err:
        list_samples(load_catalog(write_toml(tmp_path / "c.toml", MANIFEST)))
    # The second data row of a CSV is the editor's line 3 (the header is line 1).
    assert "allow_outside_root" in str(err.value) and "line 3" in str(err.value)


def test_corrupt_manifest_is_a_named_error(tmp_path):
    from winnow.catalogs.errors import InvalidManifest

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(InvalidManifest, match="m.parquet"):
        list_samples(load_catalog(write_toml(tmp_path / "c.toml", MANIFEST.replace("m.csv", "m.parquet"))))


def test_manifest_nul_byte_path_is_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    pl.DataFrame({"path": ["a.png", "b\x00.png"], "label": ["0", "1"]}).write_parquet(tmp_path / "sub" / "m.parquet")
    with pytest.raises(UnsafePath, match="NUL"):
        list_samples(load_catalog(write_toml(tmp_path / "c.toml", MANIFEST.replace("m.csv", "m.parquet"))))


def test_manifest_outside_paths_allowed_when_the_catalog_says_so(tmp_path, digit):
    outside = tmp_path / "elsewhere" / "x.png"
    outside.parent.mkdir()
    outside.write_bytes(png_bytes(digit))
    (tmp_path / "sub" / "in").mkdir(parents=True)
    (tmp_path / "sub" / "in" / "y.png").write_bytes(png_bytes(digit))
    write_manifest(tmp_path, [str(outside), "../elsewhere/x.png", "in/y.png"], ["0", "1", "1"])
    text = MANIFEST + "allow_outside_root = true\n"
    table = list_samples(load_catalog(write_toml(tmp_path / "c.toml", text)))
    assert table.column("refused").to_pylist() == [None, None, None]
    assert Path(table.column(S.ABS_PATH)[0].as_py()) == outside


def test_manifest_path_through_a_linked_folder_is_refused(tmp_path, digit):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.png").write_bytes(png_bytes(digit))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ok.png").write_bytes(png_bytes(digit))
    os.symlink(tmp_path / "secret", tmp_path / "sub" / "linked")
    write_manifest(tmp_path, ["ok.png", "linked/key.png"])
    table = list_samples(load_catalog(write_toml(tmp_path / "c.toml", MANIFEST)))
    assert table.column("refused").to_pylist() == [None, "outside_root"]


def test_class_names_with_any_character_round_trip(tmp_path):
    odd = ["a\x1fb", "c,d", "[e]"]
    write_manifest(tmp_path, ["1.png", "2.png", "3.png"], odd)
    table = list_samples(load_catalog(write_toml(tmp_path / "c.toml", MANIFEST)))
    assert classes_of(table) == sorted(odd)
    assert [classes_of(table)[i] for i in table.column(S.LABEL_INDEX).to_pylist()] == odd


def test_cli_bad_catalog_exits_2_without_traceback(tmp_path):
    from winnow.flows.cli import app

    cat = write_toml(tmp_path / "c.toml", 'name = "x"\ncolour = "red"\n' + FOLDER)
    result = CliRunner().invoke(app, ["run", str(cat), "--out", str(tmp_path / "o"), "--encoder", "pixels:16"])
    # CliRunner never prints a traceback: tests/test_cli_errors.py checks that in a real process.
    assert result.exit_code == 2 and "'colour'" in result.output
    assert not (tmp_path / "o" / "store").exists()  # failed before any work


# --- bad arrays: NaN / inf / mismatched lengths, named and quoted -------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_embeddings_and_pred_probs(bad):
    emb = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    emb[7, 2] = bad
    word = "nan" if np.isnan(bad) else "inf"
    with pytest.raises(curation.InvalidArray, match=rf"embeddings\[7, 2\] is \S*{word}"):
        curation.build_knn_graph(emb, k=3)
    probs = np.full((6, 2), 0.5)
    probs[4, 1] = bad
    from winnow.curation.confident_learning import find_confident_learning_issues

    with pytest.raises(curation.InvalidArray, match=rf"pred_probs\[4, 1\] is \S*{word}"):
        find_confident_learning_issues(np.array([0, 1, 0, 1, 0, 1]), probs)


def test_mismatched_lengths_name_both_sides():
    from winnow.curation.confident_learning import find_confident_learning_issues

    with pytest.raises(curation.LengthMismatch, match="labels has 5 rows but pred_probs has 6"):
        find_confident_learning_issues(np.array([0, 1, 0, 1, 0]), np.full((6, 2), 0.5))
    with pytest.raises(curation.InvalidArray, match=r"labels\[2\] is 7, outside 0..1"):
        find_confident_learning_issues(np.array([0, 1, 7, 1, 0, 1]), np.full((6, 2), 0.5))


# --- safe loading: no pickle, no shell ------------------------------------------------------------

_FORBIDDEN = [
    (re.compile(r"^\s*(import|from)\s+(c?pickle|dill|cloudpickle|marshal|shelve)\b", re.M), "pickle import"),
    (re.compile(r"\bpickle\.loads?\("), "pickle.load"),
    (re.compile(r"shell\s*=\s*True"), "shell=True"),
    (re.compile(r"\bos\.(system|popen|exec\w*|spawn\w*)\("), "os shell/exec"),
    (re.compile(r"allow_pickle\s*=\s*True"), "allow_pickle=True"),
    (re.compile(r"(?<![\w.])(eval|exec)\("), "eval/exec"),
    (re.compile(r"\bread_pickle\(|\bjoblib\.load\("), "pickle reader"),
]


def test_no_pickle_no_shell_in_the_library():
    offenders = []
    for package in ("catalogs", "embeddings", "curation", "flows"):
        for path in sorted((REPO / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for pattern, what in _FORBIDDEN:
                offenders += [f"{path.relative_to(REPO)}: {what}" for _ in pattern.finditer(text)]
            for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
                if "weights_only=True" not in call.group(1):
                    offenders.append(f"{path.relative_to(REPO)}: torch.load without weights_only=True")
    assert not offenders, offenders


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_malicious_checkpoint_is_refused_not_run(tmp_path):
    import torch

    from winnow.embeddings import EncoderUnavailable
    from winnow.embeddings.encoders import _load_state_dict

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    torch.save({"weight": _Payload(str(marker))}, ckpt)
    with pytest.raises(EncoderUnavailable, match="weights_only"):
        _load_state_dict(torch.nn.Linear(2, 2), ckpt)
    assert not marker.exists()
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x00" * 64)
    with pytest.raises(Exception) as err:  # safetensors' own error: a header it cannot parse
        _load_state_dict(torch.nn.Linear(2, 2), fake)
    assert not marker.exists() and "pwned" not in str(err.value)
