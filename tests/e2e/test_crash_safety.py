"""Crash safety: SIGKILL at any stage loses nothing, and two runs on one folder never collide.

A small driver script (written into tmp_path) imports Winnow in a subprocess, patches one
internal function to SIGKILL its own process at the chosen moment, and runs the flow. The
test then checks that no half-written output is visible, resumes in-process, and compares
the manifest with an uninterrupted run on a copy of the same data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.helpers.crash import DRIVER
from tests.helpers.faults import make_faulty_folder
from winnow.catalogs import schemas as S
from winnow.flows.clean import clean_dataset
from winnow.pipeline.config import make_settings
from winnow.pipeline.files import RunLocked

REPO = Path(__file__).resolve().parents[2]
ENCODER = "pixels:16"
FAULTS = [("truncated", 0), ("bomb", 1), ("zero_byte", 2), ("symlink_out", 0), ("cmyk", 1)]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Dataset A (150 digits + faults), dataset B (A with files removed and added), references."""
    base = tmp_path_factory.mktemp("crash")
    make_faulty_folder(base / "A", base / "outside", n=150, faults=FAULTS, seed=4)
    shutil.copytree(base / "A", base / "B", symlinks=True)
    for p in sorted((base / "B").glob("*/img_00[0-4]*.png")):
        p.unlink()
    make_faulty_folder(base / "B_extra", base / "outside2", n=20, faults=[("alpha", 1)], seed=5)
    for p in (base / "B_extra").rglob("*.png"):
        dest = base / "B" / p.relative_to(base / "B_extra").parent / f"new_{p.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)
    return base


@pytest.fixture(scope="module")
def references(prefect_harness, datasets, tmp_path_factory):
    """Uninterrupted runs on copies of A and B, in fresh output folders and stores."""
    refs = {}
    for name in ("A", "B"):
        copy = tmp_path_factory.mktemp(f"ref{name}") / "data"
        shutil.copytree(datasets / name, copy, symlinks=True)
        paths = clean_dataset(str(copy), make_settings(out=str(copy.parent / "out"), encoder=ENCODER, k=5))
        refs[name] = canonical(pl.read_parquet(paths["manifest"]))
    assert refs["A"].height != refs["B"].height
    return refs


def canonical(manifest: pl.DataFrame) -> pl.DataFrame:
    return manifest.sort(S.SAMPLE_ID)


def assert_same(got: pl.DataFrame, want: pl.DataFrame) -> None:
    got = canonical(got)
    assert got.columns == want.columns
    assert got.equals(want), "resumed manifest differs from the uninterrupted run"


def run_driver(mode: str, target: Path, out: Path, store: Path, *, background: bool = False):
    from prefect.settings import PREFECT_API_URL

    driver = out.parent / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_LOGGING_LEVEL": "WARNING"}
    cmd = [sys.executable, str(driver), str(REPO), mode, str(target), str(out), str(store)]
    if background:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def visible_outputs(out: Path) -> list[Path]:
    """Every output a reader could pick up: files not named like a temp file, links followed."""
    return [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")
            and p.suffix in (".parquet", ".json", ".npy", ".npz")]


