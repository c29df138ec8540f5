"""Which relay replica claimed an inflight event, and whether that replica still lives.

Replicas on one PostgreSQL claim batches with ``SKIP LOCKED``; a claimed batch is committed
inflight before its send. What is inflight without a job of Timeback's is either being sent
right now, a send of unknown outcome its replica is settling, or orphaned by a replica that
died. Only the last is anyone else's business: a replica that settled (looked up, held back,
sent again) another live replica's send in flight would block its own sending for nothing and
could race the owner's answer.

Each replica therefore holds a session-level advisory lock, ``(NAMESPACE, key)``, on a
connection of its own for as long as it lives, and stamps its claims with ``key``. PostgreSQL
drops the lock when the session ends, so kill -9, a lost host or a database restart all read
the same way: no lock, owner gone. After a database restart a live replica takes its lock
again (:meth:`Replica.alive`, before each look at the inflight events); until it has, the
others may settle its sends, which the settle rules make safe (found upstream: delivered; not
found: sent again only after ``job_timeout``).

On SQLite there is one relay process: no key, no lock, every inflight event is its own.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from typing import Any

import sqlalchemy as sa

from .database import RelayDatabase
from .schema import outbox

LOG = logging.getLogger("timeback_jupyter.relay")
NAMESPACE = 0x7472_6570  # "trep": the advisory locks' first key, so keys meet no one else's
CHECK_EVERY = 1.0  # seconds between pings of the lock's connection

# The keys of the replicas alive now. Uncorrelated: PostgreSQL reads pg_locks once per
# statement (a hashed subplan), not once per outbox row it filters (a correlated EXISTS read
# the whole lock table for each of another replica's rows).
_LIVE = (
    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND objsubid = 2 AND classid::bigint = {ns} "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


class Replica:
    """This process's key among the replicas of one database, and the lock that proves it
    lives (PostgreSQL); on SQLite ``key`` is None and every claim is this process's."""

    def __init__(self, db: RelayDatabase) -> None:
        self.key: int | None = None
        self.engine: sa.Engine | None = None
        self._conn: sa.Connection | None = None
        self._checked = 0.0
        self._mutex = threading.Lock()  # the drainer's thread and the ingest's share it
        if db.dialect == "postgresql":
            self.key = secrets.randbelow(2**31 - 2) + 1
            # The lock's connection is its own, outside the pool: it takes none of the
            # pool's slots (c.Relay's pool knobs size those) and closes with the store. Idle
            # for hours, it needs the keepalives most: a NAT must not drop it silently.
            self.engine = db.unpooled()
            db.on_close(self.close)

    def alive(self) -> None:
        """Hold this replica's lock, taken again on a new connection if the last one died
        (a database restart). Raises the database's error while it cannot be reached."""
        if self.key is None:
            return
        with self._mutex:
            now = time.monotonic()
            if self._conn is not None and now - self._checked < CHECK_EVERY:
                return
            if self._conn is not None:
                try:
                    self._conn.exec_driver_sql("SELECT 1")
                    self._checked = now
                    return
                except sa.exc.DBAPIError:
                    LOG.warning("replica %d lost its lock's connection; taking it again", self.key)
                    self._drop()
            self._take()
            self._checked = now

    def _take(self) -> None:
        assert self.engine is not None
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            while not conn.exec_driver_sql(
                f"SELECT pg_try_advisory_lock({NAMESPACE}, {self.key})"
            ).scalar():
                # Another process holds this key (a chance of 1 in 2**31): take another.
                self.key = secrets.randbelow(2**31 - 2) + 1
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                conn.invalidate()
                conn.close()

    def mine_or_orphaned(self) -> Any:
        """A condition on outbox rows: claimed by this replica, by none, or by one gone."""
        if self.key is None:
            return sa.true()
        gone = sa.text(f"outbox.claimed_by NOT IN ({_LIVE.format(ns=NAMESPACE)})")
        return sa.or_(outbox.c.claimed_by.is_(None), outbox.c.claimed_by == self.key, gone)

    def close(self) -> None:
        with self._mutex:
            self._drop()
            if self.engine is not None:
                self.engine.dispose()
