"""Hub mode: a student's server on JupyterHub whose events go through the relay. The student is
the hub user and nobody else, no Timeback credential is read, and a relay that is missing or
cannot be reached is an error on the status, never a quiet local fallback."""

from __future__ import annotations

import logging
import os
import uuid

import pytest

from timeback_jupyter.config import Credentials, Timeback
from timeback_jupyter.core import build_core, take_credentials
from timeback_jupyter.delivery import DeliveryError
from timeback_jupyter.delivery.relay import RelaySink
from timeback_jupyter.identity import IdentityError

from .conftest import QUIZ, body, wait_for, write_notebook
from .relay import hub as shared
from .relay.hub import STUDENTS
from .relay.hub import free_port as unused_port
from .test_server import kernel_client, open_notebook

SECRET = "a-secret-the-student-server-must-never-read"
HUB_TOKEN = "the-servers-own-hub-token"


def hub_environ(relay_url: str, **more: str) -> dict[str, str]:
    return {
        "TIMEBACK_RELAY_URL": relay_url,
        "JUPYTERHUB_USER": "ada",
        "JUPYTERHUB_API_TOKEN": HUB_TOKEN,
        **more,
    }


def nowhere() -> str:
    return f"http://127.0.0.1:{unused_port()}/services/timeback-relay/"


# ---- the composition root ------------------------------------------------------------------


def test_the_hub_user_is_the_student_whatever_else_says(tmp_path, caplog):
    settings = Timeback(
        store_path=str(tmp_path / "s.sqlite3"),
        sink="timeback",  # the student's own config: ignored on a hub
        student_email="eve@school.edu",
        student_id="eve-id",
        student_email_template="{username}@elsewhere.edu",
    )
    environ = hub_environ(
        nowhere(),
        TIMEBACK_STUDENT_EMAIL="mallory@school.edu",
        TIMEBACK_STUDENT_ID="mallory-id",
        TIMEBACK_CLIENT_ID="id",
        TIMEBACK_CLIENT_SECRET=SECRET,
    )
    with caplog.at_level(logging.WARNING):
        core = build_core(settings, environ=environ, credentials=Credentials("id", SECRET))
    try:
        assert isinstance(core.sink, RelaySink)
        assert settings.sink == "relay"
        assert core.credentials is None and core.connection is None
        assert core.student.email == "ada@jupyterhub.invalid"
        assert core.student.sourced_id is None
        assert core.actor is not None and core.resolver is None  # the relay stamps the actor
        ignored = [r.getMessage() for r in caplog.records if "hub user" in r.getMessage()]
        assert len(ignored) == 1
        for name in (
            "c.Timeback.student_email",
            "c.Timeback.student_id",
            "c.Timeback.student_email_template",
            "$TIMEBACK_STUDENT_EMAIL",
            "$TIMEBACK_STUDENT_ID",
        ):
            assert name in ignored[0]
        assert "the timeback sink" in caplog.text
    finally:
        core.store.close()


def test_hub_mode_never_reads_the_credentials_but_scrubs_them():
    environ = hub_environ(nowhere(), TIMEBACK_CLIENT_ID="id", TIMEBACK_CLIENT_SECRET=SECRET)
    assert take_credentials(environ, scrub=True) is None
    assert "TIMEBACK_CLIENT_SECRET" not in environ


def test_hub_mode_needs_the_hub_user_and_token(tmp_path):
    settings = Timeback(store_path=str(tmp_path / "s.sqlite3"))
    environ = hub_environ(nowhere())
    del environ["JUPYTERHUB_USER"]
    with pytest.raises(IdentityError, match=r"\$JUPYTERHUB_USER is not set"):
        build_core(settings, environ=environ, credentials=None)
    environ = hub_environ(nowhere())
    del environ["JUPYTERHUB_API_TOKEN"]
    with pytest.raises(DeliveryError, match=r"JUPYTERHUB_API_TOKEN"):
        build_core(settings, environ=environ, credentials=None)
    with pytest.raises(DeliveryError, match="must be the relay's http"):
        build_core(settings, environ=hub_environ("relay.example"), credentials=None)


def test_the_relay_sink_without_a_relay_url_is_an_error(tmp_path):
    settings = Timeback(store_path=str(tmp_path / "s.sqlite3"), sink="relay")
    with pytest.raises(DeliveryError, match=r"TIMEBACK_RELAY_URL is not set"):
        build_core(settings, environ={"JUPYTERHUB_USER": "ada"}, credentials=None)
    assert not (tmp_path / "s.sqlite3").exists()  # nothing recorded locally instead


# ---- a real Jupyter server in hub mode -----------------------------------------------------


@pytest.fixture
def hub_env(monkeypatch):
    """The environment a hub gives a server (JUPYTERHUB_*), plus what a student might add."""
    for name, value in hub_environ(
        nowhere(),
        TIMEBACK_STUDENT_EMAIL="mallory@school.edu",
        TIMEBACK_CLIENT_ID="id",
        TIMEBACK_CLIENT_SECRET=SECRET,
    ).items():
        monkeypatch.setenv(name, value)
    return os.environ


@pytest.fixture
def timeback_config(timeback_config, hub_env):
    # conftest's config names a student_email: in hub mode it is ignored
    return {**timeback_config, "retry_initial": 0.05}


