"""The promise, end to end, over random small datasets with random faults (hypothesis).

Every input sample appears exactly once in the manifest with a decision and known reasons;
every injected fault carries its reason; nothing is written into the dataset or read
through a link out of it; a second run on the same output gives the same manifest.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.faults import FAULTS, ODD_NAMES, check_promise, make_faulty_folder
from tests.helpers.pages import crawl
from winnow.catalogs import schemas as S
from winnow.flows.clean import clean_dataset
from winnow.pipeline.config import make_settings

FAULT_KINDS = sorted(FAULTS) + ["vanish"]


@st.composite
def datasets(draw):
    n_classes = draw(st.integers(2, 4))
    return {
        "n_classes": n_classes,
        "n_good": draw(st.integers(6, 24)),
        "faults": draw(st.lists(st.tuples(st.sampled_from(FAULT_KINDS), st.integers(0, n_classes - 1)),
                                max_size=8)),
        "odd_names": draw(st.lists(st.sampled_from(ODD_NAMES), max_size=2, unique=True)),
        "seed": draw(st.integers(0, 10_000)),
        "rerun": draw(st.booleans()),
    }


def build(base: Path, spec: dict) -> tuple[Path, dict[str, str | None], set[str]]:
    """Write the dataset; returns its root, path -> expected reason, and the files to delete mid-run."""
    root, outside = base / "data", base / "outside"
    static = [f for f in spec["faults"] if f[0] != "vanish"]
    expected = make_faulty_folder(root, outside, n=spec["n_good"], faults=static,
                                  seed=spec["seed"], n_classes=spec["n_classes"])
    originals = sorted(root.glob("*/img_*.png"))
    for i, name in enumerate(spec["odd_names"]):
        dest = root / str(i % spec["n_classes"]) / name
        shutil.copy(originals[i], dest)
        expected[dest.relative_to(root).as_posix()] = None
    vanish = set()
    for j, (_, cls) in enumerate(f for f in spec["faults"] if f[0] == "vanish"):
        dest = root / str(cls) / f"vanish_{j:03d}.png"
        shutil.copy(originals[-1 - j], dest)
        expected[dest.relative_to(root).as_posix()] = "missing"
        vanish.add(str(dest.absolute()))
    return root, expected, vanish


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """What a folder holds: (size, mtime) of every file and link, links not followed."""
    return {p.relative_to(folder).as_posix(): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_symlink() or not p.is_dir()} if folder.exists() else {}


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(spec=datasets())
def test_every_sample_exactly_once_with_its_reason(prefect_harness, monkeypatch, spec):
    import winnow.reading as reading_mod  # every file read of a run goes through winnow.reading.read_file

    base = Path(tempfile.mkdtemp(prefix="winnow-promise-"))
    try:
        root, expected, vanish = build(base, spec)
        real_read = reading_mod.read_file

        def read(path, **options):
            if path in vanish and os.path.lexists(path):
                os.remove(path)  # listed, then gone before it is read
            return real_read(path, **options)

        monkeypatch.setattr(reading_mod, "read_file", read)
        before = {name: snapshot(base / name) for name in ("data", "outside")}
        # pixels:8 (192-d) rather than 16: the faults live in the files, not in the embedding, and
        # the probe's cost grows with the dimension (a third of each example at 768-d).
        config = str(root), make_settings(out=str(base / "out"), encoder="pixels:8", k=5)
        paths = clean_dataset(*config)
        manifest = pl.read_parquet(paths["manifest"])
        check_promise(manifest, expected)
        # The report, from OUT/, reaches every flagged sample.
        reached = set().union(*(p.ids for p in crawl(base / "out" / "report.html").values()))
        assert reached == set(manifest.filter(pl.col(S.REASONS).list.len() > 0)[S.SAMPLE_ID])
        assert pl.read_parquet(base / "out" / "manifest.parquet").equals(manifest)
        # Nothing was written into the dataset or beside it; only the vanished files changed.
        gone = {Path(p).relative_to(root).as_posix() for p in vanish}
        assert snapshot(root) == {k: v for k, v in before["data"].items() if k not in gone}
        assert snapshot(base / "outside") == before["outside"]
        clean = pl.read_parquet(paths["clean"])
        assert set(clean[S.PATH]) <= {p for p, r in expected.items() if r is None}
        if spec["rerun"]:  # again on the same output: every row still there, same answer
            again = pl.read_parquet(clean_dataset(*config)["manifest"])
            check_promise(again, {p: r for p, r in expected.items() if p not in gone})
            if not gone:  # unchanged data: the identical manifest
                assert again.sort(S.SAMPLE_ID).equals(manifest.sort(S.SAMPLE_ID))
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_fault_catalogue_reasons_are_known(kind):
    # Each fault maker's reason is a documented code (or None for a valid-but-unusual image).
    tmp = Path(tempfile.mkdtemp())
    try:
        from tests.helpers import digit_images

        dest = tmp / "c" / f"x{'.jpg' if kind in ('cmyk', 'exif_rotated') else '.png'}"
        (tmp / "c").mkdir()
        reason = FAULTS[kind](dest, digit_images(1)[0][0], tmp / "outside")
        assert reason is None or reason in S.UNUSABLE_REASONS
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
