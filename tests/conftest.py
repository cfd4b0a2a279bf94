"""Shared fixtures: real digit images written as class folders, an isolated cache, Prefect harness.

Fixtures only: the builders they use live in tests/helpers/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from tests.helpers import CI_EXAMPLES, digit_images, write_image_folder

# These profiles govern every property test (no test sets max_examples; tests/test_structure.py checks).
# CI replays the same 50 examples per property every run (derandomized: a red CI must mean a
# regression, not a new draw); HYPOTHESIS_PROFILE=explore searches 500 fresh examples per
# property locally and keeps the failures it finds in .hypothesis/.
settings.register_profile("ci", max_examples=CI_EXAMPLES, derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session", autouse=True)
def winnow_cache(tmp_path_factory) -> Path:
    """Bundled datasets are materialised into a per-session cache, never the user's."""
    path = tmp_path_factory.mktemp("winnow-cache")
    os.environ["WINNOW_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect database for every test that runs a whole flow."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def digit_folder(tmp_path) -> Path:
    """120 real digits (10 classes) as PNGs in class folders."""
    root = tmp_path / "digits"
    write_image_folder(root, digit_images(120))
    return root