async def test_a_server_with_no_reachable_relay_says_so_on_its_status(
    jp_serverapp, jp_fetch, caplog
):
    ext = jp_serverapp.web_app.settings["timeback"]
    await jp_serverapp._post_start()
    status = await wait_for(
        lambda: (s := ext.service.status()).get("relay", {}).get("problem") and s,
        what="the relay check",
    )
    answer = body(await jp_fetch("timeback", "api", "status"))
    assert "cannot reach the relay" in answer["problem"]
    assert "cannot reach the relay" in answer["relay"]["problem"]
    assert answer["sink"] == "relay"
    assert answer["credentials"] is None
    assert answer["identity"]["email"] == "ada@jupyterhub.invalid"
    assert status["recording"] is True  # the outbox keeps the events until the relay is back
    assert "TIMEBACK_CLIENT_SECRET" not in os.environ
    assert SECRET not in caplog.text
    assert HUB_TOKEN not in str(answer) and HUB_TOKEN not in caplog.text


async def test_the_status_names_the_students_own_page_on_the_relay(jp_fetch, monkeypatch):
    answer = body(await jp_fetch("timeback", "api", "status"))
    assert answer["relay_page"] == "/services/timeback-relay/students/ada"
    monkeypatch.setenv("JUPYTERHUB_BASE_URL", "/school/")  # a hub under a prefix
    answer = body(await jp_fetch("timeback", "api", "status"))
    assert answer["relay_page"] == "/school/services/timeback-relay/students/ada"
    assert HUB_TOKEN not in str(answer)


@pytest.mark.parametrize(
    ("environ", "page"),
    [
        # the relay reached directly (its own port) or through the proxy: the path is the same
        (hub_environ("http://10.0.0.5:10101/services/relay-x/"), "/services/relay-x/students/ada"),
        (hub_environ("https://hub.example/jh/services/tb", JUPYTERHUB_BASE_URL="/jh/"),
         "/jh/services/tb/students/ada"),
        (hub_environ(nowhere(), JUPYTERHUB_USER="a b/c"),
         "/services/timeback-relay/students/a%20b%2Fc"),
        (hub_environ("http://relay.internal:8080/"), None),  # not a service path: no link
        (hub_environ(nowhere(), JUPYTERHUB_USER=""), None),
        ({"JUPYTERHUB_USER": "ada"}, None),
    ],
)  # fmt: skip
def test_the_relay_page_is_a_path_on_the_hub_never_a_token(environ, page):
    from timeback_jupyter.server.status import relay_page

    assert relay_page(environ) == page


class TestARelaySinkWithoutItsUrl:
    @pytest.fixture
    def timeback_config(self, timeback_config, monkeypatch):
        monkeypatch.delenv("TIMEBACK_RELAY_URL")
        return {**timeback_config, "sink": "relay"}

    async def test_is_an_error_on_the_status_not_a_local_fallback(self, jp_serverapp, jp_fetch):
        answer = body(await jp_fetch("timeback", "api", "status"))
        assert answer["recording"] is False
        assert "TIMEBACK_RELAY_URL is not set" in answer["problem"]
        assert answer["credentials"] is None  # configured for the relay: never read
        assert jp_serverapp.web_app.settings["timeback"].store is None


# ---- end to end: a hub-mode server, the real relay behind the real hub -----------------------

hub_and_relay, hub, relay_service = shared.hub_and_relay, shared.hub, shared.relay_service
standin, tokens = shared.standin, shared.tokens


@pytest.mark.slow
class TestThroughTheRealRelay:
    @pytest.fixture
    def timeback_config(self, timeback_config, relay_service, tokens, monkeypatch):
        monkeypatch.setenv("TIMEBACK_RELAY_URL", relay_service.hub.relay_url)
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", tokens["ada"])
        # the test's browser is jupyter_server's token user, not the hub's "ada"
        return {**timeback_config, "count_visitors": True}

    async def test_a_cell_reaches_timeback_as_the_hub_user(
        self, jp_serverapp, jp_fetch, jp_root_dir, standin, relay_service
    ):
        ext = jp_serverapp.web_app.settings["timeback"]
        await jp_serverapp._post_start()
        path = write_notebook(jp_root_dir, f"quiz-{uuid.uuid4().hex[:6]}.ipynb", {"activity": QUIZ})
        session = await open_notebook(jp_fetch, path)
        run_id = await wait_for(lambda: ext.tracker.run_at(path), what="the run")
        client = kernel_client(jp_serverapp, session["kernel"]["id"])
        try:
            client.execute_interactive("import time; time.sleep(1.2)", timeout=30)
        finally:
            client.stop_channels()
        await jp_fetch("timeback", "api", "runs", run_id, "complete", method="POST", body=b"{}")
        flushed = body(await jp_fetch("timeback", "api", "flush", method="POST", body=b"{}"))
        assert flushed["report"]["remaining"] == 0, flushed

        def mine():
            return [e for e in standin.received if e["extensions"].get("runId") == run_id]

        await wait_for(
            lambda: any(e["type"] == "ActivityEvent" for e in mine()), what="the completion"
        )
        for event in mine():
            assert event["actor"]["id"].endswith(f"/users/{STUDENTS['ada']}")
            assert event["actor"]["email"] == "ada@school.edu"  # the relay's template
            assert event["extensions"]["courseId"] == "math-3-stg"  # the relay's catalog
        status = body(await jp_fetch("timeback", "api", "status"))
        assert status["relay"]["problem"] is None
        assert status["problem"] is None
        # fractions-quiz is not in the relay's catalog: forwarded with 0 XP, and the server
        # shows the relay's reason
        [note] = [n for n in status["relay"]["notes"] if "xp" in n]
        assert note["xp"] == 0 and "catalog" in note["reason"]
