"""The district benchmark's load generator: one process, a share of the students, raw HTTP/1.1.

Run by :mod:`.district` as ``python -m benchmarks.district_load JOB.json OUT.json``. Lean on
purpose (its CPU competes with the relays on the same two cores): each student's envelope is a
JSON template made once with the product's own builders (``caliper.time_spent_event``), filled
per request with a new event id and the window's end by string formatting; requests go over
keep-alive connections (a pool per relay replica) written and read with asyncio streams.

Open loop: every student sends at its own offset within each interval whatever the answers
do, and a request's latency is counted from when it was due (a request that waits for a free
connection is late, and that wait is in its latency), so a relay that falls behind shows it.
"""

from __future__ import annotations

import asyncio
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


def _iso(t: float) -> str:
    return (
        datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(t * 1000) % 1000:03d}Z"
    )


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


class Connection:
    """One keep-alive HTTP/1.1 connection to a replica; a request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await self.reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _run(job: dict[str, Any]) -> dict[str, Any]:
    completion_every = job["completion_every"]
    students = [Student(*s) for s in job["students"]]
    pools: list[asyncio.Queue[Connection]] = []
    for host, port in job["replicas"]:
        pool: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(job["connections_per_replica"]):
            pool.put_nowait(Connection(host, port))
        pools.append(pool)
    path = job["path"]
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
            out["phases"].append(await _first(job, students, pools, phase))
            continue
        interval = phase["interval"]
        beat_t, done_t = templates(interval)
        record: dict[str, Any] = {"name": phase["name"], "sent": [], "latency": [],
                                  "events": 0, "errors": [], "refused": 0}  # fmt: skip
        tasks: dict[asyncio.Task[None], float] = {}  # in flight: when each was due

        async def send(s: Student, due: float, interval: float = interval,
                       beat_t: str = beat_t, done_t: str = done_t,
                       record: dict[str, Any] = record, start: float = phase["start"],
                       ) -> None:  # fmt: skip
            if not s.run:
                s.run = str(uuid.uuid4())
            s.beats += 1
            complete = s.beats % completion_every == 0
            fill = {"event": uuid.uuid4(), "event2": uuid.uuid4(), "gen0": uuid.uuid4(),
                    "gen1": uuid.uuid4(), "run": s.run, "time": _iso(due)}  # fmt: skip
            body = ((done_t if complete else beat_t) % fill).encode()
            if complete:
                s.run = ""
            request = (
                f"POST {path} HTTP/1.1\r\nHost: relay\r\nAuthorization: token {s.token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            pool = pools[s.replica]
            conn = await pool.get()
            try:
                status, answer = await conn.post(request)
            except Exception as err:  # a figure, not a crash
                record["errors"].append(f"{type(err).__name__}: {err}"[:160])
                return
            except asyncio.CancelledError:
                conn.close()  # its answer may still come: never read it as another's
                raise
            finally:
                pool.put_nowait(conn)
            latency = time.time() - due
            if status != 200:
                record["errors"].append(f"{status}: {answer[:160]!r}")
                return
            if b'"refused": 0' not in answer:
                record["refused"] += 1
            record["sent"].append(round(due - start, 3))
            record["latency"].append(round(latency * 1000, 2))
            record["events"] += 2 if complete else 1

        # The schedule: every student at its offset in each interval, in time order.
        record["late_start_s"] = round(max(0.0, time.time() - phase["start"]), 2)
        share = phase.get("share", 1.0)
        order = sorted((s for s in students if s.rank < share), key=lambda s: s.offset)
        start, until = phase["start"], phase["start"] + phase["seconds"]
        queue = deque((start + s.offset * interval, s) for s in order)
        while queue:
            due, s = queue.popleft()
            if due >= until:
                continue
            wait = due - time.time()
            if wait > 0.001:
                await asyncio.sleep(wait)
            task = asyncio.create_task(send(s, due))
            tasks[task] = due
            task.add_done_callback(tasks.pop)
            queue.append((due + interval, s))  # popped in time order, so appended in order
        if tasks:
            await asyncio.wait(list(tasks), timeout=phase["drain"])
        # Unanswered when the next phase is due: counted with the wait so far (a lower bound
        # of their latency), so a relay far behind cannot hide its tail by not answering.
        now = time.time()
        record["late_tasks"] = len(tasks)
        for t, due in list(tasks.items()):
            t.cancel()
            record["sent"].append(round(due - start, 3))
            record["latency"].append(round((now - due) * 1000, 2))
        out["phases"].append(record)
    out["cpu_s"] = time.process_time() - cpu0
    return out


async def _first(
    job: dict[str, Any],
    students: list[Student],
    pools: list[asyncio.Queue[Connection]],
    phase: dict[str, Any],
) -> dict[str, Any]:
    """Every student's first envelope, at most ``concurrency`` in flight per replica, as fast as
    the relays (and the hub behind their first lookups) answer: latency from each send."""
    beat_t, _ = templates(INTERVAL)
    record: dict[str, Any] = {"name": phase["name"], "sent": [], "latency": [], "events": 0,
                              "errors": [], "refused": 0, "late_tasks": 0}  # fmt: skip
    began = time.time()
    record["late_start_s"] = 0.0

    async def one(s: Student) -> None:
        s.run = str(uuid.uuid4())
        s.beats = 1
        at = time.time()
        fill = {"event": uuid.uuid4(), "gen0": uuid.uuid4(), "run": s.run, "time": _iso(at)}
        body = (beat_t % fill).encode()
        request = (
            f"POST {job['path']} HTTP/1.1\r\nHost: relay\r\nAuthorization: token {s.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        pool = pools[s.replica]
        conn = await pool.get()
        try:
            status, answer = await conn.post(request)
        except Exception as err:
            record["errors"].append(f"{type(err).__name__}: {err}"[:160])
            return
        finally:
            pool.put_nowait(conn)
        if status != 200:
            record["errors"].append(f"{status}: {answer[:160]!r}")
            return
        record["sent"].append(round(at - began, 3))
        record["latency"].append(round((time.time() - at) * 1000, 2))
        record["events"] += 1

    await asyncio.gather(*(one(s) for s in students))
    record["seconds"] = time.time() - began
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
