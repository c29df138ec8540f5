"""The store's schema: its tables, the steps between versions, and where the version is kept.

The version is SQLite's own ``PRAGMA user_version`` (in the file's header, written in the
same transaction as the tables it describes). Stores made before that kept it only in a row
of the ``meta`` table, ``schema_version``: such a store is read by that row and brought to
``user_version`` by the first open, every row kept. The row is still written, in step with
``user_version``: releases before it read only the row, and must go on refusing a store of a
schema they do not know rather than take it for one they do.

Checks read and never write, so a file that is not ours, or is newer than this code, is left
exactly as it was.
"""

from __future__ import annotations

import sqlite3

from .errors import StoreError

SCHEMA_VERSION = 5

# MIGRATIONS[n] takes a store from schema version n to n + 1; append, never edit.
MIGRATIONS: list[list[str]] = [
    [
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
        # One completion per run is a database rule, not only a code path: the primary key.
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
    ],
    # 1 -> 2: Timeback's jobs. An event accepted by Timeback is inflight with the job carrying it
    # until that job completes (sent) or fails (pending again, or dead after too many).
    [
        "ALTER TABLE outbox ADD COLUMN job_id TEXT",
        # When the last send of the event began: after an unknown outcome, how long a job
        # for it may still appear (delivery/__init__.py).
        "ALTER TABLE outbox ADD COLUMN claimed_at REAL",
        "ALTER TABLE outbox ADD COLUMN job_failures INTEGER NOT NULL DEFAULT 0",
        # A send of unknown outcome left by an older release: its time is not known, so it
        # counts from the upgrade (the wait is the longer, never the shorter).
        "UPDATE outbox SET claimed_at = (julianday('now') - 2440587.5) * 86400.0 "
        "WHERE status = 'inflight'",
        "CREATE INDEX outbox_by_job ON outbox (job_id) WHERE job_id IS NOT NULL",
        """CREATE TABLE jobs (
            job_id TEXT PRIMARY KEY,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'completed', 'failed')),
            events INTEGER NOT NULL,
            submitted_at REAL NOT NULL,
            settled_at REAL,
            reason TEXT
        )""",
        "CREATE INDEX jobs_by_state ON jobs (state, submitted_at)",
    ],
    # 2 -> 3: one run per attempt number of a student's activity, as a database rule: two
    # processes recording into one store could both take "the next attempt". Runs made before
    # the rule keep their attempt as it was reported to Timeback (the ActivityCompletedEvent
    # carries it); of a number taken twice, every run after the first (by start, then id) is
    # marked in attempt_duplicate (1, 2...), so all rows stay and no new duplicate can be made
    # (new runs have 0). The unique index serves the lookups the old index did.
    [
        "ALTER TABLE runs ADD COLUMN attempt_duplicate INTEGER NOT NULL DEFAULT 0",
        """UPDATE runs SET attempt_duplicate = (
            SELECT COUNT(*) FROM runs AS earlier
            WHERE earlier.activity_id = runs.activity_id AND earlier.student = runs.student
              AND earlier.attempt = runs.attempt
              AND (earlier.started_at < runs.started_at
                   OR (earlier.started_at = runs.started_at AND earlier.id < runs.id))
        )""",
        "DROP INDEX runs_by_activity_student",
        "CREATE UNIQUE INDEX runs_one_per_attempt "
        "ON runs (activity_id, student, attempt, attempt_duplicate)",
    ],
    # 3 -> 4: retention and the open windows' checkpoints: each writing process's live runs'
    # open windows so far, one row rewritten every couple of seconds so that a kill -9 loses at
    # most that much (``open_windows.OpenWindowStore``), and the index that finds confirmed
    # events old enough to prune (``retention``).
    [
        """CREATE TABLE open_windows (
            owner TEXT PRIMARY KEY,
            saved_at REAL NOT NULL,
            runs TEXT NOT NULL,
            times BLOB NOT NULL
        )""",
        "CREATE INDEX outbox_prunable ON outbox (sent_at) "
        "WHERE status = 'sent' AND kind = 'time_spent'",
    ],
    # 4 -> 5: whether an event was built by our builder from checked inputs (1) or came from
    # elsewhere (0: a generic enqueue, every row of an older release), so a sink that only
    # checks (the local sink) accepts the first kind as stored, unparsed (``StoredBatch``).
    # A column with a default: SQLite adds it without rewriting a row.
    [
        "ALTER TABLE outbox ADD COLUMN checked INTEGER NOT NULL DEFAULT 0",
    ],
]
assert len(MIGRATIONS) == SCHEMA_VERSION

# The table every timeback store has had since its first version.
META = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _meta_version(conn: sqlite3.Connection) -> int:
    """The version as stores made before ``user_version`` recorded it; 0 if unreadable."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        return int(row[0]) if row else 0
    except (TypeError, ValueError):
        return 0


def check(conn: sqlite3.Connection, path: str) -> int:
    """The file's schema version (0: a new, empty file), or StoreError if we must not use it.

    Reads only. Every timeback store has ``meta``; a database without it is someone else's,
    whatever its ``user_version`` (other programs set theirs too).
    """
    # One read transaction for both: read apart, another process's creation could commit in
    # between (no tables, then its user_version) and look like someone else's database.
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        tables = _tables(conn)
        user_version = _user_version(conn)
    finally:
        if own:
            conn.execute("COMMIT")
    if "meta" not in tables:
        if tables or user_version:
            raise StoreError(f"{path}: not a timeback store (an SQLite database with other tables)")
        return 0
    # The two agree unless something else wrote one of them: the higher refuses, not risks.
    version = max(user_version, _meta_version(conn))
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: made by a newer timeback-jupyter (schema version {version}, this one "
            f"knows up to {SCHEMA_VERSION}); upgrade timeback-jupyter to open it"
        )
    if version == 0:
        raise StoreError(f"{path}: not a timeback store (its meta table has no schema version)")
    return version


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the file to :data:`SCHEMA_VERSION` in one write transaction, all or nothing.

    A store already there is written anyway (its version row, unchanged): a read-only file
    opens and reads fine, and this finds out now rather than at the first heartbeat.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Checked again under the write lock: another process may have migrated meanwhile.
        version = check(conn, path)
        if _user_version(conn) != SCHEMA_VERSION:
            if version == 0:
                conn.execute(META)
            for steps in MIGRATIONS[version:SCHEMA_VERSION]:
                for sql in steps:
                    conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
