"""What one or more drain steps did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..store import StoreError
from .backoff import Backoff
from .ports import OutboxPort


@dataclass(frozen=True)
class DrainReport:
    """What one or more drain steps did."""

    sent: int = 0  # delivered: confirmed by their job, found upstream, or kept (local sink)
    queued: int = 0  # accepted by the sink; delivered when their job completes
    retried: int = 0  # put back for a later attempt (a retryable failure, a failed job)
    rejected: int = 0  # moved to dead letters
    delay: float = 0.0  # seconds to wait before the next attempt (0: go on now)
    idle: bool = False  # nothing was sent: nothing to send, or a send of unknown outcome first
    error: str | None = None  # the last failure, if any
    remaining: int | None = None  # outbox depth afterwards (flush only)
    waiting: float | None = None  # seconds to the next look at a job or unknown send; None: none
    batch: int = 0  # events in the last step's envelope, delivered or queued (full: a backlog)

    def __add__(self, other: DrainReport) -> DrainReport:
        return DrainReport(
            sent=self.sent + other.sent,
            queued=self.queued + other.queued,
            retried=self.retried + other.retried,
            rejected=self.rejected + other.rejected,
            delay=other.delay,
            idle=other.idle,
            error=other.error or self.error,
            remaining=other.remaining,
            waiting=other.waiting,
            batch=other.batch,
        )


def outbox_counts(store: OutboxPort) -> tuple[dict[str, Any], dict[str, Any]]:
    """The outbox's and the jobs' counts for a status (on the store thread if the caller is on
    an event loop: ``Drainer.read_status``); a store error is shown, not raised."""
    try:
        return store.stats(), store.job_stats()
    except StoreError as err:
        return {"error": str(err)}, {"error": str(err)}


def delivery_status(
    counts: tuple[dict[str, Any], dict[str, Any]],
    sink: str,
    backoff: Backoff,
    *,
    standby: bool,
    last_error: str | None,
) -> dict[str, Any]:
    """A drainer's status (``Drainer.status``): its state, the outbox's and the jobs' counts
    (:func:`outbox_counts`)."""
    stats, jobs = counts
    if standby:
        state = "standby"
    elif backoff.failures:
        state = "retrying"
    elif stats.get("dead"):
        state = "rejected-some"
    else:
        state = "ok"
    return {
        "state": state,
        "sink": sink,
        "consecutive_failures": backoff.failures,
        "last_error": last_error,
        "next_attempt_in": backoff.next_in(),
        "pending": stats.get("pending"),
        "inflight": stats.get("inflight"),
        "dead_letters": stats.get("dead"),
        "jobs": jobs,  # pending, failed, confirmed, events_awaiting, oldest_pending_age
    }


def or_inf(seconds: float | None) -> float:
    """A report's ``waiting`` as a wait: None (nothing awaited) is forever."""
    return float("inf") if seconds is None else seconds
