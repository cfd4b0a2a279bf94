"""The wheel ships one import package, `winnow`, and nothing a user's project can shadow."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LAYERS = ("catalogs", "embeddings", "curation", "pipeline", "flows")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(REPO),
                    "-w", str(dest)], check=True, capture_output=True, timeout=300)
    [found] = dest.glob("winnow_curate-*.whl")
    return found


def test_the_wheel_holds_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"winnow"}, f"the wheel installs top-level names {sorted(tops)}"
    for layer in LAYERS:
        assert f"winnow/{layer}/__init__.py" in names
    assert "winnow/catalogs/bundled/digits.toml" in names  # package data travels
    assert "winnow/pipeline/report/style.css" in names  # the report's style sheet, read at run time
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "winnow = winnow.flows.cli:app" in entry_points


def test_every_subpackage_is_listed_in_pyproject():
    """A new subfolder with an __init__.py must be added to [tool.setuptools] packages, or the
    wheel silently lacks it (the editable install used by the tests would not notice)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {"winnow": REPO / "winnow", **{f"winnow.{layer}": REPO / layer for layer in LAYERS}}
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder)
            found.add(".".join([name, *rel.parts]))
    assert found == listed, f"packages missing from pyproject: {sorted(found - listed)}; " \
                            f"listed but absent: {sorted(listed - found)}"


def test_a_users_own_flows_package_does_not_break_winnow(wheel, tmp_path):
    """Prefect projects keep their own `flows/` package: with the wheel installed and that folder
    in the working directory, `winnow` still imports its own code."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    project = tmp_path / "project"
    for name in ("flows", "catalogs", "curation", "embeddings", "pipeline"):
        (project / name).mkdir(parents=True)
        (project / name / "__init__.py").write_text("raise ImportError('the user project package was imported')\n")
    code = ("import winnow, winnow.flows.cli, winnow.curation, winnow.pipeline.run; "
            "print(winnow.flows.cli.__file__)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), str(target)])}
    result = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(target)), result.stdout


def test_import_winnow_is_cheap():
    """`import winnow` loads no layer (no torch, no Prefect): the front door's names are lazy."""
    code = "import sys, winnow; print(sorted(m for m in ('torch', 'prefect', 'polars', 'winnow.curation') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
