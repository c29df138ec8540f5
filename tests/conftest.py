import asyncio
import json
import time
from pathlib import Path

import nbformat
import pytest

# A real PostgreSQL for the relay's stores, started once per session where a test asks for it
# (tests/relay and the hub tests outside it that start the relay on both backends).
from timeback_jupyter.testing.postgres import postgres_server  # noqa: F401

pytest_plugins = ["pytest_jupyter.jupyter_server"]

STUDENT = "ada@school.edu"
QUIZ = {"id": "fractions-quiz", "name": "Fractions quiz", "course": {"subject": "Math", "grade": 3}}
LESSON = {**QUIZ, "id": "fractions-lesson", "name": "Fractions lesson", "stateful": True}


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "timeback.sqlite3"


@pytest.fixture
def timeback_config(store_path):
    """``c.Timeback`` for server tests: short windows so real kernels fill them quickly."""
    return {
        "store_path": str(store_path),
        "student_email": STUDENT,
        "heartbeat_interval": 0.5,
        "metadata_write_delay": 0.3,
        "drain_interval": 0.1,
    }


@pytest.fixture
def jp_server_config(timeback_config):
    return {
        "ServerApp": {
            "jpserver_extensions": {"timeback_jupyter": True},
            # any handler without an auth decorator fails loudly (as the extension template does)
            "allow_unauthenticated_access": False,
        },
        "MultiKernelManager": {"default_kernel_name": "python3"},
        "Timeback": timeback_config,
    }


def write_notebook(root: Path, name: str, timeback: dict | None = None, cells=("x = 1",)) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    if timeback is not None:
        nb.metadata["timeback"] = timeback
    (root / name).write_text(nbformat.writes(nb))
    return name


async def wait_for(predicate, timeout=20.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def body(response) -> dict:
    return json.loads(response.body.decode())
