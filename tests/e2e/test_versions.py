"""Versioned runs, incremental re-runs, diffs, resume after a failure, and the scheduled deployment."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import winnow.flows.clean
import winnow.pipeline.stages
from tests.helpers import digit_images, write_image_folder
from winnow.embeddings.images import hash_bytes
from winnow.flows.clean import clean_dataset
from winnow.pipeline.config import make_settings
from winnow.pipeline.files import load_knn_graph


def run(target, out, **kw):
    return clean_dataset(str(target), make_settings(out=str(out), encoder="pixels:16", k=5, **kw))


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

    monkeypatch.setattr(winnow.flows.clean, "write_manifests", crash)
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


def test_changed_parameter_builds_a_new_version_with_it(prefect_harness, digit_folder, tmp_path):
    """A finished run is never reused for other parameters: k=3 gives a new version whose
    graph has 3 neighbours a sample, while the k=5 version stays as it was."""
    out = tmp_path / "out"
    first = run(digit_folder, out)
    first_graph = load_knn_graph(os.path.join(first["run"], "work", "knn.npz"))
    second = clean_dataset(str(digit_folder), make_settings(out=str(out), encoder="pixels:16", k=3))
    assert second["run"] != first["run"]
    assert load_knn_graph(os.path.join(second["run"], "work", "knn.npz")).indices.shape == (120, 3)
    assert load_knn_graph(os.path.join(first["run"], "work", "knn.npz")).indices.shape == (120, 5)
    assert np.array_equal(load_knn_graph(os.path.join(first["run"], "work", "knn.npz")).indices,
                          first_graph.indices)


def test_deleted_stage_output_is_rebuilt_on_resume(prefect_harness, digit_folder, tmp_path, monkeypatch):
    """A stage whose key matches but whose output is gone runs again -- what the old test meant
    by removing knn.npz. Only that stage: its inputs did not change, so neither does its key,
    and the stages after it (whose outputs are still there) stay valid."""
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(winnow.flows.clean, "write_manifests", _crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(digit_folder, out)
        [incomplete] = list((out / "runs").iterdir())
        before = _stamps(incomplete)
        (incomplete / "work" / "knn.npz").unlink()  # errors not ignored: the file must exist
        with pytest.raises(RuntimeError, match="simulated crash"):
            run(digit_folder, out)
    assert _reran(before, _stamps(incomplete)) == {"knn"}
    assert load_knn_graph(incomplete / "work" / "knn.npz").indices.shape == (120, 5)


# --- stage keys: a changed parameter re-runs exactly the stages downstream of it ---------------
# Stage keys matter when a run resumes: an interrupted run folder is picked up by the next run
# on the same OUT whatever its parameters, and every finished stage whose key still matches is
# reused. Each test resumes an interrupted run with one parameter changed and watches which
# stages rewrote their <stage>.done.json.

STAGE_CHANGES: dict[str, tuple[dict, set[str]]] = {
    "encoder": ({"encoder": "pixels:8"}, {"embed", "knn", "curate"}),
    "k": ({"k": 3}, {"knn", "curate"}),
    "policy": ({"policy": {"on_label_issue": "keep"}}, {"curate"}),
    "methods": ({"methods": "knn_vote"}, {"curate"}),
    "seed": ({"seed": 1}, {"knn", "curate"}),
    "holdout": ({"holdout": ("HOLDOUT",)}, {"holdout-0/samples", "holdout-0/embed", "curate"}),
    "batch_size": ({"batch_size": 7}, set()),  # changes no result: nothing re-runs
}


def _crash(*args, **kwargs):
    raise RuntimeError("simulated crash while writing manifests")


def _stamps(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Each stage's done-file (holdout stages as holdout-<i>/<stage>) -> (inode, mtime):
    a stage that ran rewrote its done-file (atomically: a new inode)."""
    work = run_dir / "work"
    return {p.relative_to(work).as_posix().removesuffix(".done.json"): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in work.rglob("*.done.json")}


def _reran(before: dict, after: dict) -> set[str]:
    return {stage for stage, stamp in after.items() if before.get(stage) != stamp}


