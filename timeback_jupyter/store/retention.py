"""Retention: confirmed heartbeat events leave the store after a while; the report's data stays.

What is pruned is only an outbox row Timeback has confirmed (``status = 'sent'``) of a
``TimeSpentEvent`` older than the kept period: the window it reported stays in ``windows``
(with its event id), the run's totals in ``runs``, and a completion's event is never pruned
(one per run, and the answer to a repeated completion is read from it). Pending, inflight and
dead-lettered events are never touched.

Pruning runs on a thread of the store, a small batch per transaction: the store's lock and
SQLite's write lock are held for one batch (about a millisecond per hundred rows), then given
back to the heartbeats before the next. The freed pages are reused by new rows, so a store
kept at a steady load stops growing once the kept period is full (``benchmarks/soak.py``).
"""

from __future__ import annotations

import logging
import threading

from ..model import InvalidInput
from .database import Database
from .errors import StoreError

LOG = logging.getLogger("timeback_jupyter.store")

DAY = 86400.0
# What may be pruned once old enough; the partial index ``outbox_prunable`` has this predicate.
PRUNABLE = "status = 'sent' AND kind = 'time_spent'"
# By the partial index, named: on a store without statistics (never ANALYZEd) SQLite would
# rather walk every sent row by the status index and sort them.
PRUNE_SQL = (
    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox INDEXED BY outbox_prunable "
    f"WHERE {PRUNABLE} AND sent_at < ? ORDER BY sent_at LIMIT ?)"
)
# Settled jobs (completed or failed) leave with the events they carried: a job row is kept as
# long as a confirmed heartbeat can be, never while pending.
PRUNE_JOBS_SQL = (
    "DELETE FROM jobs WHERE job_id IN (SELECT job_id FROM jobs "
    "WHERE state != 'pending' AND settled_at < ? ORDER BY settled_at LIMIT ?)"
)
PRUNE_BATCH = 200  # rows per transaction: a short hold of the lock heartbeats also want
PRUNE_PAUSE = 0.01  # seconds between two batches of a backlog, for the writers waiting
PRUNE_EVERY = 300.0  # seconds between two looks for old events once none is left


class RetentionStore(Database):
    """Pruning confirmed events on the store's connection, by call or on the store's thread."""

    _pruner: Pruner | None = None

    def prune_sent(self, older_than: float, limit: int = PRUNE_BATCH) -> int:
        """Delete up to ``limit`` confirmed TimeSpentEvents sent before ``older_than`` (a time
        as the store's clock gives it), oldest first, then as many settled jobs settled before
        it, in one transaction; how many rows went."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput("limit", f"must be an integer >= 1, got {limit!r}")
        with self._write() as db:
            cur = db.execute(PRUNE_SQL, (float(older_than), limit))
            deleted = max(cur.rowcount, 0)
            if deleted < limit:  # the events' backlog done: the settled jobs as old
                cur = db.execute(PRUNE_JOBS_SQL, (float(older_than), limit - deleted))
                deleted += max(cur.rowcount, 0)
            return deleted

    def retain(self, keep_seconds: float, *, every: float = PRUNE_EVERY) -> None:
        """Keep confirmed TimeSpentEvents for ``keep_seconds`` after they were sent, pruning
        older ones on a thread of the store every ``every`` seconds (and at once); 0 keeps
        them for ever. Called again, the latest period holds."""
        if isinstance(keep_seconds, bool) or not isinstance(keep_seconds, int | float):
            raise InvalidInput("keep_seconds", f"must be a number, got {keep_seconds!r}")
        if keep_seconds < 0:
            raise InvalidInput("keep_seconds", f"must be 0 (keep) or more, got {keep_seconds!r}")
        with self._lock:
            self._db  # noqa: B018 - a closed store refuses, as every call does
            if self._pruner is None:
                if keep_seconds == 0:
                    return
                self._pruner = Pruner(self, keep_seconds, every)
                self._pruner.start()
            else:
                self._pruner.keep, self._pruner.every = float(keep_seconds), every
                self._pruner.wake()

    def close(self) -> None:
        pruner, self._pruner = self._pruner, None
        if pruner is not None:
            pruner.stop()  # before the store's lock: a batch may be waiting for it
        super().close()


class Pruner(threading.Thread):
    """The store's pruning thread: a batch, a pause, until nothing is old enough; then waits."""

    def __init__(self, store: RetentionStore, keep: float, every: float) -> None:
        super().__init__(name="timeback-store-retention", daemon=True)
        self.store, self.keep, self.every = store, float(keep), every
        self._wake = threading.Event()
        self._stopping = False
        self._last_error = ""
        self.pruned = 0  # rows deleted so far, for the benchmarks and the tests

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        while not self._stopping:
            delay = self.every
            if self.keep > 0:
                try:
                    deleted = self.store.prune_sent(self.store._now() - self.keep)
                    self.pruned += deleted
                    self._last_error = ""
                    if deleted >= PRUNE_BATCH:
                        delay = PRUNE_PAUSE  # a backlog: the next batch after a breath
                except StoreError as err:  # locked, full, closed under us: try again later
                    if str(err) != self._last_error:
                        LOG.warning("%s: pruning sent events failed, will retry: %s",
                                    self.store.path, err)  # fmt: skip
                    self._last_error = str(err)
            self._wake.wait(delay)
            self._wake.clear()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join()
