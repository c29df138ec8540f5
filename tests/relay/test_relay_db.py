"""The relay's store: made and upgraded by Alembic in code, safe settings on SQLite, a newer or a
foreign store refused untouched, the migrations equal to the schema and shipped in the wheel."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from timeback_jupyter.relay.database import RelayStoreError, head_revision, open_relay_db
from timeback_jupyter.relay.schema import TABLES, VERSION_TABLE, metadata

ROOT = Path(__file__).resolve().parents[2]


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def test_a_new_store_is_made_at_head_and_reopens(tmp_path):
    with open_relay_db(url(tmp_path / "deep" / "relay.db")) as db:
        assert db.revision() == head_revision()
        names = set(sa.inspect(db.engine).get_table_names())
        assert set(TABLES) | {VERSION_TABLE} <= names
    with open_relay_db(url(tmp_path / "deep" / "relay.db")) as db:
        assert db.revision() == head_revision()


def test_sqlite_runs_in_wal_with_full_sync_and_immediate_writes(tmp_path):
    with open_relay_db(url(tmp_path / "relay.db"), busy_timeout=2.5) as db:
        with db.read() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
        assert pragma == {
            "journal_mode": "wal",
            "synchronous": 2,
            "foreign_keys": 1,
            "busy_timeout": 2500,
        }
        # a write transaction holds the write lock from its first statement
        with db.write() as conn:
            conn.exec_driver_sql("SELECT 1")
            other = sqlite3.connect(tmp_path / "relay.db", timeout=0)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()


def test_the_schema_is_what_the_migrations_make(tmp_path):
    with open_relay_db(url(tmp_path / "relay.db")) as db, db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_a_store_of_a_newer_relay_is_refused_untouched(tmp_path):
    path = tmp_path / "relay.db"
    open_relay_db(url(path)).close()
    raw = sqlite3.connect(path)
    raw.execute(f"UPDATE {VERSION_TABLE} SET version_num = '9999_from_the_future'")
    raw.commit()
    raw.close()
    before = path.read_bytes()
    with pytest.raises(RelayStoreError, match="made by a newer timeback-jupyter relay") as err:
        open_relay_db(url(path))
    assert "9999_from_the_future" in str(err.value) and "upgrade timeback-jupyter" in str(err.value)
    assert path.read_bytes() == before


def test_a_database_with_our_table_names_but_not_ours_is_refused(tmp_path):
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE outbox (x INTEGER)")
    raw.commit()
    raw.close()
    with pytest.raises(RelayStoreError, match="not a timeback relay store"):
        open_relay_db(url(path))


def test_another_apps_alembic_database_is_not_mistaken_for_ours(tmp_path):
    # jupyterhub.sqlite has its own alembic_version: ours is a table of its own
    path = tmp_path / "hub.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    raw.execute("INSERT INTO alembic_version VALUES ('4621fec11365')")
    raw.commit()
    raw.close()
    with open_relay_db(url(path)) as db:
        assert db.revision() == head_revision()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("", "db_url is empty"),
        ("sqlite://", "needs a database file"),
        ("sqlite:///:memory:", "needs a database file"),
        ("not a url", "is not a database URL"),
    ],
)
def test_bad_urls_are_named(bad, match):
    with pytest.raises(RelayStoreError, match=match):
        open_relay_db(bad)


def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database" * 100)
    with pytest.raises(RelayStoreError, match="not a timeback store|malformed"):
        open_relay_db(url(path))
    assert path.read_bytes().startswith(b"these are my notes")


def test_the_wheel_ships_the_migrations():
    from hatchling.builders.wheel import WheelBuilder

    names = {f.distribution_path for f in WheelBuilder(str(ROOT)).recurse_included_files()}
    for name in (
        "env.py",
        "script.py.mako",
        "versions/0001_initial.py",
        "versions/0002_jobs.py",
        "versions/0003_spans_never_overlap.py",
        "versions/0004_replicas.py",
        "versions/0005_outbox_pending_index.py",
        "versions/0006_spans_exclusion_by_hash.py",
        "versions/0007_outbox_partial_indexes.py",
        "versions/0008_spans_exclusion_name_in_c.py",
    ):
        assert f"timeback_jupyter/relay/migrations/{name}" in names


def test_the_migrations_go_down_and_up_again(tmp_path):
    from alembic import command

    from timeback_jupyter.relay.database import alembic_config

    with open_relay_db(url(tmp_path / "relay.db")) as db:
        config = alembic_config()
        with db.write() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert set(sa.inspect(db.engine).get_table_names()) == {VERSION_TABLE}
    with open_relay_db(url(tmp_path / "relay.db")) as db:
        assert db.revision() == head_revision()
        assert set(TABLES) <= set(sa.inspect(db.engine).get_table_names())


def _at_revision(path: Path, revision: str) -> None:
    """A store made by the relay whose newest migration was ``revision``."""
    from alembic import command

    from timeback_jupyter.relay.database import alembic_config

    engine = sa.create_engine(url(path))
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    engine.dispose()


def _rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of the relay's tables, in the columns the first schema had."""
    first = {
        "outbox": "seq, event_id, user_name, run_id, kind, sensor, payload, status, attempts, "
        "created_at, sent_at, last_error",
    }
    raw = sqlite3.connect(path)
    try:
        return {
            name: raw.execute(f"SELECT {first.get(name, '*')} FROM {name} ORDER BY 1, 2").fetchall()
            for name in TABLES
            if name not in ("jobs", "relay_tokens")  # made by later revisions
        }
    finally:
        raw.close()


