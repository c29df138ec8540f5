"""The district benchmark's load generator: one process, a share of the students, raw HTTP/1.1.

Run by :mod:`.district` as ``python -m benchmarks.district_load JOB.json OUT.json``. Lean on
purpose (its CPU competes with the relays on the same two cores): envelopes are templates
filled per request (:mod:`.district_envelopes`, the product's own builders). Requests go
over keep-alive connections (a pool per relay replica) driven by asyncio protocols: no task,
stream or future per request, one callback per answer, and one wakeup for all the envelopes
due within the same millisecond.

Open loop: every student sends at its own offset within each interval whatever the answers
do, and a request's latency is counted from when it was due (a request that waits for a free
connection is late, and that wait is in its latency), so a relay that falls behind shows it.

Paced servers: a phase's envelope holds ``windows`` consecutive heartbeat windows of
``window`` seconds, one envelope per student every ``interval`` = windows x window seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import zlib
from collections import deque
from pathlib import Path
from typing import Any

from .district_envelopes import Maker, Student, request_head

INTERVAL = 15.0
EARLY = 0.001  # seconds: an envelope due this soon goes with the ones due now (one wakeup)


class Phase:
    """What one phase recorded (the JSON the benchmark reads), and its requests in flight."""

    def __init__(self, name: str, start: float) -> None:
        self.start = start
        self.record: dict[str, Any] = {"name": name, "sent": [], "latency": [], "events": 0,
                                       "errors": [], "refused": 0}  # fmt: skip
        # The generator's own lateness, ms: how late each request was made (its event loop
        # behind the schedule) and how late it went on a connection (that, plus waiting for
        # a free one): what of a request's latency is not the relay's.
        self.made_late: list[float] = []
        self.sent_late: list[float] = []
        self.open = 0  # requests sent or waiting for a connection, not answered yet
        self.idle = asyncio.Event()
        self.idle.set()

    def answered(self, due: float, events: int, status: int, body: bytes) -> None:
        self._done()
        record = self.record
        if status != 200:
            record["errors"].append(f"{status}: {body[:160]!r}")
            return
        if b'"refused": 0' not in body and b'"refused":0' not in body:
            record["refused"] += 1
        record["sent"].append(round(due - self.start, 3))
        record["latency"].append(round((time.time() - due) * 1000, 2))
        record["events"] += events

    def failed(self, error: str) -> None:
        self._done()
        self.record["errors"].append(error[:160])

    def late(self, due: float, now: float) -> None:
        """Unanswered when the phase was cut off: counted with the wait so far."""
        self._done()
        self.record["sent"].append(round(due - self.start, 3))
        self.record["latency"].append(round((now - due) * 1000, 2))

    def _done(self) -> None:
        self.open -= 1
        if self.open == 0:
            self.idle.set()


# A request: its bytes, when it was due, how many events it carries, its phase.
Request = tuple[bytes, float, int, Phase]


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to a replica; a request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.current: Request | None = None
        self.buffer = b""
        self.connecting = False

    def send(self, request: Request) -> None:
        self.current = request
        request[3].sent_late.append((time.time() - request[1]) * 1000)
        if self.transport is not None:
            self.transport.write(request[0])
        elif not self.connecting:
            self.connecting = True
            loop = asyncio.get_running_loop()
            task = loop.create_task(
                loop.create_connection(lambda: self, self.pool.host, self.pool.port)
            )
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        self.connecting = False
        if task.cancelled() or task.exception() is not None:
            err = task.exception() if not task.cancelled() else "cancelled"
            self._fail(f"{type(err).__name__}: {err}")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""
        if self.current is not None:
            self.transport.write(self.current[0])  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self.buffer = buffer
            return
        at = buffer.find(b"ontent-Length:", 0, end)  # tornado's spelling
        if at < 0:
            at = buffer.lower().find(b"content-length:", 0, end)
        length = int(buffer[at + 15 : buffer.index(b"\r\n", at)]) if at >= 0 else 0
        if len(buffer) < end + 4 + length:
            self.buffer = buffer
            return
        self.buffer = buffer[end + 4 + length :]
        request, self.current = self.current, None
        if request is not None:
            request[3].answered(request[1], request[2], int(buffer[9:12]), buffer[end + 4 :])
            self.pool.free(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.current is not None:
            self._fail(f"{type(exc).__name__}: {exc}" if exc else "connection closed")

    def _fail(self, error: str) -> None:
        request, self.current = self.current, None
        if request is not None:
            request[3].failed(error)
        self.pool.free(self)

    def cut(self, now: float) -> None:
        """The phase is over: this connection is dropped (its pool makes a new one), so its
        answer, should it still come, is never read as another's."""
        request, self.current = self.current, None
        if self.transport is not None:
            self.transport.abort()
        if request is not None:
            request[3].late(request[1], now)


