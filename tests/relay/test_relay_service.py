"""The relay as a JupyterHub service, against a real hub: who may call it, what it answers, and
that the actor is always the hub user the token belongs to."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid

import httpx
import pytest
from jupyterhub.services.auth import HubAuth

from timeback_jupyter import caliper
from timeback_jupyter.relay.hub_tokens import HubTokens
from timeback_jupyter.testing.standin import SENSOR, completion_event, time_spent_events

from . import hub as hub_fixtures
from .hub import (
    ADMIN_TOKEN,
    CLIENT_SECRET,
    RELAY_HUB_TOKEN,
    SCOPE,
    STUDENTS,
    free_port,
    wait_until,
)

# the real hub and relay (tests/relay/hub.py); conftest.py's `relay` is the core's
hub_and_relay, hub, relay_service = (
    hub_fixtures.hub_and_relay,
    hub_fixtures.hub,
    hub_fixtures.relay_service,
)
standin, tokens = hub_fixtures.standin, hub_fixtures.tokens

pytestmark = pytest.mark.slow


def envelope(events: list[dict]) -> dict:
    return caliper.envelope(events, SENSOR, time.time())


def heartbeats(count: int = 2) -> tuple[str, list[dict]]:
    run_id = str(uuid.uuid4())
    # recent, so the relay's clock takes them (nothing from the future, nothing stale matters)
    return run_id, time_spent_events(run_id, count, start=time.time() - 15 * count - 5)


def post(relay_service, token: str | None, body, **kw) -> httpx.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return httpx.post(
        f"{relay_service.hub.relay_url}api/events", json=body, headers=headers, timeout=30
    )


def get(relay_service, token: str | None, path: str) -> httpx.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return httpx.get(f"{relay_service.hub.relay_url}{path}", headers=headers, timeout=30)


ANSWERS: list[str] = []  # every body the relay answered, checked for secrets at the end


def answered(response: httpx.Response) -> httpx.Response:
    ANSWERS.append(response.text)
    return response


def test_health_needs_no_token(relay_service):
    response = answered(get(relay_service, None, "api/health"))
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_no_token_is_401(relay_service):
    _, events = heartbeats()
    response = answered(post(relay_service, None, envelope(events)))
    assert response.status_code == 401
    assert "Authorization: token" in response.json()["message"]
    assert answered(get(relay_service, "not-a-hub-token", "api/me")).status_code == 401


def test_a_token_without_the_scope_is_403_naming_the_fix(relay_service, tokens):
    _, events = heartbeats()
    response = answered(post(relay_service, tokens["ada-no-scope"], envelope(events)))
    assert response.status_code == 403
    message = response.json()["message"]
    assert SCOPE in message
    assert "c.Spawner.server_token_scopes" in message
    assert "c.JupyterHub.extra_user_scopes" in message


def test_a_service_token_is_403_even_with_the_scope(relay_service, tokens):
    _, events = heartbeats()
    response = answered(post(relay_service, tokens["service"], envelope(events)))
    assert response.status_code == 403
    assert "the relay takes events from users' servers only" in response.json()["message"]
    assert answered(get(relay_service, tokens["service"], "api/me")).status_code == 403


def test_a_user_gets_the_ingest_result_and_the_actor_is_the_hub_user(
    relay_service, tokens, standin
):
    run_id, events = heartbeats(2)
    # The payload claims to be someone else entirely.
    for event in events:
        event["actor"]["id"] = event["actor"]["id"].rsplit("/", 1)[0] + "/sourced-bob"
        event["actor"]["email"] = "bob@school.edu"
    response = answered(post(relay_service, tokens["ada"], envelope(events)))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 2 and result["refused"] == 0 and result["duplicate"] == 0
    assert [e["status"] for e in result["events"]] == ["accepted", "accepted"]
    assert [e["id"] for e in result["events"]] == [e["id"] for e in events]

    def delivered():
        return [e for e in standin.received if e["extensions"].get("runId") == run_id]

    forwarded = wait_until(lambda: len(delivered()) == 2 and delivered(), "delivery to Timeback")
    for event in forwarded:
        assert event["actor"]["id"].endswith(f"/users/{STUDENTS['ada']}")
        assert "bob" not in str(event["actor"])
        # stored under the relay's id, not the server's: one student cannot take another's ids
        assert event["id"] not in {e["id"] for e in events}

    again = answered(post(relay_service, tokens["ada"], envelope(events))).json()
    assert again["duplicate"] == 2 and again["accepted"] == 0


def test_a_malformed_envelope_is_400(relay_service, tokens):
    response = answered(post(relay_service, tokens["ada"], {"data": []}))
    assert response.status_code == 400
    assert response.json()["message"]
    not_json = httpx.post(
        f"{relay_service.hub.relay_url}api/events",
        content=b"{not json",
        headers={"Authorization": f"token {tokens['ada']}"},
    )
    assert answered(not_json).status_code == 400


def test_an_event_is_found_by_its_sender_only(relay_service, tokens):
    _, events = heartbeats(1)
    assert answered(post(relay_service, tokens["ada"], envelope(events))).status_code == 200
    mine = answered(get(relay_service, tokens["ada"], f"api/events/{events[0]['id']}"))
    assert mine.status_code == 200
    assert mine.json() == {"id": events[0]["id"], "status": "accepted"}
    theirs = answered(get(relay_service, tokens["bob"], f"api/events/{events[0]['id']}"))
    assert theirs.status_code == 404
    assert theirs.json()["id"] == events[0]["id"]


def test_me_shows_only_the_callers_record(relay_service, tokens):
    bob_run, bob_events = heartbeats(1)
    assert answered(post(relay_service, tokens["bob"], envelope(bob_events))).status_code == 200
    ada_run, ada_events = heartbeats(1)
    done = completion_event(ada_run, at=time.time() - 1)
    assert (
        answered(post(relay_service, tokens["ada"], envelope([*ada_events, done]))).status_code
        == 200
    )

    ada = answered(get(relay_service, tokens["ada"], "api/me")).json()
    bob = answered(get(relay_service, tokens["bob"], "api/me")).json()
    assert ada["user"] == "ada" and bob["user"] == "bob"
    assert ada_run in {r["run_id"] for r in ada["runs"]}
    assert bob_run not in {r["run_id"] for r in ada["runs"]}
    assert ada_run not in {r["run_id"] for r in bob["runs"]}
    assert [c["run_id"] for c in ada["completions"]] == [ada_run]
    assert bob["completions"] == []


def test_status_is_for_admins(relay_service, tokens):
    assert answered(get(relay_service, tokens["ada"], "api/status")).status_code == 403
    status = answered(get(relay_service, ADMIN_TOKEN, "api/status"))
    assert status.status_code == 200
    body = status.json()
    assert body["service"] == "timeback-relay"
    assert body["delivery"]["sink"] == "timeback"


def test_an_unknown_route_is_a_json_404(relay_service, tokens):
    response = answered(get(relay_service, tokens["ada"], "api/nothing-here"))
    assert response.status_code == 404
    assert response.json()["message"]


def test_a_hub_restart_is_survived(relay_service, hub, tokens):
    """While the hub is down the relay cannot tell who a token is: 500, nothing stored (the
    server retries); after the restart the same tokens work again."""
    fresh = hub.token("ada", [SCOPE])  # not in the relay's cache of the hub's answers
    hub.stop()
    _, events = heartbeats(1)
    direct = httpx.post(
        f"{relay_service.direct_url}api/events",
        json=envelope(events),
        headers={"Authorization": f"token {fresh}"},
        timeout=30,
    )
    answered(direct)
    assert direct.status_code == 500
    assert "Hub API" in direct.json()["message"]
    hub.start()
    assert answered(post(relay_service, fresh, envelope(events))).status_code == 200
    assert (
        answered(post(relay_service, tokens["bob"], envelope(heartbeats(1)[1]))).json()["accepted"]
        == 1
    )


def test_no_credential_reaches_the_log_or_an_answer(relay_service, tokens):
    # A token someone put in the query string must not be written down either.
    query = answered(get(relay_service, None, f"api/health?token={tokens['bob']}"))
    assert query.status_code == 200
    relay_service.stop()  # the log is complete once it has stopped
    relay_service.start()
    log = relay_service.log_text()
    # The successful ingests are in the summary (written at the latest when the relay stops)
    assert "200 POST /services/timeback-relay/api/events: " in log
    assert "401 POST /services/timeback-relay/api/events (-)" in log  # a refusal: its own line
    secrets = [CLIENT_SECRET, RELAY_HUB_TOKEN, *tokens.values()]
    for secret in secrets:
        assert secret not in log
        for text in ANSWERS:
            assert secret not in text


def test_the_catalog_is_public_and_holds_no_ids(relay_service):
    response = answered(get(relay_service, None, "api/catalog"))
    assert response.status_code == 200
    [course] = response.json()["courses"]
    assert course["subject"] == "Math" and course["grade"] == 3
    assert [a["id"] for a in course["activities"]] == ["fractions-1"]
    assert "math-3-stg" not in response.text  # Timeback's course ids stay on the hub


@pytest.mark.parametrize(
    ("drop", "knobs", "words"),
    [
        ("JUPYTERHUB_API_TOKEN", {}, "$JUPYTERHUB_API_TOKEN is not set"),
        ("", {"catalog": ""}, "c.Relay.catalog is not set"),
        ("", {"email_template": ""}, "c.Relay.email_template is not set"),
        ("TIMEBACK_CLIENT_SECRET", {}, "the relay's environment has no credentials"),
        ("", {"unknown_activity": "maybe"}, "bad setting"),
    ],
)
def test_a_relay_that_cannot_start_says_why_in_one_line(tmp_path, drop, knobs, words):
    catalog = tmp_path / "timeback.config.json"
    catalog.write_text(json.dumps(hub_fixtures.CATALOG))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIMEBACK_", "JUPYTERHUB_"))}
    env.update(
        JUPYTERHUB_API_TOKEN=RELAY_HUB_TOKEN,
        TIMEBACK_CLIENT_ID="id",
        TIMEBACK_CLIENT_SECRET=CLIENT_SECRET,
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
    )
    env.pop(drop, None)
    knobs = {
        "catalog": str(catalog),
        "email_template": "{name}@school.edu",
        "db_url": f"sqlite:///{tmp_path / 'relay.db'}",
        "port": str(free_port()),
        **knobs,
    }
    done = subprocess.run(
        [str(hub_fixtures.BIN / "jupyter"), "timeback", "relay",
         *(f"--Relay.{name}={value}" for name, value in knobs.items())],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert words in done.stderr
    assert "Traceback" not in done.stderr
    assert CLIENT_SECRET not in done.stderr + done.stdout
    assert RELAY_HUB_TOKEN not in done.stderr + done.stdout


# -- the hub's answers kept in front of HubAuth (relay/hub_tokens.py) ----------------------------


def hub_token(hub, name: str) -> tuple[str, str]:
    """A new token of ``name`` with the relay's scope, and its id (to revoke it)."""
    response = hub.admin.post(f"/users/{name}/tokens", json={"scopes": [SCOPE], "note": "cache"})
    assert response.status_code == 201, response.text
    return response.json()["token"], response.json()["id"]


