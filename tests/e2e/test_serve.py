"""`winnow serve`: user errors in one line before Prefect loads, and a schedule that really fires.

Errors run the real CLI in a subprocess (typer's CliRunner hides tracebacks and import
costs). The e2e test starts a real `prefect server start` on a free localhost port, serves a
small digit folder on a 5-second interval, and waits for a flow run to complete with its
manifest; every process it started is stopped, by process group, even when it fails.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import digit_images, write_image_folder
from tests.helpers.prefect_server import (
    ServerDidNotStart,
    api_get,
    api_post,
    free_port,
    isolated_env,
    process_group_gone,
    running_prefect_server,
    stop_process_group,
)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return isolated_env(tmp_path / "prefect-home", **extra)


@dataclass
class Served:
    proc: subprocess.CompletedProcess
    wall: float  # seconds on the clock
    cpu: float  # user + system CPU seconds of the process and its children
    lines: list[str]  # non-empty stderr lines that are not import timings
    imported: set[str]  # top-level packages it imported


def run_serve(args: list[str], tmp_path: Path, **env: str) -> Served:
    """`winnow serve ARGS` in a subprocess, its output, cost and imports."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    popen = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "winnow.flows.cli", "serve", *args],
                             cwd=tmp_path, env=_env(tmp_path, **env), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = popen.communicate(timeout=20)
    except subprocess.TimeoutExpired:  # serving instead of failing: stop it, report what it said
        stop_process_group(popen, grace=10)
        stdout, stderr = popen.communicate()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    proc = subprocess.CompletedProcess(popen.args, popen.returncode, stdout, stderr)
    timings = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in timings}
    lines = [line for line in proc.stderr.splitlines() if line.strip() and line not in timings]
    return Served(proc, wall, cpu, lines, imported)


def _machine_is_busy() -> bool:
    """More runnable work than cores: the wall clock then measures the neighbours, not us."""
    return os.getloadavg()[0] > (os.cpu_count() or 1)


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve") / "digits"
    write_image_folder(root, [(img, label % 3) for img, label in digit_images(30, seed=5)])
    (root.parent / "not-a-folder.txt").write_text("an --out that is a file")
    return root


@pytest.fixture(scope="module")
def answering_api():
    """A URL whose /health answers like a Prefect API, so only the option under test can fail."""
    import http.server
    import threading

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            ok = self.path.endswith("/health")
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(b"true" if ok else b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()


def _user_errors(folder: Path, live_url: str, dead_url: str) -> list[tuple[list[str], dict[str, str], str]]:
    """(arguments, environment, text the one error line must quote)."""
    ok_env = {"PREFECT_API_URL": live_url}
    return [
        ([str(folder.parent / "no-such-folder"), "--out", "o"], ok_env, "no-such-folder"),
        ([str(folder), "--out", "o", "--encoder", "clip-b32"], ok_env, "'clip-b32'"),
        ([str(folder), "--out", "o", "--encoder", "pixels", "--policy", "no_such_key=1"], ok_env, "no_such_key"),
        ([str(folder), "--out", "o", "--encoder", "pixels", "--keep", "-3"], ok_env, "-3"),
        ([str(folder), "--out", "o", "--encoder", "pixels", "--methods", "knn_vote,nope"], ok_env, "'nope'"),
        ([str(folder), "--out", str(folder.parent / "not-a-folder.txt"), "--encoder", "pixels"], ok_env,
         "not-a-folder.txt"),
        ([str(folder), "--out", "o", "--encoder", "pixels", "--holdout", "no-such-val"], ok_env, "no-such-val"),
        ([str(folder), "--out", "o", "--encoder", "pixels", "--device", "tpu9"], ok_env, "'tpu9'"),
        ([str(folder), "--out", "o", "--encoder", "pixels", "--cron", "every day"], ok_env, "'every day'"),
        ([str(folder), "--out", "o", "--encoder", "pixels", "--interval", "0"], ok_env, "got 0"),
        ([str(folder), "--out", "o", "--encoder", "pixels", "--interval", "5", "--cron", "* * * * *"], ok_env,
         "'* * * * *'"),
        # A server named but not answering (no server at all: test_no_server_message_says_how_to_start_one).
        ([str(folder), "--out", "o", "--encoder", "pixels", "--interval", "5"], {"PREFECT_API_URL": dead_url},
         dead_url),
    ]


def test_serve_user_errors_are_one_line_fast_and_before_prefect(small_folder, answering_api, tmp_path):
    dead_url = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    failures = []
    for args, env, quoted in _user_errors(small_folder, answering_api, dead_url):
        run = run_serve(args, tmp_path, **env)
        problems = ["imported prefect"] if "prefect" in run.imported else []
        if run.proc.returncode != 2:
            problems.append(f"exit {run.proc.returncode}")
        if len(run.lines) != 1 or quoted not in run.lines[0]:
            problems.append(f"stderr is not one line quoting {quoted!r}: {run.lines[:6]}")
        if "Traceback" in run.proc.stderr + run.proc.stdout:
            problems.append("traceback")
        # The work it does: CPU seconds always; the clock too unless the cores are oversubscribed.
        if run.cpu >= 3.0 or (run.wall >= 3.0 and not _machine_is_busy()):
            problems.append(f"took {run.wall:.1f} s ({run.cpu:.1f} s CPU)")
        if problems:
            failures.append((args[3:] or args[:1], problems))
    assert not failures, "\n".join(f"{a}: {p}" for a, p in failures)


def test_no_server_message_says_how_to_start_one(small_folder, tmp_path):
    run = run_serve([str(small_folder), "--out", "o", "--encoder", "pixels"], tmp_path)  # no PREFECT_API_URL
    assert run.proc.returncode == 2 and len(run.lines) == 1 and "prefect" not in run.imported, run.lines[-5:]
    assert "prefect server start" in run.lines[0] and "PREFECT_API_URL=" in run.lines[0]
    assert "Traceback" not in run.proc.stderr and run.cpu < 3.0


def test_check_schedule_matches_prefect():
    from prefect.client.schemas.schedules import CronSchedule

    from winnow.flows.deploy import InvalidSchedule, check_schedule

    for cron in ("* * * * *", "0 3 * * *", "*/15 9-17 * * mon-fri", "0 0 1 jan *", "@daily"):
        assert check_schedule(cron=cron).cron == cron
        CronSchedule(cron=cron)
    for cron in ("every day", "61 * * * *", "* * *", "H * * * *", ""):
        with pytest.raises(InvalidSchedule, match=re.escape(repr(cron))):
            check_schedule(cron=cron)
        with pytest.raises(ValueError):
            CronSchedule(cron=cron)
    assert check_schedule().cron == "0 3 * * *" and check_schedule(interval=5).interval == 5
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InvalidSchedule):
            check_schedule(interval=bad)


