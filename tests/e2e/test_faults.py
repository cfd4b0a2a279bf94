"""Fault injection over real folders, through the flow and the CLI: hostile and broken files.

Every broken input becomes either the right row with the right reason code, or a named
error quoting the bad value before any work; never a traceback, never a lost sample.
The fault makers are in tests/helpers/faults.py; the file-by-file decoder checks in
tests/unit/embeddings/test_images.py, bad catalogs in tests/unit/catalogs/, bad arrays in
tests/unit/curation/test_validation.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tests.helpers import digit_images, write_image_folder
from tests.helpers.faults import FAULTS, ODD_NAMES, check_promise, make_faulty_folder, png_bytes
from winnow.catalogs import schemas as S

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digit():
    return digit_images(1, seed=3)[0][0]


# --- a real folder with every fault, through the flow and the CLI ----------------------------------

ALL_FAULTS = [(kind, i) for i, kind in enumerate(FAULTS)] + [("bomb", 1), ("truncated", 2)]


@pytest.fixture(scope="module")
def faulty_run(prefect_harness, tmp_path_factory):
    """One flow run over 60 digits + every fault + odd names + a file that vanishes mid-run."""
    from winnow.flows.clean import clean_dataset
    from winnow.pipeline.config import make_settings

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
    import winnow.reading as reading_mod  # every file read of a run goes through winnow.reading.read_file

    real_read = reading_mod.read_file

    def read_after_vanishing(path, **options):
        if path.endswith("vanish.png") and os.path.exists(path):
            os.remove(path)
        return real_read(path, **options)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reading_mod, "read_file", read_after_vanishing)
        paths = clean_dataset(str(root), make_settings(out=str(base / "out"), encoder="pixels:16", k=5))
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
    from winnow.pipeline.config import make_settings
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
    paths = clean_dataset(sys.argv[3], make_settings(out=sys.argv[4], encoder="pixels:16", k=3))
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


# --- a bad catalog through the CLI: exit 2 before any work ----------------------------------------


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


FOLDER = '[source]\nkind = "image_folder"\nroot = "data"\n'


def test_cli_bad_catalog_exits_2_without_traceback(tmp_path):
    from winnow.flows.cli import app

    cat = write_toml(tmp_path / "c.toml", 'name = "x"\ncolour = "red"\n' + FOLDER)
    result = CliRunner().invoke(app, ["run", str(cat), "--out", str(tmp_path / "o"), "--encoder", "pixels:16"])
    # CliRunner never prints a traceback: tests/e2e/test_cli_errors.py checks that in a real process.
    assert result.exit_code == 2 and "'colour'" in result.output
    assert not (tmp_path / "o" / "store").exists()  # failed before any work
