"""Through a real hub: a student finds the Timeback secret nowhere they can look, and their own
Jupyter config, which runs code in their server, finds no secret there either."""

from __future__ import annotations

import json
import pwd
from pathlib import Path
from typing import Any

import pytest

from timeback_jupyter.testing.hub import Hub
from timeback_jupyter.testing.hub_env import give
from timeback_jupyter.testing.standin import StandIn

from .conftest import CLIENT_SECRET, SOURCED_IDS
from .relayed import delivered, for_runs

pytestmark = pytest.mark.slow

# Everything a cell can read where a secret might be: every process's environment and command
# line (and whether its memory opens), and the files of the places a deployment keeps config,
# state and temporary files.
SEARCH = """
import json, os, sys
SECRET = {secret!r}.encode()
ROOTS = ["/tmp", "/var/tmp", "/dev/shm", "/run", "/home", "/etc", "/srv", "/opt", sys.prefix]
found, procs, denied, files = [], 0, {{}}, 0
if SECRET in "\\0".join(f"{{k}}={{v}}" for k, v in os.environ.items()).encode():
    found.append("os.environ")
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    for part in ("environ", "cmdline"):
        try:
            with open(f"/proc/{{pid}}/{{part}}", "rb") as f:
                data = f.read()
        except OSError as err:
            denied[f"{{pid}}/{{part}}"] = type(err).__name__
            continue
        procs += 1
        if SECRET in data:
            found.append(f"/proc/{{pid}}/{{part}}")
    try:  # another user's memory: opening it needs ptrace rights over the process
        open(f"/proc/{{pid}}/mem", "rb").close()
    except OSError as err:
        denied[f"{{pid}}/mem"] = type(err).__name__
for root in ROOTS:
    for folder, dirs, names in os.walk(root, onerror=lambda err: None):
        for name in names:
            path = os.path.join(folder, name)
            try:
                if os.path.islink(path) or os.path.getsize(path) > 5_000_000:
                    continue
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            files += 1
            if SECRET in data:
                found.append(path)
print(json.dumps({{"found": found, "procs": procs, "files": files, "denied": denied}}))
"""


def test_a_cell_finds_the_secret_in_no_environment_process_or_file(hub: Hub) -> None:
    relay = hub.relay_pid()
    assert CLIENT_SECRET.encode() in Path(f"/proc/{relay}/environ").read_bytes()  # it is there
    server = hub.spawn("tb-alice")
    # history=False: the search's own text (holding the secret) stays out of IPython's history
    ran = server.run_code(SEARCH.format(secret=CLIENT_SECRET), history=False)
    assert ran.error is None, ran.traceback
    seen = json.loads(ran.stdout)
    assert seen["found"] == []
    assert seen["procs"] >= 4 and seen["files"] >= 100  # the search did read things
    assert hub.proc is not None
    for pid in (hub.proc.pid, relay):
        assert seen["denied"][f"{pid}/environ"] == "PermissionError"
        assert seen["denied"][f"{pid}/mem"] == "PermissionError"


def test_a_config_file_of_the_student_runs_without_the_secret_and_names_no_one_else(
    hub: Hub, hub_standin: StandIn, hub_students: dict[str, pwd.struct_passwd], quiz_for: Any
) -> None:
    alice = hub_students["tb-alice"]
    home = Path(alice.pw_dir)
    config = home / ".jupyter" / "jupyter_server_config.py"
    config.parent.mkdir(exist_ok=True)
    config.write_text(
        "import json, os\n"
        "with open(os.path.expanduser('~/server-environ.json'), 'w') as f:\n"
        "    json.dump(dict(os.environ), f)\n"
        "c.Timeback.student_email = 'tb-bob@school.example'\n"
        "c.Timeback.student_id = 'sid-tb-bob'\n"
        "c.Timeback.sink = 'timeback'\n"
        f"c.Timeback.base_url = {hub_standin.url!r}\n"
        f"c.Timeback.auth_url = {hub_standin.token_url!r}\n"
    )
    give(alice, config.parent, config.parent)
    try:
        hub.stop_server("tb-alice")
        server = hub.spawn("tb-alice")
        environ = json.loads((home / "server-environ.json").read_text())
        assert not [k for k, v in environ.items() if CLIENT_SECRET in v]
        assert not [k for k in environ if k.startswith(("TIMEBACK_", "CALIPER_")) and "CLIENT" in k]
        assert environ["TIMEBACK_RELAY_URL"].endswith("/services/timeback-relay/")
        status = server.status()
        assert status["sink"] == "relay" and status["credentials"] is None
        assert status["identity"]["email"] == "tb-alice@jupyterhub.invalid"
        run = server.run_notebook(quiz_for("tb-alice", "own-config"))
        assert run.run_id is not None
        delivered(hub, server)
        events = for_runs(hub_standin, [run.run_id])
        assert events
        assert {e["actor"]["id"].rsplit("/", 1)[-1] for e in events} == {SOURCED_IDS["tb-alice"]}
    finally:
        config.unlink()


def test_system_wide_py_and_json_config_reach_every_students_server(
    hub: Hub, system_config_dir: Path
) -> None:
    (system_config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"Timeback": {"environment": "production"}})
    )
    (system_config_dir / "jupyter_server_config.py").write_text(
        "c.Timeback.app_name = 'Set system-wide'\n"
    )
    for path in system_config_dir.iterdir():
        path.chmod(0o644)
    try:
        hub.stop_server("tb-bob")
        status = hub.spawn("tb-bob").status()
        assert status["environment"] == "production"  # from the .json
        assert status["app"]["name"] == "Set system-wide"  # from the .py
        assert status["sink"] == "relay" and status["problem"] is None
    finally:
        for path in system_config_dir.iterdir():
            path.unlink()
