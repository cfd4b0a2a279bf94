"""`make demo` and `make test`, the README's first commands, as recipes (make -n).

Running them for real builds .venv and (for `make test`) runs this whole suite; CI runs
`make test` itself (.ci/run) and a fresh clone is checked by hand. Here: every target the
README names exists, and its recipe creates the environment and installs Winnow before it
runs, from the lock when the repository has one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.helpers.readme import commands, read_blocks

# Targets that do not build the environment: `make lock` resolves the lock with uv (it makes a
# bare venv for uv only when uv is missing), `make clean-env` removes .venv.
WITHOUT_ENVIRONMENT = ("lock", "clean-env", "chromium")
LOCK_FILES = ("uv.lock", "requirements.lock", "constraints.txt", "requirements-lock.txt", "pylock.toml")


def _readme_make_targets() -> list[str]:
    named = {c.argv[1] for b in read_blocks() if b.lang == "bash" for c in commands(b)
             if c.argv[0] == "make" and len(c.argv) > 1}
    named |= set(re.findall(r"`make ([a-z-]+)`", (REPO / "README.md").read_text(encoding="utf-8")))
    return sorted(named)


def _dry_run(target: str, tmp_path: Path) -> str:
    # -B: as if nothing were built yet (a fresh clone); VENV elsewhere, so nothing here is touched.
    proc = subprocess.run(["make", "-n", "-B", "-C", str(REPO), target, f"VENV={tmp_path / 'venv'}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", _readme_make_targets())
def test_readme_make_target_builds_the_environment_first(target, tmp_path):
    recipe = _dry_run(target, tmp_path)
    if target in WITHOUT_ENVIRONMENT:
        assert recipe.strip(), f"`make {target}` does nothing"
        return
    venv = str(tmp_path / "venv")
    lines = recipe.replace("\\\n", " ").splitlines()  # a recipe line continued with a backslash is one line
    create = next((i for i, line in enumerate(lines) if "venv" in line and venv in line
                   and ("-m venv" in line or "uv venv" in line or "uv sync" in line)), None)
    install = next((i for i, line in enumerate(lines) if re.search(r"pip install|uv (pip )?(sync|install)", line)
                    and ("-e" in line or "sync" in line)), None)
    assert create is not None, f"`make {target}` does not create the environment:\n{recipe}"
    assert install is not None and install > create, f"`make {target}` does not install Winnow:\n{recipe}"
    lock = [name for name in LOCK_FILES if (REPO / name).exists()]
    if lock:  # a lock exists: the install must use it
        assert any(name in recipe for name in lock), f"`make {target}` ignores {lock}:\n{recipe}"
    runs = {"demo": "winnow demo", "test": "pytest"}.get(target)
    if runs:
        last = max(i for i, line in enumerate(lines) if runs in line)
        assert last > install, f"`make {target}` runs {runs!r} before installing:\n{recipe}"


def test_readme_names_make_demo_and_test():
    assert {"demo", "test"} <= set(_readme_make_targets())
