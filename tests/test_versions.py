"""Versioned runs, incremental re-runs, diffs, resume after a failure, and the scheduled deployment."""

from __future__ import annotations

import json
import os
import shutil

import polars as pl
import pytest

import flows.clean
from embeddings.images import hash_bytes
from flows.clean import clean_dataset
from flows.config import RunConfig
from tests.conftest import digit_images, write_image_folder


def run(target, out, **kw):
    return clean_dataset(RunConfig(target=str(target), out=str(out), encoder="pixels:16", k=5, **kw))


def test_grown_dataset_embeds_only_new_files_and_diffs(prefect_harness, digit_folder, tmp_path):
    out = tmp_path / "out"
    first = run(digit_folder, out)
    assert json.loads((out / "summary.json").read_text())["embedding"]["embedded"] == 120
    # Grow by 15 files (mirrored, so their content is new), remove 3.
    from PIL import ImageOps

    grown = [(ImageOps.mirror(img), label) for img, label in digit_images(15, seed=42)]
    write_image_folder(digit_folder, grown, prefix="grown")
    removed = sorted(digit_folder.glob("7/img_*.png"))[:3]
    for p in removed:
        p.unlink()
    second = run(digit_folder, out)
    summary = json.loads((out / "summary.json").read_text())
    old = set(pl.read_parquet(first["manifest"])["content_hash"])
    new_content = {hash_bytes(p.read_bytes()) for p in digit_folder.glob("*/grown_*.png")} - old
    assert len(new_content) >= 12  # a few mirrored digits can equal an existing image
    assert summary["embedding"]["embedded"] == len(new_content)
    assert summary["embedding"]["reused"] == 132 - len(new_content)
    assert summary["diff"]["added"] == 15 and summary["diff"]["removed"] == 3
    assert summary["diff"]["previous_run"] == os.path.basename(first["run"])
    diff = pl.read_parquet(second["diff"])
    assert set(diff.filter(pl.col("changes").list.contains("removed"))["path"]) == {f"7/{p.name}" for p in removed}
    assert diff.filter(pl.col("changes").list.contains("added"))["path"].str.contains("grown").all()
    # latest points at the new version; the old one is intact.
    assert (out / "latest").resolve() == (out / "runs" / os.path.basename(second["run"])).resolve()
    assert pl.read_parquet(out / "manifest.parquet").height == 132
    assert pl.read_parquet(first["manifest"]).height == 120


def test_failed_run_resumes_without_redoing_finished_stages(prefect_harness, digit_folder, tmp_path, monkeypatch):
    reference = run(digit_folder, tmp_path / "reference")
    out = tmp_path / "out"

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash while writing manifests")

    monkeypatch.setattr(flows.clean, "write_manifests", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(digit_folder, out)
    assert not (out / "latest").exists()  # nothing published
    [incomplete] = list((out / "runs").iterdir())
    knn_done = (incomplete / "work" / "knn.done.json").stat().st_mtime_ns
    monkeypatch.undo()
    resumed = run(digit_folder, out)
    assert os.path.basename(resumed["run"]) == incomplete.name  # resumed in place
    assert (incomplete / "work" / "knn.done.json").stat().st_mtime_ns == knn_done  # stage skipped
    cols = ["sample_id", "decision", "reasons", "label_quality", "suggested_label", "final_label"]
    a = pl.read_parquet(reference["manifest"]).select(cols).sort("sample_id")
    b = pl.read_parquet(resumed["manifest"]).select(cols).sort("sample_id")
    assert a.equals(b)


def test_changed_parameter_reruns_downstream_stages(prefect_harness, digit_folder, tmp_path):
    out = tmp_path / "out"
    run(digit_folder, out)
    shutil.rmtree(out / "latest" / "work" / "knn.npz", ignore_errors=True)
    second = clean_dataset(RunConfig(target=str(digit_folder), out=str(out), encoder="pixels:16", k=3))
    assert json.loads(open(second["summary"]).read())["k"] == 3


def test_serve_registers_a_cron_deployment(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.deploy import build_deployment

    config = RunConfig(target="digits", out=str(tmp_path / "o"), encoder="pixels:16")
    deployment_id = build_deployment(config, cron="0 3 * * *", name="digits-nightly").apply()
    with get_client(sync_client=True) as client:
        dep = client.read_deployment(deployment_id)
    assert dep.name == "digits-nightly"
    assert [s.schedule.cron for s in dep.schedules] == ["0 3 * * *"]
    assert dep.parameters["config"]["target"] == "digits"
    with pytest.raises(ValueError, match="'every day'"):
        build_deployment(config, cron="every day", name="bad")


def test_dask_runner_with_two_workers_matches_local_run(prefect_harness, digit_folder, tmp_path):
    from flows.clean import run_clean

    local = run(digit_folder, tmp_path / "local")
    dask = run_clean(RunConfig(target=str(digit_folder), out=str(tmp_path / "dask"), encoder="pixels:16", k=5,
                               runner="dask", shards=2))
    assert json.loads(open(dask["summary"]).read())["embedding"]["shards"] == 2
    a = pl.read_parquet(local["manifest"]).sort("sample_id")
    b = pl.read_parquet(dask["manifest"]).sort("sample_id")
    assert a.equals(b)
