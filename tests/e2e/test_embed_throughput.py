"""benchmarks/embed_throughput.py at a tiny size, so the table in benchmarks/README.md can always be
regenerated: camera-sized JPEGs run the pipeline twice (reduced and full-resolution decoding)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_embed_throughput_prints_the_reduced_and_the_full_resolution_rows(tmp_path):
    out = tmp_path / "t.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.embed_throughput", "--encoder", "pixels:16", "--images", "6",
                           "--size", "1200x900", "--batch-size", "4", "--markdown", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    for row in ("bare model forward (ceiling)", "winnow pipeline (read .. store)", "winnow pipeline, full-resolution decode"):
        assert f"| {row} |" in table, table
    assert "6 JPEGs of 1200 x 900" in table
    bad = subprocess.run([sys.executable, "-m", "benchmarks.embed_throughput", "--size", "12by9"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--size takes N or WxH, got '12by9'" in bad.stderr
