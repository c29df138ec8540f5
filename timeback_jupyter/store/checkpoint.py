"""Copying the WAL into the database file on a thread of the store, never on a commit.

Why a thread and not SQLite's own autocheckpoint: ``python -m benchmarks checkpoint``
(2026-12-02, 2 shared CPUs at load 6-7, 4 interleaved rounds, a drain alongside as the
server's) timed each committed enqueue with this thread and with ``wal_autocheckpoint =
1000`` and no thread:

==========================  ==============  ===============  ===========  =============
load                        p99 (ms)        p99.9 (ms)       > 5 ms       enqueues/s
==========================  ==============  ===============  ===========  =============
200,000 back to back        5.8 vs 12.2     20.6 vs 33.2     2,308/5,142  2,329 vs 1,485
80,000 in bursts of 500     8.4 vs 11.5     20.7 vs 33.4     1,403/1,993  1,817 vs 1,490
==========================  ==============  ===============  ===========  =============

(thread first; the p50 is 0.1 ms either way.) The thread wins the p99 and p99.9 of every
trial, and the throughput; it does not win the max (a stall of the shared machine sets that:
0.36 s vs 0.18 s back to back) and, commits never pausing, lets the WAL grow to 94-257 MiB
against SQLite's 4 MiB before starting it over. An earlier run at load 3 gave the same order:
p99.9 8.6 vs 14.4 ms back to back, 8.7 vs 24.0 ms in bursts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time

LOG = logging.getLogger("timeback_jupyter.store")

# The WAL is copied into the database by a thread of the store, never by a commit.
CHECKPOINT_PAGES = 1000  # WAL pages that start a checkpoint (SQLite's own autocheckpoint)
CHECKPOINT_IDLE = 0.1  # seconds without a commit before the WAL is emptied
CHECKPOINT_HARD = 16  # times CHECKPOINT_PAGES: started over then even while commits go on
CHECKPOINT_RETRY = 1.0  # seconds before trying again when another process is in the way
CHECKPOINT_PACE_MAX = 5.0  # seconds at most between two copies while commits go on


class Checkpointer:
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
