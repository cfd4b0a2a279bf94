"""winnow.atomic: a reader sees the old content or the new, never a part; temp files do not linger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from winnow import atomic


def _child(code: str) -> subprocess.Popen:
    """A Python process running `code`; its stdout is a pipe the test reads lines from."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(atomic.TEMP_GLOB))


def test_temp_sibling_is_hidden_unique_and_beside_the_target(tmp_path):
    target = tmp_path / "sub" / "manifest.parquet"
    names = {atomic.temp_sibling(target) for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert name.parent == target.parent and name.name.startswith(".manifest.parquet.")
        assert name.name.endswith(".tmp") and name.match(atomic.TEMP_GLOB)
    assert atomic.temp_sibling(target, suffix=".tmp.npz").name.endswith(".tmp.npz")


def test_each_writer_round_trips_and_leaves_no_temp(tmp_path):
    folder = tmp_path / "a" / "b"  # parents are created
    assert atomic.write_bytes(folder / "x.bin", b"\x00\x01") == folder / "x.bin"
    atomic.write_text(folder / "x.txt", "ünï 名\n")
    atomic.write_json({"n": np.int64(3), "q": np.float32(0.5), "ok": np.bool_(True), "p": Path("/a/b")},
                      folder / "x.json")
    atomic.write_parquet(pl.DataFrame({"a": [1, 2]}), folder / "pl.parquet")
    atomic.write_parquet(pa.table({"b": ["x", None]}), folder / "pa.parquet")
    assert (folder / "x.bin").read_bytes() == b"\x00\x01"
    assert (folder / "x.txt").read_text(encoding="utf-8") == "ünï 名\n"
    text = (folder / "x.json").read_text()
    assert text.endswith("}\n") and json.loads(text) == {"n": 3, "q": 0.5, "ok": True, "p": "/a/b"}
    assert pl.read_parquet(folder / "pl.parquet")["a"].to_list() == [1, 2]
    assert pq.read_table(folder / "pa.parquet").column("b").to_pylist() == ["x", None]
    assert _temps(folder) == []


def test_a_writer_that_fails_keeps_the_old_file_and_removes_its_temp(tmp_path):
    target = tmp_path / "summary.json"
    atomic.write_json({"v": 1}, target)
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        atomic.write_json({"v": object()}, target)
    with pytest.raises(TypeError, match="pyarrow Table or a polars DataFrame, not dict"):
        atomic.write_parquet({"a": [1]}, tmp_path / "t.parquet")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic.writing(target) as tmp:
            tmp.write_text("{\"v\": 2, \"half", encoding="utf-8")
            raise RuntimeError("disk on fire")
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_a_writer_killed_mid_write_leaves_the_old_content(tmp_path):
    """The writer is SIGKILLed while half of the new content sits in its temp file."""
    target = tmp_path / "manifest.parquet"
    atomic.write_bytes(target, b"old" * 1000)
    proc = _child(f"""
        import time
        from winnow import atomic
        with atomic.writing({str(target)!r}) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"new" * 500)
                fh.flush()
            print("half written", flush=True)
            time.sleep(60)
            tmp.write_bytes(b"new" * 1000)
    """)
    try:
        assert proc.stdout.readline().strip() == "half written"
        assert target.read_bytes() == b"old" * 1000  # a reader now sees the old file, whole
        [tmp] = _temps(tmp_path)
        assert tmp.read_bytes() == b"new" * 500
    finally:
        _kill(proc)
    assert target.read_bytes() == b"old" * 1000
    assert atomic.remove_temps(tmp_path) == [tmp]  # what the next run sweeps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.parquet"]


def test_readers_never_see_a_partial_file_while_a_writer_runs_and_dies(tmp_path):
    """A writer alternates two contents of different sizes as fast as it can; every read in the
    meantime is one of them whole; it is killed at an arbitrary moment, and the file is still whole."""
    target = tmp_path / "data.bin"
    a, b = b"a" * 300_000, b"b" * 700_000
    atomic.write_bytes(target, a)
    proc = _child(f"""
        from winnow import atomic
        a, b = b"a" * 300_000, b"b" * 700_000
        print("writing", flush=True)
        i = 0
        while True:
            atomic.write_bytes({str(target)!r}, b if i % 2 == 0 else a)
            i += 1
    """)
    seen = set()
    try:
        assert proc.stdout.readline().strip() == "writing"
        deadline = time.monotonic() + 1.5
        reads = 0
        while time.monotonic() < deadline or len(seen) < 2:
            data = target.read_bytes()
            assert data in (a, b), f"a reader saw {len(data)} bytes, starting {data[:8]!r}"
            seen.add(data[:1])
            reads += 1
            assert time.monotonic() < deadline + 30, "the writer never switched the file"
    finally:
        _kill(proc)
    assert seen == {b"a", b"b"} and reads > 10
    assert target.read_bytes() in (a, b)
    atomic.remove_temps(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_replace_folder_swaps_in_the_new_folder_and_drops_the_old(tmp_path):
    target = tmp_path / "gallery"
    (target / "old-page").mkdir(parents=True)
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"image")
    (target / "link.png").symlink_to(outside)  # an imagefolder export holds links: never followed
    with atomic.replace_folder(target) as tmp:
        assert tmp.parent == tmp_path and tmp.is_dir() and not any(tmp.iterdir())
        (tmp / "new-page").mkdir()
    assert sorted(p.name for p in target.iterdir()) == ["new-page"]
    assert outside.read_bytes() == b"image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery", "outside.png"]


