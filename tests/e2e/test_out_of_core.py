"""No stage holds the full float32 matrix: detection over a float16 memory map of N x D with
N*D*4 >= 1 GiB, in its own process, peaks under that process's baseline plus half the matrix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_detection_peak_rss_stays_under_baseline_plus_half_the_float32_matrix(tmp_path):
    # Low-rank clustered data and a small IVF (cells of ~512 rows, 1 probe); D = 2048 keeps the
    # probe's PCA (D x D eigh) cheap. Measured: 6 min on the shared 2-core machine at load ~20,
    # peak 446 MiB over the baseline (limit 512).
    n, d = 131072, 2048
    assert n * d * 4 >= 1 << 30
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.out_of_core", "--n", str(n), "--dim", str(d), "--nlist", "256",
         "--nprobe", "1", "--recall-sample", "50", "--queries", "50", "--cluster-levels", "16", "--json",
         "--folder", str(tmp_path)],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    half = n * d * 4 / 2 / 2**20
    assert result["peak_rss_mib"] < result["baseline_rss_mib"] + half, result
    # And it still found what was planted. One probe (for speed) gives recall@10 ~0.9 on this
    # data (measured 0.906); the >= 0.95 promise is benchmarks/out_of_core.py's, with tuned nprobe.
    assert result["recall_at_10"] >= 0.85, result
    assert result["label_issue_f1"] >= 0.9, result
