"""The whole flow under Prefect's test harness, the CLI through typer's CliRunner, and quiet, parallel runs."""

from __future__ import annotations

import json
import subprocess

import polars as pl
import pytest
from typer.testing import CliRunner

from tests.helpers.clirun import base_env, run_python, winnow_command
from winnow.flows.clean import clean_dataset
from winnow.flows.cli import app
from winnow.pipeline.config import make_settings
from winnow.pipeline.evaluate import score_against_ground_truth
from winnow.pipeline.files import RunLocked, locked

runner = CliRunner()


@pytest.fixture
def folder_with_bad_files(digit_folder):
    good = next((digit_folder / "3").glob("*.png")).read_bytes()
    (digit_folder / "3" / "truncated.png").write_bytes(good[: len(good) // 3])
    (digit_folder / "5" / "zero.png").write_bytes(b"")
    return digit_folder


def test_flow_keeps_every_row_and_marks_unreadable(prefect_harness, folder_with_bad_files, tmp_path):
    out = tmp_path / "out"
    paths = clean_dataset(str(folder_with_bad_files), make_settings(out=str(out), encoder="pixels:16", k=5))
    manifest = pl.read_parquet(paths["manifest"])
    assert manifest.height == 122
    assert manifest["sample_id"].n_unique() == 122 and manifest["path"].n_unique() == 122
    bad = manifest.filter(pl.col("path").is_in(["3/truncated.png", "5/zero.png"]))
    assert bad["decision"].to_list() == ["drop", "drop"]
    assert bad["reasons"].to_list() == [["unreadable"], ["unreadable"]]
    assert bad["label_quality"].is_null().all()
    good = manifest.filter(~pl.col("path").is_in(["3/truncated.png", "5/zero.png"]))
    assert good["label_quality"].is_not_null().all()
    assert set(manifest["decision"].unique()) <= {"keep", "drop", "relabel"}
    clean = pl.read_parquet(paths["clean"])
    assert clean.height == (manifest["decision"] != "drop").sum()
    relabelled = manifest.filter(pl.col("decision") == "relabel")
    assert (relabelled["final_label"] == relabelled["suggested_label"]).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 122 and summary["reasons"]["unreadable"] == 2
    assert sum(summary["decisions"].values()) == 122
    assert not list(out.glob(".*.tmp"))  # no temp files left behind


def test_flow_on_bundled_digits_finds_planted_flips(prefect_harness, tmp_path):
    paths = clean_dataset("digits", make_settings(out=str(tmp_path / "o"), encoder="pixels:16"))
    scores = score_against_ground_truth(paths["manifest"], paths["ground_truth"])
    assert scores["precision"] >= 0.8 and scores["recall"] >= 0.8, scores
    assert pl.read_parquet(paths["manifest"]).height == 1797


def test_second_run_on_same_folder_is_refused_while_locked(tmp_path):
    with locked(tmp_path):
        with pytest.raises(RunLocked, match="--wait"):
            with locked(tmp_path):
                pass
    with locked(tmp_path):  # released after the first run ends
        pass


def test_cli_run_json_and_lists(digit_folder, tmp_path):
    result = runner.invoke(app, ["run", str(digit_folder), "--out", str(tmp_path / "o"),
                                 "--encoder", "pixels:16", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["samples"] == 120 and summary["outputs"]["manifest"].endswith("manifest.parquet")
    listed = runner.invoke(app, ["catalogs", "list"])
    assert listed.exit_code == 0 and "digits" in listed.output
    encs = runner.invoke(app, ["encoders", "list"])
    assert "efficientnet-lite0" in encs.output and "open_clip" in encs.output
    helptext = runner.invoke(app, ["run", "--help"])
    for option in ("--out", "--encoder", "--store", "--k", "--policy", "--wait", "--json"):
        assert option in helptext.output


# --- quiet, and no shared Prefect database in one-shot runs (issue 11 finding 15) -----------------


def _plain_env(tmp_path, **extra):
    """A user's environment: none of the Prefect settings the test suite sets for itself."""
    env = base_env(**extra)
    for key in ("PREFECT_LOGGING_LEVEL", "PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_API_URL", "DO_NOT_TRACK"):
        env.pop(key, None)
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # one shared home, as ~/.prefect is
    return env


def test_two_cli_runs_in_parallel_both_succeed(digit_folder, tmp_path):
    env = _plain_env(tmp_path)
    procs = [
        subprocess.Popen([*winnow_command(), "run", str(digit_folder), "--out", str(tmp_path / f"o{i}"),
                          "--encoder", "pixels:16", "--quiet"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stdout + stderr
        assert "INFO" not in stdout + stderr and "Traceback" not in stderr, stdout + stderr
    for i in range(2):
        assert pl.read_parquet(tmp_path / f"o{i}" / "manifest.parquet").height == 120
    # A one-shot run never touches the Prefect database.
    assert not list((tmp_path / "prefect-home").rglob("*.db"))


def test_python_api_is_quiet(digit_folder, tmp_path):
    code = (
        "from winnow.flows.clean import clean_dataset, run_clean\n"
        "from winnow.pipeline.config import make_settings\n"
        f"run_clean({str(digit_folder)!r}, make_settings(out={str(tmp_path / 'a')!r}, encoder='pixels:16'))\n"
        f"clean_dataset({str(digit_folder)!r}, make_settings(out={str(tmp_path / 'b')!r}, encoder='pixels:16'))\n"
        "print('DONE')\n"
    )
    result = run_python(code, env=_plain_env(tmp_path))
    assert result.returncode == 0, result.output
    assert result.stdout == "DONE\n", result.output
    assert "INFO" not in result.output and "telemetry" not in result.output, result.output