def revoke(hub, name: str, token_id: str) -> None:
    assert hub.admin.delete(f"/users/{name}/tokens/{token_id}").status_code == 204


def relay_auth(hub, max_age: int) -> HubAuth:
    return HubAuth(api_token=RELAY_HUB_TOKEN, api_url=hub.api_url, cache_max_age=max_age)


def test_a_revoked_token_stops_within_the_cache_time(hub):
    now = [1000.0]
    auth = relay_auth(hub, 30)
    known = HubTokens(auth, clock=lambda: now[0])
    token, token_id = hub_token(hub, "ada")
    first = asyncio.run(known.lookup(token))
    assert first.model is not None and first.model["name"] == "ada"
    assert first.expires == 1030.0  # counted from before the hub was asked
    revoke(hub, "ada", token_id)
    now[0] = 1029.9  # still trusted, as HubAuth's own cache would: the hub is not asked
    assert asyncio.run(known.lookup(token)) is first
    now[0] = 1030.0  # never longer than auth_cache_seconds
    assert asyncio.run(known.lookup(token)).model is None
    # HubAuth's own cache is not filled alongside (it would keep the answer longer).
    assert len(auth.cache) == 0


def test_the_token_cache_is_bounded_least_recently_used_first(hub):
    known = HubTokens(relay_auth(hub, 600), max_size=2)
    (a, a_id), (b, _), (c, _) = (hub_token(hub, n) for n in ("ada", "bob", "ada"))
    assert asyncio.run(known.lookup(a)).model["name"] == "ada"
    assert asyncio.run(known.lookup(b)).model["name"] == "bob"
    assert asyncio.run(known.lookup(a)).model["name"] == "ada"  # a used last: b goes first
    assert asyncio.run(known.lookup(c)).model["name"] == "ada"
    assert len(known) == 2
    revoke(hub, "ada", a_id)
    assert asyncio.run(known.lookup(a)).model["name"] == "ada"  # kept: b was dropped, not a
    assert asyncio.run(known.lookup(b)).model["name"] == "bob"  # asked again; c dropped
    assert asyncio.run(known.lookup(c)).model["name"] == "ada"  # asked again; a dropped
    assert asyncio.run(known.lookup(a)).model is None  # asked again: revoked


def test_an_unknown_token_is_kept_too_and_no_token_is_held_or_shown(hub):
    now = [0.0]
    known = HubTokens(relay_auth(hub, 60), clock=lambda: now[0])
    junk = "not-a-token-" + uuid.uuid4().hex
    token, _ = hub_token(hub, "bob")
    assert asyncio.run(known.lookup(junk)).model is None
    kept = asyncio.run(known.lookup(token))
    for text in (repr(known), repr(kept), repr(known._known)):
        assert junk not in text and token not in text
    assert all(isinstance(key, bytes) for key in known._known)  # digests, not the tokens


def test_a_cache_time_of_zero_leaves_hubauths_cache_as_it_was(hub):
    auth = relay_auth(hub, 0)  # HubAuth: 0 keeps an answer for ever
    known = HubTokens(auth)
    token, _ = hub_token(hub, "bob")
    assert asyncio.run(known.lookup(token)).model["name"] == "bob"
    assert len(known) == 0 and len(auth.cache) == 1
