"""The store's SQLite connection: opening it safely, and one lock-held transaction at a time.

Every write is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), committed before the
method returns, so whatever a caller has been told is recorded survives a kill -9 of the
process. SQLite's errors come out as :class:`StoreError` naming the file.

Opening never deletes or rewrites a file the store did not create: a file that is not a
timeback store, a newer schema, a locked, read-only or full database all raise
:class:`StoreError` and leave the file as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..model import InvalidInput
from . import migrations
from .checkpoint import CHECKPOINT_PAGES, Checkpointer
from .errors import StoreError, explain


class Database:
    """One SQLite file in WAL mode. Safe to share between threads of one process."""

    # One connection behind one lock (check_same_thread off): the drainer reads and acks its
    # batches on a thread of its own (delivery/offload.py).
    thread_safe = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        now: Callable[[], float] = time.time,
        checkpoint_pages: int | None = CHECKPOINT_PAGES,
    ) -> None:
        """``checkpoint_pages``: WAL pages past which a thread of the store copies the WAL
        into the database (see :class:`Checkpointer`); None leaves that to :meth:`checkpoint`.
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
        self._checkpointer: Checkpointer | None = None
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
            raise StoreError(explain(err, self.path)) from None
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            # Read before writing anything: a file that is not ours must stay untouched.
            migrations.check(conn, self.path)
            # WAL + synchronous=NORMAL: a commit is in the WAL (in the OS page cache) before
            # it returns, so it survives a kill -9 of this process, which is what we promise.
            # Only a power cut or OS crash can lose the last commits; FULL would fsync every
            # heartbeat for that and we judge it not worth it.
            self._enable_wal(conn, busy_timeout)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            # No checkpoint on the commit path: the Checkpointer does it on its own thread.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            migrations.migrate(conn, self.path)
            self.schema_version = migrations.SCHEMA_VERSION
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            self._checkpointer = Checkpointer(
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
            raise StoreError(explain(err, self.path)) from None

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

    def close(self) -> None:
        # Before taking the lock: the checkpoint thread may be waiting for it.
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

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
                raise StoreError(explain(err, self.path)) from None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as err:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(err, sqlite3.IntegrityError):
                    raise StoreError(f"{self.path}: {err}") from None
                if isinstance(err, sqlite3.Error):
                    raise StoreError(explain(err, self.path)) from None
                raise
            if self._checkpointer is not None:
                self._checkpointer.committed()

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            conn = self._db
            try:
                cur = conn.execute(sql, tuple(params))
                cur.row_factory = sqlite3.Row
                return cur.fetchall()
            except sqlite3.Error as err:
                raise StoreError(explain(err, self.path)) from None

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
            raise StoreError(explain(err, self.path)) from None

    def wal_bytes(self) -> int:
        """The size of the WAL file: what commits added since the last checkpoint emptied it."""
        return 0 if self._checkpointer is None else self._checkpointer.wal_bytes()


def dump(value: Any) -> str:
    """JSON as the store keeps it in a column: compact, keys sorted, no NaN."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
