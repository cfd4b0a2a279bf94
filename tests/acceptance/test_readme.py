"""Every command README.md shows, run as a user would, against a real image folder.

The commands are read from README.md at test time (tests/helpers/readme.py), so the docs and
the suite cannot drift: a fenced shell or python block carries a marker saying whether it runs,
and a command in a block without one fails `test_no_readme_command_is_unmarked`. Every
run-marked command is a step of `test_readme_step`, in README order, in one shared working
folder, through the installed `winnow` script: a new marked command is picked up as it is.
Placeholders and the encoder are bound as tests/helpers/readme_workspace.py documents.

Each command must exit 0 without a traceback or an INFO log line; a `run` must write one row
per input sample. Where a command has more to prove, CHECKS (keyed by the README line as
written) holds what it must have done; a key no README line has any more fails
`test_every_check_names_a_readme_command`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.helpers.clirun import Completed
from tests.helpers.prefect_server import api_get, api_post
from tests.helpers.readme import (
    Step,
    read_blocks,
    shell_operators,
    steps,
    unmarked_commands,
)
from tests.helpers.readme_workspace import (
    CATALOG_FLIPS,
    OFFLINE_ENCODER,
    PLACEHOLDERS,
    SUBSTITUTED,
    Workspace,
)
from tests.helpers.userdata import VARIANTS

UNUSABLE = {"unreadable", "unsupported_format", "missing", "permission_denied", "too_large", "outside_root"}
STEPS = steps()
RUNNERS = ("winnow", "python", "python3", "export")  # and `prefect server start`: the suite's server


# --- the markers ----------------------------------------------------------------------------------


def test_no_readme_command_is_unmarked():
    """Every command in a shell or python block runs, or says why not (`<!-- acceptance: skip REASON -->`)."""
    malformed = [f"{b.where}: {b.marker_error}" for b in read_blocks() if b.marker_error]
    unmarked = unmarked_commands()
    assert not malformed, "\n".join(malformed)
    assert not unmarked, ("README commands in blocks without <!-- acceptance: run --> or "
                          "<!-- acceptance: skip REASON --> before them:\n" + "\n".join(unmarked))


def test_unmarked_commands_are_listed():
    """The check above can fail: a block without a marker is listed, command by command."""
    from tests.helpers.readme import Block

    bare = Block("bash", 7, "winnow run ./pets --out o   # a comment\nwinnow report o", "CLI", None, None)
    skipped = Block("bash", 12, "make demo", "top", "skip", "builds .venv")
    toml = Block("toml", 20, 'name = "x"', "Catalogs", None, None)
    assert unmarked_commands([bare, skipped, toml]) == ["README.md line 8 (CLI): winnow run ./pets --out o",
                                                        "README.md line 9 (CLI): winnow report o"]


def test_run_blocks_hold_one_command_per_line():
    problems = []
    for step in STEPS:
        if step.kind != "command":
            continue
        command = step.command
        if shell_operators(command):
            problems.append(f"README.md line {command.line}: {command.text!r} is more than one command "
                            f"({', '.join(shell_operators(command))}); write one per line")
        if command.argv[0] not in RUNNERS and command.argv[:3] != ("prefect", "server", "start"):
            problems.append(f"README.md line {command.line}: the suite has no runner for {command.argv[0]!r} "
                            "(tests/acceptance/test_readme.py RUNNERS); mark its block skip with a reason")
    assert not problems, "\n".join(problems)


def test_every_file_a_command_names_is_bound():
    """Each file a run-marked command names exists in the working folder, is made on demand, or is
    written by a file block: tests/helpers/readme_workspace.py says what stands in for each."""
    words = {re.sub(r"^matrix:", "", w) for s in STEPS if s.command for w in s.command.argv}
    bound = {p.split(" ")[0].rstrip("/") for p in PLACEHOLDERS} | set(SUBSTITUTED)
    bound |= {s.block.arg for s in STEPS if s.kind == "file"}
    file_like = {w for w in words if re.search(r"\.(toml|csv|parquet|npy|json|jsonl|tar)$", w)
                 or w.startswith(("./", "/"))}
    outputs = {"issues.parquet"}  # written by the command itself
    # ... or by an earlier command: what --out / --dest / --write-csv names, and files inside it.
    made = {argv[i + 1] for s in STEPS if s.command for argv in [s.command.argv] for i in range(len(argv) - 1)
            if argv[i] in ("--out", "--dest", "--write-csv")}
    outputs |= {w for w in file_like if any(w == m or w.startswith(m.rstrip("/") + "/") for m in made)}
    unbound = {w for w in file_like - outputs if w not in bound and not w.startswith("benchmarks/")}
    assert not unbound, (f"README commands name files the suite does not make: {sorted(unbound)}; add them to "
                         "PLACEHOLDERS in tests/helpers/readme_workspace.py")


# --- every step, in README order ------------------------------------------------------------------


def assert_clean_exit(result: Completed, argv: list[str]) -> None:
    shown = " ".join(argv)
    assert result.returncode == 0, f"`{shown}` exited {result.returncode}:\n{result.output[-3000:]}"
    assert "Traceback" not in result.output, f"`{shown}` printed a traceback:\n{result.output[-3000:]}"
    # Library chatter (Prefect's, Dask's) is not for users: no INFO log lines on a plain run.
    info = [line for line in result.output.splitlines() if re.search(r"\|\s*INFO\s*\||\bINFO\b\s*-", line)]
    assert not info, f"`{shown}` printed {len(info)} INFO log lines, e.g.:\n" + "\n".join(info[:5])


@pytest.mark.parametrize("step", STEPS, ids=[s.id for s in STEPS])
def test_readme_step(step: Step, workspace: Workspace, request):
    if step.kind == "file":
        target = workspace.path / step.block.arg
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(step.block.text + "\n", encoding="utf-8")
        return
    if step.kind == "python":
        _run_python_block(step, workspace, request)
        return
    argv = workspace.bind(step.command)
    if argv[:3] == ["prefect", "server", "start"]:
        request.getfixturevalue("prefect_api")  # the same command, on a free port, stopped after the session
        return
    if argv[0] == "export":
        name, _, value = argv[1].partition("=")
        workspace.exported[name] = value
        return
    if argv[:2] == ["winnow", "serve"]:
        _serve(step, argv, workspace, request)
    elif argv[:2] == ["winnow", "review"]:
        _review(argv, workspace)
    else:
        result = workspace.run(argv, **workspace.exported)
        assert_clean_exit(result, argv)
        workspace.results[step.line] = result
        out = argv[argv.index("--out") + 1] if argv[1] in ("run", "demo") and "--out" in argv else (
            "out/demo" if argv[1] == "demo" else None)
        if out:
            manifest = _manifest(workspace, out)
            assert manifest["sample_id"].n_unique() == manifest.height and manifest["decision"].null_count() == 0
            workspace.manifests[step.line] = manifest
        check = CHECKS.get(step.command.text)
        if check:
            check(workspace, result)


def _review(argv: list[str], workspace: Workspace) -> None:
    """`winnow review OUT` runs until stopped: start it on a free port, wait until its page and
    its list of flagged samples answer, stop it by PID (Ctrl-C)."""
    import urllib.request

    from tests.helpers.prefect_server import free_port

    port = free_port()
    argv = [*argv, "--port", str(port)] if "--port" not in argv else [
        str(port) if i and argv[i - 1] == "--port" else a for i, a in enumerate(argv)]
    answered: dict[str, bytes] = {}

    def up() -> bool:
        try:
            for path in ("/", "/api/samples"):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                    assert resp.status == 200, (path, resp.status)
                    answered[path] = resp.read()
            return True
        except OSError:
            return False

    output, _ = workspace.serve(argv, until=up, log_name=f"review-{port}")
    assert "Traceback" not in output, output
    assert b"<html" in answered["/"].lower() and answered["/api/samples"].startswith(b"{"), answered


def _serve(step: Step, argv: list[str], workspace: Workspace, request) -> None:
    """Serve until the deployment is registered and polled (with --interval: until a run of it
    completes), stop it by PID (Ctrl-C), which must pause its schedule."""
    api = request.getfixturevalue("prefect_api")
    if tuple(argv) in workspace.served:  # the same command earlier in the README: served and checked there
        return
    exported = {"PREFECT_API_URL": api, **workspace.exported}
    assert exported["PREFECT_API_URL"] == api, "the README exports another server's URL than the one started"
    out = workspace.path / argv[argv.index("--out") + 1]
    before = _latest_run(out)
    name = argv[argv.index("--name") + 1] if "--name" in argv else None
    done = _registered_and_ran(workspace, api, name, run_once="--interval" in argv)
    output, _ = workspace.serve(argv, until=done, env=exported, log_name=f"serve-{step.line}")
    assert "Traceback" not in output, output
    workspace.served[tuple(argv)] = step.line
    (deployment,) = _deployments(workspace, name)
    schedule = ({"cron": argv[argv.index("--cron") + 1]} if "--cron" in argv
                else {"interval": float(argv[argv.index("--interval") + 1])} if "--interval" in argv
                else {"cron": "0 3 * * *"})
    assert [{k: v for k, v in s["schedule"].items() if k in schedule} for s in deployment["schedules"]] == [schedule]
    assert deployment["paused"], "stopping serve must pause the schedule"
    if "--interval" in argv:
        assert _latest_run(out) != before, "the run serve executed published no new version"
        manifest = _manifest(workspace, str(out.relative_to(workspace.path)))
        assert manifest["sample_id"].n_unique() == manifest.height
        check = CHECKS.get(step.command.text)
        if check:
            check(workspace, None)


def _deployments(workspace: Workspace, name: str | None) -> list[dict]:
    found = workspace.deployments()
    if name:
        return [d for d in found if d["name"] == name]
    return [d for d in found if d["name"].startswith("winnow-")][-1:]


def _registered_and_ran(workspace: Workspace, api: str, name: str | None, *, run_once: bool) -> Callable[[], bool]:
    """Poll: a deployment is registered, scheduled and not paused, and serve has polled for its
    runs since it started (so it is serving, not still starting: a stop before that cannot pause
    the schedule); with run_once, also a run of it (created as `prefect deployment run` would,
    which serve's own message suggests) completed."""
    state: dict = {}
    before = {d["id"]: d.get("last_polled") for d in workspace.deployments()}

    def done() -> bool:
        fresh = [d for d in workspace.deployments() if (name is None and d["name"].startswith("winnow-")
                                                        or d["name"] == name)
                 and d.get("last_polled") and d.get("last_polled") != before.get(d["id"])]
        if not fresh or fresh[0]["paused"] or not fresh[0]["schedules"]:
            return False
        if not run_once:
            return True
        if "run" not in state:
            state["run"] = api_post(f"{api}/deployments/{fresh[0]['id']}/create_flow_run", {})
        run = api_get(f"{api}/flow_runs/{state['run']['id']}")
        assert run["state_type"] not in ("FAILED", "CRASHED", "CANCELLED"), run["state"]
        return run["state_type"] == "COMPLETED"

    return done


def _latest_run(out: Path) -> str | None:
    return (out / "latest").resolve().name if (out / "latest").exists() else None


def _run_python_block(step: Step, workspace: Workspace, request) -> None:
    """The block verbatim, after python_prelude binds the placeholders it uses, then what it
    promised (PYTHON_CHECKS, by section). A block that runs a Prefect flow reports to the suite's
    server (a temporary one of its own would add half a minute)."""
    code = step.block.text + "\n" + PYTHON_CHECKS.get(step.block.section, "")
    env = dict(workspace.exported)
    if "winnow.flows" in code:
        env.setdefault("PREFECT_API_URL", request.getfixturevalue("prefect_api"))
    result = workspace.run_python(code, timeout=900, **env)  # whole runs: a minute or two on 2 idle cores
    assert_clean_exit(result, ["python", f"README.md line {step.line}"])


PYTHON_CHECKS = {
    "Python": '''
assert result.manifest.height == 1797 and set(result.summary["decisions"]) <= {"keep", "drop", "relabel"}
import pathlib as _pathlib
assert _pathlib.Path("digits-clean/manifest.parquet").is_file() and _pathlib.Path("digits-clean/report.html").is_file()
''',
    "Python API": '''
assert issues.height == len(labels), issues.height
assert result.manifest.height == 1797  # winnow.clean's CleanResult (the block's last `result`)
assert vectors.shape == (len(pil_images), 1280), vectors.shape
assert _np.allclose(_np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
assert table.num_rows > 0
assert config.knn.k == 20 and config.policy.keep == 0.8
import pathlib as _pathlib
assert _pathlib.Path(paths["manifest"]).is_file()
''',
}


# --- what particular commands must have done, beyond exit 0 ----------------------------------------


def _manifest(ws: Workspace, out: str) -> pl.DataFrame:
    return pl.read_parquet(ws.path / out / "latest" / "manifest.parquet")


def _summary(ws: Workspace, out: str) -> dict:
    return json.loads((ws.path / out / "latest" / "summary.json").read_text())


def check_user_folder(ws: Workspace, manifest: pl.DataFrame, *, prefix: str = "", table: bool = False) -> None:
    """One row per input file of ./pets, each with the reason its file must get.

    Every supported format and variant is decoded and embedded (it has a label_quality); the
    truncated PNG and the text named .png are `unreadable`; the odd files are
    `unsupported_format` (a table lists image names only); the byte copy is an exact duplicate.
    """
    expected = {f"{prefix}{rel}": reason for rel, reason in ws.data.expected.items()
                if not table or Path(rel).suffix.lower() in {s.lower() for s, _ in VARIANTS.values()}}
    assert manifest.height == len(expected) and manifest["sample_id"].n_unique() == manifest.height
    assert sorted(manifest["path"]) == sorted(expected), set(manifest["path"]) ^ set(expected)
    rows = {r["path"]: r for r in manifest.iter_rows(named=True)}
    wrong = []
    for path, reason in expected.items():
        row = rows[path]
        if reason is not None and (reason not in row["reasons"] or row["decision"] != "drop"):
            wrong.append(f"{path}: expected {reason}, got {row['decision']} {row['reasons']}")
        if reason is None and (UNUSABLE & set(row["reasons"]) or row["label_quality"] is None):
            wrong.append(f"{path} ({ws.data.variant[path[len(prefix):]]}) was not decoded: {row['reasons']}")
    for copy, original in ws.data.copies.items():
        a, b = rows[prefix + copy], rows[prefix + original]
        flagged = [r for r in (a, b) if "exact_duplicate" in r["reasons"]]
        if len(flagged) != 1 or flagged[0]["duplicate_of"] != ({a["sample_id"], b["sample_id"]}
                                                              - {flagged[0]["sample_id"]}).pop():
            wrong.append(f"the copy {copy!r} of {original!r}: {a['reasons']} / {b['reasons']}")
    assert not wrong, "\n".join(wrong)


def check_demo(ws, result):
    assert "precision" in result.stdout and "recall" in result.stdout, result.stdout
    assert _manifest(ws, "out/demo").height == 1797


def check_run_pets(ws, result):
    check_user_folder(ws, _manifest(ws, "out/pets"))
    summary = _summary(ws, "out/pets")
    assert summary["skipped_files"]["hidden"] == len(ws.data.hidden), summary["skipped_files"]
    assert (ws.path / "out" / "pets" / "latest" / "report.html").is_file()


def check_run_labels_csv(ws, result):
    check_user_folder(ws, _manifest(ws, "out/pets"), prefix="pets/", table=True)


def check_run_labels_parquet(ws, result):
    check_user_folder(ws, _manifest(ws, "out/pets"), prefix="pets/", table=True)
    assert _summary(ws, "out/pets")["catalog"] == "labels"


def check_run_catalog(ws, result):
    check_user_folder(ws, _manifest(ws, "out/pets"))
    summary = _summary(ws, "out/pets")
    assert summary["catalog"] == "pets" and summary["encoder"] == "efficientnet-lite0"


def check_run_digits_keep(ws, result):
    manifest, summary = _manifest(ws, "out/digits"), _summary(ws, "out/digits")
    assert manifest.height == 1797 and "precision" in result.stdout  # the catalog has ground truth
    kept = manifest.filter(pl.col("decision") != "drop")
    assert abs(kept.height - 0.7 * 1797) <= 2, kept.height
    assert summary["reasons"].get("pruned", 0) > 0
    assert kept["weight"].mean() == pytest.approx(1.0, abs=1e-6)  # effective_number weights: mean 1 over kept
    assert kept["weight"].n_unique() > 1
    assert summary["ground_truth"]["recall"] > 0.5


def check_run_digits_methods(ws, result):
    manifest, summary = _manifest(ws, "out/digits"), _summary(ws, "out/digits")
    assert {"score_knn_vote", "score_small_loss"} <= set(manifest.columns)
    assert not {"score_aum", "score_confident_learning"} & set(manifest.columns)
    assert summary["reasons"].get("pruned", 0) == 0  # a new run: the previous --keep does not carry over


def check_run_holdouts(ws, result):
    manifest = _manifest(ws, "out/train")
    check_user_folder(ws, manifest.with_columns(pl.col("reasons").list.set_difference(["leak"])))
    leaked = set(manifest.filter(pl.col("reasons").list.contains("leak"))["path"])
    assert ws.leaks <= leaked, f"planted leaks not found: {sorted(ws.leaks - leaked)}"
    # Only the planted copies (and the copy of a copy, if any) duplicate the holdouts.
    assert leaked <= ws.leaks | set(ws.data.copies), sorted(leaked - ws.leaks)


def check_run_dask(ws, result):
    summary = _summary(ws, "out/big")
    assert summary["embedding"]["shards"] == 2
    dask = _manifest(ws, "out/big")
    check_user_folder(ws, dask)
    line = next((s.line for s in STEPS if s.command and s.command.text == "winnow run ./pets --out out/pets"), None)
    direct = ws.manifests.get(line)
    if direct is not None:  # the same stages on Dask workers: the same decisions as the direct run of ./pets
        assert dask.select("path", "decision").sort("path").equals(direct.select("path", "decision").sort("path"))


def check_report(ws, result):
    latest = (ws.path / "out" / "pets" / "latest").resolve()
    assert result.stdout.strip() == f"Report: {latest / 'report.html'}"
    assert (latest / "report.html").stat().st_size > 1000
    assert list((latest / "gallery").glob("reason-unreadable/*.html")) and list((latest / "thumbs").iterdir())


def check_export(ws, result):
    dest = ws.path / "pets-clean"
    clean = pl.read_parquet(ws.path / "out" / "pets" / "latest" / "clean.parquet")
    files = [p for p in dest.rglob("*") if p.is_file() and p.parent != dest]
    assert len(files) == clean.height and clean.height > 0
    assert {p.parent.name for p in files} == set(clean["label"])


def _flips(ws: Workspace) -> np.ndarray:
    import os

    truth = pl.read_parquet(Path(os.environ["WINNOW_CACHE"]) / "digits" / "ground_truth.parquet")
    paths = json.loads((ws.path / "arrays" / "paths.json").read_text())
    flipped = dict(zip(truth["path"], truth["is_flipped"], strict=True))
    return np.array([flipped[p] for p in paths])


def check_detect_arrays(ws, result):
    issues = pl.read_parquet(ws.path / "issues.parquet")
    assert issues.height == 1797 and "of 1797 samples flagged" in result.stdout
    flips, flagged = _flips(ws), issues["is_label_issue"].to_numpy()
    precision, recall = (flips & flagged).sum() / flagged.sum(), (flips & flagged).sum() / flips.sum()
    assert precision > 0.6 and recall > 0.6, (precision, recall)  # 10% planted flips: chance is 0.1


def check_detect_table(ws, result):
    issues = pl.read_parquet(ws.path / "issues.parquet")
    ids = pl.read_csv(ws.path / "arrays" / "labels.csv")["id"]
    assert "id" in issues.columns and issues["id"].to_list() == ids.to_list()
    flips, flagged = _flips(ws), issues["is_label_issue"].to_numpy()
    assert (flips & flagged).sum() / flips.sum() > 0.6


def _evaluate_rows(stdout: str) -> dict[str, list[float]]:
    rows = {}
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["detector", "precision"])
    for line in lines[header + 1:]:  # the table under its header (a per-class noise line comes before it)
        name, *numbers = line.split()
        rows[name] = [float(x) for x in numbers]
    return rows


