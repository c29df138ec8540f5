"""Stores made before the schema version moved to ``PRAGMA user_version`` open, are brought
to it without losing a row, and a store newer than this code is refused untouched.

The old store is built here with the DDL and bookkeeping that code used (copied, not imported:
MIGRATIONS may grow, the files already on students' disks do not change), in WAL mode, with
rows in every table and every outbox status.
"""

import dataclasses
import hashlib
import json
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from timeback_jupyter.model import Window
from timeback_jupyter.store import SCHEMA_VERSION, Store, StoreError, migrations
from timeback_jupyter.testing.standin import SENSOR as STANDIN_SENSOR
from timeback_jupyter.testing.standin import time_spent_events

SENSOR = "https://notebooks.example.edu"
RUN_A = "0b8c2f4e-3a51-4d6e-9f10-aa11bb22cc33"
RUN_B = "5d9e7a10-6b2c-4f3d-8e4f-dd44ee55ff66"

# Schema version 1 as the store recorded it before user_version: a meta row.
LEGACY_V1 = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            activity_id TEXT NOT NULL,
            activity TEXT NOT NULL,
            student TEXT NOT NULL,
            attempt INTEGER NOT NULL CHECK (attempt >= 1),
            status TEXT NOT NULL CHECK (status IN ('active', 'ended', 'completed')),
            started_at REAL NOT NULL,
            ended_at REAL,
            active_seconds REAL NOT NULL DEFAULT 0,
            inactive_seconds REAL NOT NULL DEFAULT 0,
            origin TEXT,
            exercises TEXT NOT NULL DEFAULT '{}',
            updated_at REAL NOT NULL
        )""",
    "CREATE INDEX runs_by_activity_student ON runs (activity_id, student, attempt)",
    """CREATE TABLE windows (
            run_id TEXT NOT NULL REFERENCES runs (id),
            start REAL NOT NULL,
            "end" REAL NOT NULL,
            active REAL NOT NULL,
            inactive REAL NOT NULL,
            event_id TEXT NOT NULL,
            PRIMARY KEY (run_id, start)
        )""",
    """CREATE TABLE completions (
            run_id TEXT PRIMARY KEY REFERENCES runs (id),
            event_id TEXT NOT NULL,
            metrics TEXT NOT NULL,
            at REAL NOT NULL
        )""",
    """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE,
            run_id TEXT,
            kind TEXT NOT NULL,
            sensor TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at REAL NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'inflight', 'sent')),
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            sent_at REAL
        )""",
    "CREATE INDEX outbox_by_status ON outbox (status, seq)",
    """CREATE TABLE dead_letters (
            event_id TEXT PRIMARY KEY,
            run_id TEXT,
            kind TEXT NOT NULL,
            sensor TEXT NOT NULL,
            payload TEXT NOT NULL,
            reason TEXT NOT NULL,
            at REAL NOT NULL
        )""",
]
RUN_COLUMNS = (
    "id, activity_id, activity, student, attempt, status, started_at, ended_at, "
    "active_seconds, inactive_seconds, origin, exercises, updated_at"
)
TABLES = ["meta", "runs", "windows", "completions", "outbox", "dead_letters", "sqlite_sequence"]
# The outbox's columns in version 1: later versions add columns, the rows keep these values.
OUTBOX_V1 = (
    "seq, event_id, run_id, kind, sensor, payload, created_at, status, attempts, last_error, "
    "sent_at"
)
NEWER = SCHEMA_VERSION + 1  # a version this code does not know
ACTIVITY = {
    "id": "fractions-1",
    "name": "Fractions 1",
    "course": {"subject": "Math", "grade": 3},
    "stateful": True,
}


def payload(n: int) -> str:
    return json.dumps({"id": f"urn:uuid:e-{n}", "type": "TimeSpentEvent", "n": n})


def legacy_store(path: Path) -> None:
    """A version-1 store as the code before user_version left it, mid-use."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute("BEGIN")
    for sql in LEGACY_V1:
        raw.execute(sql)
    raw.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('wal_restarted_at', '5.0')")
    runs = [
        (RUN_A, "completed", 160.0, 45.0, 15.0, '{"q1": true}'),
        (RUN_B, "active", None, 12.0, 3.0, "{}"),
    ]
    for attempt, (run_id, status, ended, active, inactive, exercises) in enumerate(runs, 1):
        raw.execute(
            "INSERT INTO runs VALUES (?, 'fractions-1', ?, 'abc123', ?, ?, 100.0, ?, ?, ?, "
            "'lessons/fractions.ipynb', ?, 140.0)",
            (run_id, json.dumps(ACTIVITY), attempt, status, ended, active, inactive, exercises),
        )
    raw.executemany(
        'INSERT INTO windows (run_id, start, "end", active, inactive, event_id) '
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (RUN_A, 100.0, 115.0, 12.0, 3.0, "urn:uuid:e-1"),
            (RUN_A, 115.0, 160.0, 33.0, 12.0, "urn:uuid:e-2"),
            (RUN_B, 200.0, 215.0, 12.0, 3.0, "urn:uuid:e-3"),
        ],
    )
    raw.execute(
        "INSERT INTO completions VALUES (?, 'urn:uuid:e-4', ?, 160.0)",
        (RUN_A, json.dumps({"xp_earned": 5, "pct_complete": 100})),
    )
    outbox = [  # (n, run, kind, status, attempts, last_error, sent_at)
        (1, RUN_A, "time_spent", "sent", 1, None, 131.0),
        (2, RUN_A, "time_spent", "inflight", 2, "timed out", None),
        (3, RUN_B, "time_spent", "pending", 1, "HTTP 503", None),
        (4, RUN_A, "completion", "pending", 0, None, None),
    ]
    for n, run_id, kind, status, attempts, error, sent_at in outbox:
        raw.execute(
            "INSERT INTO outbox (event_id, run_id, kind, sensor, payload, created_at, status, "
            "attempts, last_error, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f"urn:uuid:e-{n}", run_id, kind, SENSOR, payload(n), 100.0 + n, status,
             attempts, error, sent_at),
        )  # fmt: skip
    raw.execute("DELETE FROM outbox WHERE event_id = 'urn:uuid:e-2'")  # seq 2 was used: kept
    raw.execute(
        "INSERT INTO outbox (event_id, run_id, kind, sensor, payload, created_at, status, "
        "attempts) VALUES ('urn:uuid:e-2', ?, 'time_spent', ?, ?, 102.0, 'inflight', 2)",
        (RUN_A, SENSOR, payload(2)),
    )
    raw.execute(
        "INSERT INTO dead_letters VALUES ('urn:uuid:e-9', ?, 'time_spent', ?, ?, "
        "'HTTP 422: bad actor', 150.0)",
        (RUN_B, SENSOR, payload(9)),
    )
    raw.execute("COMMIT")
    assert raw.execute("PRAGMA user_version").fetchone() == (0,)
    raw.close()


