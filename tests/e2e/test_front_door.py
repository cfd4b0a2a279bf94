"""`winnow.clean`: a dataset to its manifest in one call, in a fresh process, with no Prefect at all.

Each test runs a real `python -c` so that "prefect was never imported" and "nothing was
printed" are facts about a whole process, not about a test session that imported both.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.helpers.clirun import base_env, run_python, run_winnow
from tests.helpers.images import digit_images, write_image_folder

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e  # real processes


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("front") / "digits"
    write_image_folder(root, digit_images(90, seed=4))
    return root


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in base_env().items() if not k.startswith("PREFECT_")}
    env["WINNOW_CACHE"] = str(cache)
    return env


def test_clean_a_folder_without_prefect_quietly_and_reembed_nothing_the_second_time(folder, tmp_path):
    code = (
        "import json, sys, winnow\n"
        f"r = winnow.clean({str(folder)!r}, encoder='pixels:16', k=5)\n"
        f"again = winnow.clean({str(folder)!r}, encoder='pixels:16', k=5)\n"
        f"r.write({str(tmp_path / 'kept')!r})\n"
        "run_dir = r.run_dir\n"
        "print(json.dumps({'prefect': 'prefect' in sys.modules, 'rows': r.manifest.height,\n"
        "    'type': type(r.manifest).__module__, 'ids': r.manifest['sample_id'].n_unique(),\n"
        "    'clean': r.clean.height, 'kept': int((r.manifest['decision'] != 'drop').sum()),\n"
        "    'graph': list(r.graph.indices.shape), 'rows_of_graph': len(r.rows),\n"
        "    'first': r.summary['embedding'], 'second': again.summary['embedding'],\n"
        "    'k': r.config.knn.k, 'summary_k': r.summary['config']['knn']['k'], 'run_dir': str(run_dir)}))\n"
        "del r, again\n"
        "import gc; gc.collect()\n"
        "print(json.dumps({'run_dir_left': run_dir.exists()}))\n"
    )
    result = run_python(code, env=_env(tmp_path / "cache"))
    assert result.returncode == 0, result.output
    assert result.stderr == "", result.stderr  # quiet: no logging, no progress bars, no warnings
    first, second = map(json.loads, result.stdout.strip().splitlines())
    assert first["prefect"] is False
    assert first["type"].startswith("polars") and first["rows"] == first["ids"] == 90  # one row per file
    assert first["clean"] == first["kept"]
    assert first["graph"] == [90, 5] and first["rows_of_graph"] == 90
    assert first["first"]["embedded"] == 90 and first["first"]["reused"] == 0
    assert first["second"]["embedded"] == 0 and first["second"]["reused"] == 90  # $WINNOW_CACHE/store
    assert first["k"] == first["summary_k"] == 5
    assert (tmp_path / "cache" / "store").is_dir()
    assert {p.name for p in (tmp_path / "kept").iterdir()} >= {"manifest.parquet", "clean.parquet", "summary.json",
                                                               "diff.parquet", "report.html"}
    assert second == {"run_dir_left": False}  # the temporary run folder goes with its result
    assert not folder.joinpath("out").exists()


def test_clean_with_an_out_folder_matches_the_cli_run(folder, tmp_path):
    """The front door and `winnow run` call the same stages: the same manifest."""
    code = (
        "import winnow\n"
        f"r = winnow.clean({str(folder)!r}, encoder='pixels:16', out={str(tmp_path / 'py')!r}, k=5, keep=0.8)\n"
        "print(r.run_dir)\n"
    )
    result = run_python(code, env=_env(tmp_path / "cache"))
    assert result.returncode == 0, result.output
    cli = run_winnow("run", str(folder), "--out", str(tmp_path / "cli"), "--encoder", "pixels:16", "--k", "5",
                     "--keep", "0.8", "--quiet", env=_env(tmp_path / "cache"), track_imports=False)
    assert cli.returncode == 0, cli.output
    import polars as pl

    a = pl.read_parquet(tmp_path / "py" / "manifest.parquet")
    b = pl.read_parquet(tmp_path / "cli" / "manifest.parquet")
    assert a.equals(b)
    assert Path(result.stdout.strip()).parent == (tmp_path / "py" / "runs").resolve()


def test_clean_errors_are_named_and_quote_the_value(folder, tmp_path):
    code = (
        "import winnow\n"
        "for kwargs in ({'kk': 3}, {'device': 'cpu'}, {'policy': {'on_outlier': 'delete'}}, {'runner': 'prefect'}):\n"
        "    try:\n"
        f"        winnow.clean({str(folder)!r}, encoder='pixels:16', **kwargs)\n"
        "    except winnow.ConfigError as exc:\n"
        "        print(exc)\n"
    )
    result = run_python(code, env=_env(tmp_path / "cache"))
    assert result.returncode == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4, result.output
    assert "'kk'" in lines[0] and "'device'" in lines[1] and "'delete'" in lines[2] and "'prefect'" in lines[3]


def test_cli_logs_stage_lines_only_when_verbose(folder, tmp_path):
    quiet = run_winnow("run", str(folder), "--out", str(tmp_path / "q"), "--encoder", "pixels:16", "--quiet",
                       env=_env(tmp_path / "cache"), track_imports=False)
    verbose = run_winnow("-v", "run", str(folder), "--out", str(tmp_path / "v"), "--encoder", "pixels:16", "--quiet",
                         env=_env(tmp_path / "cache"), track_imports=False)
    assert quiet.returncode == verbose.returncode == 0, quiet.output + verbose.output
    assert "INFO" not in quiet.stderr
    assert re.search(r"INFO winnow\.pipeline\.run: run \S+ published", verbose.stderr), verbose.stderr


def test_the_readme_python_example_runs(tmp_path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## Python\n"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "winnow.clean(" in code
    env = _env(tmp_path / "cache")
    result = run_python(f"import os; os.chdir({str(tmp_path)!r})\n" + code, env=env)
    assert result.returncode == 0, result.output
    assert "prefect" not in result.output.lower()
    assert any(os.scandir(tmp_path / "cache" / "store"))
