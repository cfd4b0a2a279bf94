"""Fixtures of the acceptance suite: one working folder and one Prefect server for the session.

Every test under tests/acceptance/ is marked `acceptance` (`make test-fast` leaves them out).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.readme_workspace import Workspace, make_workspace

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    # A conftest hook sees every collected item of the session, not only this folder's.
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.acceptance)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, winnow_cache) -> Workspace:
    """The shared working folder (tests/helpers/readme_workspace.py), built once."""
    return make_workspace(tmp_path_factory.mktemp("readme") / "work")


@pytest.fixture(scope="session")
def prefect_api(workspace, tmp_path_factory):
    """`prefect server start` (the README's), on a free port; stopped by PID after the session."""
    from tests.helpers.prefect_server import ServerDidNotStart, running_prefect_server

    try:
        with running_prefect_server(tmp_path_factory.mktemp("prefect-server")) as api:
            workspace.server_url = api
            yield api
            workspace.server_url = None
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))