def test_replace_folder_that_fails_leaves_the_old_folder(tmp_path):
    target = tmp_path / "thumbs"
    target.mkdir()
    (target / "a.png").write_bytes(b"a")
    with pytest.raises(OSError, match="no space"):
        with atomic.replace_folder(target) as tmp:
            (tmp / "b.png").write_bytes(b"b")
            raise OSError("no space left on device")
    assert [p.name for p in target.iterdir()] == ["a.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thumbs"]


def test_replace_folder_killed_mid_build_leaves_the_old_folder(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "metadata.csv").write_text("old\n")
    proc = _child(f"""
        import time
        from winnow import atomic
        with atomic.replace_folder({str(target)!r}) as tmp:
            (tmp / "metadata.csv").write_text("new\\n")
            print("building", flush=True)
            time.sleep(60)
    """)
    try:
        assert proc.stdout.readline().strip() == "building"
    finally:
        _kill(proc)
    assert (target / "metadata.csv").read_text() == "old\n"
    [left] = _temps(tmp_path)
    assert left.is_dir()
    atomic.remove_temps(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_replace_folder_keep_existing_keeps_the_folder_that_won(tmp_path):
    """A bundled dataset built by two processes at once: the first one in stays."""
    target = tmp_path / "digits"
    with atomic.replace_folder(target, keep_existing=True) as tmp:
        (tmp / "first").write_text("1")
        target.mkdir()  # another builder finished meanwhile
        (target / "theirs").write_text("2")
    assert [p.name for p in target.iterdir()] == ["theirs"]
    with atomic.replace_folder(tmp_path / "fresh", keep_existing=True) as tmp:
        (tmp / "mine").write_text("3")
    assert [p.name for p in (tmp_path / "fresh").iterdir()] == ["mine"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits", "fresh"]


def test_replace_symlink_repoints_a_link(tmp_path):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "b").mkdir()
    link = tmp_path / "latest"
    atomic.replace_symlink(link, os.path.join("runs", "a"))
    assert os.readlink(link) == "runs/a" and link.resolve() == (tmp_path / "runs" / "a").resolve()
    atomic.replace_symlink(link, os.path.join("runs", "b"))
    assert os.readlink(link) == "runs/b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "runs"]


def test_importing_it_loads_nothing_heavy():
    """Floor 0: catalogs, embeddings, curation and pipeline import it; it imports none of them."""
    code = ("import sys, winnow.atomic; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'polars', 'pyarrow', 'torch', 'prefect') or m.startswith('winnow.') and m != 'winnow.atomic'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
