"""Presence and tick load: 500 open notebooks pinging every 5 s on one server.

One `jupyter server` with the extension (default settings: 15 s heartbeats, local sink) holds
500 live runs, one per notebook, started as JupyterLab starts them. Then 500 simulated tabs
each POST a presence report every 5 s (random phase, one tab focused, as the lab extension
does), while the server also closes 500 heartbeat windows every 15 s and delivers their events.

Measured over whole heartbeat periods after a warm-up: the server process's CPU share of one
core (from /proc), the handler latency as Jupyter itself records it (its Prometheus histogram:
``request.request_time()``), and the round trip the client sees, which also holds any time a
request waited for the server's event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from timeback_jupyter.config import Timeback, default_app_config
from timeback_jupyter.identity import Student, actor_for
from timeback_jupyter.model import Activity, CourseRef
from timeback_jupyter.store import Store
from timeback_jupyter.tracker import Tracker

from .common import Result, cpu_seconds, say, summary
from .jupyter import STUDENT, TOKEN, JupyterServer, activity, write_notebook

TARGET_CPU = 0.05
TARGET_P99_MS = 10.0
PING_EVERY = 5.0
HEARTBEAT = 15.0
HANDLER = "timeback_jupyter.server.handlers.PresenceHandler"
BASELINE_HANDLER = "jupyter_server.services.api.handlers.APIStatusHandler"
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


async def _tab(
    client: LightClient,
    path: str,
    n: int,
    until: float,
    measure_from: float,
    latencies: list[float],
    errors: list[str],
    baseline: bool,
) -> None:
    rng = random.Random(n)
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
            if baseline:
                status, data = await client.request("GET", "/api/status")
            else:
                body = json.dumps(report).encode()
                status, data = await client.request("POST", "/timeback/api/presence", body)
            if status != 200:
                errors.append(f"{status} {data[:200]!r}")
        except (OSError, ValueError, asyncio.IncompleteReadError) as err:
            errors.append(f"{type(err).__name__}: {err}")
        else:
            if started >= measure_from:
                latencies.append(time.monotonic() - started)
        await asyncio.sleep(max(0.0, PING_EVERY - (time.monotonic() - started)))


async def _load(
    server: JupyterServer, paths: list[str], warmup: float, duration: float, baseline: bool
) -> dict[str, Any]:
    """``baseline``: the same tabs ask Jupyter's own GET /api/status instead (its floor)."""
    handler = BASELINE_HANDLER if baseline else HANDLER
    latencies: list[float] = []
    errors: list[str] = []
    client = LightClient(server.port)
    try:
        start = time.monotonic()
        measure_from = start + warmup
        until = measure_from + duration
        tabs = [
            asyncio.create_task(
                _tab(client, p, i, until, measure_from, latencies, errors, baseline)
            )
            for i, p in enumerate(paths)
        ]
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        metrics_before = (await client.request("GET", "/metrics"))[1].decode()
        cpu_before, wall_before = cpu_seconds(server.pid), time.monotonic()
        own_before = cpu_seconds(os.getpid())
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        cpu_after, wall_after = cpu_seconds(server.pid), time.monotonic()
        own_after = cpu_seconds(os.getpid())
        metrics_after = (await client.request("GET", "/metrics"))[1].decode()
        await asyncio.gather(*tabs)
    finally:
        await client.aclose()
    wall = wall_after - wall_before
    return {
        "cpu_share": (cpu_after - cpu_before) / wall,
        "cpu_ms_per_request": 1000 * (cpu_after - cpu_before) / max(1, len(latencies)),
        "client_cpu_share": (own_after - own_before) / wall,
        "wall": wall,
        "latencies": latencies,
        "errors": errors,
        "server_histogram": bucket_p99(
            histogram(metrics_before, handler), histogram(metrics_after, handler)
        ),
    }


