"""The durable truth: runs, windows, completions and the outbox in one SQLite file.

Every write is one transaction, committed before the method returns, so whatever a caller
has been told is recorded survives a kill -9 of the process. State and the event that reports
it go in the same transaction (a window and its TimeSpentEvent, a completion and its
ActivityCompletedEvent): there is no moment where one exists without the other. No commit
waits for a checkpoint: a thread of the store copies the WAL into the database file
(:class:`_Checkpointer`).

The store never deletes or rewrites a file it did not create: a file that is not a timeback
store, a newer schema, a locked, read-only or full database all raise :class:`StoreError`
with a message naming the path, and leave the file as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from .model import RUN_STATUSES, Activity, Completion, InvalidInput, Run, Window, require_text

SCHEMA_VERSION = 1

LOG = logging.getLogger("timeback_jupyter.store")

# The WAL is copied into the database by a thread of the store, never by a commit.
CHECKPOINT_PAGES = 1000  # WAL pages that start a checkpoint (SQLite's own autocheckpoint)
CHECKPOINT_IDLE = 0.1  # seconds without a commit before the WAL is emptied
CHECKPOINT_HARD = 16  # times CHECKPOINT_PAGES: started over then even while commits go on
CHECKPOINT_RETRY = 1.0  # seconds before trying again when another process is in the way
CHECKPOINT_PACE_MAX = 5.0  # seconds at most between two copies while commits go on

KIND_TIME_SPENT = "time_spent"
KIND_COMPLETION = "completion"
OUTBOX_STATUSES = ("pending", "inflight", "sent")

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
]
assert len(MIGRATIONS) == SCHEMA_VERSION


class StoreError(RuntimeError):
    """The store cannot do what was asked; the message says why and names the file."""


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    event_id: str
    run_id: str | None
    kind: str
    sensor: str
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    run_id: str | None
    kind: str
    reason: str
    at: float
    payload: dict[str, Any]


def _explain(err: sqlite3.Error, path: str) -> str:
    """A sentence a student or admin can act on, from SQLite's error code."""
    name = getattr(err, "sqlite_errorname", "") or ""
    text = str(err)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return f"{path}: database is locked by another process (gave up waiting)"
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return f"{path}: database is read-only (check the file and directory permissions)"
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return f"{path}: disk full, cannot write the database"
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in text:
        return f"{path}: not a timeback store / database disk image is malformed"
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return (
            f"{path}: cannot open the database file (is the directory writable and does it exist?)"
        )
    return f"{path}: {text}"


def _event_id(event: Any) -> str:
    if not isinstance(event, dict):
        raise InvalidInput("event", "must be a JSON object")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        raise InvalidInput("event.id", "required (a non-empty string)")
    return event_id


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)


