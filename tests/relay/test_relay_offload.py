"""The relay's forwarder calls its store on the drainer's store thread (``RelayOutbox.thread_safe``,
``delivery/offload.py``), never on the event loop the ingest answers on: every statement of a
drain step (claim, job record, job checks, confirm, a failed job's re-queue, release, dead
letter, the settle's look, the replica's lock ping) runs there; a claim waiting for a lock held
in the database leaves the loop free; and ingesting while the forwarder drains loses nothing,
sends nothing twice and meets no "database is locked". On both backends, against the real
stand-in Timeback."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa

from timeback_jupyter.config import Credentials
from timeback_jupyter.delivery import Drainer, TimebackSink
from timeback_jupyter.relay.ingest import Relay
from timeback_jupyter.testing.standin import EVENT_PATH, Fault, StandIn

from .conftest import ADA, BOB, T0, Wall, envelope, run_id, tse

CLIENT_ID, SECRET = "relay-offload-client", "relay-offload-secret"


@pytest.fixture
def api():
    with StandIn(CLIENT_ID, SECRET) as server:
        server.users["ada@school.edu"] = ["u-ada"]
        server.users["bob@school.edu"] = ["u-bob"]
        yield server


@pytest.fixture
def clock(wall: Wall) -> Wall:
    return wall  # the conftest's relay runs on it


def forwarder(relay: Relay, api: StandIn, wall: Wall, **kw: Any) -> Drainer:
    sink = TimebackSink(
        Credentials(CLIENT_ID, SECRET),
        base_url=api.url,
        auth_url=api.token_url,
        timeout=kw.pop("timeout", 5.0),
    )
    kw.setdefault("batch_size", 3)
    kw.setdefault("retry_initial", 0.05)
    kw.setdefault("retry_max", 0.2)
    kw.setdefault("job_poll_initial", 0.05)
    kw.setdefault("job_poll_max", 0.2)
    kw.setdefault("job_timeout", 10.0)
    return Drainer(relay.outbox, sink, wall=wall, **kw)


async def accept(relay: Relay, count: int, user=ADA, *, first: int = 1) -> list[str]:
    """``count`` heartbeats of a new run of ``user``, in the 15 s windows from number
    ``first`` on (a user's windows must not overlap: their time would be cut)."""
    before = len(relay.outbox.events())
    run = run_id()
    events = [tse(run, T0 + 15 * i) for i in range(first, first + count)]
    result = await relay.ingest(user, envelope(*events))
    assert result.to_dict()["accepted"] == count, result.to_dict()
    return [e["id"] for e in relay.outbox.events()[before:]]  # the ids the relay forwards


async def drain_until_settled(drainer: Drainer, timeout: float) -> None:
    """``Drainer.flush`` without its closing look at the depth (a status read, on the loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step = await drainer.drain_once()
        if step.idle and step.waiting is None:
            return
        await asyncio.sleep(step.delay or (step.waiting or 0.0 if step.idle else 0.0) or 0.005)
    raise AssertionError(f"the forwarder did not settle within {timeout}s")


class Statements:
    """Each statement the engines run, with whether it ran on the event loop's thread."""

    def __init__(self, *engines: sa.Engine | None) -> None:
        self.loop_thread = threading.get_ident()
        self.seen: list[tuple[bool, str]] = []
        self.threads: set[str] = set()
        self.engines = [e for e in engines if e is not None]
        for engine in self.engines:
            sa.event.listen(engine, "before_cursor_execute", self._note)

    def _note(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        on_loop = threading.get_ident() == self.loop_thread
        self.seen.append((on_loop, " ".join(statement.split())))
        if not on_loop:
            self.threads.add(threading.current_thread().name)

    def stop(self) -> None:
        for engine in self.engines:
            sa.event.remove(engine, "before_cursor_execute", self._note)

    def on_loop(self) -> list[str]:
        return [s for on_loop, s in self.seen if on_loop]

    def off_loop(self) -> str:
        return "\n".join(s for on_loop, s in self.seen if not on_loop)


@pytest.mark.asyncio
async def test_every_statement_of_the_forwarder_runs_off_the_event_loop(api, relay, wall):
    api.job_delay = 0.05
    first, second = await accept(relay, 3), await accept(relay, 3, BOB)
    third = await accept(relay, 3, first=4)
    # A 503 (released), a 400 (dead letters), a failed job (queued again), a send that
    # times out (settled: looked up, sent again once no job can store it), then delivered.
    api.script(
        Fault.error(503),
        Fault.error(400, "refused"),
        Fault.job_fails("worker crashed"),
        Fault.hang(1.5),
    )
    drainer = forwarder(relay, api, wall, timeout=0.5, job_timeout=1.0)
    watch = Statements(relay.db.engine, relay.outbox.replica.engine)
    try:
        await drain_until_settled(drainer, timeout=60)
    finally:
        watch.stop()
        await drainer.sink.aclose()
        await drainer.stop()
    assert watch.on_loop() == []
    assert watch.threads == {"timeback-outbox"}
    done = watch.off_loop()
    for statement in (
        "UPDATE outbox SET", "INSERT INTO jobs", "UPDATE jobs SET state=",
        "INSERT INTO dead_letters", "SELECT jobs.job_id, jobs.submitted_at FROM jobs",
        "SELECT outbox.event_id FROM outbox WHERE outbox.job_id =",  # the failed job's
    ):  # fmt: skip
        assert statement in done, statement
    if relay.outbox.replica.key is not None:
        assert "pg_try_advisory_lock" in done
    # What the faults did, and nothing lost or twice
    assert sorted(d.event_id for d in relay.outbox.dead_letters()) == sorted(first)
    counts = Counter(api.received_ids)
    assert sorted(counts) == sorted(second + third) and max(counts.values()) == 1
    assert list(api.jobs.values()).count("failed") == 1


class HeldLock:
    """A lock the claim needs, taken in the database by another connection on a thread of its
    own and let go after ``seconds``: PostgreSQL's table lock that ``FOR UPDATE`` waits for
    (SKIP LOCKED skips rows, not tables); SQLite's write lock (``BEGIN IMMEDIATE``)."""

    def __init__(self, relay: Relay, seconds: float) -> None:
        self.url = relay.db.engine.url
        self.seconds = seconds
        self.held = threading.Event()
        self.let_go = threading.Event()
        self.thread = threading.Thread(target=self._hold, name="test-lock-holder")
        self.error: BaseException | None = None

    def _hold(self) -> None:
        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                if engine.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.exec_driver_sql("LOCK TABLE outbox IN EXCLUSIVE MODE")
                self.held.set()
                time.sleep(self.seconds)
                self.let_go.set()
                conn.rollback()
        except BaseException as err:  # told to the test, not lost on this thread
            self.error = err
            self.held.set()
        finally:
            engine.dispose()

    async def __aenter__(self) -> HeldLock:
        self.thread.start()
        await asyncio.to_thread(self.held.wait)
        assert self.error is None, self.error
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.thread.join)
        assert self.error is None, self.error


@pytest.mark.asyncio
async def test_the_loop_runs_on_while_a_claim_waits_for_a_lock_held_in_the_database(
    api, relay, wall
):
    ids = await accept(relay, 3)
    drainer = forwarder(relay, api, wall)
    ticks_held = 0
    async with HeldLock(relay, seconds=1.5) as lock:
        step = asyncio.create_task(drainer.drain_once())
        # On the loop the claim would hold it until the lock is let go: no tick meanwhile.
        while not lock.let_go.is_set():
            await asyncio.sleep(0.02)
            if not lock.let_go.is_set():
                assert not step.done(), "the claim did not wait for the lock"
                ticks_held += 1
        report = await step
    assert ticks_held >= 10, ticks_held
    assert report.queued == 3 and report.error is None
    await drain_until_settled(drainer, timeout=30)
    assert api.received_ids == ids
    await drainer.sink.aclose()
    await drainer.stop()


@pytest.mark.asyncio
async def test_ingesting_while_the_forwarder_drains_loses_nothing_and_locks_nothing(
    api, relay, wall, caplog
):
    """The ingest's transactions (its group commit's thread) and the forwarder's (the store
    thread) meet in the same database: on SQLite they wait for each other's write lock, under
    the busy timeout, never failing with "database is locked"."""
    api.job_delay = 0.02
    drainer = forwarder(relay, api, wall, batch_size=20, batch_pause=0.0)
    relay.notify = drainer.notify
    running = asyncio.create_task(drainer.run())
    try:
        await asyncio.gather(
            *(accept(relay, 5, (ADA, BOB)[i % 2], first=1 + 5 * (i // 2)) for i in range(40))
        )
        deadline = time.monotonic() + 60
        while relay.status()["outbox"]["sent"] < 200:
            assert time.monotonic() < deadline, relay.status()
            await asyncio.sleep(0.05)
    finally:
        await drainer.stop()
        running.cancel()
        await drainer.sink.aclose()
    ids = [e["id"] for e in relay.outbox.events()]
    assert len(ids) == 200
    counts = Counter(api.received_ids)
    assert sorted(counts) == sorted(ids) and max(counts.values()) == 1
    assert relay.outbox.dead_letters() == []
    # No step failed meanwhile (the drainer logs each one it backs off from)
    failed = [r for r in caplog.records if r.name.startswith("timeback_jupyter")]
    assert [r.getMessage() for r in failed if r.levelno >= logging.WARNING] == []
    assert len([r for r in api.requests if r.path == EVENT_PATH]) >= 200 // 20
