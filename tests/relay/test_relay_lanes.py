"""Group-commit lanes: on PostgreSQL several ingest transactions of one relay are in flight at
once, never two holding the same hub user, each envelope still answered after its own commit;
one user's envelopes commit in arrival order, and nothing is lost, duplicated or overlapped."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest
import sqlalchemy as sa

from timeback_jupyter.relay.batching import BatchTiming, GroupCommit
from timeback_jupyter.relay.schema import received
from timeback_jupyter.relay.users import HubUser

from .conftest import T0, Clock, envelope, make_relay, placed_ms, run_id, tse


def _recording(log: list[tuple[str, list[tuple[str, int]]]], gate: threading.Event | None = None):
    """A run_batch that records each batch's start and end (with its items) and, if ``gate``
    is given, holds every batch until it is set."""
    lock = threading.Lock()

    def run(items: list[tuple[str, int]]) -> list[int | Exception]:
        with lock:
            log.append(("start", items))
        if gate is not None:
            assert gate.wait(10), "the gate was never opened"
        else:
            time.sleep(0.02)
        with lock:
            log.append(("end", items))
        return [n for _, n in items]

    return run


def _key(item: tuple[str, int]) -> str:
    return item[0]


@pytest.mark.asyncio
async def test_lanes_run_batches_of_different_users_at_once():
    log: list = []
    gate = threading.Event()
    group: GroupCommit[tuple[str, int], int] = GroupCommit(_recording(log, gate), lanes=2, key=_key)
    first = asyncio.ensure_future(group.submit(("ada", 1)))
    await asyncio.sleep(0.05)  # ada's batch is in flight, held by the gate
    second = asyncio.ensure_future(group.submit(("bob", 2)))
    for _ in range(100):  # bob's goes in the second lane without waiting for ada's
        if len([e for e in log if e[0] == "start"]) == 2:
            break
        await asyncio.sleep(0.01)
    assert [e for e in log if e[0] == "start"] == [("start", [("ada", 1)]), ("start", [("bob", 2)])]
    gate.set()
    assert await asyncio.gather(first, second) == [1, 2]


@pytest.mark.asyncio
async def test_a_user_in_flight_in_one_lane_waits_and_keeps_the_order():
    log: list = []
    timings: list[BatchTiming] = []
    group: GroupCommit[tuple[str, int], int] = GroupCommit(
        _recording(log), lanes=3, key=_key, max_batch=4, observe=timings.append
    )
    items = [("ada", 1), ("bob", 2), ("ada", 3), ("cy", 4), ("ada", 5), ("bob", 6), ("dee", 7)]
    results = []
    for item in items:  # one at a time, a little apart: batches form while others run
        results.append(asyncio.ensure_future(group.submit(item)))
        await asyncio.sleep(0.005)
    assert await asyncio.gather(*results) == [n for _, n in items]
    in_flight: dict[str, int] = {}
    order: dict[str, list[int]] = {}
    most = 0
    for what, batch in log:
        # One batch may hold a user twice (both waited when it was taken; in order): what
        # must never be is a user in two batches in flight at once.
        users = {user for user, _ in batch}
        if what == "start":
            assert not users & in_flight.keys(), f"{users & in_flight.keys()} in two batches"
            for user, n in batch:
                in_flight[user] = n
                order.setdefault(user, []).append(n)
        else:
            for user in users:
                del in_flight[user]
        most = max(most, len(in_flight))
    assert order == {"ada": [1, 3, 5], "bob": [2, 6], "cy": [4], "dee": [7]}
    assert most >= 2  # lanes did overlap
    assert sum(t.size for t in timings) == len(items)
    assert all(t.wall > 0 and t.wait >= 0 and t.cpu >= 0 for t in timings)


def test_several_lanes_need_a_key():
    with pytest.raises(ValueError, match="key"):
        GroupCommit(lambda items: items, lanes=2)
    with pytest.raises(ValueError, match="lanes"):
        GroupCommit(lambda items: items, lanes=0)


def _concurrency(engine: sa.Engine) -> list[int]:
    """The most transactions open at once on ``engine``, kept in a one-item list."""
    lock, open_now, most = threading.Lock(), [0], [0]

    def began(conn):
        with lock:
            open_now[0] += 1
            most[0] = max(most[0], open_now[0])

    def ended(conn):
        with lock:
            open_now[0] -= 1

    sa.event.listen(engine, "begin", began)
    sa.event.listen(engine, "commit", ended)
    sa.event.listen(engine, "rollback", ended)
    return most


WINDOWS = 24
SERVERS = 3


@pytest.mark.asyncio
async def test_lanes_lose_nothing_and_never_overlap_one_users_time(relay_db_url):
    """Three servers of each of six students send overlapping windows in envelopes of four,
    all at once, to one relay. On PostgreSQL its transactions overlap (lanes); on either
    backend every event is answered once, the outbox holds exactly the accepted ones, a
    user's spans never overlap and their forwarded time is at most the wall time covered."""
    clock = Clock(T0 + 10_000)
    relay = make_relay(relay_db_url(), clock, commit_lanes=3, busy_timeout=60)
    most = _concurrency(relay.db.engine)
    try:
        students = [HubUser(f"s{i}") for i in range(6)]
        runs = {(s.name, k): run_id() for s in students for k in range(SERVERS)}
        sends, sent = [], 0
        for student, server in itertools.product(students, range(SERVERS)):
            events = [
                tse(runs[(student.name, server)], T0 + 15 * i + 3 * server, 12.0, 3.0)
                for i in range(1, WINDOWS + 1)
            ]
            for k in range(0, WINDOWS, 4):
                sends.append(relay.ingest(student, envelope(*events[k : k + 4])))
                sent += 4
        answers = await asyncio.gather(*sends)
        assert sum(a.count("accepted") + a.count("duplicate") for a in answers) == sent
        assert all(a.count("refused") == 0 and a.count("duplicate") == 0 for a in answers)
        assert relay.outbox.depth() == sent
        with relay.db.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(received)).scalar() == sent
            for student in students:
                placed = placed_ms(conn, student.name, SERVERS, WINDOWS)
                record = relay.record(student)
                assert round(record["active_seconds"] * 1000) == placed
                total = record["active_seconds"] + record["cut_seconds"]
                assert round(total * 1000) == SERVERS * WINDOWS * 12_000
        if relay_db_url.backend == "postgresql":
            assert most[0] >= 2, "the lanes never overlapped"
        else:
            assert relay._commits.lanes == 1  # SQLite: one writer, one lane
    finally:
        relay.db.close()