def test_a_store_of_the_first_schema_upgrades_with_its_rows_kept(tmp_path):
    """A relay store made before Timeback's jobs (revision 0001), with events in every state
    and a send the old relay left inflight: upgraded, nothing lost, the send's wait begins now."""
    import json
    import time

    from timeback_jupyter.relay.outbox import RelayOutbox

    path = tmp_path / "relay.db"
    _at_revision(path, "0001")
    raw = sqlite3.connect(path)
    payload = json.dumps({"id": "x"})
    raw.executemany(
        "INSERT INTO outbox (event_id, user_name, run_id, kind, sensor, payload, status, "
        "attempts, created_at, sent_at, last_error) VALUES (?, 'ada', NULL, 'time_spent', "
        "'https://nb.example.edu', ?, ?, ?, 1000.0, ?, ?)",
        [
            ("urn:uuid:sent", payload, "sent", 1, 1001.0, None),
            ("urn:uuid:inflight", payload, "inflight", 2, None, "timed out"),
            ("urn:uuid:pending", payload, "pending", 0, None, None),
        ],
    )
    raw.execute(
        "INSERT INTO dead_letters VALUES ('urn:uuid:dead', 'ada', NULL, 'time_spent', "
        "'https://nb.example.edu', ?, 'rejected', 999.0)",
        (payload,),
    )
    raw.execute("INSERT INTO hub_users VALUES ('ada', 900.0, 12000, 3000)")
    raw.execute(
        "INSERT INTO received VALUES ('urn:uuid:sent', 'ada', 'e1', 'ab', 'time_spent', "
        "'accepted', NULL, NULL, 12.0, 3.0, NULL, 1000.0)"
    )
    raw.execute("INSERT INTO active_spans VALUES (1, 'ada', 1000, 13000, 'urn:uuid:sent')")
    raw.execute("INSERT INTO runs VALUES ('ada', 'r1', 'Math G3', 'quiz', 1, 900.0, 12000, 0)")
    raw.execute("INSERT INTO completions VALUES ('ada', 'r1', 'urn:uuid:c', 10.0, '{}', 1002.0)")
    raw.commit()
    raw.close()
    before = _rows(path)
    assert all(before.values())

    started = time.time()
    with open_relay_db(url(path)) as db:
        assert db.revision() == head_revision() != "0001"
        outbox = RelayOutbox(db)
        [unknown] = outbox.inflight()  # the old relay's send of unknown outcome, kept
        assert unknown.event_id == "urn:uuid:inflight" and unknown.attempts == 2
        # its time is not known: it counts from the upgrade, never from before
        assert started <= (unknown.claimed_at or 0) <= time.time()
        assert outbox.jobs_pending() == [] and outbox.job_stats()["confirmed"] == 0
        assert outbox.stats() | {"oldest_pending_age": 0} == {
            "pending": 1, "inflight": 1, "sent": 1, "dead": 1, "oldest_pending_age": 0,
        }  # fmt: skip
    assert _rows(path) == before
    raw = sqlite3.connect(path)
    assert raw.execute(
        "SELECT event_id, job_id, job_failures, claimed_at IS NOT NULL FROM outbox ORDER BY seq"
    ).fetchall() == [
        ("urn:uuid:sent", None, 0, 0),
        ("urn:uuid:inflight", None, 0, 1),
        ("urn:uuid:pending", None, 0, 0),
    ]
    raw.close()

    # and the upgraded store delivers by jobs
    with open_relay_db(url(path)) as db:
        outbox = RelayOutbox(db)
        [item] = outbox.claim_batch(10)
        outbox.record_job([item.event_id], "job-1")
        assert outbox.confirm("job-1") == 1
        assert outbox.stats()["sent"] == 2


def test_the_jobs_revision_goes_down_keeping_the_rows(tmp_path):
    from alembic import command

    from timeback_jupyter.relay.database import alembic_config
    from timeback_jupyter.relay.outbox import RelayOutbox, enqueue

    path = tmp_path / "relay.db"
    with open_relay_db(url(path)) as db:
        with db.write() as conn:
            for i in range(3):
                enqueue(conn, {"id": f"urn:uuid:{i}"}, user="ada", run_id=None,
                        kind="time_spent", sensor="https://a.edu", at=1000.0 + i)  # fmt: skip
        outbox = RelayOutbox(db)
        outbox.claim_batch(2)
        outbox.record_job(["urn:uuid:0", "urn:uuid:1"], "job-1")
        outbox.confirm("job-1")
        before = _rows(path)
        config = alembic_config()
        with db.write() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0001")
        assert db.revision() == "0001"
        names = set(sa.inspect(db.engine).get_table_names())
        assert "jobs" not in names
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("outbox")}
        assert not columns & {"job_id", "claimed_at", "job_failures"}
    assert _rows(path) == before
    with open_relay_db(url(path)) as db:
        assert db.revision() == head_revision()
        assert RelayOutbox(db).stats()["sent"] == 2
        with db.engine.connect() as conn:  # the table SQLite copied kept its keys and indexes
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, metadata) == []