def check_evaluate_pair(ws, result):
    assert "539 planted flips (pair:0.3, seed 1)" in result.stdout, result.stdout
    rows = _evaluate_rows(result.stdout)
    assert {"knn_vote", "ensemble"} <= set(rows), rows
    assert rows["ensemble"][2] > 0.7  # F1 on 30% pair flips


def check_evaluate_matrix(ws, result):
    assert set(_evaluate_rows(result.stdout)) == {"knn_vote", "confident_learning", "ensemble"}, result.stdout


def check_catalogs_list(ws, result):
    assert result.stdout.split()[0] == "digits" and "efficientnet-lite0" in result.stdout


def check_encoders_list(ws, result):
    from winnow.embeddings import DEFAULT_ENCODER

    assert DEFAULT_ENCODER in result.stdout and "efficientnet-lite0" in result.stdout and "pixels" in result.stdout


def check_detectors(ws, result):
    from winnow.curation.label_issues import DETECTORS

    assert [line.split()[0] for line in result.stdout.splitlines()] == sorted(DETECTORS)


def check_version(ws, result):
    import winnow

    assert result.stdout.strip() == f"winnow {winnow.__version__}"


def check_serve_interval(ws, result):
    summary, manifest = _summary(ws, "out/pets"), _manifest(ws, "out/pets")
    assert summary["encoder"] == "efficientnet-lite0" and summary["config"]["policy"]["keep"] == 0.8
    # --keep 0.8 reached the scheduled run: at most 80% of the rows kept (pruned, unless the other
    # findings, unusable files and out-of-distribution ones here, already dropped enough).
    kept = manifest.filter(pl.col("decision") != "drop").height
    assert kept <= int(0.8 * manifest.height + 1), (kept, manifest.height, summary["reasons"])
    check_user_folder(ws, manifest)


