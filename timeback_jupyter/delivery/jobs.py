"""Following Timeback's jobs until each has completed (its events delivered) or failed.

Timeback answers an envelope with a job id and stores its events when the job completes. The
store keeps each job's id with its events (``store/jobs.py``); :class:`JobWatcher` asks the sink
about every pending job on a backoff of its own (first after ``initial`` seconds, doubling up to
``maximum``), and on an answer:

- completed: its events are delivered (``confirm``);
- failed, or unknown to the API (``gone``): each of its events is looked up upstream; those
  found are delivered, the others go again in their place in the queue, or to the dead letters
  once ``failures_max`` jobs have lost them (``job_failed``). A lookup that cannot answer puts
  the whole decision off: nothing is sent again on a guess;
- still pending, or no answer: asked again later. A pending job's events are never sent again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from .errors import DeliveryError
from .offload import StoreThread
from .ports import OutboxPort
from .sink import JobOutcome, Sink
from .writes import JobVerdict, record_jobs

# How long Timeback may take to store a request's events, counted from when it was sent: a
# stalled request plus its queued job. Past it, an event of a send whose outcome is unknown
# and that is not found upstream is taken for lost (see delivery/__init__.py).
JOB_TIMEOUT = 300.0
JOB_FAILURES_MAX = 5  # failed jobs an event may be lost by before it is dead-lettered
JOB_POLL_INITIAL = 0.25  # the first look at a job, then doubling...
JOB_POLL_MAX = 30.0  # ...up to this

# Due jobs asked about in one drain step: the step holds the drainer's lock, and a backlog
# of jobs must not hold up sending for long.
CHECKS_PER_STEP = 20


def check_positive(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise DeliveryError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class Poll:
    """When to ask again about something pending: ``initial`` seconds, doubling to ``maximum``."""

    def __init__(self, initial: float, maximum: float, now: Callable[[], float]) -> None:
        self.initial, self.maximum, self._now = initial, maximum, now
        self.checks = 0
        self.next_at = now() + initial

    def later(self) -> None:
        self.checks += 1
        self.next_at = self._now() + min(self.maximum, self.initial * 2.0 ** min(self.checks, 60))

    def due(self) -> bool:
        return self._now() >= self.next_at

    def wait(self) -> float:
        return max(0.0, self.next_at - self._now())


@dataclass(frozen=True)
class JobsChecked:
    confirmed: int = 0  # events delivered: their jobs completed (or found stored)
    resent: int = 0  # events a failed job lost, pending again
    dead: int = 0  # events dead-lettered after too many failed jobs
    next_in: float | None = None  # seconds to the next due check; None: no job pending


class JobWatcher:
    """The pending jobs of one drainer's store, asked about through its sink."""

    def __init__(
        self,
        store: OutboxPort,
        sink: Sink,
        poll: tuple[float, float],
        failures_max: int,
        *,
        store_thread: StoreThread,
        now: Callable[[], float],
        log: logging.Logger,
    ) -> None:
        """``poll``: (initial, maximum) seconds between looks at a pending job; the store is
        called through ``store_thread`` (the drainer's: its calls run one at a time, in order)."""
        if isinstance(failures_max, bool) or not isinstance(failures_max, int) or failures_max < 1:
            raise DeliveryError(f"job_failures_max must be an integer >= 1, got {failures_max!r}")
        self.initial = check_positive("job_poll_initial", poll[0])
        self.maximum = check_positive("job_poll_max", poll[1])
        if self.maximum < self.initial:
            raise DeliveryError("job_poll_max must not be less than job_poll_initial")
        self.poll = (self.initial, self.maximum)
        self.failures_max = failures_max
        self.store, self.sink, self._now, self._log = store, sink, now, log
        self.store_thread = store_thread
        # Only pending jobs have an entry (pruned on every check), so it is bounded by them.
        # A job without one (recorded by an earlier process) is due at once.
        self._polls: dict[str, Poll] = {}
        # When the next check is due (monotonic); None: unknown, read the store. Saves reading
        # every pending job on every drain step of a backlog.
        self._next_due: float | None = None

    def forget(self) -> None:
        """Read the store's pending jobs again at the next check (another process's too)."""
        self._next_due = None

    def submitted(self, job_id: str) -> None:
        """A job was just recorded: its first check comes after ``initial`` seconds."""
        poll = self._polls[job_id] = Poll(self.initial, self.maximum, self._now)
        if self._next_due is not None:
            self._next_due = min(self._next_due, poll.next_at)

    async def check_due(self) -> JobsChecked:
        """Ask about the pending jobs whose time has come, and act on what is learned: the
        store is read in one handoff to its thread and told every verdict in one more."""
        if self._next_due is not None and self._now() < self._next_due:
            wait = self._next_due - self._now()
            return JobsChecked(next_in=None if math.isinf(wait) else wait)
        pending = await self.store_thread.call(self.store.jobs_pending)
        ids = {job.job_id for job in pending}
        for gone in self._polls.keys() - ids:
            del self._polls[gone]
        due = [j for j in pending if j.job_id not in self._polls or self._polls[j.job_id].due()]
        verdicts: list[JobVerdict] = []
        for job in due[:CHECKS_PER_STEP]:
            verdict = await self._verdict(job.job_id)
            if verdict is None:
                self._poll(job.job_id).later()
            else:
                verdicts.append(verdict)
        written = (
            await self.store_thread.call(record_jobs, self.store, verdicts, self.failures_max)
            if verdicts
            else []
        )
        confirmed = resent = dead = 0
        for verdict, done in zip(verdicts, written, strict=True):
            self._polls.pop(verdict.job_id, None)
            confirmed += done.confirmed
            resent, dead = resent + len(done.again), dead + len(done.lost)
            if verdict.landed is not None:
                self._log.warning(
                    "%s; of its %d event(s) %d were stored, %d go again, %d to dead letters",
                    verdict.detail,
                    done.confirmed + len(done.again) + len(done.lost),
                    done.confirmed,
                    len(done.again),
                    len(done.lost),
                )
        settled = {v.job_id for v in verdicts}
        left = [j.job_id for j in pending if j.job_id not in settled]
        waits = [self._polls[i].wait() if i in self._polls else 0.0 for i in left]
        next_in = min(waits) if waits else None
        self._next_due = self._now() + (math.inf if next_in is None else next_in)
        return JobsChecked(confirmed, resent, dead, next_in)

    async def _verdict(self, job_id: str) -> JobVerdict | None:
        """What the sink says of a job; None while it is pending or cannot be told. Only a
        job failed or gone has its events read (the store's ``job_events``), to look each up."""
        outcome = await self._ask(job_id)
        if outcome is None or outcome.state == "pending":
            return None
        if outcome.state == "completed":
            return JobVerdict(job_id)
        event_ids = await self.store_thread.call(self.store.job_events, job_id)
        landed = await self._landed(event_ids)
        if landed is None:
            return None
        if outcome.state == "gone" and len(landed) == len(event_ids):
            return JobVerdict(job_id)  # it completed before it was forgotten
        return JobVerdict(job_id, tuple(landed), outcome.detail)

    def _poll(self, job_id: str) -> Poll:
        poll = self._polls.get(job_id)
        if poll is None:
            poll = self._polls[job_id] = Poll(self.initial, self.maximum, self._now)
        return poll

    async def _ask(self, job_id: str) -> JobOutcome | None:
        try:
            return await self.sink.job_status(job_id)
        except Exception as err:  # a sink bug must not wedge delivery
            self._log.warning("asking about job %s failed: %s", job_id, err)
            return None

    async def _landed(self, event_ids: list[str]) -> list[str] | None:
        """The events found stored upstream; None if one of them cannot be looked up now."""
        landed = []
        for event_id in event_ids:
            try:
                found = await self.sink.exists(event_id)
            except Exception as err:
                self._log.warning("sink.exists failed for %s: %s", event_id, err)
                found = None
            if found is None:
                return None
            if found:
                landed.append(event_id)
        return landed
