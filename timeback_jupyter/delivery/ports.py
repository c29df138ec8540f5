"""What the drainer needs of an outbox: the port both outboxes implement.

The SQLite store of a student's server (``store.Store``) and the hub relay's outbox
(``relay.outbox.RelayOutbox``) are delivered by the same :class:`~.drainer.Drainer`; this is
all it asks of them. Every method commits before it returns (a claim marks the batch inflight
first, so a crash finds it again) and raises ``store.StoreError`` when the storage fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from ..store import Job, OutboxItem


@runtime_checkable
class OutboxPort(Protocol):
    # The drainer's lease (one drainer per outbox across processes) is a lock file beside it;
    # "" for an outbox whose drainers share it safely themselves (the relay on PostgreSQL).
    path: str

    def claim_batch(self, limit: int) -> list[OutboxItem]:
        """The oldest pending events sharing the first one's sensor, marked inflight."""
        ...

    def inflight(self) -> list[OutboxItem]: ...

    def ack(self, event_ids: Iterable[str]) -> None: ...

    def release(self, event_ids: Iterable[str], error: str) -> None:
        """Back to pending, keeping their order."""
        ...

    def dead_letter(self, event_ids: Iterable[str], reason: str) -> None: ...

    def depth(self) -> int:
        """Pending and inflight events."""
        ...

    def stats(self) -> dict[str, Any]:
        """At least ``pending``, ``inflight`` and ``dead`` counts."""
        ...

    # Timeback's jobs: a send answered with a job id is delivered only once the job completed.
    def record_job(self, event_ids: Iterable[str], job_id: str) -> None:
        """The sent events wait for job ``job_id`` (still inflight, never sent again meanwhile)."""
        ...

    def jobs_pending(self) -> list[Job]:
        """The jobs not completed or failed yet, oldest first (no event read: see below)."""
        ...

    def job_events(self, job_id: str) -> list[str]:
        """The inflight events job ``job_id`` carries, in their order: read only for a job
        that failed or is gone, whose events are looked up one by one."""
        ...

    def confirm(self, job_id: str) -> int:
        """The job completed: its events are delivered. Returns how many."""
        ...

    def job_failed(
        self, job_id: str, reason: str, *, limit: int, landed: Iterable[str] = ()
    ) -> tuple[list[str], list[str]]:
        """What the failed job lost goes again, or to dead letters after ``limit`` failures."""
        ...

    def job_stats(self) -> dict[str, Any]:
        """Counts of ``pending``, ``failed`` and ``confirmed`` jobs, ``events_awaiting``,
        ``oldest_pending_age``."""
        ...