# README line (as written, comment dropped) -> what it must have done, beyond exit 0 and one row
# per sample. Optional: a README command without an entry still runs.
CHECKS: dict[str, Callable[[Workspace, Completed | None], None]] = {
    "winnow demo": check_demo,
    "winnow run ./pets --out out/pets": check_run_pets,
    "winnow run labels.csv --out out/pets": check_run_labels_csv,
    "winnow run labels.parquet --path-column file --label-column y --out out/pets": check_run_labels_parquet,
    "winnow run catalogs/pets.toml --out out/pets --encoder efficientnet-lite0": check_run_catalog,
    "winnow run digits --out out/digits --keep 0.7 --policy weighting=effective_number": check_run_digits_keep,
    "winnow run digits --out out/digits --methods knn_vote,small_loss --seed 3": check_run_digits_methods,
    "winnow run train.toml --out out/train --holdout val.toml --holdout test.toml": check_run_holdouts,
    "winnow run big.toml --out out/big --runner dask --shards 8": check_run_dask,
    "winnow report out/pets": check_report,
    "winnow export out/pets --format imagefolder --dest /data/pets-clean": check_export,
    "winnow detect --labels y.npy --pred-probs p.npy --embeddings x.npy --out issues.parquet": check_detect_arrays,
    "winnow detect --labels labels.csv --id-column id --embeddings x.parquet --out issues.parquet":
        check_detect_table,
    "winnow evaluate digits --noise pair:0.3 --seed 1": check_evaluate_pair,
    "winnow evaluate digits --noise matrix:benchmarks/data/cifar10n_worse.csv --methods knn_vote,confident_learning":
        check_evaluate_matrix,
    "winnow catalogs list": check_catalogs_list,
    "winnow encoders list": check_encoders_list,
    "winnow detectors": check_detectors,
    "winnow --version": check_version,
    "winnow serve ./pets --out out/pets --interval 3600 --encoder efficientnet-lite0 --keep 0.8": check_serve_interval,
}


