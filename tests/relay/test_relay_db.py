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
    for name in ("env.py", "script.py.mako", "versions/0001_initial.py"):
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
