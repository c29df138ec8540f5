"""Presence and tick load: 500 open notebooks reporting every 5 s on one server.

One `jupyter server` with the extension (default settings: 15 s heartbeats, local sink) holds
500 live runs, one per notebook, started as JupyterLab starts them. Then 500 simulated tabs
each report presence every 5 s (random phase, one tab focused, as the lab extension does),
while the server also closes 500 heartbeat windows every 15 s and delivers their events.

Three arms, one after the other on the same server: the tabs report over their own WebSocket
(/timeback/api/presence/socket, what the lab extension uses: the figure held to the target),
then as REST POSTs (/timeback/api/presence, the extension's fallback where a socket cannot
open), then they ask Jupyter's own GET /api/status at the same rate (Jupyter's floor: the
least any authenticated HTTP request costs). A fourth arm sends the same reports to a bare
tornado WebSocket server that only answers each id (the socket's floor: what the transport
alone costs on this machine).

Measured over whole heartbeat periods after a warm-up: the server process's CPU share of one
core (from /proc), the round trip the client sees (which also holds any time a report waited
for the server's event loop) and, for HTTP only, the handler latency as Jupyter itself records
it (its Prometheus histogram: ``request.request_time()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from timeback_jupyter.config import Timeback, default_app_config
from timeback_jupyter.identity import Student, actor_for
from timeback_jupyter.model import Activity, CourseRef
from timeback_jupyter.store import Store
from timeback_jupyter.tracker import Tracker

from .common import ROOT, Result, cpu_seconds, say, summary
from .jupyter import STUDENT, TOKEN, JupyterServer, activity, free_port, write_notebook

TARGET_CPU = 0.05
# The heartbeat windows of 500 live runs alone (no reports): 33 events a second built,
# committed and drained; at most this share of a core (issue 20).
TARGET_RUNS_ONLY = 0.015
TARGET_P99_MS = 10.0
PING_EVERY = 5.0
HEARTBEAT = 15.0
HANDLER = "timeback_jupyter.server.handlers.PresenceHandler"
BASELINE_HANDLER = "jupyter_server.services.api.handlers.APIStatusHandler"
SOCKET_PATH = "/timeback/api/presence/socket"
# How long the student stays in one notebook before the focus moves to another (extension arm):
# shorter than anyone works, so that the arm holds more focus changes than a class would send.
FOCUS_DWELL = 10.0
# extension: what the lab extension sends (the focused notebook every 5 s, the others only when
# they change), over each tab's WebSocket; socket: every tab every 5 s over its WebSocket (the
# issue's stated load); http: every tab every 5 s as POST /timeback/api/presence; floor: the same
# tabs asking Jupyter's own GET /api/status; bare: every tab every 5 s to a bare tornado
# WebSocket server
ARMS = ("extension", "socket", "http", "floor", "bare")
_BUCKET = re.compile(
    r"^http_request_duration_seconds_bucket\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.e+]+)$"
)


def histogram(text: str, handler: str = HANDLER) -> dict[float, float]:
    """Cumulative bucket counts (upper bound -> count) of one handler's 2xx requests."""
    counts: dict[float, float] = {}
    for line in text.splitlines():
        m = _BUCKET.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group("labels")))
        if labels.get("handler") != handler or not labels.get("status_code", "").startswith("2"):
            continue
        bound = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        counts[bound] = counts.get(bound, 0.0) + float(m.group("value"))
    return counts


