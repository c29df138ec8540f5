"""The district benchmark's load generator: one process, a share of the students, raw HTTP/1.1.

Run by :mod:`.district` as ``python -m benchmarks.district_load JOB.json OUT.json``. Lean on
purpose (its CPU competes with the relays on the same two cores): each student's envelope is a
JSON template made once with the product's own builders (``caliper.time_spent_event``), filled
per request with new event ids and the window's end by string formatting; each student's
request head is bytes made once. Requests go over keep-alive connections (a pool per relay
replica) driven by asyncio protocols: no task, stream or future per request, one callback per
answer, and one wakeup for all the envelopes due within the same millisecond.

Open loop: every student sends at its own offset within each interval whatever the answers
do, and a request's latency is counted from when it was due (a request that waits for a free
connection is late, and that wait is in its latency), so a relay that falls behind shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

INTERVAL = 15.0
ACTIVE_SHARE = 0.8  # of each window, the rest inactive (a heartbeat's usual mix)
EARLY = 0.001  # seconds: an envelope due this soon goes with the ones due now (one wakeup)


def _iso(t: float) -> str:
    return (
        datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(t * 1000) % 1000:03d}Z"
    )


class Clock:
    """``_iso`` with the date and time of day made once per second (a strftime per request
    was a tenth of the generator's work)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, t: float) -> str:
        ms = int(t * 1000)
        second = ms // 1000
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{self._prefix}{ms % 1000:03d}Z"


class Ids:
    """Fresh UUIDs (version 4 in form) without a system call each: a random prefix per
    process and a counter. Unique across generators and runs (the prefix has 74 random bits)."""

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return f"{self._prefix}{self._n:012x}"


def templates(interval: float) -> tuple[str, str]:
    """The JSON text of a heartbeat envelope and of a heartbeat + completion envelope, with
    ``%(event)s``/``%(event2)s`` (event ids), ``%(run)s`` and ``%(time)s`` (window end) open."""
    from timeback_jupyter import caliper
    from timeback_jupyter.model import Completion, Window
    from timeback_jupyter.testing.standin import SENSOR, _actor, _target

    run = str(uuid.uuid4())
    end = 1_800_000_000.0
    event_id, event2 = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    window = Window(
        run, end - interval, end, interval * ACTIVE_SHARE, interval * (1 - ACTIVE_SHARE)
    )
    beat = caliper.time_spent_event(window, run, _actor(), _target(), event_id=event_id)
    done = Completion(run, 5.0, end, total_questions=4, correct_questions=3)
    completion = caliper.completion_event(done, run, 1, _actor(), _target(), event_id=event2)
    out = []
    for events in ([beat], [beat, completion]):
        text = json.dumps(caliper.envelope(events, SENSOR, end), separators=(",", ":"))
        text = text.replace("%", "%%").replace(event_id, "urn:uuid:%(event)s")
        text = text.replace(event2, "urn:uuid:%(event2)s").replace(run, "%(run)s")
        for i, event in enumerate(events):  # the metrics' ids, derived from the event's
            text = text.replace(event["generated"]["id"], f"urn:uuid:%(gen{i})s")
        out.append(text.replace(_iso(end), "%(time)s"))
    return out[0], out[1]


@dataclass
class Student:
    name: str
    token: str
    replica: int
    offset: float  # the share of the interval after a phase's start it sends at, 0 to 1
    rank: float  # 0 to 1: a phase with share x is sent by the students of rank < x
    run: str = ""
    beats: int = 0
    head: bytes = b""  # the request up to its Content-Length's value


class Phase:
    """What one phase recorded (the JSON the benchmark reads), and its requests in flight."""

    def __init__(self, name: str, start: float) -> None:
        self.start = start
        self.record: dict[str, Any] = {"name": name, "sent": [], "latency": [], "events": 0,
                                       "errors": [], "refused": 0}  # fmt: skip
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


class Maker:
    """Each envelope's request bytes from its student's head and the phase's templates."""

    def __init__(self, interval: float, completion_every: int) -> None:
        self.beat_t, self.done_t = templates(interval)
        self.every = completion_every
        self.ids = Ids()
        self.clock = Clock()

    def request(self, s: Student, at: float) -> tuple[bytes, int]:
        ids = self.ids
        if not s.run:
            s.run = ids()
        s.beats += 1
        complete = s.beats % self.every == 0
        fill = {"event": ids(), "event2": ids(), "gen0": ids(), "gen1": ids(),
                "run": s.run, "time": self.clock.iso(at)}  # fmt: skip
        body = ((self.done_t if complete else self.beat_t) % fill).encode()
        if complete:
            s.run = ""
        return b"%s%d\r\n\r\n%s" % (s.head, len(body), body), 2 if complete else 1


async def _run(job: dict[str, Any]) -> dict[str, Any]:
    students = [Student(*s) for s in job["students"]]
    for s in students:
        s.head = (
            f"POST {job['path']} HTTP/1.1\r\nHost: relay\r\nAuthorization: token {s.token}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
    pools = [Pool(host, port, job["connections_per_replica"]) for host, port in job["replicas"]]
    out: dict[str, Any] = {"phases": []}
    cpu0 = time.process_time()
    for index, phase in enumerate(job["phases"]):
        if index == 1:
            # The first lookups done: tell the benchmark, and take the later phases' times
            Path(job["sync_dir"], f"first-done-{job['generator']}").write_text("")
            schedule = Path(job["sync_dir"], "schedule.json")
            while not schedule.exists():
                await asyncio.sleep(0.1)
            starts = json.loads(schedule.read_text())
            for later, at in zip(job["phases"][1:], starts, strict=True):
                later["start"] = at
        if phase.get("closed"):
            out["phases"].append(await _first(job, students, pools))
            continue
        out["phases"].append(await _open(job, students, pools, phase))
    out["cpu_s"] = time.process_time() - cpu0
    return out


async def _open(
    job: dict[str, Any], students: list[Student], pools: list[Pool], phase: dict[str, Any]
) -> dict[str, Any]:
    interval = phase["interval"]
    maker = Maker(interval, job["completion_every"])
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
            pools[s.replica].submit((data, due, events, state))
            queue.append((due + interval, s))  # popped in time order, so appended in order
    if state.open:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.idle.wait(), phase["drain"])
    # Unanswered when the next phase is due: counted with the wait so far (a lower bound
    # of their latency), so a relay far behind cannot hide its tail by not answering.
    now = time.time()
    state.record["late_tasks"] = sum(pool.cut(now) for pool in pools)
    return state.record


async def _first(job: dict[str, Any], students: list[Student], pools: list[Pool]) -> dict[str, Any]:
    """Every student's first envelope, at most ``concurrency`` in flight per replica, as fast as
    the relays (and the hub behind their first lookups) answer: latency from each send."""
    maker = Maker(INTERVAL, job["completion_every"])
    began = time.time()
    state = Phase("first", began)
    for s in students:
        s.run, s.beats = maker.ids(), 0
        data, events = maker.request(s, began)
        pools[s.replica].submit((data, began, events, state))
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
