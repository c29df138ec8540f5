"""A starting relay waits for a database that cannot be reached yet (c.Relay.db_wait_seconds),
and only for that: unit tests with injected time, and a real PostgreSQL started late."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import pytest
import sqlalchemy as sa
from traitlets import TraitError

from timeback_jupyter.config import Timeback
from timeback_jupyter.relay.app import build_parts
from timeback_jupyter.relay.database import RelayDatabaseUnavailable, RelayStoreError
from timeback_jupyter.relay.db_wait import open_when_reachable
from timeback_jupyter.relay.settings import Relay as RelaySettings
from timeback_jupyter.testing.postgres import PostgresServer, require_bindir

from .conftest import ADA, CATALOG, envelope, run_id, tse


class FakeTime:
    """Injected time: ``sleep`` moves ``now`` on and is recorded."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def failing(times: int, error: Exception, result: object = "db"):
    calls = []

    def open_db():
        calls.append(1)
        if len(calls) <= times:
            raise error
        return result

    return open_db, calls


DOWN = RelayDatabaseUnavailable("postgresql://relay:***@db/relay: cannot be reached now")


def test_an_unreachable_database_is_tried_again_with_growing_pauses(caplog):
    t = FakeTime()
    open_db, calls = failing(5, DOWN)
    with caplog.at_level(logging.WARNING, "timeback_jupyter.relay"):
        assert open_when_reachable(open_db, 60, sleep=t.sleep, clock=t.clock) == "db"
    assert len(calls) == 6
    assert t.slept == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert len(caplog.records) == 5
    assert "cannot be reached now; trying again in 0.5 s" in caplog.records[0].getMessage()


def test_the_pause_stays_under_ten_seconds_and_the_wait_ends_with_the_reason():
    t = FakeTime()
    open_db, calls = failing(1000, DOWN)
    with pytest.raises(RelayDatabaseUnavailable) as err:
        open_when_reachable(open_db, 60, sleep=t.sleep, clock=t.clock)
    assert max(t.slept) == 10.0 and sum(t.slept) == pytest.approx(60)
    assert "cannot be reached now" in str(err.value)
    assert f"tried {len(calls)} times over 60 s: c.Relay.db_wait_seconds" in str(err.value)


def test_no_wait_tries_once():
    t = FakeTime()
    open_db, calls = failing(1, DOWN)
    with pytest.raises(RelayDatabaseUnavailable) as err:
        open_when_reachable(open_db, 0, sleep=t.sleep, clock=t.clock)
    assert err.value is DOWN and len(calls) == 1 and t.slept == []


def test_a_configuration_error_is_not_waited_for():
    t = FakeTime()
    newer = RelayStoreError("the relay's store was made by a newer relay (revision 9999)")
    open_db, calls = failing(1, newer)
    with pytest.raises(RelayStoreError) as err:
        open_when_reachable(open_db, 60, sleep=t.sleep, clock=t.clock)
    assert err.value is newer and len(calls) == 1 and t.slept == []


def test_a_negative_wait_is_refused():
    with pytest.raises(TraitError, match=r"c\.Relay\.db_wait_seconds must be at least 0"):
        RelaySettings(db_wait_seconds=-1.0)


def test_a_relay_started_before_its_postgresql_serves_once_it_is_up(tmp_path, caplog):
    """The database is down when the relay starts; up 2 s later: the relay opens it (its
    schema made then), and ingests. The log says why it waited, without the password."""
    catalog = tmp_path / "timeback.config.json"
    catalog.write_text(json.dumps(CATALOG))
    with PostgresServer(require_bindir()) as server:
        url = server.create_database("relay_waits")
        password = sa.make_url(url).password
        server.halt("fast")
        settings = RelaySettings(
            db_url=url,
            catalog=str(catalog),
            email_template="{name}@school.edu",
            sink="local",
            db_wait_seconds=60.0,
        )
        coming_up = threading.Timer(2.0, server.resume)
        coming_up.start()
        started = time.monotonic()
        try:
            with caplog.at_level(logging.WARNING, "timeback_jupyter.relay"):
                parts = build_parts(settings, Timeback(), {})
        finally:
            coming_up.join()
        waited = time.monotonic() - started
        try:
            answer = asyncio.run(parts.relay.ingest(ADA, envelope(tse(run_id(), time.time()))))
        finally:
            parts.db.close()
    assert waited >= 2.0
    assert answer.count("accepted") == 1
    waits = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert waits and all("cannot be reached now" in m for m in waits)
    assert password and password not in caplog.text
