"""Soak: a week of heartbeats for 50 live runs, simulated at speed; does anything grow?

The real parts, with injected time: a Tracker on a real SQLite store (its checkpoint and
retention threads running), the drainer with the local sink (each event checked, then
confirmed) and the store's retention pruning confirmed heartbeat events older than
``retention_days``. One student with 50 notebooks open for a week: the focus moves to the next
notebook every 10 s, so every run is the active one for 10 s in every 500 (never abandoned:
each of the 50 runs closes a window every 15 s, active or inactive, all week). Every 5 s of
simulated time one presence report and one tick (which records the windows due and writes the
open windows' checkpoint); every simulated minute the drainer delivers what is queued.

Sampled every 6 simulated hours: the store's size by table (SQLite's dbstat), the outbox's
rows, the process's RSS and Python's allocated blocks (``sys.getallocatedblocks``: tracemalloc
would slow the simulation several times over), and the tracker's in-memory queues. After the
retention period the outbox stops growing (pruned pages are reused); the windows and runs
tables, the report's data, grow by design (a window row is ~1/9 of its event).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from timeback_jupyter.config import Timeback, default_app_config
from timeback_jupyter.delivery import Drainer, LocalSink
from timeback_jupyter.identity import Student, actor_for
from timeback_jupyter.model import Activity, CourseRef
from timeback_jupyter.store import DAY, Store
from timeback_jupyter.tracker import Tracker

from .common import Result, say

RUNS = 50
DAYS = 7.0
RETENTION_DAYS = 2.0
STEP = 5.0  # simulated seconds per presence report and tick
FOCUS_DWELL = 10.0  # simulated seconds in one notebook before the next
DRAIN_EVERY = 60.0
SAMPLE_EVERY = 6 * 3600.0
T0 = 1_790_000_000.0
STUDENT = "soak@school.edu"
# Held to: after the retention period the outbox holds at most this much more than at its
# first full day, and the process's memory at most this much more than then.
TARGET_OUTBOX_GROWTH = 0.10
TARGET_RSS_GROWTH_MB = 10.0


class SimClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes of pages per table (its indexes included), from SQLite's dbstat."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT COALESCE(m.tbl_name, d.name), SUM(d.pgsize) FROM dbstat d "
            "LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY 1"
        ).fetchall()
    return {name: int(size) for name, size in rows}


def sample(
    day: float, path: Path, store: Store, tracker: Tracker, cpu0: float, wall0: float
) -> dict[str, Any]:
    tables = table_bytes(path)
    stats = store.stats()
    pruner = store._pruner
    return {
        "day": round(day, 2),
        "db_mb": os.path.getsize(path) / 2**20,
        "wal_mb": store.wal_bytes() / 2**20,
        "outbox_mb": tables.get("outbox", 0) / 2**20,
        "windows_mb": tables.get("windows", 0) / 2**20,
        "free_mb": tables.get("sqlite_schema", 0) / 2**20,
        "outbox_rows": stats["pending"] + stats["inflight"] + stats["sent"],
        "pending": stats["pending"] + stats["inflight"],
        "pruned": 0 if pruner is None else pruner.pruned,
        "rss_mb": rss_mb(),
        "allocated_blocks": sys.getallocatedblocks(),
        "unrecorded_windows": tracker.unrecorded,
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.monotonic() - wall0,
    }


async def simulate(workdir: Path, days: float, runs: int, retention_days: float) -> dict:
    clock = SimClock(T0)
    path = workdir / "soak.sqlite3"
    settings = Timeback(sink="local", retention_days=retention_days)
    store = Store(path, now=clock)
    student = Student(STUDENT)
    tracker = Tracker(
        store=store,
        settings=settings,
        app_config=default_app_config(),
        student=student,
        actor=actor_for(student, settings.oneroster_url, local=True),
        now=clock,
    )
    # The server's pruning, looking every 20 ms of real time instead of every 5 minutes: the
    # simulation runs a few thousand times faster than the clock it simulates.
    store.retain(retention_days * DAY, every=0.02)
    drainer = Drainer.from_config(store, LocalSink(), settings, wall=clock)
    await drainer.recover()
    run_ids = [
        tracker.start(
            Activity(f"soak-{i}", f"Soak {i}", CourseRef("Math", 3)), path=f"nb-{i:02d}.ipynb"
        ).run.id
        for i in range(runs)
    ]
    samples: list[dict[str, Any]] = []
    steps = int(days * DAY / STEP)
    drain_steps, sample_steps = int(DRAIN_EVERY / STEP), int(SAMPLE_EVERY / STEP)
    sent = 0
    gc.collect()
    cpu0, wall0 = time.process_time(), time.monotonic()
    for step in range(1, steps + 1):
        clock.t += STEP
        focused = run_ids[int((clock.t - T0) // FOCUS_DWELL) % runs]
        tracker.presence(focused, "tab-1", visible=True, focused=True, idle_seconds=1.0)
        tracker.tick()
        if step % drain_steps == 0:
            while not (report := await drainer.drain_once()).idle:
                sent += report.sent
        if step % sample_steps == 0:
            samples.append(sample((clock.t - T0) / DAY, path, store, tracker, cpu0, wall0))
            if len(samples) % 4 == 0:
                s = samples[-1]
                say(
                    f"soak: day {s['day']:.0f}: store {s['db_mb']:.0f} MB (outbox "
                    f"{s['outbox_mb']:.0f} MB), RSS {s['rss_mb']:.0f} MB, {s['wall_s']:.0f} s"
                )
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    windows = int(store._read("SELECT COUNT(*) FROM windows")[0][0])
    checkpoints = tracker.checkpoints.saved
    tracker.end_all()
    while not (report := await drainer.drain_once()).idle:
        sent += report.sent
    await drainer.stop()
    store.close()
    return {
        "samples": samples,
        "wall_s": wall,
        "cpu_s": cpu,
        "windows": windows,
        "events_sent": sent,
        "checkpoints": checkpoints,
    }


def growth(samples: list[dict[str, Any]], retention_days: float) -> dict[str, Any]:
    """The figures at the first sample a full day past the retention period, and at the end."""
    settled = next((s for s in samples if s["day"] >= retention_days + 1), samples[-1])
    end = samples[-1]
    return {
        "from_day": settled["day"],
        "to_day": end["day"],
        "outbox_mb": (settled["outbox_mb"], end["outbox_mb"]),
        "outbox_rows": (settled["outbox_rows"], end["outbox_rows"]),
        "db_mb": (settled["db_mb"], end["db_mb"]),
        "windows_mb": (settled["windows_mb"], end["windows_mb"]),
        "rss_mb": (settled["rss_mb"], end["rss_mb"]),
        "allocated_blocks": (settled["allocated_blocks"], end["allocated_blocks"]),
        "outbox_growth": end["outbox_mb"] / settled["outbox_mb"] - 1 if settled["outbox_mb"] else 0,
        "rss_growth_mb": end["rss_mb"] - settled["rss_mb"],
    }


def run(
    quick: bool = False, days: float | None = None, retention_days: float | None = None
) -> Result:
    """A week, retention 2 days (``quick``: a day, retention 6 hours); or as given."""
    days = days or (1.0 if quick else DAYS)
    retention = retention_days or (0.25 if quick else RETENTION_DAYS)
    with tempfile.TemporaryDirectory(prefix="tb-bench-soak-") as tmp:
        say(f"soak: {days:g} simulated days, {RUNS} live runs, retention {retention:g} days")
        sim = asyncio.run(simulate(Path(tmp), days, RUNS, retention))
    g = growth(sim["samples"], retention)
    passed = g["outbox_growth"] <= TARGET_OUTBOX_GROWTH and g["rss_growth_mb"] <= (
        TARGET_RSS_GROWTH_MB
    )
    return Result(
        name="soak",
        title=f"Soak: {'a week' if days == 7 else f'{days:g} days'} of heartbeats",
        command="python -m benchmarks soak",
        target=f"after the retention period the outbox grows by at most "
        f"{TARGET_OUTBOX_GROWTH:.0%} and the process's memory by at most "
        f"{TARGET_RSS_GROWTH_MB:g} MB (store and memory flat); runs, windows and "
        "completions are kept",
        passed=passed,
        quick=quick,
        params={
            "runs": RUNS,
            "simulated_days": days,
            "retention_days": retention,
            "step_s": STEP,
            "focus_dwell_s": FOCUS_DWELL,
            "drain_every_s": DRAIN_EVERY,
        },
        metrics={
            **{k: v for k, v in sim.items() if k != "samples"},
            "growth": g,
            "samples": sim["samples"],
        },
        notes=[
            "Simulated time, real parts: the Tracker, the drainer with the local sink (each "
            "event checked, then confirmed), a real SQLite store with its WAL checkpoint and "
            "retention threads. The pruning thread looks every 20 ms of real time here (5 "
            "minutes in a server): the simulation runs thousands of times faster than the "
            "clock it simulates.",
            "Memory is the process's RSS and Python's allocated blocks (sys.getallocatedblocks, "
            "every Python object counted); tracemalloc would slow the simulation several times "
            "over. The windows table (the report's data, kept by design) keeps growing, by "
            "about a ninth of what the events it reported took (a window row and its index "
            "entry: about 160 bytes).",
        ],
    )


def render(r: dict[str, Any]) -> str:
    m, p = r["metrics"], r["params"]
    g = m["growth"]
    lines = [
        f"{p['runs']} live runs for {p['simulated_days']:g} simulated days "
        f"({m['windows']:,} windows, {m['events_sent']:,} events confirmed, "
        f"{m['checkpoints']:,} open-window checkpoints) took {m['wall_s']:.0f} s "
        f"({m['cpu_s']:.0f} s of CPU); retention {p['retention_days']:g} days.",
        "",
        f"| | day {g['from_day']:g} (retention + 1 day) | day {g['to_day']:g} (end) |",
        "|---|---|---|",
        f"| outbox | {g['outbox_mb'][0]:.1f} MB, {g['outbox_rows'][0]:,} rows | "
        f"{g['outbox_mb'][1]:.1f} MB, {g['outbox_rows'][1]:,} rows |",
        f"| windows (kept) | {g['windows_mb'][0]:.1f} MB | {g['windows_mb'][1]:.1f} MB |",
        f"| store file | {g['db_mb'][0]:.1f} MB | {g['db_mb'][1]:.1f} MB |",
        f"| process RSS | {g['rss_mb'][0]:.1f} MB | {g['rss_mb'][1]:.1f} MB |",
        f"| Python allocated blocks | {g['allocated_blocks'][0]:,} | "
        f"{g['allocated_blocks'][1]:,} |",
        "",
        f"Outbox growth after the retention period: {g['outbox_growth']:+.1%}; RSS "
        f"{g['rss_growth_mb']:+.1f} MB.",
        "",
        "| day | store file | outbox | windows | outbox rows | pruned so far | RSS | blocks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in m["samples"]:
        if s["day"] % 1 == 0:
            lines.append(
                f"| {s['day']:g} | {s['db_mb']:.1f} MB | {s['outbox_mb']:.1f} MB | "
                f"{s['windows_mb']:.1f} MB | {s['outbox_rows']:,} | {s['pruned']:,} | "
                f"{s['rss_mb']:.1f} MB | {s['allocated_blocks']:,} |"
            )
    return "\n".join(lines)
