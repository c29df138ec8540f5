"""The fixtures of ``timeback_jupyter.pytest_plugin`` (see there; registered after pytest-jupyter's
so that ``jp_server_config`` here builds on theirs)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from ..kernel.activities import CONFIG_FILE_NAME, find_config
from .notebooks import NotebookRunner
from .standin import StandIn

STUDENT_EMAIL = "student@example.edu"
STUDENT_ID = "standin-student"  # the OneRoster sourcedId the stand-in knows the student by
CLIENT_ID, CLIENT_SECRET = "standin-client", "standin-secret"


@pytest.fixture
def timeback_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    """A running stand-in Timeback: OAuth2 token, Caliper and OneRoster users on 127.0.0.1.

    It validates every event with the official ``timeback_caliper`` models and refuses an
    invalid one, as Timeback does; ``.received`` holds what it accepted. The server's
    credentials point at it, so nothing reaches the real Timeback."""
    with StandIn(CLIENT_ID, CLIENT_SECRET) as standin:
        standin.users[STUDENT_EMAIL] = [STUDENT_ID]
        monkeypatch.setenv("TIMEBACK_API_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("TIMEBACK_API_CLIENT_SECRET", CLIENT_SECRET)
        yield standin


@pytest.fixture
def timeback_app_config(request: pytest.FixtureRequest) -> Path:
    """The course's ``timeback.config.json``: the first one from the test file's folder up.

    Override it to point elsewhere. The server sends to Timeback only for the courses it lists,
    so a notebook whose course is missing there fails here as it would in class."""
    found = find_config(request.path.parent)
    if found is None:
        pytest.fail(
            f"no {CONFIG_FILE_NAME} in {request.path.parent} or above: the Timeback server "
            "needs your app config (its courses and their ids); put it in your project or "
            "override the `timeback_app_config` fixture",
            pytrace=False,
        )
    return found


@pytest.fixture
def timeback_config(
    timeback_standin: StandIn, timeback_app_config: Path, jp_root_dir: Path, tmp_path: Path
) -> dict[str, Any]:
    """``c.Timeback`` of the test server: sending to the stand-in, an isolated store, short
    windows. Override it (taking it as an argument) to change a setting."""
    # The server's root is where a kernel looks for the activities the config declares.
    config_file = jp_root_dir / CONFIG_FILE_NAME
    shutil.copyfile(timeback_app_config, config_file)
    return {
        "sink": "timeback",
        "base_url": timeback_standin.url,
        "auth_url": timeback_standin.token_url,
        "oneroster_base_url": timeback_standin.url,
        "config_file": str(config_file),
        "store_path": str(tmp_path / "timeback.sqlite3"),
        "student_email": STUDENT_EMAIL,
        # Known, not looked up by email: the server records from its first moment.
        "student_id": STUDENT_ID,
        "heartbeat_interval": 1.0,
        "metadata_write_delay": 0.3,
        "drain_interval": 0.1,
        "retry_initial": 0.05,
        "retry_max": 1.0,
    }


@pytest.fixture
def jp_server_config(jp_server_config: Any, timeback_config: dict[str, Any]) -> Config:
    """pytest-jupyter's server with the timeback extension enabled and real Python kernels."""
    config = Config(jp_server_config)
    config.merge(
        Config(
            {
                "ServerApp": {"jpserver_extensions": {"timeback_jupyter": True}},
                # pytest-jupyter's default is an echo kernel
                "MultiKernelManager": {"default_kernel_name": "python3"},
                "Timeback": timeback_config,
            }
        )
    )
    return config


@pytest.fixture
def timeback_notebook(
    jp_serverapp: Any,
    jp_fetch: Any,
    jp_root_dir: Path,
    timeback_standin: StandIn,
    timeback_app_config: Path,
    request: pytest.FixtureRequest,
) -> NotebookRunner:
    """``await timeback_notebook("quiz.ipynb")``: run an activity notebook top to bottom in a
    real kernel of the test server, click its "Mark complete" buttons, and get a
    :class:`~timeback_jupyter.testing.NotebookRecord`: the run, the completion and the Caliper
    events Timeback (the stand-in) accepted. Relative paths are from the test file's folder."""
    return NotebookRunner(
        jp_serverapp,
        jp_fetch,
        jp_root_dir,
        timeback_standin,
        project=timeback_app_config.parent,
        base=request.path.parent,
    )