def test_every_check_names_a_readme_command():
    """A CHECKS key no README command has any more is a check that silently stopped running."""
    texts = {s.command.text for s in STEPS if s.command}
    assert not set(CHECKS) - texts, f"CHECKS for commands the README no longer shows: {sorted(set(CHECKS) - texts)}"
    sections = {s.block.section for s in STEPS if s.kind == "python"}
    assert not set(PYTHON_CHECKS) - sections, sorted(set(PYTHON_CHECKS) - sections)


# --- what the README says around its commands ------------------------------------------------------


def test_default_encoder_offline_fails_in_one_line(workspace: Workspace):
    """The README's first `run` of ./pets as written (default encoder: open_clip hub weights), offline."""
    command = next(s.command for s in STEPS if s.command and s.command.argv[:3] == ("winnow", "run", "./pets")
                   and "--encoder" not in s.command.argv)
    argv = [w if w != "out/pets" else "out/offline" for w in command.argv]
    result = workspace.run(argv)
    assert result.returncode == 2 and "Traceback" not in result.output, result.output
    assert result.lines() == [result.stderr.strip()], result.output
    assert "open_clip" in result.stderr and "efficientnet-lite0" in result.stderr and "pixels" in result.stderr
    assert not (workspace.path / "out" / "offline").exists()