def _idle_cpu(server: JupyterServer, seconds: float) -> float:
    before, wall = cpu_seconds(server.pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(server.pid) - before) / (time.monotonic() - wall)


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
            say(f"presence: {live} live runs, no pings, for two heartbeat periods")
            idle = _idle_cpu(server, 2 * HEARTBEAT)
            say(f"presence: {notebooks} tabs pinging every {PING_EVERY:g}s for {duration:g}s")
            load = asyncio.run(_load(server, paths, warmup, duration, baseline=False))
            say("presence: the same tabs asking Jupyter's own GET /api/status instead")
            floor = asyncio.run(_load(server, paths, PING_EVERY, duration, baseline=True))
            status = server.http.get("/timeback/api/status").json()
    say("presence: the core's cost per report by number of live runs")
    scaling = core_scaling()
    client = summary(load["latencies"], 1000)
    floor_client = summary(floor["latencies"], 1000)
    hist = load["server_histogram"]
    within_10ms = hist["share_within"].get("0.01")
    server_p99_ok = within_10ms is not None and within_10ms >= 0.99
    passed = (
        load["cpu_share"] < TARGET_CPU
        and server_p99_ok
        and client["p99"] < TARGET_P99_MS
        and not load["errors"]
    )
    return Result(
        name="presence",
        title="Presence and tick load",
        command="python -m benchmarks presence",
        target=f"server CPU < {TARGET_CPU:.0%} of one core, p99 handler latency < "
        f"{TARGET_P99_MS:g} ms",
        passed=passed,
        quick=quick,
        params={
            "notebooks": notebooks,
            "ping_every_s": PING_EVERY,
            "heartbeat_interval_s": HEARTBEAT,
            "warmup_s": warmup,
            "measured_s": round(load["wall"], 1),
        },
        metrics={
            "live_runs": live,
            "start_all_runs_s": start_seconds,
            "cpu_share_under_load": load["cpu_share"],
            "cpu_share_runs_only": idle,
            "cpu_share_jupyter_floor": floor["cpu_share"],
            "cpu_ms_per_request": load["cpu_ms_per_request"],
            "floor_cpu_ms_per_request": floor["cpu_ms_per_request"],
            "load_generator_cpu_share": load["client_cpu_share"],
            "scheduled_requests_per_s": notebooks / PING_EVERY,
            "requests_per_s": len(load["latencies"]) / load["wall"],
            "floor_requests_per_s": len(floor["latencies"]) / floor["wall"],
            "core_ms_per_report_by_live_runs": scaling,
            "client_round_trip_ms": client,
            "floor_client_round_trip_ms": floor_client,
            "server_handler": hist,
            "floor_server_handler": floor["server_histogram"],
            "errors": load["errors"][:10],
            "error_count": len(load["errors"]),
            "outbox_after": status.get("outbox"),
        },
        notes=[
            "Server handler latency is jupyter_server's own measure (Prometheus "
            "http_request_duration_seconds, PresenceHandler): its buckets are 5 ms and 10 ms "
            "wide, so it says how many requests took at most 10 ms, not a finer p99. It starts "
            "once tornado has read the request, so time spent queued behind a busy event loop "
            "is not in it.",
            "Client round trips are measured by the load generator on the same machine: they "
            "include its own scheduling and any wait for the server's event loop, e.g. while a "
            "tick records hundreds of windows at once.",
            "Jupyter's floor: the same tabs, at the same rate, ask Jupyter's own GET /api/status "
            "(auth, tornado, logging, metrics and nothing else) on the same server, runs live.",
        ],
    )


def render(r: dict[str, Any]) -> str:
    m = r["metrics"]
    c, fc = m["client_round_trip_ms"], m["floor_client_round_trip_ms"]
    h, fh = m["server_handler"], m["floor_server_handler"]
    p = r["params"]
    scaling = m["core_ms_per_report_by_live_runs"]
    return "\n".join(
        [
            "| | presence pings | Jupyter's floor (GET /api/status) |",
            "|---|---|---|",
            f"| requests / s (scheduled {m['scheduled_requests_per_s']:.0f}) | "
            f"{m['requests_per_s']:.0f} | {m['floor_requests_per_s']:.0f} |",
            f"| server CPU (share of one core) | **{m['cpu_share_under_load']:.1%}** | "
            f"{m['cpu_share_jupyter_floor']:.1%} |",
            f"| server CPU per request | {m['cpu_ms_per_request']:.2f} ms | "
            f"{m['floor_cpu_ms_per_request']:.2f} ms |",
            f"| handler <= 5 ms / <= 10 ms (Jupyter's histogram) | "
            f"{_pct(h['share_within'].get('0.005'))} / **{_pct(h['share_within'].get('0.01'))}** "
            f"| {_pct(fh['share_within'].get('0.005'))} / {_pct(fh['share_within'].get('0.01'))} |",
            f"| client round trip median / p99 | {c['median']:.1f} / **{c['p99']:.1f}** ms | "
            f"{fc['median']:.1f} / {fc['p99']:.1f} ms |",
            f"| client round trip max | {c['max']:.1f} ms | {fc['max']:.1f} ms |",
            f"| errors | {m['error_count']} | |",
            "",
            f"{m['live_runs']} live runs, {p['notebooks']} tabs each reporting every "
            f"{p['ping_every_s']:g} s, {p['heartbeat_interval_s']:g} s heartbeats; measured over "
            f"{p['measured_s']:g} s after {p['warmup_s']:g} s of warm-up; the load generator "
            f"itself used {m['load_generator_cpu_share']:.0%} of a core. With the same runs live "
            f"and no pings at all (heartbeat windows only) the server uses "
            f"{m['cpu_share_runs_only']:.1%} of a core.",
            "",
            "The core's CPU per presence report (Tracker.presence + describe, what the handler "
            "calls; no HTTP) by the number of live runs of the one student:",
            "",
            "| live runs | " + " | ".join(scaling) + " |",
            "|---|" + "---|" * len(scaling),
            "| CPU per report | " + " | ".join(f"{v:.2f} ms" for v in scaling.values()) + " |",
        ]
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
