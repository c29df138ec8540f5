"""Who the student is: key, resolution order, and the OneRoster lookup by email."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from timeback_common import where_to_filter
from timeback_oneroster import OneRosterClient

from timeback_jupyter import caliper
from timeback_jupyter.caliper import Actor
from timeback_jupyter.config import ONEROSTER_BASE_URLS, Credentials, Timeback
from timeback_jupyter.connection import Connection
from timeback_jupyter.delivery import DeliveryError, TimebackSink
from timeback_jupyter.identity import (
    ActorResolver,
    IdentityError,
    IdentityLookupError,
    OneRosterLookup,
    Student,
    actor_for,
    email_filter,
    placeholder_sourced_id,
    resolve_student,
    student_key,
)
from timeback_jupyter.testing.standin import SENSOR, TOKEN_PATH, Request, StandIn, time_spent_events

BASE = ONEROSTER_BASE_URLS["staging"]
USERS = f"{BASE}/ims/oneroster/rostering/v1p2/users"
SECRET = "s3cr3t-value-never-shown"


def config(**knobs: Any) -> Timeback:
    return Timeback(**knobs)


def no_user() -> str:
    raise AssertionError("getuser must not be consulted")


# ---------------------------------------------------------------------------------------------
# student_key


def test_key_is_a_short_stable_hash_of_the_normalized_email() -> None:
    key = student_key("Ada.Lovelace@School.edu")
    assert len(key) == 16 and all(c in "0123456789abcdef" for c in key)
    assert (
        key == student_key("ada.lovelace@school.edu") == student_key("  ADA.LOVELACE@SCHOOL.EDU ")
    )
    assert key == hashlib.sha256(b"ada.lovelace@school.edu").hexdigest()[:16]
    assert student_key("grace@school.edu") != key


def test_key_is_not_the_email() -> None:
    email = "ada@school.edu"
    key = student_key(email)
    assert "ada" not in key and "school" not in key and "@" not in key
    assert Student(email).key == key


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_key_needs_an_email(bad: Any) -> None:
    with pytest.raises(IdentityError, match="student email"):
        student_key(bad)


# ---------------------------------------------------------------------------------------------
# resolve_student


def test_config_email_comes_first() -> None:
    student = resolve_student(
        config(student_email="cfg@school.edu", student_email_template="{username}@tpl.edu"),
        {"TIMEBACK_STUDENT_EMAIL": "env@school.edu", "JUPYTERHUB_USER": "hub"},
        "visitor",
        getuser=no_user,
    )
    assert student.email == "cfg@school.edu"
    assert student.key == student_key("cfg@school.edu")


def test_env_email_comes_before_the_template() -> None:
    student = resolve_student(
        config(student_email_template="{username}@tpl.edu"),
        {"TIMEBACK_STUDENT_EMAIL": " env@school.edu ", "JUPYTERHUB_USER": "hub"},
        None,
        getuser=no_user,
    )
    assert student.email == "env@school.edu"


def test_template_uses_the_hub_user_given_first() -> None:
    cfg = config(student_email_template="{username}@school.edu")
    env = {"JUPYTERHUB_USER": "from-env"}
    assert resolve_student(cfg, env, "given", getuser=no_user).email == "given@school.edu"
    assert resolve_student(cfg, env, None, getuser=no_user).email == "from-env@school.edu"
    assert resolve_student(cfg, {}, None, getuser=lambda: "osuser").email == "osuser@school.edu"


def test_a_local_machine_names_its_student_after_the_user_unless_told_otherwise() -> None:
    def user() -> str:
        return "ada"

    local = resolve_student(config(), {}, local=True, getuser=user)
    assert local.email == "ada@students.local"
    assert resolve_student(config(), {"JUPYTERHUB_USER": "kim"}, local=True).email == (
        "kim@students.local"
    )
    # whatever names the student comes first, as without the fallback
    told = {"TIMEBACK_STUDENT_EMAIL": "env@school.edu"}
    assert resolve_student(config(), told, local=True, getuser=user).email == "env@school.edu"
    cfg = config(student_email_template="{username}@school.edu")
    assert resolve_student(cfg, {}, local=True, getuser=user).email == "ada@school.edu"
    # and only a local machine gets it: events to Timeback need a real student
    with pytest.raises(IdentityError, match="no student identity"):
        resolve_student(config(), {}, getuser=user)


def test_template_may_use_the_name_twice_and_around_text() -> None:
    cfg = config(student_email_template="s.{username}+{username}@school.edu")
    assert resolve_student(cfg, {}, "kim").email == "s.kim+kim@school.edu"


@pytest.mark.parametrize("template", ["{user}@school.edu", "{0}@school.edu", "{username@x"])
def test_a_template_with_other_placeholders_is_refused(template: str) -> None:
    with pytest.raises(IdentityError, match="student_email_template") as info:
        resolve_student(config(student_email_template=template), {}, "kim")
    assert "{username}" in str(info.value)


def test_the_os_user_may_be_missing() -> None:
    def broken() -> str:
        raise OSError("no passwd entry for uid 1000770000")

    with pytest.raises(IdentityError, match="no student identity") as info:
        resolve_student(
            config(student_email_template="{username}@school.edu"), {}, None, getuser=broken
        )
    assert "JUPYTERHUB_USER" in str(info.value)


def test_no_identity_names_every_knob() -> None:
    with pytest.raises(IdentityError) as info:
        resolve_student(config(), {"JUPYTERHUB_USER": "kim"}, "kim", getuser=no_user)
    message = str(info.value)
    assert message.startswith("no student identity: set ")
    for knob in ("c.Timeback.student_email", "$TIMEBACK_STUDENT_EMAIL", "student_email_template"):
        assert knob in message


@pytest.mark.parametrize(
    ("knobs", "env", "source"),
    [
        ({"student_email": "nobody"}, {}, "c.Timeback.student_email"),
        ({"student_email": "a@b@c"}, {}, "c.Timeback.student_email"),
        ({}, {"TIMEBACK_STUDENT_EMAIL": "@school.edu"}, "$TIMEBACK_STUDENT_EMAIL"),
        ({}, {"TIMEBACK_STUDENT_EMAIL": "kim@"}, "$TIMEBACK_STUDENT_EMAIL"),
        ({}, {"TIMEBACK_STUDENT_EMAIL": "k im@school.edu"}, "$TIMEBACK_STUDENT_EMAIL"),
        ({"student_email_template": "{username}"}, {}, "c.Timeback.student_email_template"),
    ],
)
def test_email_shape_is_checked_and_the_source_named(
    knobs: dict[str, str], env: dict[str, str], source: str
) -> None:
    with pytest.raises(IdentityError, match="is not an email address") as info:
        resolve_student(config(**knobs), env, "kim")
    assert source in str(info.value)


def test_sourced_id_from_config_then_env() -> None:
    env = {"TIMEBACK_STUDENT_EMAIL": "kim@school.edu", "TIMEBACK_STUDENT_ID": "env-id"}
    assert resolve_student(config(student_id="cfg-id"), env).sourced_id == "cfg-id"
    assert resolve_student(config(), env).sourced_id == "env-id"
    assert (
        resolve_student(config(), {"TIMEBACK_STUDENT_EMAIL": "kim@school.edu"}).sourced_id is None
    )


# ---------------------------------------------------------------------------------------------
# actor_for


def test_actor_for_a_known_student() -> None:
    actor = actor_for(Student("kim@school.edu", "u-42"), BASE)
    assert actor == Actor(id=f"{USERS}/u-42", email="kim@school.edu")


def test_actor_for_needs_the_sourced_id_unless_local() -> None:
    student = Student("kim@school.edu")
    with pytest.raises(IdentityError, match="sourcedId is unknown") as info:
        actor_for(student, BASE)
    assert "student_id" in str(info.value) and "TIMEBACK_STUDENT_ID" in str(info.value)
    local = actor_for(student, BASE, local=True)
    assert local.id == f"{USERS}/{placeholder_sourced_id(student)}"
    assert local.id.endswith(f"/local-{student.key}")
    assert "kim" not in local.id


# ---------------------------------------------------------------------------------------------
# ActorResolver with an injected lookup


class FakeLookup:
    """Answers from a table; counts calls; can be made to fail or to wait."""

    def __init__(self, table: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        self.table = table
        self.calls: list[str] = []
        self.fail_next: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def __call__(self, email: str) -> Sequence[Mapping[str, Any]]:
        self.calls.append(email)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        return self.table.get(email.lower(), [])


TABLE = {
    "one@school.edu": [{"sourcedId": "u-1", "email": "one@school.edu"}],
    "two@school.edu": [{"sourcedId": "u-2"}, {"sourcedId": "u-3"}],
    "blank@school.edu": [{"sourcedId": ""}],
}


@pytest.mark.asyncio
async def test_resolver_one_user() -> None:
    lookup = FakeLookup(TABLE)
    actor = await ActorResolver(BASE, lookup).resolve(Student("one@school.edu"))
    assert actor == Actor(id=f"{USERS}/u-1", email="one@school.edu")


@pytest.mark.asyncio
async def test_resolver_no_user() -> None:
    resolver = ActorResolver(BASE, FakeLookup(TABLE))
    with pytest.raises(IdentityError, match="^no Timeback user with this email") as info:
        await resolver.resolve(Student("nobody@school.edu"))
    assert "n***y@school.edu" in str(info.value)


@pytest.mark.asyncio
async def test_resolver_several_users() -> None:
    resolver = ActorResolver(BASE, FakeLookup(TABLE))
    with pytest.raises(IdentityError, match="^several Timeback users with this email"):
        await resolver.resolve(Student("two@school.edu"))


@pytest.mark.asyncio
async def test_resolver_user_without_sourced_id() -> None:
    resolver = ActorResolver(BASE, FakeLookup(TABLE))
    with pytest.raises(IdentityLookupError, match="no sourcedId"):
        await resolver.resolve(Student("blank@school.edu"))


@pytest.mark.asyncio
async def test_resolver_caches_one_lookup_per_email() -> None:
    lookup = FakeLookup(TABLE)
    resolver = ActorResolver(BASE, lookup)
    first = await resolver.resolve(Student("one@school.edu"))
    again = await resolver.resolve(Student("One@School.EDU"))
    assert await resolver.sourced_id(" one@school.edu ") == "u-1"
    assert lookup.calls == ["one@school.edu"]
    assert first.id == again.id
    assert again.email == "One@School.EDU"  # the actor keeps the student's own spelling


@pytest.mark.asyncio
async def test_concurrent_resolves_share_one_lookup() -> None:
    lookup = FakeLookup(TABLE)
    lookup.gate = asyncio.Event()
    resolver = ActorResolver(BASE, lookup)
    waiting = [asyncio.create_task(resolver.resolve(Student("one@school.edu"))) for _ in range(5)]
    await asyncio.sleep(0)
    lookup.gate.set()
    actors = await asyncio.gather(*waiting)
    assert {a.id for a in actors} == {f"{USERS}/u-1"}
    assert len(lookup.calls) == 1


@pytest.mark.asyncio
async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    lookup = FakeLookup(TABLE)
    lookup.gate = asyncio.Event()
    resolver = ActorResolver(BASE, lookup)
    first = asyncio.create_task(resolver.sourced_id("one@school.edu"))
    second = asyncio.create_task(resolver.sourced_id("one@school.edu"))
    await asyncio.sleep(0)
    first.cancel()
    lookup.gate.set()
    assert await second == "u-1"
    assert len(lookup.calls) == 1


@pytest.mark.asyncio
async def test_failures_are_not_cached() -> None:
    lookup = FakeLookup(TABLE)
    lookup.fail_next = IdentityLookupError("OneRoster is unavailable", retryable=True)
    resolver = ActorResolver(BASE, lookup)
    with pytest.raises(IdentityLookupError) as info:
        await resolver.resolve(Student("one@school.edu"))
    assert info.value.retryable
    assert (await resolver.resolve(Student("one@school.edu"))).id == f"{USERS}/u-1"
    with pytest.raises(IdentityError):
        await resolver.resolve(Student("nobody@school.edu"))
    with pytest.raises(IdentityError):
        await resolver.resolve(Student("nobody@school.edu"))
    assert lookup.calls == ["one@school.edu"] * 2 + ["nobody@school.edu"] * 2


@pytest.mark.asyncio
async def test_a_configured_sourced_id_skips_the_lookup() -> None:
    lookup = FakeLookup(TABLE)
    actor = await ActorResolver(BASE, lookup).resolve(Student("one@school.edu", "cfg-id"))
    assert actor.id == f"{USERS}/cfg-id"
    assert lookup.calls == []


# ---------------------------------------------------------------------------------------------
# OneRosterLookup against a real HTTP server


class OneRosterStandIn:
    """A token endpoint and the OneRoster users list, on 127.0.0.1."""

    def __init__(self, users: Mapping[str, list[dict[str, Any]]]) -> None:
        self.users = users
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.script: list[int] = []  # statuses to answer the next users requests with
        self.tokens_issued = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                stand_in.requests.append(("POST", self.path, dict(self.headers)))
                basic = base64.b64encode(f"cid-1234:{SECRET}".encode()).decode()
                ok = (
                    self.path == "/oauth2/token"
                    and self.headers.get("Authorization") == f"Basic {basic}"
                    and body == "grant_type=client_credentials"
                )
                if not ok:
                    self.reply(401, {"error": "invalid_client"})
                    return
                stand_in.tokens_issued += 1
                token = f"tok-{stand_in.tokens_issued}"
                self.reply(200, {"access_token": token, "expires_in": 3600})

            def do_GET(self) -> None:
                stand_in.requests.append(("GET", self.path, dict(self.headers)))
                if stand_in.script:
                    self.reply(stand_in.script.pop(0), {"error": "scripted"})
                    return
                expected = f"Bearer tok-{stand_in.tokens_issued}"
                if self.headers.get("Authorization") != expected:
                    self.reply(401, {"error": "bad token"})
                    return
                query = parse_qs(urlsplit(self.path).query)
                email = query["filter"][0].removeprefix("email='")[:-1].replace("''", "'")
                found = stand_in.users.get(email, [])[: int(query["limit"][0])]
                self.reply(200, {"users": found, "totalCount": len(found)})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll interval keeps shutdown (and so each test) fast.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> OneRosterStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def gets(self) -> list[str]:
        return [path for method, path, _ in self.requests if method == "GET"]


ROSTER = {
    "o'brien@school.edu": [
        {
            "sourcedId": "u-ob",
            "status": "active",
            "dateLastModified": "2025-01-01T00:00:00Z",
            "enabledUser": True,
            "givenName": "Pat",
            "familyName": "O'Brien",
            "roles": [],
            "email": "o'brien@school.edu",
        }
    ],
    "twins@school.edu": [{"sourcedId": "t-1"}, {"sourcedId": "t-2"}, {"sourcedId": "t-3"}],
}
CREDS = Credentials("cid-1234", SECRET)


@pytest.fixture
def stand_in() -> Iterator[OneRosterStandIn]:
    with OneRosterStandIn(ROSTER) as server:
        yield server


def lookup_for(server: OneRosterStandIn, creds: Credentials = CREDS) -> OneRosterLookup:
    return OneRosterLookup(server.url, f"{server.url}/oauth2/token", creds, timeout=5.0)


def test_email_filter_is_the_official_one() -> None:
    for email in ("kim@school.edu", "o'brien@school.edu", "a''b@c.d"):
        assert email_filter(email) == where_to_filter({"email": email})


@pytest.mark.asyncio
async def test_lookup_sends_the_official_clients_query(stand_in: OneRosterStandIn) -> None:
    official = OneRosterClient(
        base_url=stand_in.url,
        auth_url=f"{stand_in.url}/oauth2/token",
        client_id=CREDS.client_id,
        client_secret=SECRET,
    )
    page = await official.users.list(where={"email": "o'brien@school.edu"}, limit=2)
    await official.close()
    lookup = lookup_for(stand_in)
    users = await lookup("o'brien@school.edu")
    await lookup.aclose()
    theirs, ours = stand_in.gets()
    assert ours == theirs
    assert ours.startswith("/ims/oneroster/rostering/v1p2/users?")
    assert [u["sourcedId"] for u in users] == [u.sourced_id for u in page.data] == ["u-ob"]


@pytest.mark.asyncio
async def test_resolver_over_http_caches_token_and_answer(stand_in: OneRosterStandIn) -> None:
    resolver = ActorResolver(stand_in.url, lookup_for(stand_in))
    actor = await resolver.resolve(Student("o'brien@school.edu"))
    assert actor.id == f"{stand_in.url}/ims/oneroster/rostering/v1p2/users/u-ob"
    # The email goes out as given (as the SDK sends it); the cache ignores case.
    assert (await resolver.resolve(Student("O'Brien@School.edu"))).id == actor.id
    with pytest.raises(IdentityError, match="^several Timeback users"):
        await resolver.resolve(Student("twins@school.edu"))
    with pytest.raises(IdentityError, match="^no Timeback user"):
        await resolver.resolve(Student("ghost@school.edu"))
    await resolver.aclose()
    assert len(stand_in.gets()) == 3  # one per distinct email
    assert stand_in.tokens_issued == 1  # one token for all of them
    assert all("limit=2" in path for path in stand_in.gets())


@pytest.mark.asyncio
async def test_a_rejected_token_is_fetched_again_once(stand_in: OneRosterStandIn) -> None:
    lookup = lookup_for(stand_in)
    assert await lookup("twins@school.edu")
    stand_in.script = [401]  # the cached token went stale upstream
    assert await lookup("o'brien@school.edu")
    assert stand_in.tokens_issued == 2
    stand_in.script = [401, 401]
    with pytest.raises(IdentityLookupError, match="refused the API credentials") as info:
        await lookup("o'brien@school.edu")
    assert not info.value.retryable
    await lookup.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (400, False)]
)
async def test_lookup_errors_say_whether_to_retry(
    stand_in: OneRosterStandIn, status: int, retryable: bool
) -> None:
    lookup = lookup_for(stand_in)
    stand_in.script = [status]
    with pytest.raises(IdentityLookupError, match=f"HTTP {status}") as info:
        await lookup("o'brien@school.edu")
    assert info.value.retryable is retryable
    await lookup.aclose()


@pytest.mark.asyncio
async def test_unreachable_oneroster_is_retryable() -> None:
    with OneRosterStandIn({}) as server:
        url = server.url
    lookup = OneRosterLookup(url, f"{url}/oauth2/token", CREDS, timeout=2.0)
    with pytest.raises(IdentityLookupError, match="cannot reach") as info:
        await lookup("kim@school.edu")
    assert info.value.retryable
    await lookup.aclose()


@pytest.mark.asyncio
async def test_the_secret_never_shows(
    stand_in: OneRosterStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    lookup = lookup_for(stand_in, Credentials("cid-1234", "wrong-" + SECRET))
    with pytest.raises(IdentityLookupError, match="token endpoint refused") as info:
        await lookup("kim@school.edu")
    assert not info.value.retryable
    for text in (str(info.value), repr(info.value), repr(lookup), caplog.text):
        assert SECRET not in text
    await lookup.aclose()


def test_lookup_needs_credentials() -> None:
    with pytest.raises(IdentityError, match="TIMEBACK_CLIENT_ID"):
        OneRosterLookup(BASE, "https://auth.example/token", None)


@pytest.mark.asyncio
async def test_from_config_uses_the_configured_endpoints(stand_in: OneRosterStandIn) -> None:
    cfg = config(
        oneroster_base_url=stand_in.url,
        auth_url=f"{stand_in.url}/oauth2/token",
        environment="staging",
    )
    resolver = ActorResolver.from_config(cfg, CREDS)
    actor = await resolver.resolve(Student("o'brien@school.edu"))
    await resolver.aclose()
    assert actor.id.startswith(stand_in.url)
    with pytest.raises(IdentityError, match="credentials"):
        ActorResolver.from_config(config(environment="production"), None)


# ---------------------------------------------------------------------------------------------
# One OAuth token for the Caliper sink and the OneRoster lookup (the stand-in serves both)


def _shared_setup(api: StandIn) -> tuple[Timeback, Credentials]:
    api.users["kim@school.edu"] = ["u-kim"]
    cfg = config(
        sink="timeback",
        base_url=api.url,
        auth_url=api.token_url,
        oneroster_base_url=api.url,
        request_timeout=5.0,
    )
    return cfg, Credentials(api.client_id, api.client_secret)


def _token_requests(api: StandIn) -> list[Request]:
    return [r for r in api.requests if r.path == TOKEN_PATH]


@pytest.mark.asyncio
async def test_one_token_request_serves_the_sink_and_the_lookup() -> None:
    with StandIn("cid-shared", SECRET) as api:
        cfg, creds = _shared_setup(api)
        connection = Connection.from_config(cfg, creds)
        sink = TimebackSink.from_config(cfg, creds, connection)
        resolver = ActorResolver.from_config(cfg, creds, connection=connection)
        actor = await resolver.resolve(Student("kim@school.edu"))
        await sink.send(caliper.envelope(time_spent_events(str(uuid.uuid4()), 2), SENSOR, 1.7e9))
        await resolver.aclose()
        await sink.aclose()
        assert actor.id == f"{api.url}/ims/oneroster/rostering/v1p2/users/u-kim"
        assert len(api.received) == 2
        assert [r.client_id for r in _token_requests(api)] == ["cid-shared"]
        # The official provider's cache: one TokenManager per token URL, both services.
        assert connection.token_manager("oneroster") is connection.token_manager("caliper")


@pytest.mark.asyncio
async def test_without_a_shared_connection_each_asks_for_its_own_token() -> None:
    # The contrast that shows the test above measures the sharing.
    with StandIn("cid-shared", SECRET) as api:
        cfg, creds = _shared_setup(api)
        sink = TimebackSink.from_config(cfg, creds)
        resolver = ActorResolver.from_config(cfg, creds)
        await resolver.resolve(Student("kim@school.edu"))
        await sink.send(caliper.envelope(time_spent_events(str(uuid.uuid4()), 1), SENSOR, 1.7e9))
        await resolver.aclose()
        await sink.aclose()
        assert len(_token_requests(api)) == 2


@pytest.mark.asyncio
async def test_a_token_the_lookup_finds_stale_is_fetched_again_for_both() -> None:
    with StandIn("cid-shared", SECRET) as api:
        cfg, creds = _shared_setup(api)
        connection = Connection.from_config(cfg, creds)
        sink = TimebackSink.from_config(cfg, creds, connection)
        resolver = ActorResolver.from_config(cfg, creds, connection=connection)
        await sink.send(caliper.envelope(time_spent_events(str(uuid.uuid4()), 1), SENSOR, 1.7e9))
        api._tokens.clear()  # the upstream forgot every token it issued
        await resolver.resolve(Student("kim@school.edu"))
        await sink.send(caliper.envelope(time_spent_events(str(uuid.uuid4()), 1), SENSOR, 1.7e9))
        await resolver.aclose()
        await sink.aclose()
        assert len(_token_requests(api)) == 2  # the lookup's 401 renewed it for the sink too


def test_a_connection_made_from_other_settings_is_refused() -> None:
    cfg = config(sink="timeback", auth_url="https://auth.example/token")
    connection = Connection.from_config(cfg, CREDS)
    with pytest.raises(IdentityError, match="other settings"):
        OneRosterLookup(BASE, None, CREDS, connection=connection)
    with pytest.raises(IdentityError, match="other settings"):
        OneRosterLookup(BASE, cfg.auth_url, Credentials("cid-other", SECRET), connection=connection)
    with pytest.raises(DeliveryError, match="other settings"):
        TimebackSink.from_config(config(sink="timeback"), CREDS, connection)
    assert SECRET not in repr(connection)
    basic = base64.b64encode(f"{CREDS.client_id}:{SECRET}".encode()).decode()
    assert connection.scrub(f"{SECRET} / Basic {basic}") == "*** / Basic ***"
