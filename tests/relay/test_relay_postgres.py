"""What PostgreSQL holds itself, and several relay processes on one database: overlapping
active spans refused by the database, two relays (like two replicas) taking overlapping
windows of one user at once never forward more than wall time, and a user two relays see for
the first time at once is made once, without an error."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa

from timeback_jupyter.relay.database import RelayStoreError, head_revision, open_relay_db
from timeback_jupyter.relay.rules import lock_user
from timeback_jupyter.relay.schema import active_spans, hub_users
from timeback_jupyter.relay.users import HubUser
from timeback_jupyter.testing.postgres import require_bindir

from .conftest import T0, Clock, envelope, make_relay, placed_ms, run_id, tse

MS = round(T0 * 1000)
SERVERS, WINDOWS = 3, 12  # per student


def span(user: str, start: int, end: int) -> dict:
    return {"user_name": user, "start_ms": MS + start, "end_ms": MS + end, "event_key": "k"}


def test_the_database_itself_refuses_overlapping_spans_of_one_user(postgres_stores):
    with open_relay_db(postgres_stores()) as db:
        with db.write() as conn:
            conn.execute(sa.insert(active_spans), [span("ada", 0, 1000)])
            # touching is not overlapping ([start, end) both), and other users are apart
            conn.execute(sa.insert(active_spans), [span("ada", 1000, 2000)])
            conn.execute(sa.insert(active_spans), [span("bob", 500, 1500)])
        for start, end in ((500, 1500), (1999, 2001), (-10, 5000), (100, 200)):
            refused = pytest.raises(RelayStoreError, match="ex_active_spans_no_overlap")
            with refused, db.write() as conn:
                conn.execute(sa.insert(active_spans), [span("ada", start, end)])
        with db.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(active_spans)).scalar() == 3
            constraint = conn.exec_driver_sql(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conname = 'ex_active_spans_no_overlap'"
            ).scalar_one()
        assert "EXCLUDE USING gist" in constraint and "int8range(start_ms, end_ms)" in constraint
        # led by the name's hash, which GiST prunes (the name alone searched much of the index
        # per insert: revision 0006); the name itself beside it keeps the rule exact, compared
        # under "C" so no lookup by name plans on this index (0008, test_relay_plans.py)
        columns = constraint.split("(", 1)[1]
        assert columns.startswith("hashtextextended((user_name)::text, (0)::bigint) WITH =, ")
        assert ', user_name COLLATE "C" WITH =, int8range' in columns


def test_a_user_two_relays_see_first_at_once_is_made_once(postgres_stores):
    """The second first-time insert waits for the first's commit, then takes its row: no
    unique-key error (which would fail the second relay's whole batch)."""
    url = postgres_stores()
    with open_relay_db(url) as one, open_relay_db(url) as two:
        errors: list[BaseException] = []
        with one.write() as first:
            lock_user(first, "zed", T0)  # inserted, not committed: the second must wait

            def second() -> None:
                try:
                    with two.write() as conn:
                        lock_user(conn, "zed", T0 + 1)
                except BaseException as err:  # reported by the test
                    errors.append(err)

            waiter = threading.Thread(target=second)
            waiter.start()
            waiter.join(0.5)
            assert waiter.is_alive(), "the second relay did not wait for the first's row"
        waiter.join(10)
        assert not waiter.is_alive() and errors == []
        with one.read() as conn:
            rows = conn.execute(sa.select(hub_users.c.name, hub_users.c.first_seen)).all()
        assert [tuple(r) for r in rows] == [("zed", T0)]


@pytest.mark.asyncio
async def test_two_relays_on_one_database_never_forward_more_than_wall_time(postgres_stores):
    """Two relay processes' worth (two engines, two group-commit threads) take the same
    student's overlapping windows from four servers at once, and new students on both at once.
    Whatever interleaving PostgreSQL sees, the spans never overlap and the active time
    forwarded is at most the wall time the windows cover."""
    url = postgres_stores()
    clock = Clock(T0 + 10_000)
    # a batch holds its users' rows until it commits: under this load (every envelope at once
    # on a busy machine) the other relay may wait longer than the default 5 s for them
    relays = [make_relay(url, clock, busy_timeout=120), make_relay(url, clock, busy_timeout=120)]
    try:
        students = [HubUser("ada")] + [HubUser(f"new{i}") for i in range(2)]
        runs = {(s.name, k): run_id() for s in students for k in range(SERVERS)}
        sends = []
        for n, (student, server) in enumerate(itertools.product(students, range(SERVERS))):
            # each server: windows of 15 s ending every 15 s, all servers over the same
            # minutes (shifted 3 s), so most of what they send overlaps
            events = [
                tse(runs[(student.name, server)], T0 + 15 * i + 3 * server, 12.0, 3.0)
                for i in range(1, WINDOWS + 1)
            ]
            for k in range(0, WINDOWS, 4):  # envelopes of four, alternating relays
                relay = relays[(n + k // 4) % 2]
                sends.append(relay.ingest(student, envelope(*events[k : k + 4])))
        answers = await asyncio.gather(*sends)
        assert all(a.count("refused") == 0 for a in answers)
        sent_ms = SERVERS * WINDOWS * 12_000
        with relays[0].db.read() as conn:
            for student in students:
                placed = placed_ms(conn, student.name, SERVERS, WINDOWS)
                record = relays[1].record(student)
                assert round(record["active_seconds"] * 1000) == placed
                assert round((record["active_seconds"] + record["cut_seconds"]) * 1000) == sent_ms
        assert relays[0].outbox.depth() == sum(a.count("accepted") for a in answers)
    finally:
        for relay in relays:
            relay.db.close()


def test_the_schema_on_postgresql_is_what_the_migrations_make(postgres_stores):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from timeback_jupyter.relay.schema import VERSION_TABLE, metadata

    with open_relay_db(postgres_stores()) as db, db.engine.connect() as conn:
        assert db.revision() == head_revision()
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, metadata) == []


def test_the_migrations_go_down_and_up_again_on_postgresql(postgres_stores):
    from alembic import command

    from timeback_jupyter.relay.database import alembic_config
    from timeback_jupyter.relay.schema import TABLES, VERSION_TABLE

    url = postgres_stores()
    with open_relay_db(url) as db:
        config = alembic_config()
        with db.write() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert set(sa.inspect(db.engine).get_table_names()) == {VERSION_TABLE}
    with open_relay_db(url) as db:
        assert db.revision() == head_revision()
        assert set(TABLES) <= set(sa.inspect(db.engine).get_table_names())
        refused = pytest.raises(RelayStoreError, match="ex_active_spans_no_overlap")
        with refused, db.write() as conn:
            conn.execute(sa.insert(active_spans), [span("ada", 0, 10), span("ada", 5, 15)])


def test_a_store_of_a_newer_relay_on_postgresql_is_refused_untouched(postgres_stores):
    from timeback_jupyter.relay.schema import VERSION_TABLE

    url = postgres_stores()
    with open_relay_db(url) as db, db.write() as conn:
        conn.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = '9999_from_the_future'")
    with pytest.raises(RelayStoreError, match="made by a newer timeback-jupyter relay") as err:
        open_relay_db(url)
    assert "9999_from_the_future" in str(err.value)
    assert "password" not in str(err.value) and "***" in str(err.value)


def test_postgresql_urls(postgres_server, monkeypatch):
    # plain postgresql:// is psycopg 3 (the driver the relay installs), not psycopg2
    url = postgres_server.create_database("relay_plain_url")
    with open_relay_db(url.replace("postgresql+psycopg://", "postgresql://")) as db:
        assert db.engine.driver == "psycopg" and db.revision() == head_revision()
    # the password may come from $PGPASSWORD (libpq's), out of the URL and the command line
    monkeypatch.setenv("PGPASSWORD", postgres_server.relay_password)
    with open_relay_db(url.replace(f":{postgres_server.relay_password}@", "@")) as db:
        assert db.revision() == head_revision() and "PGPASSWORD" not in db.where
    with pytest.raises(RelayStoreError, match=r"SQLite .* or PostgreSQL .*not 'mysql'"):
        open_relay_db("mysql://relay:secret@db.example/relay")


def test_without_postgresql_its_tests_skip_saying_why_or_fail_where_required(monkeypatch, tmp_path):
    monkeypatch.setenv("TIMEBACK_PG_BINDIR", str(tmp_path))  # no pg_ctl there
    monkeypatch.delenv("TIMEBACK_REQUIRE_POSTGRES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed here.*apt-get install"):
        require_bindir()
    monkeypatch.setenv("TIMEBACK_REQUIRE_POSTGRES", "1")  # CI, which installs it
    with pytest.raises(pytest.fail.Exception, match="TIMEBACK_REQUIRE_POSTGRES=1 but"):
        require_bindir()


def test_replicas_starting_together_on_a_new_database_migrate_it_once(postgres_server):
    """Three relay processes opening one new database at once: one migrates, the others wait
    for it (an advisory lock) and find the schema at head, none fails."""
    url = postgres_server.create_database("relay_replicas_start")
    code = (
        "import sys\n"
        "from timeback_jupyter.relay.database import open_relay_db\n"
        "with open_relay_db(sys.argv[1]) as db:\n"
        "    print(db.revision())\n"
    )
    replicas = [
        subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    outcomes = [replica.communicate(timeout=180) for replica in replicas]
    assert [
        (r.returncode, out.strip()) for r, (out, _) in zip(replicas, outcomes, strict=True)
    ] == [(0, head_revision())] * 3, [err for _, err in outcomes]