class Pool:
    """The connections to one replica: a request goes on an idle one or waits its turn."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.all = [Connection(self) for _ in range(size)]
        self.idle: deque[Connection] = deque(self.all)
        self.waiting: deque[Request] = deque()

    def submit(self, request: Request) -> None:
        request[3].open += 1
        request[3].idle.clear()
        if self.idle:
            self.idle.popleft().send(request)
        else:
            self.waiting.append(request)

    def free(self, conn: Connection) -> None:
        if self.waiting:
            conn.send(self.waiting.popleft())
        else:
            self.idle.append(conn)

    def cut(self, now: float) -> int:
        """Cancel what is still open: returns how many were."""
        busy = [c for c in self.all if c.current is not None]
        for conn in busy:
            conn.cut(now)
            fresh = Connection(self)
            self.all[self.all.index(conn)] = fresh
            self.idle.append(fresh)
        waiting, self.waiting = self.waiting, deque()
        for request in waiting:
            request[3].late(request[1], now)
        return len(busy) + len(waiting)


async def _run(job: dict[str, Any]) -> dict[str, Any]:
    students = [Student(*s) for s in job["students"]]
    for s in students:
        s.head = request_head(job["path"], s.token)
    pools = [Pool(host, port, job["connections_per_replica"]) for host, port in job["replicas"]]
    out: dict[str, Any] = {"phases": []}
    cpu0 = time.process_time()
    phases = job["phases"]
    for index, phase in enumerate(phases):
        if index and phase["group"] != phases[index - 1]["group"]:
            await _scheduled(job, phase["group"])
        if phase.get("closed"):
            out["phases"].append(await _first(job, students, pools))
            continue
        out["phases"].append(await _open(job, students, pools, phase))
    out["cpu_s"] = time.process_time() - cpu0
    return out


async def _scheduled(job: dict[str, Any], group: str) -> None:
    """A group of phases (one pace's) begins: say this generator is ready for it, and take the
    group's start times from the benchmark (:func:`.district_plan.write_schedule`)."""
    sync = Path(job["sync_dir"])
    (sync / f"ready-{group}-{job['generator']}").write_text("")
    schedule = sync / f"schedule-{group}.json"
    while not schedule.exists():
        await asyncio.sleep(0.1)
    starts = json.loads(schedule.read_text())
    mine = [p for p in job["phases"] if p["group"] == group]
    for phase, at in zip(mine, starts, strict=True):
        phase["start"] = at


async def _open(
    job: dict[str, Any], students: list[Student], pools: list[Pool], phase: dict[str, Any]
) -> dict[str, Any]:
    interval = phase["interval"]
    maker = Maker(phase["window"], job["completion_every"], phase["windows"])
    start, until = phase["start"], phase["start"] + phase["seconds"]
    state = Phase(phase["name"], start)
    state.record["late_start_s"] = round(max(0.0, time.time() - start), 2)
    # The schedule: every student at its offset in each interval, in time order.
    share = phase.get("share", 1.0)
    order = sorted((s for s in students if s.rank < share), key=lambda s: s.offset)
    queue = deque((start + s.offset * interval, s) for s in order)
    clock = time.time
    while queue:
        now = clock()
        due = queue[0][0]
        if due >= until:
            break  # in time order: all the rest are past the phase too
        if due - now > EARLY:
            await asyncio.sleep(due - now)
            now = clock()
        # Everything due by now (and within EARLY of it) goes in this one wakeup.
        while queue and queue[0][0] <= now + EARLY:
            due, s = queue.popleft()
            if due >= until:
                continue
            data, events = maker.request(s, due)
            state.made_late.append((clock() - due) * 1000)
            pools[s.replica].submit((data, due, events, state))
            queue.append((due + interval, s))  # popped in time order, so appended in order
    if state.open:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.idle.wait(), phase["drain"])
    # Unanswered when the next phase is due: counted with the wait so far (a lower bound
    # of their latency), so a relay far behind cannot hide its tail by not answering.
    now = time.time()
    state.record["late_tasks"] = sum(pool.cut(now) for pool in pools)
    for name, values in (("made_late_ms", state.made_late), ("sent_late_ms", state.sent_late)):
        ordered = sorted(values)
        state.record[name] = {
            q: round(ordered[min(len(ordered) - 1, int(len(ordered) * f))], 2) if ordered else 0.0
            for q, f in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
        }
    return state.record


async def _first(job: dict[str, Any], students: list[Student], pools: list[Pool]) -> dict[str, Any]:
    """Every student's first envelope, at most ``concurrency`` in flight per replica, as fast as
    the relays (and the hub behind their first lookups) answer: latency from each send."""
    maker = Maker(INTERVAL, job["completion_every"])
    began = time.time()
    state = Phase("first", began)
    every = job["completion_every"]
    for s in students:
        s.run, s.beats = maker.ids(), 0
        data, events = maker.request(s, began)
        pools[s.replica].submit((data, began, events, state))
        # Each student's run is at its own point from here: students that all post at the
        # same rate would otherwise all complete in the same envelope, and a short phase
        # would count every completion or none.
        s.beats = zlib.crc32(s.name.encode()) % every
    await state.idle.wait()
    record = state.record
    record.update(late_start_s=0.0, late_tasks=0, seconds=time.time() - began)
    return record


def main(argv: list[str]) -> int:
    with open(argv[0]) as fp:
        job = json.load(fp)
    result = asyncio.run(_run(job))
    with open(argv[1], "w") as fp:
        json.dump(result, fp)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
