"""Start-up cost (issue 7): what loading the extension imports, each time in a fresh interpreter.

The official SDK (timeback_caliper, timeback_common), its pydantic models and httpx cost more to
import than the rest of the extension. Jupyter's start and ``%load_ext timeback_jupyter`` must
not pay for them: they are imported where events are built or sent, and the server warms them
in a thread once it has started. These tests fail if an eager import comes back.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("httpx", "pydantic", "timeback_common", "timeback_caliper")
# The kernel side talks to its server with the standard library; the server's core (store,
# tracker, delivery) is for a kernel that no server started, not for loading the magic.
KERNEL_MUST_NOT_LOAD = (
    *HEAVY,
    "timeback_jupyter.server",
    "timeback_jupyter.caliper",
    "timeback_jupyter.delivery",
    "timeback_jupyter.store",
    "timeback_jupyter.tracker",
)
REPORT = "\nimport json, sys\nprint(json.dumps(sorted(set(sys.modules))))\n"


def loaded(code: str, tmp_path: Path, *args: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` (isolated Jupyter dirs)."""
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
    }
    for name in ("TIMEBACK_STUDENT_ID", "TIMEBACK_STUDENT_EMAIL", "JPY_SESSION_NAME"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", code + REPORT, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def among(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_the_probe_sees_an_eager_import(tmp_path):
    # The checks below are only as good as this: importing the SDK shows up.
    assert among(loaded("import timeback_caliper", tmp_path), HEAVY)


def test_loading_the_server_extension_imports_no_event_library(tmp_path):
    code = (
        "import timeback_jupyter\n"
        "[point] = timeback_jupyter._jupyter_server_extension_points()\n"
        "import timeback_jupyter.server.app, timeback_jupyter.server.handlers\n"
    )
    assert among(loaded(code, tmp_path), HEAVY) == []


# A real ServerApp with only our extension: initialize() links and loads it (initialize_settings
# builds the store, sink and drainer; initialize_handlers). Then, if asked, the loop runs its
# start and the warm-up thread must bring the libraries in, off the loop.
SERVER = """
import asyncio, json, sys, time
from jupyter_server.serverapp import ServerApp
from traitlets.config import Config

config = Config(json.loads(sys.argv[1]))
app = ServerApp(config=config)
app.initialize(argv=[], find_extensions=False, new_httpserver=False)
ext = app.web_app.settings["timeback"]
assert ext.drainer is not None, ext.problem
print(json.dumps({"problem": ext.problem, "sink": ext.drainer.sink.name}), file=sys.stderr)
HEAVY = json.loads(sys.argv[2])
found = [m for m in HEAVY if m in sys.modules]
assert not found, f"initializing the extension imported {found}"

async def start_and_stop():
    from timeback_jupyter.server.app import EVENT_IMPORTS, NETWORK_IMPORTS

    await app._post_start()
    wanted = EVENT_IMPORTS + (NETWORK_IMPORTS if ext.drainer.sink.name != "local" else ())
    deadline = time.monotonic() + 60
    while not all(m in sys.modules for m in wanted):
        assert time.monotonic() < deadline, "the warm-up did not import " + repr(wanted)
        await asyncio.sleep(0.05)
    await ext.stop_extension()

if sys.argv[3] == "start":
    asyncio.run(start_and_stop())
"""

DEAD = "http://127.0.0.1:1"  # nothing listens: a call there fails at once
EMAIL = "ada@school.edu"


@pytest.mark.parametrize(
    ("timeback", "start"),
    [
        pytest.param({}, True, id="local-sink"),
        pytest.param({"sink": "timeback", "student_id": "s-42"}, True, id="timeback-sink"),
        pytest.param(
            {"sink": "timeback", "oneroster_base_url": DEAD, "auth_url": f"{DEAD}/token"},
            True,
            id="timeback-sink-looking-the-student-up",
        ),
        # The environment's own token URL, found without the SDK's table; not started, since
        # the lookup would then go to Timeback.
        pytest.param({"sink": "timeback"}, False, id="timeback-sink-default-urls"),
    ],
)
def test_initializing_the_extension_imports_no_event_library(
    tmp_path, monkeypatch, timeback, start
):
    monkeypatch.setenv("TIMEBACK_API_CLIENT_ID", "startup-client")
    monkeypatch.setenv("TIMEBACK_API_CLIENT_SECRET", "startup-secret")
    if start and timeback.get("sink") == "timeback":
        timeback = {"base_url": DEAD, "auth_url": f"{DEAD}/token", **timeback}
    config = {
        "ServerApp": {"jpserver_extensions": {"timeback_jupyter": True}, "root_dir": str(tmp_path)},
        "Timeback": {
            "store_path": str(tmp_path / "timeback.sqlite3"),
            "student_email": EMAIL,
            **timeback,
        },
    }
    # The script asserts; a failed assertion is a non-zero exit, which loaded() reports.
    argv = (json.dumps(config), json.dumps(HEAVY), "start" if start else "init")
    loaded(SERVER, tmp_path, *argv)


# After the warm-up, building, checking and sending events imports nothing more: the first
# heartbeat and the first send run on Jupyter's loop and must not stall it importing.
AFTER_WARM_UP = """
import asyncio, sys
from timeback_jupyter.server import app
network = sys.argv[1] == "network"
app._warm_imports(network)
before = set(sys.modules)

from timeback_jupyter import caliper, delivery, identity
from timeback_jupyter.config import ONEROSTER_BASE_URLS, Credentials, parse_app_config
from timeback_jupyter.model import Activity, Completion, CourseRef, Window

DEAD, ONEROSTER = "http://127.0.0.1:1", ONEROSTER_BASE_URLS["staging"]
grade = {"subject": "Math", "grade": 3}
config = parse_app_config(
    {"name": "A", "sensor": "https://nb.example.edu/",
     "courses": [{**grade, "ids": {"staging": "m3"}}]}, "staging")
activity = Activity(id="quiz", name="Quiz", course=CourseRef.from_dict(grade))
course = config.course_for(activity.course)
target = caliper.Target(app_name="A", sensor=course.sensor, environment="staging",
                        oneroster_base_url=ONEROSTER, course=course, activity=activity)
actor = caliper.Actor(id=caliper.user_url(ONEROSTER, "s-42"), email="ada@school.edu")
run = "3f2b8c1e-6d4a-4e8b-9a1c-2b7d5e9f0a11"
window = Window(run_id=run, start=10.0, end=25.0, active=14.0, inactive=1.0)
done = Completion(run_id=run, xp_earned=1.0, at=30.0, total_questions=2, correct_questions=1)
events = [caliper.time_spent_event(window, run, actor, target),
          caliper.completion_event(done, run, 1, actor, target)]
envelope = caliper.envelope(events, target.sensor, 40.0)
try:
    caliper.validate_event({**events[0], "eventTime": "yesterday"})
    raise AssertionError("a bad eventTime passed")
except caliper.CaliperInputError as err:
    assert "eventTime" in str(err), err

async def send():
    await delivery.LocalSink().send(envelope)
    if not network:
        return
    creds = Credentials("startup-client", "startup-secret")
    sink = delivery.TimebackSink(creds, base_url=DEAD, auth_url=DEAD + "/token", timeout=2)
    try:
        await sink.send(envelope)
        raise AssertionError("an envelope reached a dead URL")
    except delivery.RetryableError as err:
        assert "startup-secret" not in str(err), err
    assert await sink.exists(events[0]["id"]) is None
    await sink.aclose()
    lookup = identity.OneRosterLookup(DEAD, DEAD + "/token", creds, timeout=2)
    try:
        await lookup("ada@school.edu")
        raise AssertionError("a lookup reached a dead URL")
    except identity.IdentityLookupError as err:
        assert "startup-secret" not in str(err), err
    await lookup.aclose()
    identity.OneRosterLookup(DEAD, None, creds)._token_url()

asyncio.run(send())
new = sorted(set(sys.modules) - before)
assert not new, f"imported after the warm-up: {new}"
"""


@pytest.mark.parametrize("sink", ["local", "network"])
def test_the_warm_up_covers_building_and_sending_events(tmp_path, sink):
    assert among(loaded(AFTER_WARM_UP, tmp_path, sink), HEAVY)


def test_the_kernel_side_imports_no_http_library(tmp_path):
    code = (
        "import timeback_jupyter\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "shell.run_line_magic('load_ext', 'timeback_jupyter')\n"
        "assert 'timeback' in shell.magics_manager.magics['line']\n"
        "from timeback_jupyter import CompletionButton, exercise\n"
        "import timeback_jupyter.kernel.bridge, timeback_jupyter.kernel.session\n"
    )
    assert among(loaded(code, tmp_path), KERNEL_MUST_NOT_LOAD) == []


def test_a_kernel_recording_alone_builds_and_stores_events_without_the_sdk(tmp_path):
    # With no server the kernel builds events itself, in cell hooks: on the fast path
    # (caliper/events.py), so neither the SDK nor pydantic is ever imported in the kernel.
    code = (
        "import sys\n"
        "from timeback_jupyter.kernel.standalone import LocalBackend\n"
        "from timeback_jupyter.model import Activity\n"
        "from timeback_jupyter.store import Store\n"
        "backend = LocalBackend(store_path=sys.argv[1],"
        " environ={'TIMEBACK_STUDENT_EMAIL': 'ada@school.edu'})\n"
        "activity = Activity.from_dict({'id': 'q', 'name': 'Q',"
        " 'course': {'subject': 'Math', 'grade': 3}})\n"
        "backend.start(activity, new_attempt=False)\n"
        "backend.complete({})\n"
        "backend.close()\n"
        "kinds = [e['type'] for e in Store(sys.argv[1]).events()]\n"
        "assert 'ActivityEvent' in kinds, kinds\n"
    )
    modules = loaded(code, tmp_path, str(tmp_path / "standalone.sqlite3"))
    assert among(modules, HEAVY) == []
