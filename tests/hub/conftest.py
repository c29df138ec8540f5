"""A real JupyterHub for the tests in this folder, one per test session (a start costs seconds).

Needs root (the hub switches to each student's OS user), ``useradd``, and
configurable-http-proxy from npm (``make hub-deps`` puts it in ``.cache/chp``; it is installed
here too when missing). Students ``tb-alice`` and ``tb-bob`` are OS users made here; their homes
are emptied at the start of the session.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from timeback_jupyter.relay.access import (
    custom_scopes,
    relay_service_role,
    service_oauth,
    teacher_role,
)
from timeback_jupyter.testing.hub import RELAY_SERVICE, Hub
from timeback_jupyter.testing.hub_env import ensure_student, give, student_python, students_lock
from timeback_jupyter.testing.standin import StandIn

REPO = Path(__file__).resolve().parents[2]
DOCS_CONFIG = REPO / "docs" / "jupyterhub_config.py"
NOTEBOOKS = REPO / "notebooks"
CHP_DIR = REPO / ".cache" / "chp"
STUDENTS = ("tb-alice", "tb-bob")
EMAIL_TEMPLATE = "{name}@school.example"
SOURCED_IDS = {name: f"sid-{name}" for name in STUDENTS}  # the stand-in's OneRoster users
CLIENT_ID = "hub-standin-client"
# Made per session and written to no file: a student finding it anywhere means it leaked.
CLIENT_SECRET = "hub-secret-" + secrets.token_hex(16)
CLASS, TEACHER = "class-a", "tb-teacher"  # the students' class and its teacher (no OS user)
# The relay's pages, as a school adds them (docs/architecture.md): the students' class, its teacher.
PAGES_CONFIG = f"""
c.Authenticator.allowed_users.add({TEACHER!r})
c.JupyterHub.custom_scopes = {custom_scopes(RELAY_SERVICE)!r}
c.JupyterHub.load_groups = {{{CLASS!r}: {{"users": {list(STUDENTS)!r}}}}}
c.JupyterHub.load_roles += [
    {teacher_role("teacher-" + CLASS, [TEACHER], [CLASS], RELAY_SERVICE)!r},
    {relay_service_role(RELAY_SERVICE)!r},
]
relay.update({service_oauth(RELAY_SERVICE)!r})
# tests in Chromium wait for a notebook's kernel through the app (tests/browser/lab.py)
c.Spawner.args.append("--LabApp.expose_app_in_browser=True")
"""
QUIZ_XP = 5  # the school's catalog: what the fractions quiz is worth, whatever a notebook says


def catalog() -> dict[str, object]:
    """The school's timeback.config.json on the hub's side: the example course and its quiz."""
    config = json.loads((NOTEBOOKS / "timeback.config.json").read_text())
    config["courses"][0]["activities"] = [
        {"id": "fractions-quiz", "name": "Fractions quiz", "xp": QUIZ_XP,
         "masteryThreshold": 0.9, "xpWithoutQuestions": False},
    ]  # fmt: skip
    return config


def relay_config(workdir: Path, standin: StandIn) -> Path:
    """The relay's jupyter_timeback_relay_config.py: the docs' settings, this machine's paths
    and the stand-in Timeback's addresses; quick delivery."""
    (workdir / "timeback.config.json").write_text(json.dumps(catalog()))
    path = workdir / "jupyter_timeback_relay_config.py"
    path.write_text(
        f"c.Relay.catalog = {str(workdir / 'timeback.config.json')!r}\n"
        f"c.Relay.email_template = {EMAIL_TEMPLATE!r}\n"
        f"c.Relay.db_url = 'sqlite:///{workdir}/relay.sqlite3'\n"
        f"c.Timeback.base_url = {standin.url!r}\n"
        f"c.Timeback.auth_url = {standin.token_url!r}\n"
        f"c.Timeback.oneroster_base_url = {standin.url!r}\n"
        "c.Timeback.drain_interval = 0.1\n"
        "c.Timeback.retry_initial = 0.05\n"
        "c.Timeback.retry_max = 1.0\n"
    )
    return path


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
def hub_students() -> Iterator[dict[str, pwd.struct_passwd]]:
    if os.geteuid() != 0:
        pytest.fail("the hub tests run as root: the hub starts each student's server as them")
    with students_lock():  # the students are the machine's: one session at a time
        yield {name: ensure_student(name) for name in STUDENTS}


