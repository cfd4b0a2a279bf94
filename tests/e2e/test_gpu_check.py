"""benchmarks/gpu_check.py --dry-run: the GPU script's code paths (JPEG decode, bf16 channels_last
ViT-B/32 forward, blocked exact kNN graph) run on CPU at tiny sizes, so the script cannot rot
between the runs on a lent GPU machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_prints_its_table_and_the_blocked_graph_is_exact(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "images/s end to end" in proc.stdout and "exact kNN graph" in proc.stdout
    result = json.loads(out.read_text())
    assert result["encoder"]["embedding_dim"] == 512 and result["encoder"]["dtype"] == "bfloat16"
    assert result["encoder"]["end_to_end_images_per_s"] > 0
    # Blocks of 700 queries x 1024 base rows over 3000 rows (grouped and plain top-k): must equal brute force.
    assert result["knn"][0]["recall_at_10"] == 1.0
