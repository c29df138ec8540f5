"""A relay on a real store with injected time, and events as students' servers build them
(``caliper.time_spent_event`` / ``completion_event``, the product's own builders).

Every test that takes ``relay`` or ``relay_db_url`` runs twice: on a SQLite file and on a real
PostgreSQL (one server for the session, a database per store; ``testing/postgres.py``).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from timeback_jupyter import caliper
from timeback_jupyter.config import ONEROSTER_BASE_URLS, parse_app_config
from timeback_jupyter.model import Activity, Completion, CourseRef, Window
from timeback_jupyter.relay.catalog import Catalog
from timeback_jupyter.relay.database import RelayDatabase, open_relay_db
from timeback_jupyter.relay.ingest import Relay
from timeback_jupyter.relay.schema import active_spans, metadata
from timeback_jupyter.relay.users import HubUser, UserDirectory
from timeback_jupyter.testing.postgres import PostgresServer, postgres_server  # noqa: F401

T0 = 1_768_471_200.0
SENSOR = "https://nb.example.edu"
BASE = ONEROSTER_BASE_URLS["staging"]
CATALOG = {
    "name": "Notebook Academy",
    "sensor": SENSOR,
    "courses": [
        {
            "subject": "Math",
            "grade": 3,
            "ids": {"staging": "m3-stg", "production": "m3-prd"},
            "activities": [
                {"id": "fractions-quiz", "name": "Fractions quiz", "xp": 10},
                {"id": "fractions-lesson", "name": "Fractions lesson", "xp": 5,
                 "xpWithoutQuestions": True},
                {"id": "strict-quiz", "name": "Strict quiz", "xp": 8, "masteryThreshold": 1.0},
            ],
        },
        {
            "subject": "Other",
            "courseCode": "CS-101",
            "ids": {"staging": "cs-stg"},
            "activities": [{"id": "intro", "name": "Intro to Python", "xp": 3}],
        },
    ],
}  # fmt: skip
ADA = HubUser("ada")
BOB = HubUser("bob")


class Clock:
    def __init__(self, t: float = T0 + 3600) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def catalog(data: dict[str, Any] | None = None) -> Catalog:
    app = parse_app_config(data or CATALOG, "staging")
    return Catalog(app, "staging", BASE)


def make_relay(where: str | Path, clock: Clock, **kw: Any) -> Relay:
    """A relay on the store at ``where`` (a URL, or a SQLite file's path)."""
    url = where if isinstance(where, str) else f"sqlite:///{where}"
    db = open_relay_db(url, busy_timeout=kw.pop("busy_timeout", 5.0))
    users = UserDirectory("{name}@school.edu", BASE)
    return Relay(db, kw.pop("catalog", None) or catalog(), users, now=clock, **kw)


_numbers = itertools.count(1)
_TEMPLATE = "relay_at_head"


def migrated_template(server: PostgresServer) -> str:
    """A database the relay's migrations brought to head, made once per server: a test's
    store is a copy of it (CREATE DATABASE ... TEMPLATE), which saves each test the migrations
    (~0.7 s here). The migrations themselves run in test_relay_postgres.py and test_relay_db.py.
    """
    if getattr(server, "relay_template", None) is None:
        open_relay_db(server.create_database(_TEMPLATE)).close()
        server.relay_template = _TEMPLATE  # type: ignore[attr-defined]
    return _TEMPLATE


class Stores:
    """The stores of one test on one backend: ``stores(name)`` is the URL of the store called
    ``name`` (made empty on first use, the same store again after), ``stores.new()`` a fresh
    one each call."""

    def __init__(self, backend: str, tmp_path: Path, server: PostgresServer | None) -> None:
        self.backend = backend
        self._tmp = tmp_path
        self._server = server
        self._urls: dict[str, str] = {}
        self._emptied: RelayDatabase | None = None

    def __call__(self, name: str = "relay") -> str:
        if name not in self._urls:
            if self._server is None:
                self._urls[name] = f"sqlite:///{self._tmp / f'{name}.db'}"
            else:
                database = f"relay_{next(_numbers)}"
                template = migrated_template(self._server)
                self._urls[name] = self._server.create_database(database, template=template)
        return self._urls[name]

    def new(self) -> str:
        return self(f"new_{next(_numbers)}")

    def empty(self) -> str:
        """An empty store for each example of a property test: a new SQLite file, or the same
        PostgreSQL database emptied (a new database per example would cost ~0.3 s each)."""
        if self._server is None:
            return self.new()
        if self._emptied is None:
            self._emptied = open_relay_db(self("empty"))
        else:  # DELETE: one commit, where TRUNCATE makes new files for every table
            with self._emptied.write() as conn:
                for table in reversed(metadata.sorted_tables):
                    conn.execute(table.delete())
        return self("empty")

    def close(self) -> None:
        # The databases stay until the session's server is removed: DROP DATABASE forces a
        # checkpoint (1.5 s a test on this machine), and the cluster goes whole at the end.
        if self._emptied is not None:
            self._emptied.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def relay_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """The test's relay stores on each backend (see :class:`Stores`)."""
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    stores = Stores(request.param, tmp_path, server)
    yield stores
    stores.close()


@pytest.fixture
def postgres_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Stores on PostgreSQL only, for what only PostgreSQL does (or refuses)."""
    stores = Stores("postgresql", tmp_path, request.getfixturevalue("postgres_server"))
    yield stores
    stores.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Wall:
    """A relay's clock in real time, moved to the tests' events (none is "from the future"):
    for tests whose drainer compares the relay's durable times with time passing."""

    def __init__(self) -> None:
        self.offset = T0 + 3600 - time.time()

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def relay(relay_db_url: Stores, clock: Clock):
    r = make_relay(relay_db_url(), clock)
    yield r
    r.db.close()


# -- what a student's server sends ------------------------------------------------------------

# The student's own server may claim anything: another actor, another app, its own XP.
MALLORY = caliper.Actor(f"{BASE}/ims/oneroster/rostering/v1p2/users/victim-1", "bob@school.edu")


def target(slug: str = "fractions-quiz", *, code: str | None = None, app: str = "Evil App"):
    ref = CourseRef(code=code) if code else CourseRef("Math", 3)
    local = {**CATALOG, "name": app}
    course = parse_app_config(local, "staging").course_for(ref)
    activity = Activity(slug, f"{slug} (as the notebook names it)", ref, xp=500.0)
    return caliper.Target(app, SENSOR, "staging", BASE, course, activity)


def tse(
    run: str,
    end: float,
    active: float = 12.0,
    inactive: float = 3.0,
    *,
    slug: str = "fractions-quiz",
    event_id: str | None = None,
    actor: caliper.Actor = MALLORY,
) -> dict[str, Any]:
    window = Window(run, end - active - inactive, end, active, inactive)
    return caliper.time_spent_event(window, run, actor, target(slug), event_id=event_id)


def completion(
    run: str,
    at: float,
    *,
    total: int | None = 10,
    correct: int | None = 10,
    xp: float = 999.0,
    slug: str = "fractions-quiz",
    attempt: int = 1,
    event_id: str | None = None,
) -> dict[str, Any]:
    done = Completion(run, xp, at, total_questions=total, correct_questions=correct)
    return caliper.completion_event(done, run, attempt, MALLORY, target(slug), event_id=event_id)


def envelope(*events: dict[str, Any]) -> dict[str, Any]:
    return caliper.envelope(list(events), SENSOR, T0)


def run_id() -> str:
    return str(uuid.uuid4())


def forwarded(relay: Relay) -> list[dict[str, Any]]:
    return relay.outbox.events()


def roundtrip(event: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(event))


def placed_ms(conn: sa.Connection, user: str, servers: int, windows: int) -> int:
    """The user's forwarded active time in ms, checked: no two spans overlap, and all of it fits
    between the first window's start and the last one's end (``servers`` sending ``windows``
    windows of 15 s each, each server's clock 3 s after the previous one's)."""
    rows = conn.execute(
        sa.select(active_spans.c.start_ms, active_spans.c.end_ms)
        .where(active_spans.c.user_name == user)
        .order_by(active_spans.c.start_ms)
    ).all()
    for (_, end), (start, _) in itertools.pairwise(rows):
        assert end <= start
    placed = sum(e - s for s, e in rows)
    assert 0 < placed <= (15 * windows + 3 * (servers - 1)) * 1000
    return placed