def _config(target: Path, out: Path, **changes) -> tuple[str, dict]:
    return str(target), make_settings(out=str(out), **{"encoder": "pixels:16", "k": 5, **changes})


def _resume_with(target: Path, out: Path, monkeypatch, **changes) -> set[str]:
    """Resume the interrupted run in `out` with `changes`; the stages that ran again."""
    [incomplete] = list((out / "runs").iterdir())
    before = _stamps(incomplete)
    with monkeypatch.context() as m:
        m.setattr(winnow.flows.clean, "write_manifests", _crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            clean_dataset(*_config(target, out, **changes))
    assert [p.name for p in (out / "runs").iterdir()] == [incomplete.name]  # resumed, not a new run
    return _reran(before, _stamps(incomplete))


def _check_reruns(param: str, ran: set[str]) -> None:
    expected = STAGE_CHANGES[param][1]
    assert ran == expected, f"changing {param} re-ran {sorted(ran)}; expected exactly {sorted(expected)}"


@pytest.fixture(scope="module")
def interrupted(prefect_harness, tmp_path_factory) -> tuple[Path, Path, Path, dict]:
    """(data, holdout, OUT holding a run interrupted after its last stage, the parameters each
    stage key was given), built once."""
    base = tmp_path_factory.mktemp("stages")
    data, holdout = base / "data", base / "holdout"
    write_image_folder(data, [(img, label % 3) for img, label in digit_images(60, seed=5)])
    write_image_folder(holdout, [(img, label % 3) for img, label in digit_images(12, seed=6)])
    real, given = winnow.pipeline.stages.stage_key, {}

    def spy(work, stage, *, upstream=(), params=None):
        given[stage] = dict(params or {})
        return real(work, stage, upstream=upstream, params=params)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(winnow.flows.clean, "write_manifests", _crash)
        m.setattr(winnow.pipeline.stages, "stage_key", spy)
        with pytest.raises(RuntimeError, match="simulated crash"):
            clean_dataset(*_config(data, base / "out"))
    [incomplete] = list((base / "out" / "runs").iterdir())
    assert set(_stamps(incomplete)) == {"samples", "embed", "knn", "curate"}
    return data, holdout, base / "out", given


def _changes(param: str, holdout: Path) -> dict:
    changes = dict(STAGE_CHANGES[param][0])
    if param == "holdout":
        changes["holdout"] = (str(holdout),)
    return changes


@pytest.mark.parametrize("param", sorted(STAGE_CHANGES))
def test_changing_a_parameter_reruns_exactly_the_stages_downstream(param, interrupted, tmp_path, monkeypatch):
    data, holdout, base_out, _ = interrupted
    out = tmp_path / "out"
    shutil.copytree(base_out, out, symlinks=True)
    _check_reruns(param, _resume_with(data, out, monkeypatch, **_changes(param, holdout)))


@pytest.mark.parametrize("param", sorted(set(STAGE_CHANGES) - {"batch_size"}))
def test_the_rerun_check_fails_when_stage_keys_ignore_the_parameter(param, interrupted, tmp_path, monkeypatch):
    """The check above can fail: when stage keys ignore `param` (hash the value the interrupted
    run had, whatever it is now), it does."""
    data, holdout, base_out, given = interrupted
    out = tmp_path / "out"
    shutil.copytree(base_out, out, symlinks=True)
    real = winnow.pipeline.stages.stage_key

    def blind(work, stage, *, upstream=(), params=None):
        params = dict(params or {})
        if param in params:
            params[param] = given[stage][param]
        return real(work, stage, upstream=upstream, params=params)

    monkeypatch.setattr(winnow.pipeline.stages, "stage_key", blind)
    ran = _resume_with(data, out, monkeypatch, **_changes(param, holdout))
    with pytest.raises(AssertionError, match=f"changing {param} re-ran"):
        _check_reruns(param, ran)


def _edit_one_file(data: Path, source: int) -> None:
    files = sorted(data.glob("*/*.png"))
    files[0].write_bytes(files[source].read_bytes())  # same path, new content (and size / mtime)


def _check_every_stage_reran(ran: set[str]) -> None:
    assert ran == {"samples", "embed", "knn", "curate"}, f"editing a file re-ran only {sorted(ran)}"


def test_editing_a_file_in_place_reruns_every_stage(prefect_harness, tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_image_folder(data, [(img, label % 3) for img, label in digit_images(60, seed=5)])
    for out, blind in ((tmp_path / "out", False), (tmp_path / "blind", True)):
        if blind:  # the samples key ignores the files' size and mtime (the source's fingerprint), in both runs
            from winnow.catalogs.sources.local import LocalFileSource

            monkeypatch.setattr(LocalFileSource, "fingerprint", lambda self, listed: "blind")
        with monkeypatch.context() as m:
            m.setattr(winnow.flows.clean, "write_manifests", _crash)
            with pytest.raises(RuntimeError, match="simulated crash"):
                clean_dataset(*_config(data, out))
        _edit_one_file(data, source=-1 if not blind else -2)
        ran = _resume_with(data, out, monkeypatch)
        if not blind:
            _check_every_stage_reran(ran)
        else:  # then the same check fails
            with pytest.raises(AssertionError, match="editing a file re-ran only"):
                _check_every_stage_reran(ran)


def test_serve_registers_a_cron_deployment(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client

    from winnow.flows.deploy import build_deployment

    settings = make_settings(out=str(tmp_path / "o"), encoder="pixels:16")
    deployment_id = build_deployment("digits", settings, cron="0 3 * * *", name="digits-nightly").apply()
    with get_client(sync_client=True) as client:
        dep = client.read_deployment(deployment_id)
    assert dep.name == "digits-nightly"
    assert [s.schedule.cron for s in dep.schedules] == ["0 3 * * *"]
    assert dep.parameters["target"] == "digits"
    assert dep.parameters["settings"] == {"run": {"out": str(tmp_path / "o")}, "embed": {"encoder": "pixels:16"}}
    with pytest.raises(ValueError, match="'every day'"):
        build_deployment("digits", settings, cron="every day", name="bad")


def test_dask_runner_with_two_workers_matches_local_run(prefect_harness, digit_folder, tmp_path):
    """Embedding shards and the kNN graph (IVF, sharded by cell: pipeline/knn_dask.py) on the
    runner's 2-worker LocalCluster: the same graph and manifest as the one-process run."""
    from winnow.flows.clean import run_clean

    knn = {"k": 5, "kind": "ivf"}  # 120 samples would search exactly; IVF is the path that scales
    local = clean_dataset(str(digit_folder), make_settings(out=str(tmp_path / "local"), encoder="pixels:16", knn=knn))
    dask = run_clean(str(digit_folder), make_settings(out=str(tmp_path / "dask"), encoder="pixels:16", knn=knn,
                                                      runner="dask", shards=2))
    summary = json.loads(open(dask["summary"]).read())
    assert summary["embedding"]["shards"] == 2
    assert summary["knn"]["method"].startswith("ivf-dask(") and "workers=2" in summary["knn"]["method"]
    assert json.loads(open(local["summary"]).read())["knn"]["method"].startswith("ivf(")
    graphs = [load_knn_graph(os.path.join(r["run"], "work", "knn.npz")) for r in (local, dask)]
    np.testing.assert_allclose(graphs[0].similarities, graphs[1].similarities, atol=1e-6)
    a = pl.read_parquet(local["manifest"]).sort("sample_id")
    b = pl.read_parquet(dask["manifest"]).sort("sample_id")
    assert a.equals(b)


# --- the diff of two runs (tests/unit/pipeline/test_versions.py checks diff_manifests itself) --------

THRESHOLDS = ("estimated_noise_rate", "label_issue_cutoff", "outlier_threshold", "near_duplicate_min_similarity")


def _counts(diff: pl.DataFrame) -> dict[str, int]:
    exploded = diff.explode("changes").group_by("changes").len()
    return dict(zip(exploded["changes"].to_list(), exploded["len"].to_list(), strict=True))


def test_adding_50_images_counts_every_changed_decision(tmp_path):
    from winnow.flows.clean import run_clean
    from winnow.pipeline.config import make_settings

    folder = tmp_path / "digits"
    write_image_folder(folder, digit_images(200, seed=3))
    out = tmp_path / "out"
    config = str(folder), make_settings(out=str(out), encoder="pixels:16", k=5)
    first = run_clean(*config)
    write_image_folder(folder, digit_images(50, seed=11), prefix="added")
    second = run_clean(*config)

    summary = json.loads((out / "summary.json").read_text())["diff"]
    diff = pl.read_parquet(second["diff"])
    old = pl.read_parquet(first["manifest"]).select("sample_id", "decision")
    new = pl.read_parquet(second["manifest"]).select("sample_id", "decision")
    both = old.join(new, on="sample_id", suffix="_new")
    changed = both.filter(pl.col("decision") != pl.col("decision_new"))["sample_id"].sort().to_list()

    # The summary is a group-by of diff.parquet ...
    counts = _counts(diff)
    for key in ("added", "removed", "decision_changed", "newly_flagged", "no_longer_flagged"):
        assert summary[key] == counts.get(key, 0), (key, summary, counts)
    # ... and counts every old row whose decision differs, whatever else changed on it.
    assert summary["added"] == 50 and summary["removed"] == 0
    assert summary["decision_changed"] == len(changed)
    assert diff.filter(pl.col("changes").list.contains("decision_changed"))["sample_id"].sort().to_list() == changed
    # Which data-driven cut-offs moved, old and new.
    before = json.loads(open(first["summary"]).read())
    after = json.loads(open(second["summary"]).read())
    assert set(summary["thresholds"]) == set(THRESHOLDS)
    for name in THRESHOLDS:
        assert summary["thresholds"][name] == {"old": before[name], "new": after[name]}


# --- one kNN search for every detector --------------------------------------------------------------

def test_the_group_test_reads_the_knn_stage_s_wide_search_not_a_second_one(digit_folder, tmp_path, monkeypatch):
    """The knn stage keeps 2 x the group scale (ood_max_group, at most 5% of N) neighbours of its one
    search (knn-wide.npz); every
    other reader gets knn.k columns, the same as a search for k alone; the out_of_distribution
    test never searches again (a second search cost as much as the graph: 821 s at 1M)."""
    from winnow.curation import build_knn_graph
    from winnow.pipeline.run import run_clean

    def second_search(*args, **kwargs):
        raise AssertionError("out_of_distribution searched the embeddings a second time")

    monkeypatch.setattr("winnow.curation.issues.out_of_distribution.build_knn_graph", second_search)
    paths = run_clean(str(digit_folder), make_settings(out=str(tmp_path / "out"), encoder="pixels:16",
                                                       knn={"k": 5}, detect={"ood_max_group": 8}))
    work = Path(paths["run"]) / "work"
    graph, wide = load_knn_graph(work / "knn.npz"), load_knn_graph(work / "knn-wide.npz")
    assert (graph.k, wide.k) == (5, 12)  # 120 samples: groups of at most 6
    np.testing.assert_array_equal(wide.indices[:, :5], graph.indices)
    info = json.loads((work / "knn.json").read_text())
    assert (info["k"], info["k_searched"]) == (5, 12)
    emb = np.load(work / "embeddings.npy").astype(np.float32)  # the same as searching for 5 alone
    np.testing.assert_array_equal(build_knn_graph(emb, k=5).indices, graph.indices)
    summary = json.loads(open(paths["summary"]).read())
    assert "out_of_distribution" in json.dumps(summary)

    # With the group test off the stage keeps no wide graph (and a re-run removes a stale one).
    off = run_clean(str(digit_folder), make_settings(out=str(tmp_path / "out"), encoder="pixels:16",
                                                     knn={"k": 5}, detect={"ood_max_group": 0}))
    assert not (Path(off["run"]) / "work" / "knn-wide.npz").exists()