def test_json_and_quiet_as_documented(workspace: Workspace):
    """`--json` prints the summary as JSON for scripts; `--quiet` hides the progress bars;
    `winnow run --help` explains the options."""
    as_json = workspace.run(["winnow", "run", "./pets", "--out", "out/listing", "--encoder", OFFLINE_ENCODER, "--json"])
    assert_clean_exit(as_json, ["--json"])
    summary = json.loads(as_json.stdout)
    assert summary["samples"] == len(workspace.data.expected) and Path(summary["outputs"]["manifest"]).is_file()
    assert as_json.stderr == "", as_json.stderr
    quiet = workspace.run(["winnow", "run", "./pets", "--out", "out/listing", "--encoder", OFFLINE_ENCODER, "--quiet"])
    assert_clean_exit(quiet, ["--quiet"])
    assert quiet.stderr == "" and f"Cleaned {len(workspace.data.expected)} samples" in quiet.stdout, quiet.output
    help_text = workspace.run(["winnow", "run", "--help"])
    assert help_text.returncode == 0
    for option in ("--encoder", "--policy", "--keep", "--holdout", "--runner", "--shards", "--json", "--quiet",
                   "--config", "--set"):
        assert option in help_text.stdout, option


def test_outputs_listing_matches_a_run(workspace: Workspace):
    """Every path the Outputs block lists exists in a real output folder."""
    (block,) = [b for b in read_blocks() if b.kind == "outputs"]
    out = workspace.path / "out" / "listing"
    if not (out / "latest").exists():
        result = workspace.run(["winnow", "run", "./pets", "--out", "out/listing", "--encoder", OFFLINE_ENCODER,
                                "--quiet"])
        assert_clean_exit(result, ["run"])
    run_dir = (out / "latest").resolve()
    # OUT/reviews/ is written by people (`winnow review`), not by a run: one review, as the app writes it.
    from winnow.pipeline.review import write_reviews

    first_row = pl.read_parquet(run_dir / "manifest.parquet").drop_nulls("content_hash").row(0, named=True)
    write_reviews(out / "reviews", [{"sample_id": first_row["sample_id"], "content_hash": first_row["content_hash"],
                                     "decision": "keep", "label": first_row["label"]}], reviewer="acceptance")
    missing = []
    for line in block.text.splitlines():
        first = line.split()[0] if line.strip() else ""
        if first.startswith("OUT/manifest.parquet,"):  # "OUT/a, b, c -> latest/...": links at the top
            names = [n.strip().removeprefix("OUT/") for n in line.split("->")[0].split(",")]
            missing += [n for n in names if not ((out / n).is_symlink() and (out / n).exists())]
            continue
        line = line.replace("OUT/runs/<run id>/", f"OUT/runs/{run_dir.name}/")
        for word in re.findall(r"(?:OUT/|gallery/)[^\s,:()]+", line):
            pattern = re.sub(r"<[^>]+>", "*", word.removeprefix("OUT/"))
            base = run_dir if word.startswith("gallery/") else out
            if not list(base.glob(pattern.rstrip("/"))):
                missing.append(word)
    assert (out / "latest").is_symlink() and (out / "latest").resolve() == run_dir
    assert not missing, f"the README lists outputs a run does not write: {missing}"


