"""The relay's dashboard pages on a class of 40 students x 20 activities, SQLite and PostgreSQL.

The store is filled through the real ``Relay.ingest`` (as students' servers would fill it):
every student has 1 to 3 runs (attempts) of every activity, each of 5 to 40 heartbeat windows
of 15 s (6 to 15 s active), spread over the last 14 days without overlap; about 70% of runs
completed with answers from 6/10 to 10/10 (so every XP rule shows up), and 5 students working
right now. PostgreSQL is a real server (``timeback_jupyter/testing/postgres.py``, fsync on).

Each page is timed as its handler makes it, minus HTTP and the hub (OAuth and the class's
members, which the relay caches): the query in ``views``/``activity_view``, then the rows,
chart and Jinja2 template (or the CSV writer), as ``relay/pages.py`` does. Each render is a
fresh query; the student and activity pages cycle through the students and activities.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import Result, percentile, say

BUDGET_MS = {"overview": 100.0, "student": 100.0, "activity": 100.0, "csv": 100.0}
STUDENTS, ACTIVITIES, DAYS, LIVE = 40, 20, 14, 5
ENVELOPE = 500
PREFIX = "/services/timeback-relay/"
SENSOR = "https://nb.example.edu"


def _catalog() -> Any:
    from timeback_jupyter.config import ONEROSTER_BASE_URLS, parse_app_config
    from timeback_jupyter.relay.catalog import Catalog

    rng = random.Random(7)
    courses = [
        {
            "subject": "Math" if c == 0 else "Science",
            "grade": 7,
            "ids": {"staging": f"course-{c}"},
            "activities": [
                {"id": f"activity-{c}-{i}", "name": f"Activity {c}.{i}",
                 "xp": rng.choice([3, 5, 8, 10, 15, 20])}
                for i in range(ACTIVITIES // 2)
            ],
        }
        for c in range(2)
    ]  # fmt: skip
    data = {"name": "Bench Academy", "sensor": SENSOR, "courses": courses}
    base = ONEROSTER_BASE_URLS["staging"]
    return Catalog(parse_app_config(data, "staging"), "staging", base), base


def _ref(course: Any) -> Any:
    from timeback_jupyter.model import CourseRef

    return CourseRef(subject=course.subject, grade=course.grade, code=course.code)


def _envelopes(catalog: Any, student: int, now: float, rng: random.Random) -> list[dict]:
    """One student's runs as envelopes, oldest first, none overlapping. Envelopes of up to
    ENVELOPE events (a server's drainer sends 50): the store's content is the same, and the
    fill takes a few commits instead of thousands (each an fsync on a busy disk)."""
    from timeback_jupyter import caliper
    from timeback_jupyter.model import Completion, Window

    actor = caliper.Actor("https://example.invalid/users/x", f"s{student}@school.edu")
    plan = [
        (course, activity, attempt)
        for course in catalog.app.courses
        for activity in course.activities
        for attempt in range(rng.randint(1, 3))
    ]
    rng.shuffle(plan)
    slot = DAYS * 86_400 / (len(plan) + 1)
    out: list[dict] = []
    for k, (course, listed, _) in enumerate(plan):
        target = catalog.target(course, listed.activity(_ref(course)))
        run = str(uuid.uuid4())
        start = now - DAYS * 86_400 + k * slot + rng.uniform(0, slot - 1200)
        events = []
        for w in range(rng.randint(5, 40)):
            active = rng.uniform(6, 15)
            end = start + 15 * (w + 1)
            window = Window(run, end - 15, end, active, 15 - active)
            events.append(caliper.time_spent_event(window, run, actor, target))
        if rng.random() < 0.7:
            correct = rng.choice([6, 8, 9, 10, 10])
            done = Completion(run, 0.0, end, total_questions=10, correct_questions=correct)
            events.append(caliper.completion_event(done, run, 1, actor, target))
        out.extend(events)
    if student < LIVE:  # working right now: the last window ended seconds ago
        course = catalog.app.courses[0]
        target = catalog.target(course, course.activities[0].activity(_ref(course)))
        run = str(uuid.uuid4())
        windows = [
            Window(run, now - 15 * (w + 1) - 5, now - 15 * w - 5, 12.0, 3.0) for w in range(8)
        ]
        out.extend(caliper.time_spent_event(w, run, actor, target) for w in reversed(windows))
    return [
        caliper.envelope(out[i : i + ENVELOPE], SENSOR, now) for i in range(0, len(out), ENVELOPE)
    ]


def fill(url: str) -> tuple[Any, list[str], int]:
    """A relay on ``url`` with the class's record; (relay, students, events)."""
    from timeback_jupyter.relay.database import open_relay_db
    from timeback_jupyter.relay.ingest import Relay
    from timeback_jupyter.relay.users import HubUser, UserDirectory

    catalog, base = _catalog()
    relay = Relay(open_relay_db(url), catalog, UserDirectory("{name}@school.edu", base))
    now = time.time()
    names = [f"student-{i:02d}" for i in range(STUDENTS)]
    plans = {n: _envelopes(catalog, i, now, random.Random(i)) for i, n in enumerate(names)}

    async def one(name: str) -> int:
        sent = 0
        for env in plans[name]:
            result = await relay.ingest(HubUser(name), env)
            refused = [e for e in result.events if e["status"] == "refused"]
            if refused:
                raise RuntimeError(f"the relay refused {name}'s events: {refused[:2]}")
            sent += len(result.events)
        return sent

    async def everyone() -> int:
        return sum(await asyncio.gather(*(one(n) for n in names)))

    return relay, names, asyncio.run(everyone())


# -- the pages, made as relay/pages.py makes them ---------------------------------------------


class Pages:
    def __init__(self, relay: Any, students: list[str]) -> None:
        import jinja2

        from timeback_jupyter.relay.access import Viewer

        self.relay, self.students = relay, students
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("timeback_jupyter.relay", "templates"), autoescape=True
        )
        self.viewer = Viewer("teacher", frozenset({"class-a"}))
        self.activities = [(c, a) for c in relay.catalog.app.courses for a in c.activities]

    def overview(self, i: int, export: bool = False) -> tuple[float, str]:
        from timeback_jupyter.relay import export as export_csv
        from timeback_jupyter.relay import filters, overview_page, views

        # the page's own path: its query parsed by filters.py, its context by overview_page.py
        query = {"sort": ["time"], "order": ["desc"]} if i % 2 else {}
        began = time.perf_counter()
        chosen = filters.parse(query, views.catalog_columns(self.relay.catalog))
        view = views.overview(self.relay.db, self.relay.catalog, "class-a", self.students,
                              self.relay.now(), chosen)  # fmt: skip
        queried = time.perf_counter() - began
        rows = view.rows()
        if export:
            return queried, export_csv.csv_text(view.header(), rows)
        page = overview_page.context(view, rows, f"{PREFIX}classes/class-a", self.relay.catalog)
        html = self.env.get_template("overview.html").render(
            prefix=PREFIX, csp_nonce="n", live_script=f"{PREFIX}static/live.js", xsrf_token="x",
            viewer=self.viewer, **page,
        )  # fmt: skip
        return queried, html

    def student(self, i: int) -> tuple[float, str]:
        from markupsafe import Markup

        from timeback_jupyter.relay import charts, views

        name = self.students[i % len(self.students)]
        began = time.perf_counter()
        view = views.student(self.relay.db, self.relay.catalog, name, self.relay.now())
        queried = time.perf_counter() - began
        chart = charts.bar_chart(view.days, f"Active time per day of {name}", "days")
        html = self.env.get_template("student.html").render(
            prefix=PREFIX, viewer=self.viewer, view=view, chart=Markup(chart),
            active=views.duration(view.active_seconds), cut=views.duration(view.cut_seconds),
        )  # fmt: skip
        return queried, html

    def activity(self, i: int) -> tuple[float, str]:
        from markupsafe import Markup

        from timeback_jupyter.relay import activity_view, charts

        course, listed = self.activities[i % len(self.activities)]
        began = time.perf_counter()
        view = activity_view.activity(self.relay.db, course, listed, set(self.students),
                                      scope="class-a", policy=self.relay.rules.policy)  # fmt: skip
        queried = time.perf_counter() - began
        quartiles = view.quartiles()
        chart = charts.histogram(
            [(b.low, b.high, b.count) for b in view.bins],
            [(view.expected_xp, "expected"), (view.wasteful_minutes, "wasteful")],
            f"Active minutes to completion of {view.name}",
        )
        html = self.env.get_template("activity.html").render(
            prefix=PREFIX, viewer=self.viewer, view=view, chart=Markup(chart),
            quartiles=None if quartiles is None else [activity_view.minutes(q) for q in quartiles],
        )  # fmt: skip
        return queried, html