def dump_rows(path: Path) -> dict[str, list[tuple]]:
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = {
            t: raw.execute(
                f"SELECT {OUTBOX_V1 if t == 'outbox' else '*'} FROM {t} ORDER BY 1, 2"
            ).fetchall()
            for t in TABLES
        }
        # runs by its version-1 columns: a column added later is not a row rewritten
        found["runs"] = raw.execute(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY 1, 2").fetchall()
        found["meta"] = [row for row in found["meta"] if row[0] != "schema_version"]
        return found
    finally:
        raw.close()


def user_version(path: Path) -> int:
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return raw.execute("PRAGMA user_version").fetchone()[0]
    finally:
        raw.close()


def schema(path: Path) -> list[tuple]:
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = raw.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")
        return [(t, n, tbl, " ".join((sql or "").split())) for t, n, tbl, sql in rows]
    finally:
        raw.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_legacy_schema_is_what_version_1_is(tmp_path: Path, monkeypatch):
    """The fixture is a real version-1 store: the same tables, columns and indexes."""
    legacy_store(tmp_path / "old.sqlite3")
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", 1)
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
    Store(tmp_path / "new.sqlite3").close()
    assert schema(tmp_path / "old.sqlite3") == schema(tmp_path / "new.sqlite3")


def test_a_migrated_store_has_the_schema_of_a_new_one(tmp_path: Path):
    legacy_store(tmp_path / "old.sqlite3")
    Store(tmp_path / "old.sqlite3").close()
    Store(tmp_path / "new.sqlite3").close()
    assert schema(tmp_path / "old.sqlite3") == schema(tmp_path / "new.sqlite3")
    # A new version adds a test of its migration from the last (4 -> 5: the outbox's checked
    # column, tests/test_drain_stored.py).
    assert SCHEMA_VERSION == 5


def test_version_2_follows_jobs_and_a_send_left_unknown_waits_from_the_upgrade(tmp_path: Path):
    """Version 1 marked an event sent when Timeback answered; 2 waits for its job. An event
    a version-1 process left inflight (its send's outcome unknown) gets the upgrade's time as
    its send's, so it waits out job_timeout from then rather than being sent again at once."""
    path = tmp_path / "timeback.sqlite3"
    legacy_store(path)
    with Store(path, now=lambda: 1_000.0) as store:
        [left] = store.inflight()
        assert left.event_id == "urn:uuid:e-2" and left.claimed_at is not None
        assert abs(left.claimed_at - time.time()) < 60  # the upgrade's time
        assert store.job_stats() == {
            "pending": 0,
            "failed": 0,
            "confirmed": 0,
            "events_awaiting": 0,
            "oldest_pending_age": None,
        }
        # The new columns work on the old rows: claimed, accepted as a job, confirmed.
        claimed = store.claim_batch(10)
        assert [i.claimed_at for i in claimed] == [1_000.0, 1_000.0]
        store.record_job([i.event_id for i in claimed], "job-1")
        assert store.inflight() == [left]  # the job's events are no longer "unknown"
        assert store.confirm("job-1") == 2
        assert store.stats()["sent"] == 3
        assert store.job_stats()["confirmed"] == 1
        event = time_spent_events("0b8c2f4e-3a51-4d6e-9f10-aa11bb22cc33", 1)[0]
        store.enqueue(event, run_id=RUN_A, kind="time_spent", sensor=STANDIN_SENSOR)
        assert store.depth() == 2


def test_a_store_made_before_user_version_is_migrated_keeping_every_row(tmp_path: Path):
    path = tmp_path / "timeback.sqlite3"
    legacy_store(path)
    before = dump_rows(path)
    assert sum(len(rows) for rows in before.values()) == 13
    with Store(path, now=lambda: 500.0) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert user_version(path) == SCHEMA_VERSION
        assert dump_rows(path) == before  # nothing lost, nothing rewritten
        # The store reads the old rows as its own...
        run = store.get_run(RUN_A)
        assert run is not None and run.status == "completed" and run.exercises == {"q1": True}
        assert run.activity.id == "fractions-1" and run.active_seconds == 45.0
        assert store.windows(RUN_A) == [
            Window(RUN_A, 100.0, 115.0, 12.0, 3.0),
            Window(RUN_A, 115.0, 160.0, 33.0, 12.0),
        ]
        assert store.get_completion(RUN_A) == json.loads(payload(4))
        assert [i.event_id for i in store.inflight()] == ["urn:uuid:e-2"]
        assert [d.reason for d in store.dead_letters()] == ["HTTP 422: bad actor"]
        assert store.stats() | {"oldest_pending_age": None} == {
            "pending": 2,
            "inflight": 1,
            "sent": 1,
            "dead": 1,
            "runs": 2,
            "oldest_pending_age": None,
        }
        # ...and goes on from them: the outbox's order continues after its highest seq.
        claimed = store.claim_batch(10)
        assert [(i.event_id, i.attempts) for i in claimed] == [
            ("urn:uuid:e-3", 2),
            ("urn:uuid:e-4", 1),
        ]
        seq = store.enqueue(json.loads(payload(5)), run_id=RUN_B, kind="x", sensor=SENSOR)
        assert seq > max(i.seq for i in claimed)
    # Opened again: already at user_version, nothing more to do, every row still there.
    with Store(path) as store:
        assert store.depth() == 4
    assert user_version(path) == SCHEMA_VERSION
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    raw.close()


def test_an_old_store_takes_the_later_migrations_too(tmp_path: Path, monkeypatch):
    """The version the meta row gives is where the migrations start, in the same transaction."""
    path = tmp_path / "timeback.sqlite3"
    legacy_store(path)
    before = dump_rows(path)
    extra = ["CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)"]
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, extra])
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", NEWER)
    with Store(path) as store:
        assert store.schema_version == NEWER
        assert store.depth() == 3
    assert user_version(path) == NEWER
    assert dump_rows(path) == before
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT COUNT(*) FROM notes").fetchone() == (0,)
    assert raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
        str(NEWER),
    )
    raw.close()


