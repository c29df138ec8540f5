"""A real JupyterHub for the tests in this folder, one per test session (a start costs seconds).

Needs root (the hub switches to each student's OS user), ``useradd``, and
configurable-http-proxy from npm (``make hub-deps`` puts it in ``.cache/chp``; it is installed
here too when missing). Students ``tb-alice`` and ``tb-bob`` are OS users made here; their homes
are emptied at the start of the session.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from timeback_jupyter.testing.hub import Hub
from timeback_jupyter.testing.hub_env import ensure_student, give, student_python
from timeback_jupyter.testing.standin import StandIn

REPO = Path(__file__).resolve().parents[2]
DOCS_CONFIG = REPO / "docs" / "jupyterhub_config.py"
NOTEBOOKS = REPO / "notebooks"
CHP_DIR = REPO / ".cache" / "chp"
STUDENTS = ("tb-alice", "tb-bob")
CLIENT_ID, CLIENT_SECRET = "hub-standin-client", "hub-standin-secret-0b1c7e"


def chp() -> Path:
    """configurable-http-proxy 5 from npm, installed once into the checkout's cache."""
    binary = CHP_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
    if not binary.exists():
        if shutil.which("npm") is None:
            pytest.fail("the hub tests need npm (Node 20) for configurable-http-proxy")
        subprocess.run(
            ["npm", "install", "--prefix", str(CHP_DIR), "--no-audit", "--no-fund",
             "configurable-http-proxy@5"],
            check=True, capture_output=True,
        )  # fmt: skip
    return binary


@pytest.fixture(scope="session")
def hub_students() -> dict[str, pwd.struct_passwd]:
    if os.geteuid() != 0:
        pytest.fail("the hub tests run as root: the hub starts each student's server as them")
    return {name: ensure_student(name) for name in STUDENTS}


@pytest.fixture(scope="session")
def hub_standin() -> Iterator[StandIn]:
    with StandIn(CLIENT_ID, CLIENT_SECRET) as standin:
        yield standin


@pytest.fixture(scope="session")
def hub(
    hub_students: dict[str, pwd.struct_passwd],
    hub_standin: StandIn,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Hub]:
    workdir = tmp_path_factory.mktemp("hub")
    the_hub = Hub(
        workdir,
        students=STUDENTS,
        python=student_python(REPO / ".cache" / "hub-python"),
        chp=chp(),
        docs_config=DOCS_CONFIG,
        relay=False,
        environ={
            "TIMEBACK_API_CLIENT_ID": CLIENT_ID,
            "TIMEBACK_API_CLIENT_SECRET": CLIENT_SECRET,
        },
    )
    try:
        yield the_hub.start()
    finally:
        the_hub.close()
        end_student_processes(hub_students.values())


def end_student_processes(students: object) -> None:
    """Kill what the students still run (the hub stops their servers; a kernel may linger)."""
    uids = {s.pw_uid for s in students}  # type: ignore[attr-defined]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid in uids:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass


@pytest.fixture(scope="session")
def quiz_for(hub_students: dict[str, pwd.struct_passwd]):
    """Put the example course (notebooks + timeback.config.json) into a student's home."""

    def put(user: str, folder: str = "course") -> str:
        entry = hub_students[user]
        for name in ("fractions-quiz.ipynb", "timeback.config.json"):
            give(entry, NOTEBOOKS / name, Path(entry.pw_dir) / folder / name)
        return f"{folder}/fractions-quiz.ipynb"

    return put