def assert_outputs_whole(out: Path) -> None:
    """Each visible output opens completely; temp files never take an output's name."""
    for p in visible_outputs(out):
        if p.suffix == ".parquet":
            pq.read_table(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".npy":
            np.load(p, mmap_mode="r")
        else:
            with np.load(p, allow_pickle=False) as z:
                [z[k] for k in z.files]


def prepare(tmp_path: Path, datasets: Path, *, with_previous_run: bool) -> tuple[Path, Path, Path]:
    """A private copy of A in tmp_path; optionally a complete run of it, then its data turned into B."""
    data, out, store = tmp_path / "data", tmp_path / "out", tmp_path / "store"
    shutil.copytree(datasets / "A", data, symlinks=True)
    if with_previous_run:
        clean_dataset(str(data), make_settings(out=str(out), store=str(store), encoder=ENCODER, k=5))
        shutil.rmtree(data)
        shutil.copytree(datasets / "B", data, symlinks=True)
    else:
        out.mkdir()
    return data, out, store


def test_kill_during_embedding_resumes_to_the_same_result(prefect_harness, references, datasets, tmp_path):
    from winnow.embeddings import EmbeddingStore, get_encoder

    data, out, store = prepare(tmp_path, datasets, with_previous_run=False)
    proc = run_driver("embed", data, out, store)
    assert proc.returncode == -9, proc.stdout + proc.stderr
    assert not (out / "manifest.parquet").exists()  # nothing published by a run that died
    assert_outputs_whole(out)
    enc = get_encoder(ENCODER)
    committed = len(EmbeddingStore(store, encoder_id=enc.encoder_id, dim=enc.dim))
    assert 0 < committed < 150, committed  # finished chunks survived the kill, the rest did not
    paths = clean_dataset(str(data), make_settings(out=str(out), store=str(store), encoder=ENCODER, k=5))
    assert_same(pl.read_parquet(paths["manifest"]), references["A"])
    assert_same(pl.read_parquet(out / "manifest.parquet"), references["A"])
    assert_outputs_whole(out)


@pytest.mark.parametrize("stage", ["knn", "manifest"])
def test_kill_during_indexing_or_manifest_keeps_the_old_version(prefect_harness, references, datasets,
                                                                 tmp_path, stage):
    data, out, store = prepare(tmp_path, datasets, with_previous_run=True)
    assert_same(pl.read_parquet(out / "manifest.parquet"), references["A"])
    proc = run_driver(stage, data, out, store)
    assert proc.returncode == -9, proc.stdout + proc.stderr
    # The reader still sees the previous complete version, whole; the half file stays a temp.
    assert_same(pl.read_parquet(out / "manifest.parquet"), references["A"])
    assert_outputs_whole(out)
    assert list(out.rglob(".*.tmp")), "the driver should have left a half-written temp file"
    paths = clean_dataset(str(data), make_settings(out=str(out), store=str(store), encoder=ENCODER, k=5))
    assert_same(pl.read_parquet(paths["manifest"]), references["B"])
    assert_same(pl.read_parquet(out / "manifest.parquet"), references["B"])
    assert not list((out / "runs").rglob(".*.tmp*")), "the resumed run should clear the killed run's temp files"
    assert_outputs_whole(out)


def test_second_run_on_the_same_folder_fails_clearly_or_waits(prefect_harness, references, datasets, tmp_path):
    from winnow.embeddings import EmbeddingStore, get_encoder
    from winnow.flows.cli import app

    data, out, store = prepare(tmp_path, datasets, with_previous_run=False)
    holder = run_driver("hold", data, out, store, background=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "holding").exists():
            assert holder.poll() is None, holder.communicate()
            assert time.monotonic() < deadline, "the first run never started embedding"
            time.sleep(0.1)
        with pytest.raises(RunLocked, match=rf"another winnow run \(pid {holder.pid}\).*--wait"):
            clean_dataset(str(data), make_settings(out=str(out), store=str(store), encoder=ENCODER, k=5))
        result = CliRunner().invoke(app, ["run", str(data), "--out", str(out), "--store", str(store),
                                          "--encoder", ENCODER, "--k", "5"])
        assert result.exit_code == 2 and "another winnow run" in result.output, result.output
        # --wait queues behind the holder and then completes on the same store.
        started = time.monotonic()
        paths = clean_dataset(str(data), make_settings(out=str(out), store=str(store), encoder=ENCODER,
                                        k=5, wait=True))
        assert time.monotonic() - started > 1.5, "the waiting run did not wait for the lock holder"
    finally:
        try:
            stdout, stderr = holder.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            holder.kill()
            stdout, stderr = holder.communicate()
    assert holder.returncode == 0, stdout + stderr
    first = json.loads(stdout.split("RESULT ", 1)[1])
    assert_same(pl.read_parquet(first["manifest"]), references["A"])
    assert_same(pl.read_parquet(paths["manifest"]), references["A"])
    # The store holds each usable content once, with the vectors a fresh encode gives.
    enc = get_encoder(ENCODER)
    st = EmbeddingStore(store, encoder_id=enc.encoder_id, dim=enc.dim)
    manifest = pl.read_parquet(paths["manifest"])
    usable = manifest.filter(pl.col(S.LABEL_QUALITY).is_not_null())[S.CONTENT_HASH].unique().to_list()
    assert st.missing(usable) == [] and len(st) == len(usable)
    assert_outputs_whole(out)
