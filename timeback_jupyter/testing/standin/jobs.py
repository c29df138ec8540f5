"""Timeback's jobs: an accepted envelope is processed later, and only then are its events stored.

Timeback answers ``POST /caliper/event`` with a job id and processes the job afterwards:
waiting, then active, then completed (its events stored, visible at ``GET /caliper/events/{id}``)
or failed (nothing stored, or only part of it). ``GET /jobs/{id}/status`` answers the job's
state in the shape the official client's ``client.jobs.get_status`` reads
(``timeback_caliper.types.api.JobStatus`` under a ``"job"`` key).

A job's outcome is decided when it is submitted and carried out when its time comes. Due jobs
are processed, in the order they fall due, before anything about them can be observed (every
request, every accessor of the stand-in): the same as a worker that processes each job exactly
on time, without a thread racing the test.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

JobState = Literal["waiting", "active", "completed", "failed"]


@dataclass
class Job:
    id: str
    envelope: dict[str, Any]
    accepted_at: float  # time.monotonic()
    due_at: float  # completed or failed from then on
    fail: str | None = None  # the failure's reason; None: the job completes
    keep: int = 0  # a failing job stores this many of its first events before it fails
    done_at: float | None = None  # wall time it was processed

    @property
    def event_ids(self) -> list[str]:
        return [e["id"] for e in self.envelope["data"]]

    def state(self, now: float) -> JobState:
        if self.done_at is not None:
            return "failed" if self.fail is not None else "completed"
        # Half the delay waiting in the queue, half being worked on.
        return "waiting" if now < (self.accepted_at + self.due_at) / 2 else "active"


class Jobs:
    """The jobs submitted so far; ``store(envelope, count)`` keeps a processed job's events."""

    def __init__(self, store: Callable[[dict[str, Any], int | None], None]) -> None:
        self._store = store
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._queue: list[Job] = []  # not yet processed, in order of submission

    def submit(
        self, envelope: dict[str, Any], delay: float, *, fail: str | None = None, keep: int = 0
    ) -> str:
        now = time.monotonic()
        job = Job(str(uuid.uuid4()), envelope, now, now + max(0.0, delay), fail, keep)
        with self._lock:
            self._jobs[job.id] = job
            self._queue.append(job)
        return job.id

    def process_due(self) -> None:
        """Carry out every job whose time has come, earliest first."""
        with self._lock:
            now = time.monotonic()
            due = sorted((j for j in self._queue if j.due_at <= now), key=lambda j: j.due_at)
            for job in due:
                self._queue.remove(job)
                job.done_at = time.time()
                if job.fail is None:
                    self._store(job.envelope, None)
                elif job.keep:
                    self._store(job.envelope, job.keep)

    def status(self, job_id: str) -> dict[str, Any] | None:
        """``GET /jobs/{id}/status``'s answer, or None for a job never submitted."""
        self.process_due()
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            state = job.state(time.monotonic())
            answer: dict[str, Any] = {"id": job.id, "state": state}
            if job.done_at is not None:
                answer["processedOn"] = datetime.fromtimestamp(job.done_at, UTC).isoformat()
            if state == "completed":
                answer["returnValue"] = {
                    "status": "success",
                    "results": [
                        {"allocatedId": f"{job.id}:{n}", "externalId": event_id}
                        for n, event_id in enumerate(job.event_ids)
                    ],
                }
            elif state == "failed":
                answer["failedReason"] = job.fail
        return {"job": answer}

    def states(self) -> dict[str, JobState]:
        """Every job's state by id, in order of submission."""
        self.process_due()
        now = time.monotonic()
        with self._lock:
            return {job_id: job.state(now) for job_id, job in self._jobs.items()}

    def forget_finished(self) -> int:
        """Drop every completed or failed job, as Timeback's queue expires old ones; their
        events stay stored. Returns how many were dropped."""
        self.process_due()
        with self._lock:
            done = [job_id for job_id, job in self._jobs.items() if job.done_at is not None]
            for job_id in done:
                del self._jobs[job_id]
        return len(done)

    def events_of(self, job_id: str) -> list[str]:
        with self._lock:
            return self._jobs[job_id].event_ids
