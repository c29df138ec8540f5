"""Timeback's jobs for the outbox's events: which job carries which events, and how it ended.

Timeback answers an envelope with a job id and stores the events only when that job completes.
An event so accepted stays ``inflight`` with the job's id (:meth:`JobStore.record_job`) until
the job completes (:meth:`JobStore.confirm`: ``sent``, delivered) or fails
(:meth:`JobStore.job_failed`: ``pending`` again with its seq, so its place in the order, or a
dead letter once ``limit`` jobs have lost it). The ``jobs`` table keeps every job's state, for
the status and for the next process: after a crash the pending ones are asked about again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..model import InvalidInput, require_text
from .database import Database
from .outbox import _ids, move_to_dead_letters


@dataclass(frozen=True)
class Job:
    """A job of Timeback's not yet completed or failed. The events waiting for it are read
    only when it failed or is gone (``job_events``): a check of the pending jobs reads none."""

    job_id: str
    submitted_at: float  # store clock


class JobStore(Database):
    """The jobs' operations on the store's connection."""

    def record_job(self, event_ids: Iterable[str], job_id: str) -> None:
        """Timeback accepted these inflight events as job ``job_id``: they wait for it."""
        ids = _ids(event_ids)
        job_id = require_text(job_id, "job_id", 500)
        with self._write() as db:
            db.execute(
                "INSERT INTO jobs (job_id, events, submitted_at) VALUES (?, ?, ?)",
                (job_id, len(ids), self._now()),
            )
            db.executemany(
                "UPDATE outbox SET job_id = ? WHERE event_id = ? AND status = 'inflight'",
                [(job_id, i) for i in ids],
            )

    def jobs_pending(self) -> list[Job]:
        """Jobs neither completed nor failed yet, oldest first."""
        rows = self._read(
            "SELECT job_id, submitted_at FROM jobs WHERE state = 'pending' "
            "ORDER BY submitted_at, job_id"
        )
        return [Job(row[0], row[1]) for row in rows]

    def job_events(self, job_id: str) -> list[str]:
        """The inflight events job ``job_id`` carries, in their order."""
        job_id = require_text(job_id, "job_id", 500)
        rows = self._read(
            "SELECT event_id FROM outbox WHERE job_id = ? AND status = 'inflight' ORDER BY seq",
            (job_id,),
        )
        return [row[0] for row in rows]

    def confirm(self, job_id: str) -> int:
        """Job ``job_id`` completed: its events are delivered. Returns how many."""
        job_id = require_text(job_id, "job_id", 500)
        now = self._now()
        with self._write() as db:
            done = db.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?, last_error = NULL "
                "WHERE job_id = ? AND status = 'inflight'",
                (now, job_id),
            ).rowcount
            db.execute(
                "UPDATE jobs SET state = 'completed', settled_at = ? WHERE job_id = ?",
                (now, job_id),
            )
        return done

    def job_failed(
        self, job_id: str, reason: str, *, limit: int, landed: Iterable[str] = ()
    ) -> tuple[list[str], list[str]]:
        """Job ``job_id`` failed: what it lost goes again, or to dead letters after ``limit``.

        ``landed`` are its events found stored upstream all the same: delivered. Every other
        event of the job counts one more failed job; at ``limit`` it is dead-lettered with
        ``reason``, else it is pending again in its place. Returns (sent again, dead).
        """
        job_id = require_text(job_id, "job_id", 500)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput("limit", f"must be an integer >= 1, got {limit!r}")
        found = set(_ids(landed))
        reason = require_text(reason, "reason", 2000)
        now = self._now()
        with self._write() as db:
            rows = db.execute(
                "SELECT event_id, job_failures FROM outbox "
                "WHERE job_id = ? AND status = 'inflight' ORDER BY seq",
                (job_id,),
            ).fetchall()
            lost = [
                (event_id, failures + 1) for event_id, failures in rows if event_id not in found
            ]
            db.executemany(
                "UPDATE outbox SET status = 'sent', sent_at = ?, last_error = NULL "
                "WHERE event_id = ? AND job_id = ? AND status = 'inflight'",
                [(now, event_id, job_id) for event_id, _ in rows if event_id in found],
            )
            again = [event_id for event_id, failures in lost if failures < limit]
            dead = [event_id for event_id, failures in lost if failures >= limit]
            db.executemany(
                "UPDATE outbox SET status = 'pending', job_id = NULL, last_error = ?, "
                "job_failures = job_failures + 1 WHERE event_id = ?",
                [(reason, event_id) for event_id in again],
            )
            move_to_dead_letters(db, dead, f"{reason} (lost by {limit} failed jobs)", now)
            db.execute(
                "UPDATE jobs SET state = 'failed', settled_at = ?, reason = ? WHERE job_id = ?",
                (now, reason, job_id),
            )
        return again, dead

    def job_stats(self) -> dict[str, Any]:
        """Jobs pending, failed and confirmed (completed), and the oldest pending one's age."""
        counts = {"pending": 0, "failed": 0, "completed": 0}
        for row in self._read("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            counts[row[0]] = int(row[1])
        oldest = self._read("SELECT MIN(submitted_at) FROM jobs WHERE state = 'pending'")[0][0]
        awaiting = self._read(
            "SELECT COUNT(*) FROM outbox WHERE status = 'inflight' AND job_id IS NOT NULL"
        )[0][0]
        return {
            "pending": counts["pending"],
            "failed": counts["failed"],
            "confirmed": counts["completed"],
            "events_awaiting": int(awaiting),
            "oldest_pending_age": None if oldest is None else max(0.0, self._now() - oldest),
        }
