"""Through a real hub: students' events reach Timeback through the relay, under their own
actor, once; and what a student's cell forges does not get through as they meant it."""

from __future__ import annotations

import json
import pwd
from typing import Any

import pytest

from timeback_jupyter.relay.incoming import stored_id
from timeback_jupyter.testing.hub import Hub
from timeback_jupyter.testing.standin import StandIn

from .conftest import EMAIL_TEMPLATE, SOURCED_IDS
from .relayed import (
    XP_CAP,
    assert_each_once,
    catalog_xp,
    delivered,
    for_runs,
    forged,
    outbox,
    xp_of,
)

pytestmark = pytest.mark.slow


def test_two_students_events_reach_timeback_under_their_own_actor_exactly_once(
    hub: Hub, hub_standin: StandIn, hub_students: dict[str, pwd.struct_passwd], quiz_for: Any
) -> None:
    runs = {}
    for user in ("tb-alice", "tb-bob"):
        server = hub.spawn(user)
        run = server.run_notebook(quiz_for(user, "two-students"))
        assert run.run_id is not None
        assert run.widgets and run.widgets[0].button == "Completed", run.widgets
        runs[user] = run.run_id
        delivered(hub, server)
    for user, run_id in runs.items():
        sent = outbox(hub_students[user], [run_id])
        assert {r["status"] for r in sent} == {"sent"}
        assert {r["kind"] for r in sent} == {"time_spent", "completion"}
        assert_each_once(hub_standin, user, [r["event_id"] for r in sent])
        events = for_runs(hub_standin, [run_id])
        assert {stored_id(user, r["event_id"]) for r in sent} == {e["id"] for e in events}
        assert {e["actor"]["id"].rsplit("/", 1)[-1] for e in events} == {SOURCED_IDS[user]}
        assert {e["actor"]["email"] for e in events} == {EMAIL_TEMPLATE.format(name=user)}
        completions = [e for e in events if e["type"] == "ActivityEvent"]
        assert len(completions) == 1
        assert xp_of(completions[0]) == pytest.approx(catalog_xp(completions[0]))


@pytest.fixture(scope="module")
def alice_done(hub: Hub, quiz_for: Any) -> str:
    """Alice's completed quiz, from a copy whose metadata she edited to be worth 500 XP."""
    server = hub.spawn("tb-alice")
    run = server.run_notebook(quiz_for("tb-alice", "edited", xp=500, mastery_threshold=0.8))
    assert run.run_id is not None and run.widgets[0].button == "Completed", run.widgets
    delivered(hub, server)
    return run.run_id


def test_edited_notebook_metadata_earns_the_catalogs_xp(
    hub: Hub, hub_standin: StandIn, alice_done: str
) -> None:
    (completion,) = [e for e in for_runs(hub_standin, [alice_done]) if e["type"] == "ActivityEvent"]
    assert xp_of(completion) == pytest.approx(catalog_xp(completion))
    me = hub.relay_api("GET", "api/me", token=hub.token_for("tb-alice")).json()
    (mine,) = [c for c in me["completions"] if c["run_id"] == alice_done]
    assert mine["xp"] == xp_of(completion) and "expected 5 XP" in " ".join(mine["reasons"])


def test_an_event_sent_as_another_student_is_stamped_with_the_sender(
    hub: Hub, hub_standin: StandIn, alice_done: str
) -> None:
    bob = {"id": f"{hub_standin.url}/ims/oneroster/rostering/v1p2/users/{SOURCED_IDS['tb-bob']}",
           "type": "TimebackUser", "email": EMAIL_TEMPLATE.format(name="tb-bob")}  # fmt: skip
    status, answer, event_id = forged(
        hub.spawn("tb-alice"),
        f"""
sensor, event = mine("time_spent", {alice_done!r})
event = renamed(event)
event["actor"] = {bob!r}
print(json.dumps([*post(sensor, [event]), event["id"]]))
""",
    )
    assert status == 200, answer
    assert [e["status"] for e in answer["events"]] == ["accepted"], answer
    delivered(hub)
    (arrived,) = [e for e in hub_standin.received if e["id"] == stored_id("tb-alice", event_id)]
    assert arrived["actor"]["id"].endswith("/" + SOURCED_IDS["tb-alice"])
    assert arrived["actor"]["email"] == EMAIL_TEMPLATE.format(name="tb-alice")
    assert not [e for e in hub_standin.received if e["id"] == stored_id("tb-bob", event_id)]


def test_a_forged_completion_earns_at_most_the_catalogs_xp(
    hub: Hub, hub_standin: StandIn, alice_done: str
) -> None:
    status, answer, event_id = forged(
        hub.spawn("tb-alice"),
        f"""
sensor, event = mine("completion", {alice_done!r})
event = with_xp(renamed(event, str(uuid.uuid4())), 999)
print(json.dumps([*post(sensor, [event]), event["id"]]))
""",
    )
    assert status == 200, answer
    (result,) = answer["events"]
    assert result["status"] == "accepted" and result["xp"] <= XP_CAP, result
    delivered(hub)
    (arrived,) = [e for e in hub_standin.received if e["id"] == stored_id("tb-alice", event_id)]
    assert xp_of(arrived) == result["xp"]


def test_an_edited_outbox_earns_at_most_the_catalogs_xp(
    hub: Hub, hub_standin: StandIn, hub_students: dict[str, pwd.struct_passwd], alice_done: str
) -> None:
    server = hub.spawn("tb-alice")
    event_id = forged(
        server,
        f"""
sensor, event = mine("completion", {alice_done!r})
run_id = str(uuid.uuid4())
event = with_xp(renamed(event, run_id), 999)
with sqlite3.connect(STORE) as db:
    db.execute("INSERT INTO outbox (event_id, run_id, kind, sensor, payload, created_at) "
               "VALUES (?, ?, 'completion', ?, ?, 0)",
               (event["id"], run_id, sensor, json.dumps(event)))
print(json.dumps(event["id"]))
""",
    )
    delivered(hub, server)
    (row,) = [r for r in outbox(hub_students["tb-alice"]) if r["event_id"] == event_id]
    assert row["status"] == "sent"
    (arrived,) = [e for e in hub_standin.received if e["id"] == stored_id("tb-alice", event_id)]
    assert xp_of(arrived) <= XP_CAP


def test_a_run_completes_once(hub: Hub, hub_standin: StandIn, alice_done: str) -> None:
    status, answer = forged(
        hub.spawn("tb-alice"),
        f"""
sensor, event = mine("completion", {alice_done!r})
print(json.dumps(post(sensor, [with_xp(renamed(event), 999)])))
""",
    )
    assert status == 200, answer
    (result,) = answer["events"]
    assert result["status"] == "refused", result
    delivered(hub)
    completions = [e for e in for_runs(hub_standin, [alice_done]) if e["type"] == "ActivityEvent"]
    assert len(completions) == 1, json.dumps(completions)
