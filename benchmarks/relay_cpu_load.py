"""The clients of :mod:`.relay_cpu`: students' envelopes over keep-alive HTTP/1.1 connections
(:mod:`.district_envelopes`' envelope templates: ``windows`` heartbeat windows each, as a server
paced by the relay sends them; ``RELAY_CPU_WINDOWS`` in :mod:`.relay_cpu`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .common import percentile
from .district_envelopes import Maker, Student, request_head

COMPLETION_EVERY = 40
CONNECTIONS = 32
INTERVAL = 15.0


class Connection:
    """One keep-alive HTTP/1.1 connection to the relay, awaited a request at a time (the
    district generator's protocol-based connections are built for its open-loop pool)."""

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


class Load:
    """Students' envelopes over keep-alive connections to one relay."""

    def __init__(
        self, port: int, path: str, students: list[tuple[str, str]], windows: int = 1
    ) -> None:
        self.port, self.path = port, path
        self.students = [Student(n, t, 0, 0.0, 0.0) for n, t in students]
        for s in self.students:
            s.head = request_head(path, s.token)
        self.maker = Maker(INTERVAL, COMPLETION_EVERY, windows)

    def request(self, s: Student, window_end: float) -> tuple[bytes, int]:
        """The student's next envelope (its last window ending at ``window_end``) and its
        events."""
        return self.maker.request(s, window_end)

    def next_end(self, s: Student, base: float) -> float:
        """When the last window of the student's next envelope ends, its windows following the
        ones already sent (windows of a student never overlap: nothing of them is cut)."""
        return base + INTERVAL * (s.beats + self.maker.windows)

    async def closed(self, connections: int, seconds: float | None, base: float) -> dict[str, Any]:
        """``connections`` clients back to back (``seconds`` None: every student once); student
        k's n-th window ends at ``base`` + 15 n s (an envelope's windows follow the last one's)."""

        latencies: list[float] = []
        events, errors = 0, []
        order = list(self.students)
        until = None if seconds is None else time.monotonic() + seconds
        cursor = iter(range(10**9))

        async def client() -> None:
            nonlocal events
            conn = Connection("127.0.0.1", self.port)
            while True:
                i = next(cursor)
                if until is None and i >= len(order):
                    break
                if until is not None and time.monotonic() >= until:
                    break
                s = order[i % len(order)]
                request, n = self.request(s, self.next_end(s, base))
                began = time.monotonic()
                try:
                    status, answer = await conn.post(request)
                except Exception as err:
                    errors.append(f"{type(err).__name__}: {err}"[:160])
                    continue
                if status != 200 or b'"accepted": 0' in answer:
                    errors.append(f"{status}: {answer[:160]!r}")
                    continue
                latencies.append(1000 * (time.monotonic() - began))
                events += n
            conn.close()

        began = time.monotonic()
        await asyncio.gather(*(client() for _ in range(connections)))
        return _figures(latencies, events, errors, time.monotonic() - began)

    async def open_loop(self, rate: float, seconds: float) -> dict[str, Any]:
        """``rate`` envelopes/s, each due at its time whatever the answers (latency from when it
        was due), windows ending when sent; a pool of connections as a server's would be."""

        pool: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(CONNECTIONS):
            pool.put_nowait(Connection("127.0.0.1", self.port))
        latencies: list[float] = []
        errors: list[str] = []
        events = 0

        async def send(s: Student, due: float) -> None:
            nonlocal events
            request, n = self.request(s, due)
            conn = await pool.get()
            try:
                status, answer = await conn.post(request)
            except Exception as err:
                errors.append(f"{type(err).__name__}: {err}"[:160])
                return
            finally:
                pool.put_nowait(conn)
            if status != 200 or b'"accepted": 0' in answer:
                errors.append(f"{status}: {answer[:160]!r}")
                return
            latencies.append(1000 * (time.time() - due))
            events += n

        began = time.time()
        tasks = []
        for i in range(int(rate * seconds)):
            due = began + i / rate
            wait = due - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(send(self.students[i % len(self.students)], due)))
        await asyncio.gather(*tasks)
        while not pool.empty():
            pool.get_nowait().close()
        return _figures(latencies, events, errors, time.time() - began)


def _figures(latencies: list[float], events: int, errors: list[str], wall: float) -> dict:
    out: dict[str, Any] = {"envelopes": len(latencies), "events": events, "wall_s": round(wall, 2),
                           "events_per_s": round(events / wall, 1), "errors": len(errors),
                           "first_errors": errors[:3]}  # fmt: skip
    if latencies:
        out.update(p50_ms=round(percentile(latencies, 50), 1),
                   p99_ms=round(percentile(latencies, 99), 1),
                   max_ms=round(max(latencies), 1))  # fmt: skip
    return out
