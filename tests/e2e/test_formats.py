"""`winnow run FOLDER` in a real subprocess over a folder of every supported format and variant."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl
import pytest

from tests.helpers import REPO
from tests.helpers.userdata import make_user_folder
from winnow.catalogs import schemas as S


@pytest.fixture(scope="module")
def user_data(tmp_path_factory):
    return make_user_folder(tmp_path_factory.mktemp("user"))


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
