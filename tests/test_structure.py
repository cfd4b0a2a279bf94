"""The test suite's own shape: tests mirror the packages, end-to-end suites stay apart, helpers live
in tests/helpers/, and no property test overrides the Hypothesis profile.

tests/unit/<layer>/test_<module>.py  unit tests of winnow.<layer>.<module> (no whole runs)
tests/e2e/                           whole runs through the pipeline, the flow or the CLI; real
                                     processes (crash/kill, a Prefect server, Chromium); marked e2e
tests/acceptance/                    the README's commands, as a user runs them; marked acceptance
tests/helpers/                       builders shared by tests and benchmarks; conftest.py: fixtures
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from hypothesis import settings

from tests.helpers import CI_EXAMPLES, REPO

TESTS = REPO / "tests"
# The library layers whose every module needs a unit test module (or an entry below).
LAYERS = ("catalogs", "embeddings", "curation", "pipeline")
# Folders of tests/unit/: the layers above plus flows and the `winnow` root (packaging, safety).
UNIT_FOLDERS = (*LAYERS, "flows", "winnow")
# Test files allowed directly under tests/: the lock check (the Makefile runs it as a script before
# any venv exists) and this file.
TOP_LEVEL_TESTS = {"test_lock.py", "test_structure.py"}
# Fixtures that start real services: a unit test never asks for them.
SERVICE_FIXTURES = {"prefect_harness", "prefect_server", "prefect_api"}

# Library modules without a tests/unit/<layer>/test_<module>.py, the test files that cover them
# instead, and why. A module listed here that gains its own test module must leave the list.
COVERED_ELSEWHERE: dict[str, tuple[tuple[str, ...], str]] = {
    "catalogs/builders.py": (("tests/unit/catalogs/test_spec.py",),
                             "the bundled-digits builder runs when the catalog is resolved"),
    "catalogs/errors.py": (("tests/unit/catalogs/test_spec.py", "tests/unit/catalogs/test_samples.py"),
                           "exception classes only; raised and matched by the loader and listing tests"),
    "catalogs/schemas.py": (("tests/unit/catalogs/test_samples.py", "tests/e2e/test_faults.py"),
                            "column names and reason codes; checked against what listing and runs write"),
    "embeddings/errors.py": (("tests/unit/embeddings/test_encoders.py", "tests/unit/embeddings/test_store.py"),
                             "exception classes only"),
    "curation/errors.py": (("tests/unit/curation/test_validation.py",), "exception classes only"),
    "curation/ensemble.py": (("tests/unit/curation/test_label_issues.py",),
                             "the ensemble is reached through detect_label_issues and checked there"),
    "curation/knn_noise.py": (("tests/unit/curation/test_label_issues.py",),
                              "each detector is tested beside the others, on the same planted noise"),
    "curation/zero_shot.py": (("tests/unit/curation/test_label_issues.py",),
                              "each detector is tested beside the others, on the same planted noise"),
    "pipeline/evaluate.py": (("tests/e2e/test_cli_tools.py", "tests/e2e/test_flow.py"),
                             "scoring runs a whole detection over a catalog"),
    "pipeline/files.py": (("tests/e2e/test_crash_safety.py", "tests/e2e/test_flow.py"),
                          "atomic writes and the run lock only matter across real processes"),
    "pipeline/knn_dask.py": (("tests/e2e/test_knn_dask.py",), "needs a 2-worker Dask LocalCluster (processes)"),
    "pipeline/run.py": (("tests/e2e/test_flow.py", "tests/e2e/test_versions.py"), "a whole run"),
    "pipeline/stage_keys.py": (("tests/e2e/test_versions.py",),
                               "stage keys decide what a resumed run redoes"),
    "pipeline/stages.py": (("tests/e2e/test_versions.py", "tests/e2e/test_crash_safety.py"),
                           "stages run inside a whole run; resume and kill tests check them"),
    "catalogs/keys.py": (("tests/unit/catalogs/test_spec.py", "tests/unit/catalogs/test_sources.py"),
                         "catalog key parsing is checked through the catalogs and sources that use it"),
    "catalogs/tables.py": (("tests/unit/catalogs/test_sources.py", "tests/e2e/test_cli_tools.py"),
                           "user tables are read by the manifest source and the ground-truth scorer"),
    **{f"catalogs/sources/{name}.py": (("tests/unit/catalogs/test_sources.py", "tests/e2e/test_toy_source.py"),
                                      "the source registry and each built-in source are tested together")
       for name in ("base", "image_folder", "local", "manifest")},
    **{f"curation/issues/{name}.py": (("tests/unit/curation/test_issue_registry.py",
                                       "tests/e2e/test_issue_type_plugin.py"),
                                      "every issue type is checked through the one registry contract")
       for name in ("base", "duplicate", "label_issue", "leak", "outlier", "rare_class", "rebalance", "review")},
    "pipeline/review/app.py": (("tests/e2e/test_review.py", "tests/e2e/test_review_browser.py"),
                               "the app is a server: driven through FastAPI's TestClient, over HTTP and in chromium"),
    "pipeline/issues.py": (("tests/unit/curation/test_issue_registry.py", "tests/e2e/test_issue_type_plugin.py"),
                           "joins the issue registry with the schemas; checked with the registry"),
    **{f"pipeline/report/{name}.py": (("tests/unit/pipeline/test_report.py",
                                       "tests/unit/pipeline/test_report_sections.py", "tests/e2e/test_report.py"),
                                      "the report's parts are checked on rendered pages (and in chromium)")
       for name in ("charts", "data", "markup", "overview", "pages", "sections", "thumbs")},
}


def _library_modules() -> list[str]:
    return sorted(p.relative_to(REPO).as_posix() for layer in LAYERS for p in (REPO / layer).rglob("*.py")
                  if p.name != "__init__.py" and "__pycache__" not in p.parts)


def _unit_test_for(module: str) -> Path:
    path = Path(module)
    return TESTS / "unit" / path.parent / f"test_{path.name}"


def _test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_library_module_has_a_unit_test_module():
    missing = [f"{m} -> {_unit_test_for(m).relative_to(REPO)}" for m in _library_modules()
               if not _unit_test_for(m).is_file() and m not in COVERED_ELSEWHERE]
    assert not missing, ("library modules without a unit test module (add it, or list the module in "
                         f"COVERED_ELSEWHERE with the tests that cover it and why): {missing}")


def test_covered_elsewhere_is_current():
    modules = set(_library_modules())
    stale = [m for m in COVERED_ELSEWHERE if m not in modules]
    own = [m for m in COVERED_ELSEWHERE if m in modules and _unit_test_for(m).is_file()]
    gone = [f"{m}: {t}" for m, (files, _) in COVERED_ELSEWHERE.items() for t in files if not (REPO / t).is_file()]
    assert not stale, f"COVERED_ELSEWHERE names modules that no longer exist: {stale}"
    assert not own, f"these modules have their own unit test module now; drop them from COVERED_ELSEWHERE: {own}"
    assert not gone, f"COVERED_ELSEWHERE points at test files that do not exist: {gone}"


def test_test_files_live_in_unit_e2e_or_acceptance():
    misplaced = []
    for path in _test_files():
        rel = path.relative_to(TESTS)
        if not path.name.startswith("test_"):
            continue
        if len(rel.parts) == 1:
            ok = path.name in TOP_LEVEL_TESTS
        elif rel.parts[0] == "unit":
            ok = len(rel.parts) >= 3 and rel.parts[1] in UNIT_FOLDERS
        else:
            ok = rel.parts[0] in ("e2e", "acceptance")
        if not ok:
            misplaced.append(rel.as_posix())
    assert not misplaced, f"test files outside tests/unit/<layer>/, tests/e2e/, tests/acceptance/: {misplaced}"
    # Test modules are imported as packages (tests.unit.pipeline.test_versions and
    # tests.e2e.test_versions may share a file name): every folder holding tests needs __init__.py.
    folders = {p.parent for p in _test_files()}
    bare = sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").is_file())
    assert not bare, f"test folders without __init__.py: {bare}"


def _imports(tree: ast.Module) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_no_test_module_imports_another_or_a_conftest():
    offenders = []
    for path in _test_files():
        for line, name in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            parts = name.split(".")
            if parts[0] == "tests" and any(p.startswith("test_") or p == "conftest" for p in parts[1:]):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {name}")
    for path in sorted((REPO / "benchmarks").rglob("*.py")):
        for line, name in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if name.startswith("tests.") and not name.startswith("tests.helpers"):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {name}")
    assert not offenders, f"import shared builders from tests.helpers instead: {offenders}"


def _is_fixture(fn: ast.FunctionDef) -> bool:
    for dec in fn.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if (isinstance(target, ast.Attribute) and target.attr == "fixture") or (
                isinstance(target, ast.Name) and target.id == "fixture"):
            return True
    return False


def test_conftest_files_hold_fixtures_and_hooks_only():
    offenders = []
    for path in sorted(TESTS.rglob("conftest.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if not (_is_fixture(node) or node.name.startswith("pytest_")):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: def {node.name}")
            elif isinstance(node, ast.ClassDef):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: class {node.name}")
    assert not offenders, f"builders belong in tests/helpers/, not in a conftest.py: {offenders}"


def test_unit_tests_start_no_services_and_browser_tests_are_marked():
    offenders = []
    for path in sorted((TESTS / "unit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and (used := SERVICE_FIXTURES & {a.arg for a in node.args.args}):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.name} uses {sorted(used)}")
    assert not offenders, f"unit tests must not start a Prefect server: move them to tests/e2e/: {offenders}"
    unmarked = [str(p.relative_to(REPO)) for p in _test_files()
                if p.name.startswith("test_") and "acceptance" not in p.relative_to(TESTS).parts and p != Path(__file__).resolve()
                and "chromium" in (text := p.read_text(encoding="utf-8")) and "mark.browser" not in text]
    assert not unmarked, f"tests that drive Chromium need @pytest.mark.browser: {unmarked}"


def test_every_selected_test_under_e2e_is_marked_e2e(request):
    # The marker comes from tests/e2e/conftest.py. Under `make test` this sees every e2e test; under
    # `-m "not e2e"` none is selected, which is the point.
    e2e = TESTS / "e2e"
    items = [item for item in request.session.items if e2e in Path(str(item.path)).resolve().parents]
    unmarked = [item.nodeid for item in items if item.get_closest_marker("e2e") is None]
    assert not unmarked, f"tests under tests/e2e/ without the e2e marker: {unmarked}"
    hook = (e2e / "conftest.py").read_text(encoding="utf-8")
    assert "pytest_collection_modifyitems" in hook and "pytest.mark.e2e" in hook


def test_every_property_runs_the_profiles_examples():
    """The profiles in tests/conftest.py govern every property test: none sets its own example
    count, so CI runs at least 50 examples of each and HYPOTHESIS_PROFILE=explore widens them all."""
    properties = {}
    for path in _test_files():
        if not path.name.startswith("test_"):
            continue
        rel = path.relative_to(REPO)
        module = importlib.import_module(".".join(rel.with_suffix("").parts))
        for name, fn in vars(module).items():
            if name.startswith("test_") and hasattr(fn, "hypothesis"):
                properties[f"{rel.as_posix()}::{name}"] = fn._hypothesis_internal_use_settings
    assert len(properties) >= 10, sorted(properties)  # the ones this suite has today, at least
    loaded = settings.default
    assert loaded.max_examples >= CI_EXAMPLES
    wrong = {name: (s.max_examples, s.derandomize) for name, s in properties.items()
             if (s.max_examples, s.derandomize) != (loaded.max_examples, loaded.derandomize)}
    assert not wrong, f"property tests that override the profile (max_examples, derandomize): {wrong}"
