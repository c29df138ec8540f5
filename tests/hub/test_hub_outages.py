"""Through a real hub: the relay's door (scopes), and what it survives: being stopped, kill -9
in the middle of a stream, and the hub restarting (every server token new)."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from timeback_jupyter.testing.hub import Hub
from timeback_jupyter.testing.standin import StandIn

from .relayed import assert_each_once, delivered, for_runs, outbox, wait_until

pytestmark = pytest.mark.slow

ENVELOPE = {
    "sensor": "https://timeback-jupyter.local/examples",
    "sendTime": "2026-12-01T00:00:00.000Z",
    "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2",
    "data": [{}],
}


def test_the_relay_takes_only_users_tokens_with_its_scope(hub: Hub) -> None:
    scoped_out = hub.token_for("tb-alice", scopes=["read:users!user=tb-alice"])
    answer = hub.relay_api("POST", "api/events", token=scoped_out, json=ENVELOPE)
    assert answer.status_code == 403
    message = answer.json()["message"]
    assert "c.Spawner.server_token_scopes" in message
    assert "c.JupyterHub.extra_user_scopes" in message
    answer = hub.relay_api("POST", "api/events", token=hub.token, json=ENVELOPE)
    assert answer.status_code == 403 and "users' servers only" in answer.json()["message"]
    assert hub.relay_api("POST", "api/events", json=ENVELOPE).status_code == 401


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """The relay's process stopped (SIGSTOP): there, unreachable. (A relay that exits is
    started again by the hub at once, so stopping it is how it stays away.)"""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def held(server: Any, user: pwd.struct_passwd, run_id: str) -> list[dict[str, Any]]:
    """The run's events, kept in the student's outbox because the relay is away."""
    report = server.flush(timeout=2)
    assert report["remaining"] > 0, report
    rows = outbox(user, [run_id])
    assert rows and "sent" not in {r["status"] for r in rows}, rows
    return rows


def test_a_stopped_relay_loses_nothing_the_outbox_holds_then_drains(
    hub: Hub, hub_standin: StandIn, hub_students: dict[str, pwd.struct_passwd], quiz_for: Any
) -> None:
    server = hub.spawn("tb-bob")
    with paused(hub.relay_pid()):
        run = server.run_notebook(quiz_for("tb-bob", "relay-stopped"))
        assert run.run_id is not None
        rows = held(server, hub_students["tb-bob"], run.run_id)
        assert not for_runs(hub_standin, [run.run_id])
    delivered(hub, server)
    assert_each_once(hub_standin, "tb-bob", [r["event_id"] for r in rows])
    assert {r["status"] for r in outbox(hub_students["tb-bob"], [run.run_id])} == {"sent"}


def test_kill_9_of_the_relay_mid_stream_loses_and_duplicates_nothing(
    hub: Hub, hub_standin: StandIn, hub_students: dict[str, pwd.struct_passwd], quiz_for: Any
) -> None:
    alice, bob = hub.spawn("tb-alice"), hub.spawn("tb-bob")
    # Timeback keeps each envelope, then answers after 2 s: the relay is killed while it waits.
    hub_standin.latency = 2.0
    try:
        first = alice.run_notebook(quiz_for("tb-alice", "killed"))
        assert first.run_id is not None
        wait_until(lambda: for_runs(hub_standin, [first.run_id]), 120, "a first delivery")
        killed = hub.relay_pid()
        os.kill(killed, signal.SIGKILL)
        # bob works on while the hub starts the relay again
        second = bob.run_notebook(quiz_for("tb-bob", "killed"))
        assert second.run_id is not None
        assert wait_until(lambda: hub.relay_pid() != killed, 120, "the relay to run again")
    finally:
        hub_standin.latency = 0.0
    delivered(hub, alice, bob)
    for user, run_id in (("tb-alice", first.run_id), ("tb-bob", second.run_id)):
        rows = outbox(hub_students[user], [run_id])
        assert {r["status"] for r in rows} == {"sent"}
        assert_each_once(hub_standin, user, [r["event_id"] for r in rows])
    assert len(set(hub_standin.received_ids)) == len(hub_standin.received_ids)


def test_a_hub_restart_with_new_server_tokens_loses_nothing(
    hub: Hub, hub_standin: StandIn, hub_students: dict[str, pwd.struct_passwd], quiz_for: Any
) -> None:
    token_cell = "import os; print(os.environ['JUPYTERHUB_API_TOKEN'])"
    server = hub.spawn("tb-alice")
    before = server.run_code(token_cell).stdout.strip()
    with paused(hub.relay_pid()):
        run = server.run_notebook(quiz_for("tb-alice", "hub-restart"))
        assert run.run_id is not None
        rows = held(server, hub_students["tb-alice"], run.run_id)
        # her server stops with the events still in its outbox (its last send unanswered)
        hub.stop_server("tb-alice")
    began = time.monotonic()
    hub.restart()  # every server stopped, the relay too; new server tokens from here on
    restarted = time.monotonic() - began
    server = hub.spawn("tb-alice")
    after = server.run_code(token_cell).stdout.strip()
    assert before and after and before != after
    delivered(hub, server)
    assert {r["status"] for r in outbox(hub_students["tb-alice"], [run.run_id])} == {"sent"}
    assert_each_once(hub_standin, "tb-alice", [r["event_id"] for r in rows])
    print(f"hub restart: {restarted:.1f} s")
