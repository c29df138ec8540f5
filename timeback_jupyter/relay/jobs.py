"""Timeback's jobs for the relay outbox's events: which job carries which events, how it ended.

The same rules as a server's store (``store/jobs.py``; told in ``delivery/__init__.py``), on
the relay's schema: Timeback answers an envelope with a job id and stores its events only when
that job completes. An event so accepted stays ``inflight`` with the job's id
(:meth:`RelayJobs.record_job`) until the job completes (:meth:`RelayJobs.confirm`: ``sent``) or
fails (:meth:`RelayJobs.job_failed`: ``pending`` again with its seq, so its place in the order,
or a dead letter once ``limit`` jobs have lost it). The ``jobs`` table keeps every job's state,
for the status and for the next process: after a restart the pending ones are asked about again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa

from ..model import InvalidInput, require_text
from ..store import Job
from . import outbox_sql as sql
from .database import RelayDatabase
from .letters import ERROR_LENGTH, checked_ids, move_to_dead_letters
from .replicas import Replica
from .schema import jobs, outbox

_JOB_ID_LENGTH = 500  # the column's length, as the server's store checks it


class RelayJobs:
    """The job methods of ``delivery.ports.OutboxPort``, for :class:`~.outbox.RelayOutbox`."""

    db: RelayDatabase
    replica: Replica
    _now: Callable[[], float]
    _settled: Callable[[list[str]], None]  # no longer this replica's open claims (outbox.py)

    def record_job(self, event_ids: Iterable[str], job_id: str) -> None:
        """Timeback accepted these inflight events as job ``job_id``: they wait for it."""
        ids = checked_ids(event_ids)
        job_id = require_text(job_id, "job_id", _JOB_ID_LENGTH)
        params = {"p_job": job_id, "p_events": len(ids), "p_now": self._now(), "p_ids": ids}
        with self.db.write() as conn:
            if self.db.dialect == "postgresql":
                conn.execute(sql.RECORD_JOB, params)
            else:
                conn.execute(sql.NEW_JOB, params)
                if ids:
                    conn.execute(sql.CARRY["sqlite"], params)
        self._settled(ids)

    def jobs_pending(self) -> list[Job]:
        """Jobs neither completed nor failed yet, oldest first: one row per job, none per
        event (a job's events are read only when it failed or is gone: :meth:`job_events`).

        With replicas (PostgreSQL), only the jobs of this replica's claims and of replicas
        gone (:mod:`.replicas`): a live replica follows its own jobs, and each job asked about
        by every replica cost each one a request and a confirm per job for nothing. A job that
        carries no inflight event any more is everyone's (confirming it changes nothing)."""
        query = sa.select(jobs.c.job_id, jobs.c.submitted_at).where(jobs.c.state == "pending")
        if self.replica.key is not None:
            carried = sa.and_(outbox.c.job_id == jobs.c.job_id, outbox.c.status == sql.INFLIGHT)
            # A job's events are one claim's, so one replica's: either probe stops at a row.
            query = query.where(
                sa.or_(
                    ~sa.exists().where(carried),
                    sa.exists().where(carried, self.replica.mine_or_orphaned()),
                )
            )
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(jobs.c.submitted_at, jobs.c.job_id)).all()
        return [Job(job_id, at) for job_id, at in rows]

    def job_events(self, job_id: str) -> list[str]:
        """The inflight events job ``job_id`` carries, in their order."""
        job_id = require_text(job_id, "job_id", _JOB_ID_LENGTH)
        with self.db.read() as conn:
            return list(conn.execute(sql.JOB_EVENTS, {"p_job": job_id}).scalars())

    def confirm(self, job_id: str) -> int:
        """Job ``job_id`` completed: its events are delivered. Returns how many."""
        job_id = require_text(job_id, "job_id", _JOB_ID_LENGTH)
        now = self._now()
        params = {"p_job": job_id, "p_now": now}
        with self.db.write() as conn:
            if self.db.dialect == "postgresql":
                return int(conn.execute(sql.CONFIRM, params).scalar_one())
            done = conn.execute(sql.CONFIRM_EVENTS, params).rowcount
            conn.execute(sql.CONFIRM_JOB, params)
        return int(done)

    def job_failed(
        self, job_id: str, reason: str, *, limit: int, landed: Iterable[str] = ()
    ) -> tuple[list[str], list[str]]:
        """Job ``job_id`` failed: what it lost goes again, or to dead letters after ``limit``.

        ``landed`` are its events found stored upstream all the same: delivered. Every other
        event of the job counts one more failed job; at ``limit`` it is dead-lettered with
        ``reason``, else it is pending again in its place. Returns (sent again, dead).
        """
        job_id = require_text(job_id, "job_id", _JOB_ID_LENGTH)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInput("limit", f"must be an integer >= 1, got {limit!r}")
        found = set(checked_ids(landed))
        reason = require_text(reason, "reason", ERROR_LENGTH)
        now = self._now()
        carried = sa.and_(outbox.c.job_id == job_id, outbox.c.status == sql.INFLIGHT)
        with self.db.write() as conn:
            # Locked: two replicas hearing of the same failed job must not both count it and
            # both put its events back (the second would re-queue what a third is sending).
            # The second waits here, then finds the rows no longer carried by the job.
            rows = conn.execute(
                sa.select(outbox.c.event_id, outbox.c.job_failures)
                .where(carried)
                .order_by(outbox.c.seq)
                .with_for_update()
            ).all()
            stored = [event_id for event_id, _ in rows if event_id in found]
            lost = [(event_id, n + 1) for event_id, n in rows if event_id not in found]
            again = [event_id for event_id, failures in lost if failures < limit]
            dead = [event_id for event_id, failures in lost if failures >= limit]
            if stored:
                conn.execute(
                    sa.update(outbox)
                    .where(outbox.c.event_id.in_(stored), carried)
                    .values(status="sent", sent_at=now, last_error=None)
                )
            if again:
                conn.execute(
                    sa.update(outbox)
                    .where(outbox.c.event_id.in_(again), carried)
                    .values(
                        status="pending",
                        job_id=None,
                        last_error=reason,
                        job_failures=outbox.c.job_failures + 1,
                    )
                )
            move_to_dead_letters(conn, dead, f"{reason} (lost by {limit} failed jobs)", now)
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.job_id == job_id)
                .values(state="failed", settled_at=now, reason=reason)
            )
        return again, dead

    def job_stats(self) -> dict[str, Any]:
        """Jobs pending, failed and confirmed (completed), and the oldest pending one's age."""
        counts = {"pending": 0, "failed": 0, "completed": 0}
        with self.db.read() as conn:
            for state, count in conn.execute(
                sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)
            ):
                counts[state] = int(count)
            oldest = conn.execute(
                sa.select(sa.func.min(jobs.c.submitted_at)).where(jobs.c.state == "pending")
            ).scalar_one()
            awaiting = conn.execute(
                sa.select(sa.func.count())
                .select_from(outbox)
                .where(outbox.c.status == sql.INFLIGHT, outbox.c.job_id.is_not(None))
            ).scalar_one()
        return {
            "pending": counts["pending"],
            "failed": counts["failed"],
            "confirmed": counts["completed"],
            "events_awaiting": int(awaiting),
            "oldest_pending_age": None if oldest is None else max(0.0, self._now() - oldest),
        }