@pytest.mark.asyncio
async def test_the_same_event_in_two_envelopes_at_once_is_stored_once(relay_db_url):
    """Two envelopes of one user carrying the same event arrive together (a server's retry
    racing its first send): whichever lane takes them, one is accepted and one a duplicate."""
    relay = make_relay(relay_db_url(), Clock(T0 + 10_000), commit_lanes=3)
    try:
        ada = HubUser("ada")
        event = tse(run_id(), T0 + 15)
        others = [
            relay.ingest(HubUser(f"o{i}"), envelope(tse(run_id(), T0 + 15))) for i in range(8)
        ]
        answers = await asyncio.gather(
            relay.ingest(ada, envelope(event)), *others, relay.ingest(ada, envelope(event))
        )
        mine = [answers[0], answers[-1]]
        assert sorted(a.count("accepted") for a in mine) == [0, 1]
        assert sorted(a.count("duplicate") for a in mine) == [0, 1]
        assert relay.outbox.depth() == 9
    finally:
        relay.db.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("lanes", [1, 2])
async def test_a_caller_answered_can_submit_again_at_once(lanes):
    """The worker that answered a caller has returned but its task's callbacks have not run
    yet when the caller submits again: a new worker must still start (else it waits forever)."""
    group: GroupCommit[tuple[str, int], int] = GroupCommit(_recording([]), lanes=lanes, key=_key)
    for n in range(5):
        assert await asyncio.wait_for(group.submit(("ada", n)), 5) == n
