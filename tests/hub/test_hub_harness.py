"""The harness itself: a real hub whose students are OS users, each in a server of their own."""

from __future__ import annotations

import json
import os
import pwd
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from timeback_jupyter.testing.hub import Hub
from timeback_jupyter.testing.hub_env import students_lock

from .conftest import DOCS_CONFIG, chp

pytestmark = pytest.mark.slow


def test_each_student_runs_as_their_own_os_user_and_reads_no_one_elses_files(
    hub: Hub, hub_students: dict[str, pwd.struct_passwd]
) -> None:
    alice, bob = hub_students["tb-alice"], hub_students["tb-bob"]
    hub.spawn("tb-bob").put_file("secret.txt", "bob's work")
    server = hub.spawn("tb-alice")
    assert hub.proc is not None
    code = textwrap.dedent(f"""
        import json, os
        def tried(path):
            try:
                open(path, "rb").read(1)
                return "read"
            except OSError as err:
                return type(err).__name__
        print(json.dumps({{
            "uid": os.getuid(), "home": os.environ["HOME"],
            "bob": tried({alice.pw_dir.replace("alice", "bob") + "/secret.txt"!r}),
            "hub_db": tried({str(hub.workdir / "jupyterhub.sqlite")!r}),
            "hub_environ": tried("/proc/{hub.proc.pid}/environ"),
            "root_home": tried("/root/.bashrc"),
        }}))
    """)
    ran = server.run_code(code)
    assert ran.error is None, ran.traceback
    seen = json.loads(ran.stdout)
    assert seen == {
        "uid": alice.pw_uid,
        "home": alice.pw_dir,
        "bob": "PermissionError",
        "hub_db": "PermissionError",
        "hub_environ": "PermissionError",
        "root_home": "PermissionError",
    }
    assert bob.pw_uid != alice.pw_uid


def test_one_hub_test_session_at_a_time_holds_the_students(tmp_path) -> None:
    lock = tmp_path / "students.lock"
    entered: list[str] = []
    with students_lock(path=lock):
        entered.append("first")
        with (
            pytest.raises(TimeoutError, match="another hub test session"),
            students_lock(timeout=0.3, path=lock),
        ):
            entered.append("second, while the first held it")
    with students_lock(timeout=0.3, path=lock):  # free again once the first session ends
        entered.append("third, after the first")
    assert entered == ["first", "third, after the first"]


def test_a_hub_killed_before_it_stops_its_proxy_leaves_no_proxy_behind(tmp_path) -> None:
    # JupyterHub starts configurable-http-proxy in a session of its own: a hub killed outright
    # never stops it, and a proxy left holding its ports broke later benchmark runs.
    workdir = tmp_path / "hub"
    hub = Hub(
        workdir,
        students=(),
        python=Path(sys.executable),
        chp=chp(),
        docs_config=DOCS_CONFIG,
        relay=False,
        environ={"TIMEBACK_API_CLIENT_ID": "unused", "TIMEBACK_API_CLIENT_SECRET": "unused"},
    ).start()
    try:
        assert hub.proc is not None
        proxy = int((workdir / "jupyterhub-proxy.pid").read_text())
        assert b"configurable-http-proxy" in Path(f"/proc/{proxy}/cmdline").read_bytes()
        os.kill(hub.proc.pid, signal.SIGKILL)  # only the hub: its proxy lives on
        hub.proc.wait(10)
        assert Path(f"/proc/{proxy}").exists()
    finally:
        hub.close()
    deadline = time.monotonic() + 10
    while _running(proxy) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(proxy)


def _running(pid: int) -> bool:
    try:  # a zombie (killed, not yet reaped by init) no longer runs
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False