def _time(make: Callable[[int], tuple[float, str]], n: int) -> dict[str, Any]:
    make(0)  # templates compiled, connections pooled: what a running relay has
    total, cpu, query, size = [], [], [], 0
    for i in range(n):
        began, began_cpu = time.perf_counter(), time.process_time()
        queried, text = make(i)
        total.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
        query.append(queried)
        size = max(size, len(text))
    return {
        "n": n,
        "median_ms": statistics.median(total) * 1000,
        "p95_ms": percentile(total, 95) * 1000,
        "max_ms": max(total) * 1000,
        "query_median_ms": statistics.median(query) * 1000,
        # this process's CPU (a database server's own is not in it): on a shared machine the
        # wall clock also holds the time spent waiting for a core
        "cpu_median_ms": statistics.median(cpu) * 1000,
        "cpu_p95_ms": percentile(cpu, 95) * 1000,
        "largest_kb": size / 1024,
    }


def measure(url: str, renders: int) -> dict[str, Any]:
    began = time.monotonic()
    relay, students, events = fill(url)
    filled = time.monotonic() - began
    try:
        pages = Pages(relay, students)
        out: dict[str, Any] = {
            "events": events,
            "fill_s": filled,
            "overview": _time(pages.overview, renders),
            "student": _time(pages.student, renders),
            "activity": _time(pages.activity, renders),
            "csv": _time(lambda i: pages.overview(i, export=True), renders),
        }
    finally:
        relay.db.close()
    return out