def test_catalog_example_runs(workspace: Workspace):
    """The Catalogs section's TOML, verbatim (its file marker), beside images/ (cat, dog) and
    noise.parquet, runs and is scored against its ground truth in the documented form."""
    (block,) = [b for b in read_blocks() if b.kind == "file" and b.section == "Catalogs"]
    catalog = workspace.path / block.arg
    catalog.write_text(block.text + "\n")
    argv = ["winnow", "run", block.arg, "--out", "out/catalog-example", "--quiet"]
    # Its encoder is an open_clip tag (hub weights): the offline stand-in runs instead.
    result = workspace.run(argv + ["--encoder", OFFLINE_ENCODER])
    assert_clean_exit(result, argv)
    summary = _summary(workspace, "out/catalog-example")
    assert summary["catalog"] == "pets" and list(summary["classes_before"]) == ["cat", "dog"]
    truth = summary["ground_truth"]  # the documented form: path, is_flipped (no true_label)
    assert Path(truth["path"]).name == "noise.parquet" and "precision" in result.stdout, result.stdout
    manifest = _manifest(workspace, "out/catalog-example")
    assert manifest.height == sum(1 for rel in workspace.data.expected if rel.split("/")[0] in ("0", "1"))
    flipped = manifest.filter(pl.col("path").str.contains("flipped_"))
    assert flipped.height == len(CATALOG_FLIPS), flipped["path"].to_list()
    # Its [knn] k = 20 is more than either class here has (about a dozen images): both are
    # rare_class, not judged by the label detectors, so no flip is scored -- said, not hidden.
    usable = manifest.filter(pl.col("label_quality").is_not_null())
    assert usable["reasons"].list.contains("rare_class").all(), usable["reasons"].to_list()[:5]
    assert summary["config"]["knn"]["k"] == 20 and summary["config"]["policy"]["class_cap"] == 5000
