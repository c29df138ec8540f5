"""The relay's rules, on a real SQLite file with injected time: the actor is the hub user's,
ids are idempotent per user, time is never counted twice, XP comes from the catalog."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import uuid

import pytest

from timeback_jupyter import caliper
from timeback_jupyter.identity import ActorResolver, IdentityLookupError, student_key
from timeback_jupyter.relay.database import RelayStoreError, open_relay_db
from timeback_jupyter.relay.incoming import STORED_ID_NAMESPACE, stored_id
from timeback_jupyter.relay.ingest import InvalidEnvelope, Relay, RelayUnavailable
from timeback_jupyter.relay.users import HubUser, UserDirectory

from .conftest import (
    ADA,
    BASE,
    BOB,
    T0,
    catalog,
    completion,
    envelope,
    forwarded,
    make_relay,
    run_id,
    tse,
)


async def ingest(relay, user, *events):
    return (await relay.ingest(user, envelope(*events))).to_dict()


# -- who -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_actor_is_the_hub_user_and_the_object_the_catalogs(relay):
    run = run_id()
    sent = tse(run, T0 + 15)
    answer = await ingest(relay, ADA, sent)
    assert answer["accepted"] == 1
    [out] = forwarded(relay)
    # the student claimed to be bob (MALLORY): ignored
    assert out["actor"] == {
        "id": f"{BASE}/ims/oneroster/rostering/v1p2/users/local-{student_key('ada@school.edu')}",
        "type": "TimebackUser",
        "email": "ada@school.edu",
    }
    assert out["object"]["app"] == {"name": "Notebook Academy"}  # not "Evil App"
    assert out["object"]["activity"] == {"name": "Fractions quiz"}
    assert out["extensions"] == {"runId": run, "courseId": "m3-stg"}
    assert out["id"] == stored_id("ada", sent["id"]) != sent["id"]
    caliper.validate_event(out)  # the official models accept what the relay forwards


@pytest.mark.asyncio
async def test_a_lookup_failure_stores_nothing_and_asks_to_retry(relay_db_url, clock):
    async def down(email):
        raise IdentityLookupError("OneRoster is unreachable", retryable=True)

    db = open_relay_db(relay_db_url("r"))
    users = UserDirectory("{name}@school.edu", BASE, ActorResolver(BASE, down))
    relay = Relay(db, catalog(), users, now=clock)
    with pytest.raises(RelayUnavailable, match="cannot tell Timeback who 'ada' is"):
        await relay.ingest(ADA, envelope(tse(run_id(), T0 + 15)))
    assert relay.outbox.depth() == 0 and relay.record(ADA)["events"]["accepted"] == 0


# -- idempotent by id ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_same_id_same_body_is_a_duplicate_other_body_refused(relay):
    run = run_id()
    first = tse(run, T0 + 15)
    assert (await ingest(relay, ADA, first))["accepted"] == 1
    again = await ingest(relay, ADA, first)
    assert again["events"] == [{"id": first["id"], "status": "duplicate", "first": "accepted"}]
    other = tse(run, T0 + 30, event_id=first["id"])
    [refused] = (await ingest(relay, ADA, other))["events"]
    assert refused["status"] == "refused" and "conflicts" in refused["reason"]
    # another student's server cannot take ada's ids: bob's copy is his own event
    assert (await ingest(relay, BOB, first))["accepted"] == 1
    assert len(forwarded(relay)) == 2
    assert relay.lookup(ADA, first["id"]) == {"id": first["id"], "status": "accepted"}
    assert relay.lookup(ADA, "urn:uuid:never-sent") is None


@pytest.mark.asyncio
async def test_acknowledged_only_after_commit_and_one_transaction_per_envelope(relay_db_url, clock):
    relay = make_relay(relay_db_url(), clock, busy_timeout=0.2)
    # Another writer holds the store: the envelope cannot commit, so nothing is acknowledged.
    if relay_db_url.backend == "sqlite":
        holder = sqlite3.connect(relay.db.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        held = "locked"
    else:
        holder = relay.db.engine.raw_connection()
        holder.cursor().execute("LOCK TABLE hub_users IN EXCLUSIVE MODE")
        held = "lock timeout"
    run = run_id()
    events = [tse(run, T0 + 15 * i) for i in (1, 2, 3)]
    with pytest.raises(RelayStoreError, match=held):
        await relay.ingest(ADA, envelope(*events))
    holder.rollback()
    holder.close()
    assert relay.outbox.depth() == 0 and relay.record(ADA)["runs"] == []
    assert (await ingest(relay, ADA, *events))["accepted"] == 3
    assert (await ingest(relay, ADA, *events))["duplicate"] == 3
    assert relay.outbox.depth() == 3


@pytest.mark.asyncio
async def test_a_malformed_envelope_is_refused_whole(relay):
    with pytest.raises(InvalidEnvelope, match="envelope.data"):
        await relay.ingest(ADA, {"sensor": "https://x", "dataVersion": "nope"} | {"data": []})
    with pytest.raises(InvalidEnvelope):
        await relay.ingest(ADA, [1, 2])


@pytest.mark.asyncio
async def test_events_not_of_our_shape_are_refused_with_a_reason(relay):
    good = tse(run_id(), T0 + 15)
    odd = {**tse(run_id(), T0 + 30), "extra": 1}
    answer = await ingest(relay, ADA, {"no": "id"}, odd, good)
    assert [e["status"] for e in answer["events"]] == ["refused", "refused", "accepted"]
    assert answer["events"][0]["id"] is None
    assert "not" in answer["events"][1]["reason"]
    assert relay.record(ADA)["refused"][0]["id"] == odd["id"]


# -- time --------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_two_servers_of_one_user_are_not_counted_twice(relay):
    a, b = run_id(), run_id()
    answer = await ingest(relay, ADA, tse(a, T0 + 15, 15, 0), tse(b, T0 + 15, 15, 0))
    assert [e.get("cut_seconds") for e in answer["events"]] == [0, 15]
    assert "already counted" in answer["events"][1]["reason"]
    # half overlapping: only the free half is forwarded
    answer = await ingest(relay, ADA, tse(b, T0 + 22.5, 15, 0))
    assert answer["events"][0]["cut_seconds"] == 7.5
    # bob is someone else: his time is his own
    assert (await ingest(relay, BOB, tse(run_id(), T0 + 15, 15, 0)))["events"][0][
        "cut_seconds"
    ] == 0
    record = relay.record(ADA)
    assert record["active_seconds"] == 22.5 and record["cut_seconds"] == 22.5
    assert {r["run_id"]: r["cut_seconds"] for r in record["runs"]} == {a: 0, b: 22.5}
    actives = [
        next(i["value"] for i in e["generated"]["items"] if i["type"] == "active")
        for e in forwarded(relay)
        if e["actor"]["email"] == "ada@school.edu"
    ]
    assert actives == [15, 7.5]  # a fully cut window with no inactive time is not forwarded
    assert relay.status()["cut_seconds"] == 22.5


@pytest.mark.asyncio
async def test_an_event_from_the_future_is_refused(relay, clock):
    run = run_id()
    answer = await ingest(relay, ADA, tse(run, clock.t + 60), tse(run, clock.t + 5))
    assert [e["status"] for e in answer["events"]] == ["refused", "accepted"]
    assert "future" in answer["events"][0]["reason"]


@pytest.mark.asyncio
async def test_a_window_longer_than_the_clock_writes_is_cut(relay):
    # 100 s of "active" in one heartbeat: at most 16 s (15 s windows and slack) go through.
    answer = await ingest(relay, ADA, tse(run_id(), T0 + 100, 100, 0))
    [event] = answer["events"]
    assert event["status"] == "accepted" and event["cut_seconds"] == 84
    assert "at most 16 s" in event["reason"]


@pytest.mark.asyncio
async def test_a_run_cannot_change_its_activity(relay):
    run = run_id()
    await ingest(relay, ADA, tse(run, T0 + 15))
    [event] = (await ingest(relay, ADA, tse(run, T0 + 30, slug="strict-quiz")))["events"]
    assert event["status"] == "refused" and "is a run of 'fractions-quiz'" in event["reason"]


# -- completions and XP ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_xp_comes_from_the_catalog_never_from_the_notebook(relay):
    run = run_id()
    await ingest(relay, ADA, tse(run, T0 + 15))
    # notebook metadata said xp 500 and the event claims 999: the catalog says 10
    [event] = (await ingest(relay, ADA, completion(run, T0 + 20)))["events"]
    assert event["status"] == "accepted" and event["xp"] == 12.5  # perfect first attempt
    out = forwarded(relay)[-1]
    items = {i["type"]: i["value"] for i in out["generated"]["items"]}
    assert items["xpEarned"] == 12.5 and out["generated"]["attempt"] == 1
    caliper.validate_event(out)
    [done] = relay.record(ADA)["completions"]
    assert done["rule"] == "perfect_first_attempt" and done["attempt"] == 1


@pytest.mark.asyncio
async def test_one_completion_per_run_and_the_relay_counts_attempts(relay):
    first, second = run_id(), run_id()
    await ingest(relay, ADA, completion(first, T0 + 20))
    [again] = (await ingest(relay, ADA, completion(first, T0 + 40)))["events"]
    assert again["status"] == "refused" and "already completed" in again["reason"]
    # the server says attempt 1 again; the relay knows it is the second run: no first-try bonus
    [event] = (await ingest(relay, ADA, completion(second, T0 + 60, attempt=1)))["events"]
    assert event["xp"] == 10
    assert forwarded(relay)[-1]["generated"]["attempt"] == 2
    assert relay.status()["completions"] == 2


@pytest.mark.asyncio
async def test_time_alone_earns_no_xp(relay):
    run = run_id()
    await ingest(relay, ADA, *[tse(run, T0 + 15 * i, 15, 0) for i in range(1, 9)])
    [event] = (await ingest(relay, ADA, completion(run, T0 + 200, total=None, correct=None)))[
        "events"
    ]
    assert event["xp"] == 0 and "no questions" in event["reason"]
    # the activity whose author allows XP without questions: its expected XP, not minutes
    lesson = run_id()
    await ingest(relay, ADA, tse(lesson, T0 + 1000, 15, 0, slug="fractions-lesson"))
    done = completion(lesson, T0 + 1010, total=None, correct=None, slug="fractions-lesson")
    assert (await ingest(relay, ADA, done))["events"][0]["xp"] == 5


@pytest.mark.asyncio
async def test_contradicting_totals_are_refused_and_leave_nothing_behind(relay):
    run = run_id()
    bad = completion(run, T0 + 20)
    for item in bad["generated"]["items"]:
        if item["type"] == "correctQuestions":
            item["value"] = 11  # of 10
    [event] = (await ingest(relay, ADA, bad))["events"]
    assert event["status"] == "refused" and "more than 10 questions" in event["reason"]
    assert relay.record(ADA)["runs"] == []  # the savepoint took the run's row back
    assert relay.outbox.depth() == 0


@pytest.mark.asyncio
async def test_unknown_activities_earn_zero_or_are_refused_as_configured(relay_db_url, clock):
    zero = make_relay(relay_db_url("zero"), clock)
    run = run_id()
    [event] = (await ingest(zero, ADA, completion(run, T0 + 20, slug="not-listed")))["events"]
    assert event["status"] == "accepted" and event["xp"] == 0
    assert "not in the school's catalog" in event["reason"]
    refuse = make_relay(relay_db_url("refuse"), clock, unknown_activity="refuse")
    answer = await ingest(refuse, ADA, tse(run, T0 + 15, slug="not-listed"))
    assert answer["refused"] == 1 and "not in the school's catalog" in answer["events"][0]["reason"]
    with pytest.raises(ValueError, match="unknown_activity"):
        make_relay(relay_db_url("x"), clock, unknown_activity="maybe")


@pytest.mark.asyncio
async def test_a_course_not_in_the_catalog_is_refused(relay):
    event = tse(run_id(), T0 + 15)
    event["object"]["id"] = event["object"]["id"].replace("/Math/g3/", "/Math/g5/")
    [out] = (await ingest(relay, ADA, event))["events"]
    assert (
        out["status"] == "refused" and "'Math G5' is not in the school's catalog" in out["reason"]
    )


@pytest.mark.asyncio
async def test_notify_runs_after_a_commit_that_queued_events(relay):
    calls = []
    relay.notify = lambda: calls.append(1)
    relay.notify_linger = 0
    await ingest(relay, ADA, tse(run_id(), T0 + 15))
    await ingest(relay, ADA, {"no": "id"})
    assert calls == [1]


@pytest.mark.asyncio
async def test_commits_within_the_linger_wake_the_forwarder_once(relay):
    """The forwarder is woken once for the commits of a quarter second, not per commit: it
    then finds a batch's worth, not one event per delivery."""
    calls = []
    relay.notify = lambda: calls.append(asyncio.get_running_loop().time())
    relay.notify_linger = 0.3
    began = asyncio.get_running_loop().time()
    await ingest(relay, ADA, tse(run_id(), T0 + 15))
    await ingest(relay, BOB, tse(run_id(), T0 + 15))
    await ingest(relay, ADA, {"no": "id"})  # nothing queued: no wake of its own
    assert calls == []  # not yet: the linger runs
    await asyncio.sleep(0.6)
    assert len(calls) == 1 and calls[0] - began >= 0.3
    await ingest(relay, ADA, tse(run_id(), T0 + 45))
    await asyncio.sleep(0.6)
    assert len(calls) == 2  # a later commit wakes it again


def test_user_names_are_checked():
    with pytest.raises(ValueError, match="HubUser.name"):
        HubUser("  ")
    with pytest.raises(ValueError, match="longer than 255"):
        HubUser("x" * 256)
    with pytest.raises(Exception, match="must contain"):
        UserDirectory("student@school.edu", BASE)


def test_stored_ids_are_uuid5_of_the_user_and_the_sent_id():
    """Spelled out for speed, the stored id must stay the uuid5 every stored row was keyed by."""
    rng = random.Random(17)
    alphabet = "abcXYZ019:/-_.~ \n\té€😀"
    for _ in range(2000):
        user = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        sent = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120)))
        want = uuid.uuid5(STORED_ID_NAMESPACE, f"{user}\n{sent}")
        assert stored_id(user, sent) == f"urn:uuid:{want}"
    # a fixed value, so a change of namespace or spelling cannot pass unnoticed
    assert stored_id("ada", "urn:uuid:1") == "urn:uuid:" + str(
        uuid.uuid5(uuid.UUID("0d3b8f6e-2a4c-5e71-9b1f-6c8a7d2e4f10"), "ada\nurn:uuid:1")
    )