def bucket_p99(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """Share of requests within each bucket bound, and the smallest bound holding 99 %."""
    delta = {b: after.get(b, 0.0) - before.get(b, 0.0) for b in after}
    total = delta.get(float("inf"), 0.0)
    shares = {str(b): (delta[b] / total if total else None) for b in sorted(delta)}
    p99_bound = next((b for b in sorted(delta) if total and delta[b] / total >= 0.99), None)
    return {"requests": total, "share_within": shares, "p99_at_most_s": p99_bound}


class LightClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams.

    httpx costs the load generator a millisecond or two of CPU per request; on a small machine
    shared with the server that would make the generator, not the server, the bottleneck.
    """

    def __init__(self, port: int, connections: int = 32) -> None:
        self.port = port
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._slots = asyncio.Semaphore(connections)

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not self._idle.empty():
            return self._idle.get_nowait()
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        async with self._slots:
            reader, writer = await self._connection()
            head = (
                f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Authorization: token {TOKEN}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            writer.write(head.encode() + body)
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length, chunked = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "transfer-encoding" and "chunked" in value:
                    chunked = True
            if chunked:
                data = b""
                while size := int((await reader.readline()).strip(), 16):
                    data += await reader.readexactly(size + 2)
                await reader.readline()
            else:
                data = await reader.readexactly(length)
            self._idle.put_nowait((reader, writer))
            return status, data

    async def aclose(self) -> None:
        while not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()


class SocketTab:
    """One tab's presence socket, as the lab extension holds it: reports matched by id."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: WebSocketClientConnection | None = None
        self.next_id = 0

    async def connect(self) -> None:
        url = f"ws://127.0.0.1:{self.port}{SOCKET_PATH}"
        request = HTTPRequest(url, headers={"Authorization": f"token {TOKEN}"})
        self.conn = await websocket_connect(request)

    async def report(self, report: dict[str, Any]) -> str | None:
        """The error, if the server answered one; None for a run (or null)."""
        assert self.conn is not None
        self.next_id += 1
        await self.conn.write_message(json.dumps({"id": self.next_id, **report}))
        raw = await self.conn.read_message()
        if raw is None:
            raise OSError("the presence socket closed")
        answer = json.loads(raw)
        if answer.get("id") != self.next_id:
            return f"answer to {answer.get('id')!r}, not {self.next_id}"
        if "message" in answer:
            return f"{answer.get('status')} {answer['message'][:200]}"
        return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


async def _tab(
    client: LightClient,
    path: str,
    n: int,
    until: float,
    measure_from: float,
    latencies: list[float],
    errors: list[str],
    arm: str,
) -> None:
    rng = random.Random(n)
    socket = SocketTab(client.port) if arm in ("socket", "bare") else None
    try:
        if socket is not None:
            await socket.connect()  # during the warm-up, as a tab opens it on its first report
        await asyncio.sleep(rng.uniform(0, PING_EVERY))
        last_input = time.monotonic()
        while time.monotonic() < until:
            started = time.monotonic()
            if n == 0 and rng.random() < 0.5:
                last_input = started  # the student types in the focused notebook now and then
            report = {
                "path": path,
                "source": f"tab-{n}",
                "visible": True,
                "focused": n == 0,
                "idle_ms": int((started - last_input) * 1000),
            }
            try:
                if socket is not None:
                    error = await socket.report(report)
                else:
                    if arm == "floor":
                        status, data = await client.request("GET", "/api/status")
                    else:
                        body = json.dumps(report).encode()
                        status, data = await client.request("POST", "/timeback/api/presence", body)
                    error = None if status == 200 else f"{status} {data[:200]!r}"
                if error is not None:
                    errors.append(error)
            except (OSError, ValueError, asyncio.IncompleteReadError, WebSocketClosedError) as err:
                errors.append(f"{type(err).__name__}: {err}")
            else:
                if started >= measure_from:
                    latencies.append(time.monotonic() - started)
            await asyncio.sleep(max(0.0, PING_EVERY - (time.monotonic() - started)))
    except (OSError, HTTPClientError) as err:  # the socket could not even open
        errors.append(f"{type(err).__name__}: {err}")
    finally:
        if socket is not None:
            socket.close()


class Focus:
    """Which of the student's notebooks has the focus: one at a time, moving every
    FOCUS_DWELL seconds to another at random (the extension arm's student)."""

    def __init__(self, tabs: int, seed: int = 7) -> None:
        self.current = 0
        self.moves = 0
        self._rng = random.Random(seed)
        self._wake = [asyncio.Event() for _ in range(tabs)]

    def changed(self, n: int) -> asyncio.Event:
        return self._wake[n]

    async def move_every(self, dwell: float, until: float) -> None:
        while time.monotonic() + dwell < until:
            await asyncio.sleep(dwell)
            old = self.current
            self.current = self._rng.choice([i for i in range(len(self._wake)) if i != old])
            self.moves += 1
            self._wake[old].set()
            self._wake[self.current].set()


async def _extension_tab(
    port: int,
    path: str,
    n: int,
    focus: Focus,
    until: float,
    measure_from: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    """One tab as labextension/src/presence.ts drives it over its socket: a report when the
    notebook opens, every PING_EVERY while it is visible and focused, and at once when its
    focus changes; nothing while it is visible beside the focused one (the server counts no
    time for it, so a report would tell it nothing)."""
    rng = random.Random(n)
    socket = SocketTab(port)
    last_input = time.monotonic()
    try:
        await socket.connect()
        await asyncio.sleep(rng.uniform(0, PING_EVERY))  # notebooks open over the warm-up
        while time.monotonic() < until:
            started = time.monotonic()
            focused = focus.current == n
            if focused and rng.random() < 0.5:
                last_input = started  # the student types in the focused notebook now and then
            report = {
                "path": path,
                "source": f"tab-{n}",  # a browser tab per notebook, as in Notebook 7
                "visible": True,
                "focused": focused,
                "idle_ms": int((started - last_input) * 1000),
            }
            try:
                error = await socket.report(report)
            except (OSError, ValueError, WebSocketClosedError) as err:
                errors.append(f"{type(err).__name__}: {err}")
            else:
                if error is not None:
                    errors.append(error)
                elif started >= measure_from:
                    latencies.append(time.monotonic() - started)
            wake = focus.changed(n)
            wake.clear()
            left = until - time.monotonic()
            wait = min(left, PING_EVERY - (time.monotonic() - started)) if focused else left
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=max(0.0, wait))
    except (OSError, HTTPClientError) as err:  # the socket could not even open
        errors.append(f"{type(err).__name__}: {err}")
    finally:
        socket.close()


async def _load(
    server: JupyterServer | BareSocketServer,
    paths: list[str],
    warmup: float,
    duration: float,
    arm: str,
) -> dict[str, Any]:
    """One arm (see ARMS) of ``len(paths)`` tabs, measured over ``duration`` after ``warmup``."""
    handler = BASELINE_HANDLER if arm == "floor" else HANDLER
    jupyter = isinstance(server, JupyterServer)
    latencies: list[float] = []
    errors: list[str] = []
    client = LightClient(server.port)
    try:
        start = time.monotonic()
        measure_from = start + warmup
        until = measure_from + duration
        focus = Focus(len(paths))
        if arm == "extension":
            tabs = [
                asyncio.create_task(
                    _extension_tab(server.port, p, i, focus, until, measure_from, latencies, errors)
                )
                for i, p in enumerate(paths)
            ]
            tabs.append(asyncio.create_task(focus.move_every(FOCUS_DWELL, until)))
        else:
            tabs = [
                asyncio.create_task(_tab(client, p, i, until, measure_from, latencies, errors, arm))
                for i, p in enumerate(paths)
            ]
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        metrics_before = (await client.request("GET", "/metrics"))[1].decode() if jupyter else ""
        cpu_before, wall_before = cpu_seconds(server.pid), time.monotonic()
        own_before = cpu_seconds(os.getpid())
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        cpu_after, wall_after = cpu_seconds(server.pid), time.monotonic()
        own_after = cpu_seconds(os.getpid())
        metrics_after = (await client.request("GET", "/metrics"))[1].decode() if jupyter else ""
        await asyncio.gather(*tabs)
    finally:
        await client.aclose()
    wall = wall_after - wall_before
    return {
        "cpu_share": (cpu_after - cpu_before) / wall,
        "cpu_ms_per_request": 1000 * (cpu_after - cpu_before) / max(1, len(latencies)),
        "client_cpu_share": (own_after - own_before) / wall,
        "wall": wall,
        "focus_moves": focus.moves,
        "latencies": latencies,
        "errors": errors,
        # Socket messages go through no HTTP handler: Jupyter's histogram has nothing on them.
        "server_histogram": None
        if arm in ("extension", "socket", "bare")
        else bucket_p99(histogram(metrics_before, handler), histogram(metrics_after, handler)),
    }


class BareSocketServer:
    """benchmarks.bare_socket in a subprocess: the transport's floor (see that module)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bare_socket", str(self.port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise RuntimeError("the bare socket server did not start")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __enter__(self) -> BareSocketServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def _idle_cpu(server: JupyterServer, seconds: float) -> float:
    before, wall = cpu_seconds(server.pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(server.pid) - before) / (time.monotonic() - wall)


def runs_only(notebooks: int = 500, windows: int = 3) -> list[float]:
    """Only the heartbeats-alone arm, for comparing builds: ``notebooks`` live runs started as
    :func:`run` starts them, no reports, the server's CPU share over ``windows`` consecutive
    spans of two heartbeat periods each (:func:`run` measures the first). Saves nothing:
    ``python -m benchmarks.presence_load [NOTEBOOKS [WINDOWS]]`` prints the shares."""
    with tempfile.TemporaryDirectory(prefix="tb-bench-runs-only-") as tmp:
        workdir = Path(tmp)
        root = workdir / "notebooks"
        root.mkdir()
        paths = [write_notebook(root, f"nb-{i:03d}.ipynb", {"activity": activity(i)}) for i in
                 range(notebooks)]  # fmt: skip
        with JupyterServer(workdir / "server", root, extension=True) as server:
            server.wait_ready()
            for path in paths:
                r = server.http.post(
                    "/timeback/api/runs", json={"path": path, "client": "jupyterlab"}
                )
                r.raise_for_status()
            return [_idle_cpu(server, 2 * HEARTBEAT) for _ in range(windows)]


def core_scaling(sizes: tuple[int, ...] = (1, 10, 100, 500), reports: int = 300) -> dict:
    """CPU per presence report in the core alone (Tracker.presence + describe, what the
    handler calls), by the number of live runs of the one student: no HTTP, no Jupyter."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="tb-bench-core-") as tmp:
        for n in sizes:
            store = Store(Path(tmp) / f"core-{n}.sqlite3")
            student = Student(STUDENT)
            tracker = Tracker(
                store=store,
                settings=Timeback(),
                app_config=default_app_config(),
                student=student,
                actor=actor_for(student, "https://api.staging.alpha-1edtech.ai", local=True),
            )
            runs = []
            for i in range(n):
                act = Activity(f"activity-{i}", f"Activity {i}", CourseRef("Math", 3))
                runs.append(tracker.start(act, path=f"nb-{i}.ipynb").run.id)
            times = []
            for k in range(reports):
                run_id = runs[k % n]
                t = time.process_time()
                tracker.presence(run_id, f"tab-{k % n}", visible=True, focused=k % n == 0)
                tracker.describe(tracker.get(run_id))
                times.append(time.process_time() - t)
            store.close()
            out[str(n)] = statistics.median(times) * 1000
    return out


def run(quick: bool = False, notebooks: int = 500) -> Result:
    if quick:
        notebooks = min(notebooks, 100)
    warmup, duration = (5.0, 2 * HEARTBEAT) if quick else (HEARTBEAT, 4 * HEARTBEAT)
    with tempfile.TemporaryDirectory(prefix="tb-bench-presence-") as tmp:
        workdir = Path(tmp)
        root = workdir / "notebooks"
        root.mkdir()
        paths = [write_notebook(root, f"nb-{i:03d}.ipynb", {"activity": activity(i)}) for i in
                 range(notebooks)]  # fmt: skip
        with JupyterServer(workdir / "server", root, extension=True) as server:
            server.wait_ready()
            say(f"presence: starting {notebooks} runs")
            started = time.monotonic()
            for path in paths:
                r = server.http.post(
                    "/timeback/api/runs", json={"path": path, "client": "jupyterlab"}
                )
                r.raise_for_status()
            start_seconds = time.monotonic() - started
            live = server.http.get("/timeback/api/status").json()["live_runs"]
            say(f"presence: {live} live runs, no reports, for two heartbeat periods")
            idle = _idle_cpu(server, 2 * HEARTBEAT)
            say(
                f"presence: {notebooks} notebooks reporting as the lab extension does (the "
                f"focused one every {PING_EVERY:g}s, focus moving every {FOCUS_DWELL:g}s)"
            )
            ext = asyncio.run(_load(server, paths, warmup, duration, "extension"))
            say(f"presence: {notebooks} tabs reporting over their sockets every {PING_EVERY:g}s "
                f"for {duration:g}s")  # fmt: skip
            load = asyncio.run(_load(server, paths, warmup, duration, "socket"))
            say("presence: the same tabs reporting as REST POSTs (the fallback)")
            http = asyncio.run(_load(server, paths, warmup, duration, "http"))
            say("presence: the same tabs asking Jupyter's own GET /api/status instead")
            floor = asyncio.run(_load(server, paths, warmup, duration, "floor"))
            status = server.http.get("/timeback/api/status").json()
    say("presence: the same tabs on a bare tornado WebSocket server (the transport's floor)")
    with BareSocketServer() as bare_server:
        bare = asyncio.run(_load(bare_server, paths, warmup, duration, "bare"))
    say("presence: the core's cost per report by number of live runs")
    scaling = core_scaling()
    client = summary(load["latencies"], 1000)
    ext_client = summary(ext["latencies"], 1000)
    http_client = summary(http["latencies"], 1000)
    floor_client = summary(floor["latencies"], 1000)
    # Held to the target: the CPU of what the extension sends, and the latency of reports both
    # as it sends them and at the load (every tab every 5 s: the busier event loop).
    passed = (
        idle <= TARGET_RUNS_ONLY
        and ext["cpu_share"] < TARGET_CPU
        and ext_client["p99"] < TARGET_P99_MS
        and client["p99"] < TARGET_P99_MS
        and not ext["errors"]
        and not load["errors"]
    )
    return Result(
        name="presence",
        title="Presence and tick load",
        command="python -m benchmarks presence",
        target=f"server CPU < {TARGET_CPU:.0%} of one core with 500 notebooks open as the lab "
        f"extension reports them, <= {TARGET_RUNS_ONLY:.1%} for their heartbeats alone (no "
        f"reports), p99 latency < {TARGET_P99_MS:g} ms (client round trip, also with every tab "
        "reporting every 5 s)",
        passed=passed,
        quick=quick,
        params={
            "notebooks": notebooks,
            "ping_every_s": PING_EVERY,
            "heartbeat_interval_s": HEARTBEAT,
            "warmup_s": warmup,
            "measured_s": round(load["wall"], 1),
            "transport": "socket",
            "focus_dwell_s": FOCUS_DWELL,
        },
        metrics={
            "live_runs": live,
            "start_all_runs_s": start_seconds,
            # as the lab extension reports: held to the CPU target
            "extension_cpu_share": ext["cpu_share"],
            "extension_requests_per_s": len(ext["latencies"]) / ext["wall"],
            "extension_focus_moves": ext["focus_moves"],
            "extension_client_round_trip_ms": ext_client,
            "extension_error_count": len(ext["errors"]),
            "extension_errors": ext["errors"][:10],
            # every tab every 5 s over its socket: the stated load
            "cpu_share_under_load": load["cpu_share"],
            "cpu_share_runs_only": idle,
            "cpu_ms_per_heartbeat_window": idle * 1000 / (live / HEARTBEAT) if live else None,
            "load_average_1m_end": round(os.getloadavg()[0], 2),
            "cpu_ms_per_request": load["cpu_ms_per_request"],
            "load_generator_cpu_share": load["client_cpu_share"],
            "scheduled_requests_per_s": notebooks / PING_EVERY,
            "requests_per_s": len(load["latencies"]) / load["wall"],
            "client_round_trip_ms": client,
            # no HTTP handler serves a socket message: Jupyter's histogram has nothing on them
            "server_handler": {"requests": None, "share_within": {}, "p99_at_most_s": None},
            "errors": load["errors"][:10],
            "error_count": len(load["errors"]),
            # the REST fallback: POST /timeback/api/presence
            "http_cpu_share": http["cpu_share"],
            "http_cpu_ms_per_request": http["cpu_ms_per_request"],
            "http_requests_per_s": len(http["latencies"]) / http["wall"],
            "http_client_round_trip_ms": http_client,
            "http_server_handler": http["server_histogram"],
            "http_error_count": len(http["errors"]),
            "http_errors": http["errors"][:10],
            # Jupyter's floor: GET /api/status
            "cpu_share_jupyter_floor": floor["cpu_share"],
            "floor_cpu_ms_per_request": floor["cpu_ms_per_request"],
            "floor_requests_per_s": len(floor["latencies"]) / floor["wall"],
            "floor_client_round_trip_ms": floor_client,
            "floor_server_handler": floor["server_histogram"],
            # the transport's floor: a bare tornado WebSocket server answering each report
            "bare_socket_cpu_share": bare["cpu_share"],
            "bare_socket_cpu_ms_per_request": bare["cpu_ms_per_request"],
            "bare_socket_requests_per_s": len(bare["latencies"]) / bare["wall"],
            "bare_socket_client_round_trip_ms": summary(bare["latencies"], 1000),
            "bare_socket_error_count": len(bare["errors"]),
            "core_ms_per_report_by_live_runs": scaling,
            "outbox_after": status.get("outbox"),
        },
        notes=[
            "The first column is what the lab extension sends (labextension/src/presence.ts): "
            "one WebSocket per browser tab, opened once and authenticated at its handshake; a "
            "report when a notebook opens, every 5 s from the one notebook that is visible and "
            "focused, and one at once from each notebook whose visibility or focus changes. A "
            "notebook that is open but not in front sends nothing more once the server has "
            "heard it: the clock counts time only for a visible, focused notebook, so its "
            "reports would carry no information. The student here moves the focus to another "
            "notebook every 10 s, more often than anyone works.",
            "The second column is the load as the issue states it, every tab reporting every "
            "5 s over its socket, as the extension did before it stopped reporting notebooks "
            "that are not in front: it is kept as a stress figure for the event loop (its "
            "p99 is held to the latency target) and to show what that design costs. The REST "
            "arm is the extension's fallback where a socket cannot open (a proxy that refuses "
            "WebSockets, which would break Jupyter's kernels too), at the same every-5-s load.",
            "Latency of socket reports is the client's round trip: from sending the message to "
            "reading the answer, measured by the load generator on the same machine, so it "
            "includes its own scheduling and any wait for the server's event loop (e.g. while "
            "a tick records windows). It is the stricter figure: Jupyter's own handler "
            "histogram, which has no entry for socket messages, starts timing only once a "
            "request is read. Server CPU per report is the server's CPU over the arm divided "
            "by the reports answered in it, everything else the server did included.",
            "For the HTTP arms, handler latency is jupyter_server's own measure (Prometheus "
            "http_request_duration_seconds): its buckets are 5 ms and 10 ms wide, so it says "
            "how many requests took at most 10 ms, not a finer p99.",
            "Jupyter's floor: the same tabs, at the same rate, ask Jupyter's own GET /api/status "
            "(auth, tornado, logging, metrics and nothing else) on the same server, runs live. "
            "No HTTP handler, however cheap, goes below it; a socket message does not pay it.",
            "The socket's floor: the same tabs, at the same rate, on a bare tornado WebSocket "
            "server in its own process (benchmarks/bare_socket.py: parse each message, answer "
            "its id; no Jupyter, no auth, no runs). No presence socket in Python on tornado, "
            "Jupyter's web framework, goes below it on this machine.",
        ],
    )


def render(r: dict[str, Any]) -> str:
    m = r["metrics"]
    c, hc, fc = (
        m["client_round_trip_ms"],
        m["http_client_round_trip_ms"],
        m["floor_client_round_trip_ms"],
    )
    hh, fh = m["http_server_handler"], m["floor_server_handler"]
    # results saved before the bare arm existed have no fourth column
    bare = "bare_socket_cpu_share" in m
    bc = m.get("bare_socket_client_round_trip_ms") or {}

    def col(text: str) -> str:
        return f" {text} |" if bare else ""

    p = r["params"]
    scaling = m["core_ms_per_report_by_live_runs"]

    def within(h: dict[str, Any]) -> str:
        share = h["share_within"]
        return f"{_pct(share.get('0.005'))} / {_pct(share.get('0.01'))}"

    # results saved before the extension arm existed have no first column
    ext = "extension_cpu_share" in m
    ec = m.get("extension_client_round_trip_ms") or {}

    def first(text: str) -> str:
        return f" {text} |" if ext else ""

    socket_cpu = f"{m['cpu_share_under_load']:.1%}"
    return "\n".join(
        [
            "| |"
            + first("as the lab extension reports (socket)")
            + " every tab every 5 s over its socket (the issue's load) | every tab every 5 s "
            "as REST POSTs (fallback) | Jupyter's floor (GET /api/status) |"
            + col("bare tornado WebSocket (socket floor)"),
            "|---|---|---|---|" + ("---|" if bare else "") + ("---|" if ext else ""),
            f"| reports / s (every 5 s: {m['scheduled_requests_per_s']:.0f}) |"
            + first(f"{m.get('extension_requests_per_s', 0):.1f}")
            + f" {m['requests_per_s']:.0f} | {m['http_requests_per_s']:.0f} | "
            f"{m['floor_requests_per_s']:.0f} |"
            + col(f"{m.get('bare_socket_requests_per_s', 0):.0f}"),
            "| server CPU (share of one core) |"
            + first(f"**{m.get('extension_cpu_share', 0):.1%}**")
            + (f" {socket_cpu} |" if ext else f" **{socket_cpu}** |")
            + f" {m['http_cpu_share']:.1%} | {m['cpu_share_jupyter_floor']:.1%} |"
            + col(f"{m.get('bare_socket_cpu_share', 0):.1%}"),
            "| server CPU per report |"
            + first("n/a (mostly heartbeats)")
            + f" {m['cpu_ms_per_request']:.2f} ms | "
            f"{m['http_cpu_ms_per_request']:.2f} ms | {m['floor_cpu_ms_per_request']:.2f} ms |"
            + col(f"{m.get('bare_socket_cpu_ms_per_request', 0):.2f} ms"),
            "| handler <= 5 ms / <= 10 ms (Jupyter's histogram) |"
            + first("n/a")
            + f" n/a (no HTTP handler) | {within(hh)} | {within(fh)} |"
            + col("n/a"),
            "| client round trip median / p99 |"
            + first(f"{ec.get('median', 0):.1f} / **{ec.get('p99', 0):.1f}** ms")
            + f" {c['median']:.1f} / **{c['p99']:.1f}** ms | "
            f"{hc['median']:.1f} / {hc['p99']:.1f} ms | {fc['median']:.1f} / {fc['p99']:.1f} ms |"
            + col(f"{bc.get('median', 0):.1f} / {bc.get('p99', 0):.1f} ms"),
            "| client round trip max |"
            + first(f"{ec.get('max', 0):.1f} ms")
            + f" {c['max']:.1f} ms | {hc['max']:.1f} ms | "
            f"{fc['max']:.1f} ms |" + col(f"{bc.get('max', 0):.1f} ms"),
            "| errors |"
            + first(str(m.get("extension_error_count", "")))
            + f" {m['error_count']} | {m['http_error_count']} | |"
            + col(str(m.get("bare_socket_error_count", ""))),
            "",
            (
                f"As the extension reports: {ec.get('n', 0)} reports measured, "
                f"{m['extension_focus_moves']} focus moves (each two reports: the notebook "
                "left, the notebook entered) over the arm, one report every 5 s from the "
                "focused notebook; the other notebooks' sockets stay open and quiet."
                if ext
                else ""
            ),
            "",
            f"{m['live_runs']} live runs, {p['notebooks']} tabs (in the every-5-s arms each "
            f"reporting every {p['ping_every_s']:g} s), {p['heartbeat_interval_s']:g} s "
            "heartbeats; each arm "
            f"measured over {p['measured_s']:g} s after {p['warmup_s']:g} s of its own load "
            f"(whole heartbeat periods); the load generator itself used "
            f"{m['load_generator_cpu_share']:.0%} of a core in the every-5-s socket arm. With "
            "the same "
            f"runs live and no reports at all (heartbeat windows only) the server uses "
            f"{m['cpu_share_runs_only']:.1%} of a core.",
            "",
            "The core's CPU per presence report (Tracker.presence + describe, what both "
            "transports call; no HTTP, no socket) by the number of live runs of the one student:",
            "",
            "| live runs | " + " | ".join(scaling) + " |",
            "|---|" + "---|" * len(scaling),
            "| CPU per report | " + " | ".join(f"{v:.2f} ms" for v in scaling.values()) + " |",
        ]
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    shares = runs_only(*(int(a) for a in sys.argv[1:3]))
    print("heartbeats alone, CPU share per window:", " ".join(f"{x:.2%}" for x in shares))
