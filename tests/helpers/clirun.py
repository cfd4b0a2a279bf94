"""Run the real `winnow` command in a subprocess, as a user's shell would.

typer's CliRunner catches every exception and never prints a traceback, so a check such as
"no Traceback in the output" can only fail in a real process. Each call also records which
modules the process imported (PYTHONPROFILEIMPORTTIME), so a test can assert that a user
error was reported before Prefect (or torch) was ever imported.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def winnow_command() -> list[str]:
    """The installed console script next to this interpreter, else the module itself."""
    script = Path(sys.executable).with_name("winnow")
    if script.exists():
        return [str(script)]
    found = shutil.which("winnow")
    return [found] if found else [sys.executable, "-m", "winnow.flows.cli"]


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str  # without the import-time lines
    seconds: float  # wall clock
    cpu_seconds: float = 0.0  # user + system time of the process: what it costs, whatever else runs
    imported: set[str] = field(default_factory=set)  # every module the process imported

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()]


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # The process imports this checkout's code, wherever it was started from.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("COLUMNS", "200")
    env.update(extra)
    return env


def run_winnow(*args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None,
               timeout: float = 600, track_imports: bool = True) -> Completed:
    env = dict(env if env is not None else base_env())
    if track_imports:
        env["PYTHONPROFILEIMPORTTIME"] = "1"
    started, cpu = time.perf_counter(), _children_cpu()
    proc = subprocess.run([*winnow_command(), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    imported, stderr = set(), []
    for line in proc.stderr.splitlines(keepends=True):
        if line.startswith("import time:"):
            name = line.rsplit("|", 1)[-1].strip()
            imported.add(name)
        else:
            stderr.append(line)
    return Completed(proc.returncode, proc.stdout, "".join(stderr), seconds, cpu, imported)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 600) -> Completed:
    """`python -c code` with this checkout importable (for the Python API)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env if env is not None else base_env(), timeout=timeout)
    return Completed(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - started)
