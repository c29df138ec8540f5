"""The composition root: build_core assembles what the server, flush and a lone kernel use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from timeback_jupyter.config import ONEROSTER_BASE_URLS, ConfigError, Credentials, Timeback
from timeback_jupyter.core import (
    SECRET_ENV_VARS,
    CoreError,
    build_core,
    take_credentials,
)
from timeback_jupyter.delivery import DeliveryError, LocalSink, TimebackSink
from timeback_jupyter.identity import IdentityError, placeholder_sourced_id
from timeback_jupyter.model import Activity, CourseRef
from timeback_jupyter.store import Store
from timeback_jupyter.testing.standin import TOKEN_PATH, StandIn

EMAIL = "ada@school.edu"
CLIENT_ID, SECRET = "core-client", "core-secret-never-shown"
CREDS = Credentials(CLIENT_ID, SECRET)
USERS = "/ims/oneroster/rostering/v1p2/users"
QUIZ = Activity("quiz-1", "Quiz 1", CourseRef("Math", 3))


def settings(tmp_path: Path, **knobs: object) -> Timeback:
    knobs.setdefault("environment", "staging")  # not $TIMEBACK_ENV
    return Timeback(store_path=str(tmp_path / "timeback.sqlite3"), **knobs)


@pytest.fixture
def api():
    with StandIn(CLIENT_ID, SECRET) as server:
        server.users[EMAIL] = ["u-ada"]
        yield server


def against(api: StandIn, tmp_path: Path, **knobs: object) -> Timeback:
    return settings(
        tmp_path,
        sink="timeback",
        base_url=api.url,
        auth_url=api.token_url,
        oneroster_base_url=api.url,
        retry_initial=0.05,
        **knobs,
    )


def write_app_config(folder: Path) -> Path:
    path = folder / "timeback.config.json"
    path.write_text(
        json.dumps(
            {
                "name": "Notebook Academy",
                "sensor": "https://notebooks.example.edu",
                "courses": [{"subject": "Math", "grade": 3, "ids": {"staging": "math-3-stg"}}],
            }
        )
    )
    return path


@pytest.mark.asyncio
async def test_the_local_sink_core_records_and_delivers_with_no_setup(tmp_path):
    core = build_core(settings(tmp_path), environ={"JUPYTERHUB_USER": "kim"}, credentials=None)
    assert isinstance(core.sink, LocalSink) and core.local
    assert core.connection is None and core.resolver is None
    assert core.student is not None and core.student.email == "kim@students.local"
    assert core.app_config is not None and core.app_config.path is None  # built-in default
    placeholder = placeholder_sourced_id(core.student)
    assert core.actor is not None
    assert core.actor.id == f"{ONEROSTER_BASE_URLS['staging']}{USERS}/{placeholder}"
    tracker = core.tracker()
    run = tracker.start(QUIZ, path="quiz.ipynb").run
    tracker.complete(run.id, xp_earned=3)
    report = await core.drainer.flush(timeout=10)
    await core.drainer.stop()
    assert report.sent >= 1 and report.remaining == 0  # the completion and its last window
    assert core.sink.accepted == report.sent
    await core.aclose()
    assert (tmp_path / "timeback.sqlite3").exists()


@pytest.mark.asyncio
async def test_the_timeback_sink_core_sends_as_the_configured_student(api, tmp_path):
    write_app_config(tmp_path)
    cfg = against(api, tmp_path, student_id="s-42")
    core = build_core(
        cfg, environ={"TIMEBACK_STUDENT_EMAIL": EMAIL}, credentials=CREDS, search=(str(tmp_path),)
    )
    assert isinstance(core.sink, TimebackSink) and not core.local
    assert core.app_config is not None and core.app_config.name == "Notebook Academy"
    assert core.actor is not None and core.actor.id == f"{api.url}{USERS}/s-42"
    assert core.resolver is None
    assert core.connection is not None and core.connection.credentials == CREDS
    assert SECRET not in repr(core.sink) + repr(core.connection)
    tracker = core.tracker()
    run = tracker.start(QUIZ, path="quiz.ipynb").run
    tracker.complete(run.id, xp_earned=3)
    report = await core.drainer.flush(timeout=10)
    await core.drainer.stop()
    await core.aclose()
    assert report.sent == len(api.received) and "ActivityEvent" in [e["type"] for e in api.received]


@pytest.mark.asyncio
async def test_a_student_found_by_email_and_the_sends_share_one_token(api, tmp_path):
    write_app_config(tmp_path)
    cfg = against(api, tmp_path)
    core = build_core(
        cfg, environ={"TIMEBACK_STUDENT_EMAIL": EMAIL}, credentials=CREDS, search=(str(tmp_path),)
    )
    assert core.actor is None and core.resolver is not None
    with pytest.raises(CoreError, match="not known yet"):
        core.tracker()
    actor = await core.resolver.resolve(core.student)
    assert actor.id == f"{api.url}{USERS}/u-ada"
    tracker = core.tracker(actor)
    run = tracker.start(QUIZ, path="quiz.ipynb").run
    tracker.complete(run.id, xp_earned=3)
    report = await core.drainer.flush(timeout=10)
    await core.drainer.stop()
    await core.aclose()
    assert report.sent == len(api.received) >= 1
    assert [r.path for r in api.requests if r.path in (TOKEN_PATH, USERS)] == [TOKEN_PATH, USERS]


def test_the_timeback_sink_without_credentials_is_refused_before_the_store(tmp_path):
    cfg = settings(tmp_path, sink="timeback", student_id="s-42")
    with pytest.raises(DeliveryError, match="no credentials.*TIMEBACK_CLIENT_ID"):
        build_core(cfg, environ={"TIMEBACK_STUDENT_EMAIL": EMAIL}, credentials=None)
    assert not (tmp_path / "timeback.sqlite3").exists()


def test_parts_fail_with_their_own_errors(tmp_path):
    with pytest.raises(IdentityError, match="no student identity"):
        build_core(settings(tmp_path, sink="timeback"), environ={}, credentials=CREDS)
    bad = settings(tmp_path, config_file=str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="no such file"):
        build_core(bad, environ={"TIMEBACK_STUDENT_EMAIL": EMAIL}, credentials=None)
    with pytest.raises(DeliveryError, match="batch_size"):
        build_core(settings(tmp_path, batch_size=0), environ={}, credentials=None, identify=False)


def test_the_oneroster_url_falls_back_to_the_environments(tmp_path):
    env = {"TIMEBACK_STUDENT_EMAIL": EMAIL}
    for environment in ("staging", "production"):
        cfg = settings(tmp_path, environment=environment)
        core = build_core(cfg, environ=env, credentials=None)
        assert core.oneroster_url == ONEROSTER_BASE_URLS[environment]
        assert core.actor is not None
        assert core.actor.id.startswith(ONEROSTER_BASE_URLS[environment] + USERS)
        core.store.close()
    proxy = "https://roster.proxy.example"
    core = build_core(settings(tmp_path, oneroster_base_url=proxy), environ=env, credentials=None)
    assert core.actor is not None and core.actor.id.startswith(proxy + USERS)
    core.store.close()


def test_delivering_only_needs_no_student(api, tmp_path):
    cfg = against(api, tmp_path)
    opened: list[Store] = []

    def open_store() -> Store:
        opened.append(Store(cfg.store_path, busy_timeout=0.5))
        return opened[-1]

    core = build_core(cfg, environ={}, credentials=CREDS, identify=False, open_store=open_store)
    assert core.store is opened[0] and isinstance(core.sink, TimebackSink)
    assert (core.student, core.app_config, core.actor, core.resolver) == (None, None, None, None)
    with pytest.raises(CoreError, match="identify=True"):
        core.tracker()
    core.store.close()


def test_taking_the_credentials_can_scrub_the_secrets():
    environ = {
        "TIMEBACK_API_CLIENT_ID": CLIENT_ID,
        "TIMEBACK_API_CLIENT_SECRET": SECRET,
        "TIMEBACK_CLIENT_SECRET": "legacy-secret",
        "CALIPER_CLIENT_SECRET": "caliper-secret",
        "HOME": "/home/ada",
    }
    assert take_credentials(dict(environ)) == CREDS
    kept = dict(environ)
    take_credentials(kept)
    assert kept == environ  # reading alone changes nothing
    assert take_credentials(environ, scrub=True) == CREDS
    assert environ == {"TIMEBACK_API_CLIENT_ID": CLIENT_ID, "HOME": "/home/ada"}
    assert not set(SECRET_ENV_VARS) & set(environ)
    assert take_credentials(environ) is None  # read once: a second read finds no secret


def test_the_core_imports_nothing_of_jupyter_server_or_the_kernel():
    code = (
        "import json, sys\nimport timeback_jupyter.core\nprint(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    modules = json.loads(done.stdout)
    for banned in ("jupyter_server", "tornado", "ipykernel", "timeback_jupyter.server"):
        assert not [m for m in modules if m == banned or m.startswith(banned + ".")], banned