@pytest.fixture(scope="session")
def hub_standin() -> Iterator[StandIn]:
    with StandIn(CLIENT_ID, CLIENT_SECRET) as standin:
        for name, sourced_id in SOURCED_IDS.items():
            standin.users[EMAIL_TEMPLATE.format(name=name)] = [sourced_id]
        yield standin


@pytest.fixture(scope="session")
def system_config_dir() -> Iterator[Path]:
    """A system-wide Jupyter config folder of the students' servers (named to them with
    ``$JUPYTER_CONFIG_PATH``, searched where /etc/jupyter is: the machine's own is not ours)."""
    folder = Path(tempfile.mkdtemp(prefix="timeback-hub-etc-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.fixture(scope="session")
def hub(
    hub_students: dict[str, pwd.struct_passwd],
    hub_standin: StandIn,
    system_config_dir: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Hub]:
    # Root's own (0700), outside pytest's basetemp: kept after the run for its log.
    workdir = Path(tempfile.mkdtemp(prefix="timeback-hub-"))
    config = relay_config(workdir, hub_standin)
    the_hub = Hub(
        workdir,
        students=STUDENTS,
        python=student_python(REPO / ".cache" / "hub-python"),
        chp=chp(),
        docs_config=DOCS_CONFIG,
        relay=True,
        relay_args=[f"--config={config}"],
        server_environment={"JUPYTER_CONFIG_PATH": str(system_config_dir)},
        extra_config=PAGES_CONFIG,
        environ={
            "TIMEBACK_API_CLIENT_ID": CLIENT_ID,
            "TIMEBACK_API_CLIENT_SECRET": CLIENT_SECRET,
        },
    )
    request.config.stash[HUB_KEY] = the_hub
    try:
        yield the_hub.start()
    finally:
        the_hub.close()
        end_student_processes(hub_students.values())
        for child in workdir.iterdir():
            if child.name != "hub.log":
                shutil.rmtree(child) if child.is_dir() else child.unlink()


HUB_KEY = pytest.StashKey[Hub]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """A failed hub test shows the end of the hub's log (its servers' and the relay's too)."""
    report = yield
    the_hub = item.config.stash.get(HUB_KEY, None)
    if report.failed and the_hub is not None:  # type: ignore[attr-defined]
        report.sections.append(("hub log", f"{the_hub.log_path}\n{the_hub.log_tail(6000)}"))  # type: ignore[attr-defined]
    return report


def end_student_processes(students: object) -> None:
    """Kill what the students still run (the hub stops their servers; a kernel may linger)."""
    uids = {s.pw_uid for s in students}  # type: ignore[attr-defined]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            # a process may end between the listing and the kill: nothing left to do then
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                if entry.stat().st_uid in uids:
                    os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture(scope="session")
def quiz_for(hub_students: dict[str, pwd.struct_passwd]):
    """Put the example course (notebooks + timeback.config.json) into a student's home."""

    def put(user: str, folder: str = "course", **activity: object) -> str:
        """The quiz into ``~/<folder>/``; ``activity``: keys of its metadata changed (as a
        student editing their copy would)."""
        entry = hub_students[user]
        home = Path(entry.pw_dir)
        give(entry, NOTEBOOKS / "timeback.config.json", home / folder / "timeback.config.json")
        notebook = json.loads((NOTEBOOKS / "fractions-quiz.ipynb").read_text())
        notebook["metadata"]["timeback"]["activity"].update(activity)
        target = home / folder / "fractions-quiz.ipynb"
        target.write_text(json.dumps(notebook))
        give(entry, target, target)
        return f"{folder}/fractions-quiz.ipynb"

    return put