class _Checkpointer:
    """Copies the WAL into the database on its own thread and connection, never on a commit.

    SQLite's autocheckpoint runs on the connection whose commit takes the WAL past 1000
    pages: that commit waits for two fsyncs and a thousand page writes, and the first commit
    after the WAL starts over fsyncs its header. Those made the enqueue p99. So the store's
    connection has ``wal_autocheckpoint = 0`` and each commit only checks the WAL's size
    (one stat). Past ``pages`` pages this thread takes over until the WAL is emptied:

    - When commits pause for ``idle`` seconds, the usual case (heartbeats come in bursts),
      it copies the WAL alongside any writer (PASSIVE: it takes no lock a commit needs),
      then under the store's lock copies the rest, truncates the WAL and writes one row to
      start it over, so the header fsync is paid here and not by the next heartbeat.
    - While commits keep coming, a writer never starts the WAL over by itself (that needs a
      checkpoint that copied all of it, which a copy racing commits never has), so the WAL
      would only grow. Near ``hard_pages`` this thread copies it, then under the lock copies
      the rest and starts it over in place (RESTART): no truncation under the lock, which
      costs about a millisecond per 4 MB freed. It copies every quarter of the way there,
      timed by how fast the WAL grew, so that each copy is short and the WAL ends up not
      far past ``hard_pages`` by the time one sees it there.

    The store's lock is held only for the tail of a copy and one small write, and our own
    commits wait on it rather than on SQLite's sleeping busy handler. Durability does not
    depend on any of this: a commit is whole in the WAL, which SQLite replays when the file
    is next opened, whether or not it was copied.
    """

    def __init__(
        self,
        path: str,
        lock: threading.RLock,
        page_size: int,
        pages: int,
        *,
        background: bool = True,
        idle: float = CHECKPOINT_IDLE,
        hard_pages: int | None = None,
    ) -> None:
        self.path = path
        self.background = background
        # SQLite puts the WAL beside the file a symlink points to.
        self.wal_path = os.path.realpath(path) + "-wal"
        self._store_lock = lock
        self.frame = page_size + 24  # bytes of a WAL frame: one page and its header
        self.soft = pages * self.frame
        self.hard = (hard_pages or pages * CHECKPOINT_HARD) * self.frame
        self.idle = idle
        self.last_commit = time.monotonic()
        self._pending = False  # the WAL passed ``soft`` and has not been emptied since
        self._stopping = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._conn_lock = threading.Lock()  # one checkpoint at a time
        self._mark: tuple[float, int] | None = None  # (when, WAL frames) at the last copy
        self._next_copy = 0.0
        self._last_error = ""

    def wal_bytes(self) -> int:
        # The file's size is its frames' after we truncated it; a WAL restarted in place
        # looks bigger than it is, which only brings a checkpoint forward.
        try:
            return os.stat(self.wal_path).st_size
        except OSError:
            return 0

    def committed(self) -> None:
        """After each commit, on the committing thread: a clock read and at most one stat."""
        self.last_commit = time.monotonic()
        if not self.background or self._pending or self._stopping:
            return
        if self.wal_bytes() < self.soft:
            return
        self._pending = True
        if self._thread is not None:
            self._wake.set()
            return
        thread = threading.Thread(target=self._run, name="timeback-store-checkpoint", daemon=True)
        try:
            thread.start()
        except RuntimeError as err:  # no thread to be had now: the next commit tries again
            self._pending = False
            LOG.warning("%s: cannot start the checkpoint thread: %s", self.path, err)
            return
        self._thread = thread

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            # timeout 0: never wait on another process while holding the store's lock.
            conn = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._conn = conn
        return self._conn

    def backfill(self) -> int:
        """Copy the WAL into the database alongside the writers; its frames, -1 if unknown."""
        with self._conn_lock:
            row = self._connect().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(row[1])

    def empty(self) -> bool:
        """Copy all of the WAL and truncate it; False when another process is in the way."""
        return self._finish("TRUNCATE")

    def restart(self) -> bool:
        """Copy all of the WAL and start it over from its beginning, keeping the file."""
        return self._finish("RESTART")

    def _finish(self, mode: str) -> bool:
        with self._conn_lock:
            conn = self._connect()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # the bulk, unlocked
            with self._store_lock:
                busy = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()[0]
                if busy:  # a reader or writer in another process: the WAL stays as it is
                    return False
                if mode == "TRUNCATE":
                    self._pending = False
                # The first write to a WAL copied in full starts it over and fsyncs its header.
                # A real change: SQLite skips a row rewritten with the same value. If another
                # process got in first (timeout 0), it pays that fsync itself.
                with contextlib.suppress(sqlite3.OperationalError):
                    conn.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('wal_restarted_at', ?)",
                        (repr(time.time()),),
                    )
                return True

    def _step(self) -> float:
        """One decision while the WAL is past ``soft``; returns seconds until the next."""
        now = time.monotonic()
        quiet = now - self.last_commit
        if quiet >= self.idle:
            if not self.empty():
                return CHECKPOINT_RETRY
            self._mark = None
            return 0.0
        until_idle = self.idle - quiet
        if self._mark is None:
            # A burst that has not paused yet: wait for the pause unless the WAL gets big.
            if self.wal_bytes() < self.hard // 4:
                return until_idle
        elif now < self._next_copy:
            return min(self._next_copy - now, until_idle)
        frames = self.backfill()
        if frames < 0:  # another connection held the checkpoint lock: cheap to ask again soon
            return until_idle
        grown = frames if self._mark is None else frames - self._mark[1]
        rate = max(grown, 0) / max(now - self._mark[0], 1e-3) if self._mark else 0.0
        if frames * self.frame >= self.hard:
            if not self.restart():
                return CHECKPOINT_RETRY
            frames = 0
        self._mark = (now, frames)
        # Copy next when the WAL should have grown by a quarter of ``hard``.
        quarter = max(self.hard // self.frame // 4, 1)
        wait = quarter / rate if rate > 0 else self.idle
        self._next_copy = now + min(max(wait, self.idle), CHECKPOINT_PACE_MAX)
        return min(self._next_copy - now, until_idle)

    def _run(self) -> None:
        while not self._stopping:
            if not self._pending:
                self._wake.wait()
                self._wake.clear()
                continue
            if self.wal_bytes() < self.soft:  # emptied by another process meanwhile
                self._pending = False
                self._mark = None
                continue
            try:
                delay = self._step()
                self._last_error = ""
            except Exception as err:
                # A full disk, an I/O error (commits report those themselves) or a bug: the
                # thread must live on, or the WAL would grow until the store is closed.
                if str(err) != self._last_error:
                    LOG.warning(
                        "%s: checkpoint failed, will retry: %s",
                        self.path,
                        err,
                        exc_info=not isinstance(err, sqlite3.Error),
                    )
                self._last_error = str(err)
                delay = CHECKPOINT_RETRY
            if delay > 0:
                self._wake.wait(delay)
                self._wake.clear()

    def stop(self) -> None:
        """Let a checkpoint in progress finish, then close. Call without the store's lock."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._conn_lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None


class Store:
    """One SQLite file in WAL mode. Safe to share between threads of one process."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        now: Callable[[], float] = time.time,
        checkpoint_pages: int | None = CHECKPOINT_PAGES,
    ) -> None:
        """``checkpoint_pages``: WAL pages past which a thread of the store copies the WAL
        into the database (see :class:`_Checkpointer`); None leaves that to :meth:`checkpoint`.
        """
        self.path = str(Path(path))
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float):
            raise InvalidInput("busy_timeout", f"must be a number of seconds, got {busy_timeout!r}")
        if not 0 <= busy_timeout < 3600:
            raise InvalidInput("busy_timeout", f"must be between 0 and 3600, got {busy_timeout!r}")
        if checkpoint_pages is not None and (
            isinstance(checkpoint_pages, bool)
            or not isinstance(checkpoint_pages, int)
            or checkpoint_pages < 1
        ):
            raise InvalidInput(
                "checkpoint_pages", f"must be an integer >= 1 or None, got {checkpoint_pages!r}"
            )
        self._now = now
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: _Checkpointer | None = None
        parent = Path(self.path).parent
        if not parent.exists():
            try:
                parent.mkdir(parents=True)
            except OSError as err:
                raise StoreError(
                    f"{self.path}: cannot create its directory ({err.strerror})"
                ) from None
        try:
            # isolation_level=None: we open every transaction ourselves (BEGIN IMMEDIATE), so
            # a write never silently upgrades a read lock and deadlocks under busy_timeout.
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as err:
            raise StoreError(_explain(err, self.path)) from None
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            # Read before writing anything: a file that is not a database must stay untouched.
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            version = self._read_version(conn, tables)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: written by a newer timeback-jupyter (schema version "
                    f"{version}, this one knows up to {SCHEMA_VERSION}); upgrade timeback-jupyter"
                )
            if version == 0 and tables:
                raise StoreError(
                    f"{self.path}: not a timeback store (an SQLite database with other tables)"
                )
            # WAL + synchronous=NORMAL: a commit is in the WAL (in the OS page cache) before
            # it returns, so it survives a kill -9 of this process, which is what we promise.
            # Only a power cut or OS crash can lose the last commits; FULL would fsync every
            # heartbeat for that and we judge it not worth it.
            self._enable_wal(conn, busy_timeout)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            # No checkpoint on the commit path: _Checkpointer does it on its own thread.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            if version < SCHEMA_VERSION:
                self._migrate(conn, version)
            else:
                # A read-only file opens and reads fine; find out now, not at the first
                # heartbeat, by rewriting the version in place.
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
                conn.execute("COMMIT")
            self.schema_version = SCHEMA_VERSION
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            self._checkpointer = _Checkpointer(
                self.path,
                self._lock,
                page_size,
                checkpoint_pages or CHECKPOINT_PAGES,
                background=checkpoint_pages is not None,
            )
        except StoreError:
            self._abandon()
            raise
        except sqlite3.Error as err:
            self._abandon()
            raise StoreError(_explain(err, self.path)) from None

    def _enable_wal(self, conn: sqlite3.Connection, busy_timeout: float) -> None:
        # Switching to WAL answers SQLITE_BUSY at once, without the busy handler, while
        # another process opens the same new file: wait for our turn as busy_timeout would.
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                    return
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as err:
                busy = getattr(err, "sqlite_errorname", "").startswith("SQLITE_BUSY")
                if busy and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                raise
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch the database to WAL mode ({mode})")
            return

    def _abandon(self) -> None:
        """Close after a failed open. Nothing is deleted: the file may be someone's data."""
        self.close()

    @staticmethod
    def _read_version(conn: sqlite3.Connection, tables: set[str]) -> int:
        if "meta" not in tables:
            return 0
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            return int(row[0]) if row else 0
        except (TypeError, ValueError):
            return 0

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the write lock.
            tables = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            version = self._read_version(conn, tables)
            if version >= SCHEMA_VERSION:
                conn.execute("COMMIT")
                return
            if version == 0:
                conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            for steps in MIGRATIONS[version:]:
                for sql in steps:
                    conn.execute(sql)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        # Before taking the lock: the checkpoint thread may be waiting for it.
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    # -- plumbing --------------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed on exit; SQLite errors become StoreError."""
        with self._lock:
            conn = self._db
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise StoreError(_explain(err, self.path)) from None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as err:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(err, sqlite3.IntegrityError):
                    raise StoreError(f"{self.path}: {err}") from None
                if isinstance(err, sqlite3.Error):
                    raise StoreError(_explain(err, self.path)) from None
                raise
            if self._checkpointer is not None:
                self._checkpointer.committed()

    def checkpoint(self) -> bool:
        """Copy the WAL into the database file and empty it, now, on this thread.

        Commits never checkpoint (``wal_autocheckpoint = 0``); the store's own thread does
        this once the WAL passes ``checkpoint_pages`` and commits pause. False when a reader
        or writer in another process is in the way (the WAL is kept; try again later).
        Committed rows are kept either way: they are in the WAL until copied.
        """
        checkpointer = self._checkpointer
        if checkpointer is None or self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        try:
            return checkpointer.empty()
        except sqlite3.Error as err:
            raise StoreError(_explain(err, self.path)) from None

    def wal_bytes(self) -> int:
        """The size of the WAL file: what commits added since the last checkpoint emptied it."""
        return 0 if self._checkpointer is None else self._checkpointer.wal_bytes()

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            conn = self._db
            try:
                cur = conn.execute(sql, tuple(params))
                cur.row_factory = sqlite3.Row
                return cur.fetchall()
            except sqlite3.Error as err:
                raise StoreError(_explain(err, self.path)) from None

    # -- runs ------------------------------------------------------------------------------

    def insert_run(self, run: Run) -> None:
        if not isinstance(run, Run):
            raise InvalidInput("run", "must be a Run")
        with self._write() as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run.id,)).fetchone():
                raise StoreError(f"{self.path}: run {run.id} already exists")
            db.execute(
                "INSERT INTO runs (id, activity_id, activity, student, attempt, status, "
                "started_at, ended_at, active_seconds, inactive_seconds, origin, exercises, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.id,
                    run.activity.id,
                    _dump(run.activity.to_dict()),
                    run.student,
                    run.attempt,
                    run.status,
                    run.started_at,
                    run.ended_at,
                    run.active_seconds,
                    run.inactive_seconds,
                    run.origin,
                    _dump(run.exercises),
                    self._now(),
                ),
            )

    @staticmethod
    def _run_from_row(row: sqlite3.Row) -> Run:
        return Run(
            id=row["id"],
            activity=Activity.from_dict(json.loads(row["activity"])),
            student=row["student"],
            attempt=row["attempt"],
            status=row["status"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            active_seconds=row["active_seconds"],
            inactive_seconds=row["inactive_seconds"],
            origin=row["origin"],
            exercises=json.loads(row["exercises"]),
        )

    def get_run(self, run_id: str) -> Run | None:
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        return self._run_from_row(rows[0]) if rows else None

    def latest_run(self, activity_id: str, student: str) -> Run | None:
        rows = self._read(
            "SELECT * FROM runs WHERE activity_id = ? AND student = ? "
            "ORDER BY attempt DESC, started_at DESC LIMIT 1",
            (activity_id, student),
        )
        return self._run_from_row(rows[0]) if rows else None

    def list_runs(
        self,
        *,
        activity_id: str | None = None,
        student: str | None = None,
        status: str | None = None,
    ) -> list[Run]:
        if status is not None and status not in RUN_STATUSES:
            raise InvalidInput("status", f"must be one of {', '.join(RUN_STATUSES)}")
        where, params = [], []
        for column, value in (
            ("activity_id", activity_id),
            ("student", student),
            ("status", status),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(f"SELECT * FROM runs{clause} ORDER BY started_at, attempt", params)
        return [self._run_from_row(row) for row in rows]

    def open_run_at(self, activity_id: str, student: str, origin: str) -> Run | None:
        """The student's latest run of the activity begun in the notebook at ``origin``, unless
        it is completed: the run to resume when the notebook never got its runId saved.

        Only the latest counts: an older run left open there is not brought back after a newer
        one was completed. The (activity_id, student) index finds the few candidate rows.
        """
        rows = self._read(
            "SELECT * FROM runs WHERE activity_id = ? AND student = ? AND origin = ? "
            "ORDER BY started_at DESC, attempt DESC LIMIT 1",
            (activity_id, student, origin),
        )
        if not rows or rows[0]["status"] == "completed":
            return None
        return self._run_from_row(rows[0])

    def move_run(self, run_id: str, origin: str) -> None:
        """The run's notebook was renamed: ``origin`` follows it (see :meth:`open_run_at`)."""
        with self._write() as db:
            db.execute(
                "UPDATE runs SET origin = ?, updated_at = ? WHERE id = ?",
                (origin, self._now(), run_id),
            )

    def next_attempt(self, activity_id: str, student: str) -> int:
        rows = self._read(
            "SELECT MAX(attempt) FROM runs WHERE activity_id = ? AND student = ?",
            (activity_id, student),
        )
        return (rows[0][0] or 0) + 1

    def set_run_status(self, run_id: str, status: str, at: float) -> None:
        """Move a run to ``status``. Completed is final: only a completion gets there."""
        if status not in RUN_STATUSES:
            raise InvalidInput("status", f"must be one of {', '.join(RUN_STATUSES)}")
        if status == "completed":
            raise InvalidInput("status", "a run is completed by record_completion only")
        with self._write() as db:
            row = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"{self.path}: no run {run_id}")
            if row[0] == "completed":
                if status == "ended":
                    return  # ending a finished run (tab closed afterwards) changes nothing
                raise StoreError(f"{self.path}: run {run_id} is completed; start a new attempt")
            ended_at = at if status == "ended" else None
            db.execute(
                "UPDATE runs SET status = ?, ended_at = ?, updated_at = ? WHERE id = ?",
                (status, ended_at, self._now(), run_id),
            )

    def set_exercise(self, run_id: str, exercise_id: str, correct: bool) -> None:
        exercise_id = require_text(exercise_id, "exercise_id", 200)
        if not isinstance(correct, bool):
            raise InvalidInput("correct", f"must be true or false, got {correct!r}")
        with self._write() as db:
            row = db.execute("SELECT exercises FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"{self.path}: no run {run_id}")
            exercises = json.loads(row[0])
            exercises[exercise_id] = correct
            db.execute(
                "UPDATE runs SET exercises = ?, updated_at = ? WHERE id = ?",
                (_dump(exercises), self._now(), run_id),
            )

    # -- windows and completions -----------------------------------------------------------

    def record_window(self, window: Window, event: dict[str, Any], sensor: str) -> None:
        """Store a window, add it to its run's totals and enqueue its event, atomically.

        The same ``(run_id, start)`` recorded twice is ignored, so a retried flush never
        counts time twice.
        """
        self.record_windows([(window, event, sensor)])

    def record_windows(self, items: Sequence[tuple[Window, dict[str, Any], str]]) -> None:
        """:meth:`record_window` for several windows in one transaction: all or none.

        Hundreds of notebooks close hundreds of windows a heartbeat apart; a commit each would
        cost more than the windows themselves.
        """
        checked = []
        for window, event, sensor in items:
            if not isinstance(window, Window):
                raise InvalidInput("window", "must be a Window")
            checked.append((window, event, _event_id(event), require_text(sensor, "sensor", 2000)))
        if not checked:
            return
        with self._write() as db:
            for window, event, event_id, sensor in checked:
                if not db.execute("SELECT 1 FROM runs WHERE id = ?", (window.run_id,)).fetchone():
                    raise StoreError(f"{self.path}: no run {window.run_id}")
                cur = db.execute(
                    'INSERT OR IGNORE INTO windows (run_id, start, "end", active, inactive, '
                    "event_id) VALUES (?, ?, ?, ?, ?, ?)",
                    (window.run_id, window.start, window.end, window.active, window.inactive,
                     event_id),
                )  # fmt: skip
                if cur.rowcount == 0:
                    continue
                db.execute(
                    "UPDATE runs SET active_seconds = active_seconds + ?, "
                    "inactive_seconds = inactive_seconds + ?, updated_at = ? WHERE id = ?",
                    (window.active, window.inactive, self._now(), window.run_id),
                )
                self._enqueue(db, event, event_id, window.run_id, KIND_TIME_SPENT, sensor)

    def record_completion(
        self, completion: Completion, event: dict[str, Any], sensor: str
    ) -> tuple[bool, dict[str, Any]]:
        """Record a run's one completion: ``(True, event)`` now, ``(False, first event)`` after.

        A second completion changes nothing and sends nothing: Timeback does not deduplicate.
        """
        if not isinstance(completion, Completion):
            raise InvalidInput("completion", "must be a Completion")
        event_id = _event_id(event)
        sensor = require_text(sensor, "sensor", 2000)
        metrics = {
            "xp_earned": completion.xp_earned,
            "total_questions": completion.total_questions,
            "correct_questions": completion.correct_questions,
            "mastered_units": completion.mastered_units,
            "pct_complete": completion.pct_complete,
        }
        with self._write() as db:
            if not db.execute("SELECT 1 FROM runs WHERE id = ?", (completion.run_id,)).fetchone():
                raise StoreError(f"{self.path}: no run {completion.run_id}")
            first = db.execute(
                "SELECT event_id FROM completions WHERE run_id = ?", (completion.run_id,)
            ).fetchone()
            if first is not None:
                return False, self._payload_of(db, first[0])
            db.execute(
                "INSERT INTO completions (run_id, event_id, metrics, at) VALUES (?, ?, ?, ?)",
                (completion.run_id, event_id, _dump(metrics), completion.at),
            )
            db.execute(
                "UPDATE runs SET status = 'completed', ended_at = ?, updated_at = ? WHERE id = ?",
                (completion.at, self._now(), completion.run_id),
            )
            self._enqueue(db, event, event_id, completion.run_id, KIND_COMPLETION, sensor)
        return True, event

    def get_completion(self, run_id: str) -> dict[str, Any] | None:
        """The event of the run's completion, or None while it has none."""
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT event_id FROM completions WHERE run_id = ?", (run_id,)
                ).fetchone()
                return None if row is None else self._payload_of(self._db, row[0])
            except sqlite3.Error as err:
                raise StoreError(_explain(err, self.path)) from None

    def windows(self, run_id: str | None = None) -> list[Window]:
        """Recorded windows in (run, start) order, of one run or of all."""
        sql = 'SELECT run_id, start, "end", active, inactive FROM windows'
        if run_id is None:
            rows = self._read(sql + " ORDER BY run_id, start")
        else:
            rows = self._read(sql + " WHERE run_id = ? ORDER BY start", (run_id,))
        return [Window(*tuple(row)) for row in rows]

    def _payload_of(self, db: sqlite3.Connection, event_id: str) -> dict[str, Any]:
        for table in ("outbox", "dead_letters"):
            row = db.execute(f"SELECT payload FROM {table} WHERE event_id = ?", (event_id,))
            found = row.fetchone()
            if found is not None:
                return json.loads(found[0])
        raise StoreError(f"{self.path}: event {event_id} of a recorded completion is missing")

    # -- outbox ----------------------------------------------------------------------------

    def _enqueue(
        self,
        db: sqlite3.Connection,
        event: dict[str, Any],
        event_id: str,
        run_id: str | None,
        kind: str,
        sensor: str,
    ) -> int:
        if db.execute("SELECT 1 FROM outbox WHERE event_id = ?", (event_id,)).fetchone():
            raise StoreError(f"{self.path}: event {event_id} is already in the outbox")
        try:
            payload = _dump(event)
        except (TypeError, ValueError) as err:
            raise InvalidInput("event", f"is not JSON-serializable ({err})") from None
        cur = db.execute(
            "INSERT INTO outbox (event_id, run_id, kind, sensor, payload, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (event_id, run_id, kind, sensor, payload, self._now()),
        )
        return int(cur.lastrowid or 0)

    def enqueue(self, event: dict[str, Any], *, run_id: str | None, kind: str, sensor: str) -> int:
        """Put one event in the outbox; returns its sequence number."""
        event_id = _event_id(event)
        kind = require_text(kind, "kind", 50)
        sensor = require_text(sensor, "sensor", 2000)
        with self._write() as db:
            return self._enqueue(db, event, event_id, run_id, kind, sensor)

    @staticmethod
    def _item(row: sqlite3.Row) -> OutboxItem:
        return OutboxItem(
            seq=row["seq"],
            event_id=row["event_id"],
            run_id=row["run_id"],
            kind=row["kind"],
            sensor=row["sensor"],
            payload=json.loads(row["payload"]),
            attempts=row["attempts"],
        )

    def claim_batch(self, limit: int) -> list[OutboxItem]:
        """The oldest pending events sharing the first one's sensor, marked inflight.

        Marked and committed before returning: after a crash they are found by
        :meth:`inflight`, never silently sent twice or forgotten.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput("limit", f"must be an integer >= 1, got {limit!r}")
        with self._write() as db:
            first = db.execute(
                "SELECT sensor FROM outbox WHERE status = 'pending' ORDER BY seq LIMIT 1"
            ).fetchone()
            if first is None:
                return []
            cur = db.execute(
                "SELECT * FROM outbox WHERE status = 'pending' AND sensor = ? ORDER BY seq LIMIT ?",
                (first[0], limit),
            )
            cur.row_factory = sqlite3.Row
            rows = cur.fetchall()
            db.executemany(
                "UPDATE outbox SET status = 'inflight', attempts = attempts + 1 WHERE seq = ?",
                [(row["seq"],) for row in rows],
            )
        return [replace(self._item(row), attempts=row["attempts"] + 1) for row in rows]

    def inflight(self) -> list[OutboxItem]:
        rows = self._read("SELECT * FROM outbox WHERE status = 'inflight' ORDER BY seq")
        return [self._item(row) for row in rows]

    @staticmethod
    def _ids(event_ids: Iterable[str]) -> list[str]:
        ids = list(event_ids)
        if not all(isinstance(i, str) for i in ids):
            raise InvalidInput("event_ids", "must be strings")
        return ids

    def ack(self, event_ids: Iterable[str]) -> None:
        ids = self._ids(event_ids)
        with self._write() as db:
            db.executemany(
                "UPDATE outbox SET status = 'sent', sent_at = ?, last_error = NULL "
                "WHERE event_id = ? AND status != 'sent'",
                [(self._now(), i) for i in ids],
            )

    def release(self, event_ids: Iterable[str], error: str) -> None:
        """Back to pending after a failed attempt. The seq is kept, so order is too."""
        ids = self._ids(event_ids)
        with self._write() as db:
            db.executemany(
                "UPDATE outbox SET status = 'pending', last_error = ? "
                "WHERE event_id = ? AND status = 'inflight'",
                [(str(error)[:2000], i) for i in ids],
            )

    def dead_letter(self, event_ids: Iterable[str], reason: str) -> None:
        """Move events that can never be delivered out of the queue, keeping them for review."""
        ids = self._ids(event_ids)
        with self._write() as db:
            for event_id in ids:
                db.execute(
                    "INSERT OR REPLACE INTO dead_letters "
                    "(event_id, run_id, kind, sensor, payload, reason, at) "
                    "SELECT event_id, run_id, kind, sensor, payload, ?, ? FROM outbox "
                    "WHERE event_id = ? AND status != 'sent'",
                    (str(reason)[:2000], self._now(), event_id),
                )
                db.execute(
                    "DELETE FROM outbox WHERE event_id = ? AND status != 'sent'", (event_id,)
                )

    def depth(self) -> int:
        rows = self._read("SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'inflight')")
        return int(rows[0][0])

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._read("SELECT * FROM dead_letters ORDER BY at, rowid")
        return [
            DeadLetter(
                event_id=row["event_id"],
                run_id=row["run_id"],
                kind=row["kind"],
                reason=row["reason"],
                at=row["at"],
                payload=json.loads(row["payload"]),
            )
            for row in rows
        ]

    def events(self, *, status: str | None = None) -> Iterator[dict[str, Any]]:
        """Outbox payloads in seq order, optionally of one status."""
        if status is not None and status not in OUTBOX_STATUSES:
            raise InvalidInput("status", f"must be one of {', '.join(OUTBOX_STATUSES)}")
        if status is None:
            rows = self._read("SELECT payload FROM outbox ORDER BY seq")
        else:
            rows = self._read("SELECT payload FROM outbox WHERE status = ? ORDER BY seq", (status,))
        return iter([json.loads(row[0]) for row in rows])

    def export_jsonl(self, fp: IO[str]) -> int:
        """Every stored event, one JSON object per line: the outbox in seq order (sent,
        pending and inflight alike), then dead letters. Returns the number of lines."""
        count = 0
        for event in self.events():
            fp.write(json.dumps(event, separators=(",", ":")) + "\n")
            count += 1
        for letter in self.dead_letters():
            fp.write(json.dumps(letter.payload, separators=(",", ":")) + "\n")
            count += 1
        return count

    def time_since(self, student: str, since: float) -> tuple[float, float]:
        """Active and inactive seconds of the student's windows that ended after ``since``."""
        row = self._read(
            "SELECT COALESCE(SUM(w.active), 0), COALESCE(SUM(w.inactive), 0) FROM windows w "
            'JOIN runs r ON r.id = w.run_id WHERE r.student = ? AND w."end" > ?',
            (student, since),
        )[0]
        return float(row[0]), float(row[1])

    def stats(self) -> dict[str, Any]:
        counts = {status: 0 for status in OUTBOX_STATUSES}
        for row in self._read("SELECT status, COUNT(*) FROM outbox GROUP BY status"):
            counts[row[0]] = int(row[1])
        dead = int(self._read("SELECT COUNT(*) FROM dead_letters")[0][0])
        runs = int(self._read("SELECT COUNT(*) FROM runs")[0][0])
        oldest = self._read(
            "SELECT MIN(created_at) FROM outbox WHERE status IN ('pending', 'inflight')"
        )[0][0]
        return {
            "pending": counts["pending"],
            "inflight": counts["inflight"],
            "sent": counts["sent"],
            "dead": dead,
            "runs": runs,
            "oldest_pending_age": None if oldest is None else max(0.0, self._now() - oldest),
        }
