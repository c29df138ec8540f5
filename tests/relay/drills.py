"""What the relay drills share: students' servers posting through the real ``RelaySink`` (each
with its own hub token, failing over between replicas and honouring the relay's Retry-After),
and the checks made after every drill, at the stand-in and in the relay's database."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from timeback_jupyter import caliper
from timeback_jupyter.delivery.errors import RejectedError, RetryableError
from timeback_jupyter.delivery.relay import RelaySink
from timeback_jupyter.relay.database import open_relay_db
from timeback_jupyter.relay.incoming import stored_id
from timeback_jupyter.relay.schema import active_spans, dead_letters, jobs, outbox
from timeback_jupyter.testing.standin import SENSOR, StandIn, time_spent_events

from .hub import wait_until

PER_ENVELOPE = 4
ACTIVE_MS = 12_000  # each window of time_spent_events: 12 s active, 3 s inactive


@dataclass
class Student:
    name: str
    token: str
    sourced_id: str
    acked: list[str] = field(default_factory=list)  # event ids the relay acknowledged


class Load:
    """Students' servers sending heartbeats to the replicas at ``urls`` until stopped.

    Each student sends envelopes of four consecutive 15 s windows of one run, one after the
    other (a server's drainer sends in order); an envelope the relay did not acknowledge is
    sent again, unchanged, to the next replica after the relay's Retry-After (or 0.2 s).
    """

    def __init__(self, students: list[Student], urls: list[str], *, pace: float = 0.05) -> None:
        self.students, self.urls, self.pace = students, urls, pace
        self.failures: list[tuple[str, float | None]] = []  # (message, retry_after)
        self.rejected: list[str] = []
        self.envelopes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-load", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self, timeout: float = 120.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the students' servers did not stop"

    @property
    def acked_envelopes(self) -> int:
        with self._lock:
            return self.envelopes

    def wait_for(self, more: int, what: str, timeout: float = 60.0) -> None:
        """Until ``more`` envelopes more than now are acknowledged."""
        target = self.acked_envelopes + more
        wait_until(lambda: self.acked_envelopes >= target, what, timeout=timeout)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        await asyncio.gather(*(self._student(n, s) for n, s in enumerate(self.students)))

    async def _student(self, n: int, student: Student) -> None:
        sinks = [RelaySink(url, student.token, timeout=10) for url in self.urls]
        turn = itertools.count(n)
        run_id = str(uuid.uuid4())
        # windows back to back from 5 h ago: in the past, never overlapping each other
        start = time.time() - 5 * 3600
        try:
            for k in itertools.count():
                if self._stop.is_set():
                    return
                events = time_spent_events(run_id, PER_ENVELOPE, start=start + 60 * k)
                body = caliper.envelope(events, SENSOR, time.time())
                await self._send(sinks, turn, body)
                with self._lock:
                    student.acked.extend(e["id"] for e in events)
                    self.envelopes += 1
                await asyncio.sleep(self.pace)
        finally:
            for sink in sinks:
                await sink.aclose()

    async def _send(self, sinks: list[RelaySink], turn: Any, body: dict) -> None:
        sink = sinks[next(turn) % len(sinks)]
        deadline = time.monotonic() + 120
        while True:
            try:
                await sink.send(body)
                return
            except RetryableError as err:
                with self._lock:
                    self.failures.append((str(err), err.retry_after))
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(min(err.retry_after or 0.2, 5.0))
                sink = sinks[next(turn) % len(sinks)]  # the next replica
            except RejectedError as err:
                with self._lock:
                    self.rejected.append(str(err))
                return


def delivered(db_url: str, standin: StandIn, timeout: float = 90.0) -> None:
    """Until the relay's outbox is empty and no job of Timeback's is pending."""

    def done() -> bool:
        with open_relay_db(db_url) as db, db.read() as conn:
            left = conn.execute(
                sa.select(sa.func.count())
                .select_from(outbox)
                .where(outbox.c.status.in_(("pending", "inflight")))
            ).scalar_one()
            waiting = conn.execute(
                sa.select(sa.func.count()).select_from(jobs).where(jobs.c.state == "pending")
            ).scalar_one()
        return left == 0 and waiting == 0

    wait_until(done, "the relay to deliver everything", timeout=timeout, interval=0.5)


def check_exactly_once(db_url: str, standin: StandIn, load: Load) -> dict[str, int]:
    """Every event the relay accepted reached the stand-in once, every acknowledged one was
    accepted, nothing is left or dead, and no user's forwarded time overlaps. Returns
    counts for the report."""
    assert load.rejected == [], load.rejected[:3]
    received = standin.received_ids
    counts = Counter(received)
    twice = {i: n for i, n in counts.items() if n > 1}
    assert twice == {}, f"{len(twice)} event(s) reached Timeback more than once"
    with open_relay_db(db_url) as db, db.read() as conn:
        rows = conn.execute(sa.select(outbox.c.event_id, outbox.c.status)).all()
        dead = conn.execute(sa.select(sa.func.count()).select_from(dead_letters)).scalar_one()
        spans = conn.execute(
            sa.select(
                active_spans.c.user_name, active_spans.c.start_ms, active_spans.c.end_ms
            ).order_by(active_spans.c.user_name, active_spans.c.start_ms)
        ).all()
    assert dead == 0
    assert {status for _, status in rows} <= {"sent"}
    queued = {event_id for event_id, _ in rows}
    assert len(queued) == len(rows)
    assert queued == set(received), (
        f"lost: {len(queued - set(received))}, never queued: {len(set(received) - queued)}"
    )
    acked = {stored_id(s.name, i) for s in load.students for i in s.acked}
    assert acked <= queued, f"{len(acked - queued)} acknowledged event(s) never delivered"
    # each user's spans apart, and what Timeback got for them is exactly what they cover
    by_user: dict[str, list[tuple[int, int]]] = {}
    for user, start, end in spans:
        by_user.setdefault(user, []).append((start, end))
    for user, placed in by_user.items():
        for (_, end), (start, _) in itertools.pairwise(placed):
            assert end <= start, f"{user}: forwarded time overlaps"
    sent_ms: Counter[str] = Counter()
    names = {s.sourced_id: s.name for s in load.students}
    for event in standin.received:
        if event["type"] == "TimeSpentEvent":
            user = names[event["actor"]["id"].rsplit("/", 1)[-1]]
            active = next(i["value"] for i in event["generated"]["items"] if i["type"] == "active")
            sent_ms[user] += round(active * 1000)
    assert sent_ms == Counter({u: sum(e - s for s, e in p) for u, p in by_user.items()})
    return {"acked": len(acked), "delivered": len(received), "envelopes": load.envelopes}


@contextlib.contextmanager
def running(load: Load):
    load.start()
    try:
        yield load
    finally:
        load.stop()
