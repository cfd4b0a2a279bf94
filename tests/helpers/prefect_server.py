"""Real processes for end-to-end tests: a `prefect server start` on a free port, and stopping
what a test started (by process group, so a server's workers go too).

Shared by tests/e2e/test_serve.py and tests/acceptance/ (its prefect_api fixture).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_env(prefect_home: Path, **extra: str) -> dict[str, str]:
    """This environment without any PREFECT_* setting, a Prefect home of its own, this checkout importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(prefect_home), PREFECT_LOGGING_LEVEL="WARNING",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.update(extra)
    return env


def stop_process_group(proc: subprocess.Popen | None, *, grace: float = 10) -> None:
    """Stop a process we started in its own session, and its whole group: INT (as Ctrl-C would),
    then after `grace` seconds TERM, then KILL."""
    if proc is None or proc.poll() is not None and process_group_gone(proc.pid):
        return
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None and process_group_gone(proc.pid):
                return
            time.sleep(0.2)


def process_group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def api_get(url: str, *, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def api_post(url: str, body: dict, *, timeout: float = 5.0):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


class ServerDidNotStart(RuntimeError):
    pass


@contextmanager
def running_prefect_server(workdir: Path, *, timeout: float = 90) -> Iterator[str]:
    """`prefect server start` on a free localhost port with its own PREFECT_HOME under `workdir`.

    Yields the API URL; the server (and every process of its group) is stopped on exit. Its
    scheduler looks for due runs every 2 s, so a short interval schedule fires within seconds.
    """
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    log_path = workdir / "server.log"
    log = open(log_path, "w")
    env = isolated_env(workdir / "prefect-home", PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
                       PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS="1",
                       PREFECT_SERVER_UI_ENABLED="false", PREFECT_API_URL=api)
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if api_get(f"{api}/health") is True:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise ServerDidNotStart("prefect server did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.5)
        yield api
    finally:
        stop_process_group(server)
        log.close()
        if not process_group_gone(server.pid):
            raise RuntimeError(f"the prefect server (process group {server.pid}) is still running")
