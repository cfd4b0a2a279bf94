"""A small dataset with planted label flips for the review app, and the app as a real server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.helpers.clirun import base_env, winnow_command
from tests.helpers.images import digit_images, write_image_folder
from winnow.catalogs.schemas import AUDIT

N_FLIPPED = 10


def review_world(root: Path, *, n: int = 150, seed: int = 7) -> Path:
    """`n` real digits as class folders, N_FLIPPED of them under the next digit's folder."""
    images = digit_images(n, seed=seed)
    flipped = [(img, (y + 1) % 10 if i < N_FLIPPED else y) for i, (img, y) in enumerate(images)]
    write_image_folder(root, flipped)
    return root


def write_audit_column(manifest_path: Path, audit_ids: set[str] | None) -> None:
    """Rewrite a run's manifest with the AUDIT column True on `audit_ids` (None: no column, as an
    older run wrote it), whether or not the run wrote the column itself."""
    table = pq.read_table(manifest_path)
    if AUDIT in table.column_names:
        table = table.drop_columns([AUDIT])
    if audit_ids is not None:
        ids = table.column("sample_id").to_pylist()
        table = table.append_column(AUDIT, pa.array([sid in audit_ids for sid in ids], pa.bool_()))
    pq.write_table(table, manifest_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_review_server(out: Path, *, port: int, token: str, host: str = "127.0.0.1",
                        timeout: float = 120) -> subprocess.Popen:
    """`winnow review OUT` in its own process group; returns once /api/meta answers."""
    env = base_env(WINNOW_REVIEW_TOKEN=token)
    proc = subprocess.Popen([*winnow_command(), "review", str(out), "--host", host, "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"winnow review exited {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/meta?token={token}", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"winnow review did not answer on port {port} within {timeout} s")


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server by its process id (its own session: the process group is only its own)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    if proc.stdout:
        proc.stdout.close()


def post_json(url: str, body: dict, *, token: str | None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"X-Winnow-Token": token} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
