"""The durable truth: runs, windows, completions and the outbox in one SQLite file.

:class:`Store` is the one object the rest of the package uses; its parts, one job each:

- :mod:`.database`: opening the file safely (WAL, busy timeout), one write transaction at a
  time, SQLite's errors as :class:`StoreError` (worded in :mod:`.errors`);
- :mod:`.migrations`: the schema and its version (``PRAGMA user_version``);
- :mod:`.checkpoint`: copying the WAL into the database on a thread, never on a commit;
- :mod:`.runs`: runs, windows and completions, each with the event reporting it;
- :mod:`.outbox`: the queue of events for Timeback, and its dead letters;
- :mod:`.jobs`: Timeback's jobs, which deliver the outbox's events when they complete.
- :mod:`.retention`: confirmed events pruned after a while, on a thread of the store;
- :mod:`.open_windows`: the live runs' open windows so far, what a kill -9 can lose.
"""

from __future__ import annotations

from .checkpoint import CHECKPOINT_HARD, CHECKPOINT_IDLE, CHECKPOINT_PAGES
from .errors import StoreError
from .jobs import Job, JobStore
from .migrations import MIGRATIONS, SCHEMA_VERSION
from .open_windows import OpenWindowStore
from .outbox import (
    KIND_COMPLETION,
    KIND_TIME_SPENT,
    OUTBOX_STATUSES,
    DeadLetter,
    OutboxItem,
    OutboxStore,
    StoredBatch,
)
from .retention import DAY, RetentionStore
from .runs import RunStore

__all__ = [
    "CHECKPOINT_HARD",
    "CHECKPOINT_IDLE",
    "CHECKPOINT_PAGES",
    "DAY",
    "KIND_COMPLETION",
    "KIND_TIME_SPENT",
    "MIGRATIONS",
    "OUTBOX_STATUSES",
    "SCHEMA_VERSION",
    "DeadLetter",
    "Job",
    "OutboxItem",
    "Store",
    "StoreError",
    "StoredBatch",
]


class Store(RunStore, OutboxStore, JobStore, RetentionStore, OpenWindowStore):
    """One SQLite file in WAL mode. Safe to share between threads of one process.

    Every write is one transaction, committed before the method returns, so whatever a
    caller has been told is recorded survives a kill -9 of the process.
    """

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
