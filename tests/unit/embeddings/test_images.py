"""Every image format users bring reads; every other file in a class folder is a row with a reason.

Real files written by Pillow from real digits (tests/userdata.py), checked against the
digit each one holds: decoding must not only succeed, it must give back that digit, upright.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from tests.helpers.userdata import VARIANTS, digit_images_by_class, make_user_folder
from winnow.catalogs import list_samples, resolve_catalog
from winnow.catalogs import schemas as S
from winnow.embeddings.images import ALLOWED_FORMATS, decode_image

REPO = Path(__file__).resolve().parents[3]
# The formats the README promises. A Pillow that stops registering or decoding one of them
# must turn this suite red, not turn users' files into `unreadable` rows.
PROMISED = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


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
    from winnow.catalogs.spec import IMAGE_EXTENSIONS

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


@pytest.fixture(scope="module")
def user_data(tmp_path_factory):
    return make_user_folder(tmp_path_factory.mktemp("user"))


def test_folder_lists_every_non_hidden_file_once(user_data):
    table = list_samples(resolve_catalog(str(user_data.folder)))
    rows = dict(zip(table.column(S.PATH).to_pylist(), table.column("refused").to_pylist(), strict=True))
    missing = sorted(set(user_data.expected) - set(rows))
    assert not missing, f"files silently not listed: {missing}"
    assert sorted(table.column(S.PATH).to_pylist()) == sorted(user_data.expected)  # each exactly once
    for rel, reason in user_data.expected.items():
        want = "unsupported_format" if reason == "unsupported_format" else None  # the rest is decided on read
        assert rows[rel] == want, (rel, rows[rel])
    labels = dict(zip(table.column(S.PATH).to_pylist(), table.column(S.LABEL).to_pylist(), strict=True))
    assert all(labels[rel] == user_data.label(rel) for rel in rows)


def test_hidden_files_are_not_rows_but_counted(user_data, tmp_path):
    from winnow.catalogs.samples import skipped_files_of

    table = list_samples(resolve_catalog(str(user_data.folder)))
    assert not [p for p in table.column(S.PATH).to_pylist() if "/." in f"/{p}"]
    assert skipped_files_of(table) == {"hidden": len(user_data.hidden), "outside_class_folders": 0}
    (user_data.folder / "stray.png").write_bytes(b"")  # a file beside the class folders has no label
    try:
        table = list_samples(resolve_catalog(str(user_data.folder)))
        assert skipped_files_of(table)["outside_class_folders"] == 1
    finally:
        (user_data.folder / "stray.png").unlink()


def test_unsupported_format_is_a_documented_unusable_reason():
    assert "unsupported_format" in S.REASON_CODES and "unsupported_format" in S.UNUSABLE_REASONS
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "| `unsupported_format` |" in readme


def test_manifest_variant_lists_the_same_data(user_data, tmp_path):
    cat = tmp_path / "user.toml"
    cat.write_text(f'name = "user"\n[source]\nkind = "manifest"\npath = "{user_data.manifest}"\n')
    table = list_samples(resolve_catalog(str(cat)))
    assert sorted(table.column(S.PATH).to_pylist()) == sorted(user_data.manifest_expected)


# --- end to end: `winnow run FOLDER` in a real subprocess ----------------------------------


def test_cli_run_reads_every_format_and_accounts_for_every_file(prefect_harness, user_data, tmp_path):
    from prefect.settings import PREFECT_API_URL

    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.run([sys.executable, "-m", "winnow.flows.cli", "run", str(user_data.folder), "--out", str(out),
                           "--encoder", "pixels", "--k", "5", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    manifest = pl.read_parquet(out / "manifest.parquet")
    assert sorted(manifest[S.PATH].to_list()) == sorted(user_data.expected), "rows lost, doubled or invented"
    reasons = dict(zip(manifest[S.PATH].to_list(), manifest[S.REASONS].to_list(), strict=True))
    unreadable_valid = sorted(p for p, r in user_data.expected.items() if r is None and "unreadable" in reasons[p])
    assert not unreadable_valid, f"supported files came out unreadable: {unreadable_valid}"
    for rel, want in user_data.expected.items():
        if want is None:
            assert not set(reasons[rel]) & S.UNUSABLE_REASONS, (rel, reasons[rel])
        else:
            assert reasons[rel] == [want], (rel, reasons[rel])
    assert reasons["0/notes.txt"] == ["unsupported_format"]
    decisions = dict(zip(manifest[S.PATH].to_list(), manifest[S.DECISION].to_list(), strict=True))
    assert all(decisions[p] == "drop" for p, r in user_data.expected.items() if r)
    hashes = dict(zip(manifest[S.PATH].to_list(), manifest[S.CONTENT_HASH].to_list(), strict=True))
    for copy, original in user_data.copies.items():
        assert hashes[copy] == hashes[original]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_files"] == {"hidden": len(user_data.hidden), "outside_class_folders": 0}
    assert summary["samples"] == len(user_data.expected)