def run(quick: bool = False) -> Result:
    from timeback_jupyter.testing.postgres import PostgresServer, find_bindir

    renders = 10 if quick else 60
    backends: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        say(f"dashboard: SQLite, {STUDENTS} x {ACTIVITIES}, {renders} renders a page")
        backends["sqlite"] = measure(f"sqlite:///{Path(tmp) / 'relay.db'}", renders)
    bindir = find_bindir()
    notes = []
    if bindir is None:
        notes.append("PostgreSQL is not installed here: its row is missing.")
    else:
        with PostgresServer(bindir) as server:
            say("dashboard: PostgreSQL")
            backends["postgresql"] = measure(server.create_database("dashboard"), renders)
    passed = all(
        figures[page]["p95_ms"] < budget
        for figures in backends.values()
        for page, budget in BUDGET_MS.items()
    )
    return Result(
        name="dashboard",
        title="Relay dashboard pages (40 students x 20 activities)",
        command="python -m benchmarks dashboard",
        target="p95 of query + render < 100 ms for the overview, student page, activity page "
        "and CSV, on SQLite and PostgreSQL",
        passed=passed and bindir is not None,
        params={
            "students": STUDENTS,
            "activities": ACTIVITIES,
            "days": DAYS,
            "renders_per_page": renders,
            "working_now": LIVE,
        },
        metrics=backends,
        notes=notes,
        quick=quick,
    )


def headline(r: dict[str, Any]) -> str:
    parts = []
    for backend, m in r["metrics"].items():
        pages = ", ".join(f"{p} {m[p]['p95_ms']:.0f}" for p in BUDGET_MS)
        parts.append(f"{backend}: p95 {pages} ms")
    return "; ".join(parts)


def render(r: dict[str, Any]) -> str:
    # results saved before the CPU was timed have no CPU column
    has_cpu = all("cpu_median_ms" in m[p] for m in r["metrics"].values() for p in BUDGET_MS)
    cpu_head = " CPU median / p95 |" if has_cpu else ""
    lines = [
        f"| backend | page | median | p95 | max | query (median) |{cpu_head} largest page |",
        "|---|---|---|---|---|---|---|" + ("---|" if has_cpu else ""),
    ]
    for backend, m in r["metrics"].items():
        for page in BUDGET_MS:
            f = m[page]
            cpu = f" {f['cpu_median_ms']:.1f} / {f['cpu_p95_ms']:.1f} ms |" if has_cpu else ""
            lines.append(
                f"| {backend} | {page} | {f['median_ms']:.1f} ms | {f['p95_ms']:.1f} ms | "
                f"{f['max_ms']:.1f} ms | {f['query_median_ms']:.1f} ms |{cpu} "
                f"{f['largest_kb']:.0f} KB |"
            )
    first = next(iter(r["metrics"].values()), None)
    events = "" if first is None else f"{first['events']:,} events "
    lines += [
        "",
        f"The class's record: {events}ingested through the real `Relay.ingest` "
        f"({', '.join(f'{b} in {m["fill_s"]:.0f} s' for b, m in r['metrics'].items())}); "
        f"{r['params']['renders_per_page']} renders a page, each a fresh query. Timed: the "
        "query (`views.overview`, `views.student`, `activity_view.activity`) and the rows, "
        "chart and Jinja2 template (or CSV writer), as `relay/pages.py` makes them; not timed: "
        "HTTP, the OAuth cookie check and the hub's class members (cached 30 s by the relay). "
        "Nothing of a page is cached: the relay keeps no overview between requests, so each "
        "render is a cold query of the store (its database's own page cache warm, as in a "
        "running relay). The CPU column is this process's user + system time: on a shared "
        "machine the wall clock also holds the time spent waiting for a core.",
    ]
    return "\n".join(lines)