def test_the_move_to_user_version_is_all_or_nothing(tmp_path: Path):
    path = tmp_path / "timeback.sqlite3"
    legacy_store(path)
    before = dump_rows(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process mid-write
    try:
        with pytest.raises(StoreError, match="locked by another process"):
            Store(path, busy_timeout=0.1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert user_version(path) == 0
    assert dump_rows(path) == before
    with Store(path) as store:
        assert store.depth() == 3
    assert user_version(path) == SCHEMA_VERSION
    assert dump_rows(path) == before


@pytest.mark.parametrize(
    "mark",
    [
        f"PRAGMA user_version = {NEWER}",  # made by a newer release
        f"UPDATE meta SET value = '{NEWER}' WHERE key = 'schema_version'",  # the old way
    ],
    ids=["user_version", "meta-row"],
)
def test_a_newer_store_is_refused_and_left_untouched(tmp_path: Path, mark: str):
    path = tmp_path / "timeback.sqlite3"
    legacy_store(path)
    raw = sqlite3.connect(path)
    raw.execute(mark)
    raw.commit()
    raw.close()
    rows, version, before = dump_rows(path), user_version(path), digest(path)
    with pytest.raises(StoreError) as err:
        Store(path)
    assert str(err.value) == (
        f"{path}: made by a newer timeback-jupyter (schema version {NEWER}, this one knows up to "
        f"{SCHEMA_VERSION}); upgrade timeback-jupyter to open it"
    )
    assert digest(path) == before
    assert (dump_rows(path), user_version(path)) == (rows, version)


def test_a_meta_table_without_a_version_is_not_a_store(tmp_path: Path):
    path = tmp_path / "timeback.sqlite3"
    legacy_store(path)
    raw = sqlite3.connect(path)
    raw.execute("UPDATE meta SET value = 'one' WHERE key = 'schema_version'")
    raw.commit()
    raw.close()
    before = digest(path)
    with pytest.raises(StoreError, match="not a timeback store"):
        Store(path)
    assert digest(path) == before


RUN_C = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
RUN_D = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"


def test_version_3_keeps_duplicate_attempts_as_reported_and_refuses_new_ones(tmp_path: Path):
    """Two servers on one store could give two runs the same attempt number. Moving to
    version 3 keeps every row as it was (the number went out in their events), marks the
    later ones, and from then on the database refuses a number taken twice."""
    path = tmp_path / "timeback.sqlite3"
    legacy_store(path)
    raw = sqlite3.connect(path)
    # attempt 2 was handed out twice (RUN_B's number), and once more to a third run
    for run_id, started in ((RUN_C, 300.0), (RUN_D, 250.0)):
        raw.execute(
            "INSERT INTO runs VALUES (?, 'fractions-1', ?, 'abc123', 2, 'ended', ?, NULL, 1.0, "
            "0.0, 'lessons/copy.ipynb', '{}', 140.0)",
            (run_id, json.dumps(ACTIVITY), started),
        )
    raw.commit()
    raw.close()
    before = dump_rows(path)
    with Store(path) as store:
        assert dump_rows(path) == before  # every row kept, as it was
        assert {r.id: r.attempt for r in store.list_runs()} == {
            RUN_A: 1, RUN_B: 2, RUN_C: 2, RUN_D: 2,
        }  # fmt: skip
        # the next attempt follows the highest, in the insert's own transaction
        run = store.insert_attempt(
            dataclasses.replace(store.get_run(RUN_B), id=str(uuid.uuid4()), status="active")
        )
        assert run.attempt == 3
    raw = sqlite3.connect(path)
    marks = dict(raw.execute("SELECT id, attempt_duplicate FROM runs"))
    # by start: RUN_B (100) is attempt 2's first, then RUN_D (250), then RUN_C (300)
    assert {k: marks[k] for k in (RUN_A, RUN_B, RUN_C, RUN_D)} == {
        RUN_A: 0, RUN_B: 0, RUN_D: 1, RUN_C: 2,
    }  # fmt: skip
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        raw.execute(
            "INSERT INTO runs (id, activity_id, activity, student, attempt, status, started_at, "
            "updated_at) VALUES ('x', 'fractions-1', '{}', 'abc123', 3, 'active', 1.0, 1.0)"
        )
    raw.close()