def test_prefect_api_url_from_the_active_profile(tmp_path, monkeypatch):
    from winnow.flows.deploy import prefect_api_url

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "profiles.toml"))
    assert prefect_api_url() is None
    (tmp_path / "profiles.toml").write_text('active = "local"\n[profiles.local]\n'
                                            'PREFECT_API_URL = "http://127.0.0.1:4200/api"\n')
    assert prefect_api_url() == "http://127.0.0.1:4200/api"
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    assert prefect_api_url() == "http://elsewhere:4200/api"


# --- a real server, a real schedule ---------------------------------------------------------------


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on a free port with its own PREFECT_HOME; yields its API URL."""
    try:
        with running_prefect_server(tmp_path) as api:
            yield api
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))


RUN_TIMEOUT = 150  # about 30 s on an idle machine; a loaded 2-core box is several times slower


@pytest.mark.e2e
def test_serve_interval_schedule_fires_on_a_real_server(prefect_server, small_folder, tmp_path):
    out = tmp_path / "out"
    log = open(tmp_path / "serve.log", "w")
    serve = subprocess.Popen(
        [sys.executable, "-m", "winnow.flows.cli", "serve", str(small_folder), "--out", str(out), "--interval", "5",
         "--encoder", "pixels", "--k", "5", "--name", "e2e"],
        cwd=tmp_path, env=_env(tmp_path, PREFECT_API_URL=prefect_server, PREFECT_RUNNER_POLL_FREQUENCY="2"),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        finished = []
        while not finished:
            if serve.poll() is not None:
                pytest.fail(f"serve exited {serve.returncode}:\n" + (tmp_path / "serve.log").read_text()[-3000:])
            if time.monotonic() > deadline:
                pytest.fail(f"no scheduled run finished in {RUN_TIMEOUT} s:\n"
                            + (tmp_path / "serve.log").read_text()[-3000:])
            time.sleep(1)
            finished = api_post(f"{prefect_server}/flow_runs/filter", {
                "flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}}, "limit": 5})
        run = finished[0]
        assert run["state_type"] == "COMPLETED", (run["state"], (tmp_path / "serve.log").read_text()[-3000:])
        deployment = api_get(f"{prefect_server}/deployments/{run['deployment_id']}")
        assert deployment["name"] == "e2e" and run["auto_scheduled"], "the run was not created by the schedule"
        assert run["parameters"]["settings"]["run"]["out"] == str(out)
        assert run["parameters"]["settings"]["knn"] == {"k": 5}
        manifest = pl.read_parquet(out / "latest" / "manifest.parquet")
        assert manifest.height == 30 and manifest["sample_id"].n_unique() == 30
    finally:
        stop_process_group(serve, grace=10)
        log.close()
        assert process_group_gone(serve.pid), "winnow serve is still running"
