"""The relay sink of a student's server, against the real relay behind a real JupyterHub: what
each answer means to the drainer, and that a stopped relay loses nothing."""

from __future__ import annotations

import copy
import logging
import time
import uuid

import httpx
import pytest

from timeback_jupyter import caliper
from timeback_jupyter.delivery import Drainer, RejectedError, RetryableError
from timeback_jupyter.delivery.relay import RelaySink
from timeback_jupyter.store import KIND_TIME_SPENT, Store
from timeback_jupyter.testing.standin import SENSOR, time_spent_events

from .relay import hub as shared
from .relay.hub import wait_until

# The real hub and relay of tests/relay/conftest.py (pytest registers a fixture under its own
# name, whatever it is bound to here).
hub_and_relay, hub, relay_service = shared.hub_and_relay, shared.hub, shared.relay_service
standin, tokens = shared.standin, shared.tokens

pytestmark = pytest.mark.slow


def heartbeats(count: int) -> tuple[str, list[dict]]:
    run_id = str(uuid.uuid4())
    return run_id, time_spent_events(run_id, count, start=time.time() - 15 * count - 5)


def envelope(events: list[dict]) -> dict:
    return caliper.envelope(events, SENSOR, time.time())


async def test_the_sink_delivers_and_asks_what_arrived(relay_service, tokens, standin):
    sink = RelaySink(relay_service.hub.relay_url, tokens["ada"])
    try:
        run_id, events = heartbeats(2)
        await sink.send(envelope(events))
        assert sink.problem is None
        assert await sink.exists(events[0]["id"]) is True
        assert await sink.exists(str(uuid.uuid4())) is False
        assert await sink.check() is None
        wait_until(
            lambda: sum(e["extensions"]["runId"] == run_id for e in standin.received) == 2,
            "both events at Timeback",
        )
    finally:
        await sink.aclose()


async def test_refused_tokens_are_retried_with_the_relays_words(relay_service, tokens):
    _, events = heartbeats(1)
    for token, words in (
        (tokens["ada-no-scope"], "c.Spawner.server_token_scopes"),
        ("not-a-token", "the hub does not know this token"),
        (tokens["service"], "users' servers only"),
    ):
        sink = RelaySink(relay_service.hub.relay_url, token)
        try:
            with pytest.raises(RetryableError, match="the relay refused this server") as err:
                await sink.send(envelope(events))
            assert words in str(err.value)
            assert words in sink.problem
            assert token not in str(err.value)
            # A missing scope shows on the status before any event is sent.
            assert words in (await sink.check() or "")
        finally:
            await sink.aclose()


async def test_an_envelope_the_relay_calls_malformed_is_rejected(relay_service, tokens):
    _, events = heartbeats(1)
    sink = RelaySink(relay_service.hub.relay_url, tokens["ada"])
    try:
        with pytest.raises(RejectedError, match="the relay refused the envelope"):
            await sink.send(envelope(events * 1001))  # more than the relay takes at once
    finally:
        await sink.aclose()


async def test_refusals_inside_a_200_are_logged_and_kept(relay_service, tokens, caplog):
    _, events = heartbeats(1)
    sink = RelaySink(relay_service.hub.relay_url, tokens["bob"])
    try:
        await sink.send(envelope(events))
        changed = copy.deepcopy(events)
        changed[0]["extensions"]["runId"] = str(uuid.uuid4())
        with caplog.at_level(logging.WARNING, "timeback_jupyter.delivery"):
            await sink.send(envelope(changed))
        assert sink.refused == 1
        [refusal] = sink.describe()["refusals"]
        assert refusal["id"] == events[0]["id"]
        assert "conflicts with an event already received" in refusal["reason"]
        assert "conflicts with an event already received" in caplog.text
    finally:
        await sink.aclose()


async def test_no_relay_behind_the_url_is_retried_and_cannot_settle(relay_service, tokens):
    sink = RelaySink(f"{relay_service.hub.url}/services/no-such-relay/", tokens["ada"])
    try:
        _, events = heartbeats(1)
        with pytest.raises(RetryableError, match="no relay answers at"):
            await sink.send(envelope(events))
        assert await sink.exists(events[0]["id"]) is None  # the proxy's 404 says nothing
    finally:
        await sink.aclose()


async def test_a_stopped_relay_loses_nothing(relay_service, tokens, standin, tmp_path):
    """The server's outbox holds while the relay is down; all of it arrives, once, after."""
    store = Store(tmp_path / "server.sqlite3")
    sink = RelaySink(relay_service.hub.relay_url, tokens["ada"], timeout=5)
    drainer = Drainer(store, sink, batch_size=3, retry_initial=0.05, retry_max=0.2)
    run_id, events = heartbeats(7)
    for event in events:
        store.enqueue(event, run_id=run_id, kind=KIND_TIME_SPENT, sensor=SENSOR)
    try:
        relay_service.stop()
        report = await drainer.drain_once()
        assert report.retried == 3 and report.sent == 0
        assert store.depth() == 7
        assert "no relay answers at" in (sink.problem or "")  # the hub answers instead

        relay_service.start()
        report = await drainer.flush(timeout=60)
        assert report.remaining == 0, report
        assert sink.problem is None
        me = httpx.get(
            f"{relay_service.hub.relay_url}api/me",
            headers={"Authorization": f"token {tokens['ada']}"},
        ).json()
        [run] = [r for r in me["runs"] if r["run_id"] == run_id]
        # every second arrived (what overlaps ada's other tests' windows is cut, and counted)
        assert run["active_seconds"] + run["cut_seconds"] == pytest.approx(7 * 12.0)

        def mine():
            return [e for e in standin.received if e["extensions"]["runId"] == run_id]

        wait_until(lambda: len(mine()) >= 7, "all seven at Timeback")
        ids = [e["id"] for e in mine()]
        assert len(ids) == 7 and len(set(ids)) == 7
    finally:
        await drainer.stop()
        await sink.aclose()
        store.close()
