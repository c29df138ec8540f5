"""The drainer: delivers the outbox through a sink, in order, with backoff, surviving crashes.

How delivery stays at-least-once, and as close to exactly-once as the API allows, is told in
the package's docstring (``delivery/__init__.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from .. import caliper
from ..config import Timeback
from ..store import OutboxItem, StoreError
from .backoff import Backoff
from .errors import DeliveryError, DrainerBusy, RejectedError, RetryableError
from .jobs import (
    JOB_FAILURES_MAX,
    JOB_POLL_INITIAL,
    JOB_POLL_MAX,
    JOB_TIMEOUT,
    JobWatcher,
    check_positive,
)
from .lease import Lease
from .offload import StoreThread
from .pace import Pacer, first_of
from .ports import OutboxPort
from .report import DrainReport, delivery_status, or_inf
from .settle import Settler
from .sink import Sink
from .stored import deliver_stored, takes_stored
from .writes import set_aside

LOG = logging.getLogger("timeback_jupyter.delivery")

# Real time left to the event loop between two batches of a backlog. A batch holds the loop
# for milliseconds (claim, envelope, ack; all of it with the local sink); with sleep(0)
# between batches every turn a request needs (a kernel message takes several) would wait for
# one more batch: draining 50,000 local events made a cell's round trip 5x slower.
BATCH_PAUSE = 0.005


class Drainer:
    """Delivers the outbox through a sink, in order, with backoff, surviving crashes."""

    def __init__(
        self,
        store: OutboxPort,
        sink: Sink,
        *,
        batch_size: int = 50,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        idle_interval: float = 2.0,
        quiet_interval: float | None = None,
        stop_timeout: float = 10.0,
        batch_pause: float = BATCH_PAUSE,
        job_timeout: float = JOB_TIMEOUT,
        job_failures_max: int = JOB_FAILURES_MAX,
        job_poll_initial: float = JOB_POLL_INITIAL,
        job_poll_max: float = JOB_POLL_MAX,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        wall: Callable[[], float] = time.time,
        log: logging.Logger = LOG,
    ) -> None:
        """``wall`` is the store's clock (durable times are compared with it); ``now`` and
        ``sleep`` time the waits. Idle, it looks every ``idle_interval`` s, or every
        ``quiet_interval`` if every write calls :meth:`notify` (a server's own store)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DeliveryError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        for name, value in (("retry_initial", retry_initial), ("retry_max", retry_max),
                            ("idle_interval", idle_interval), ("stop_timeout", stop_timeout),
                            ("job_timeout", job_timeout)):  # fmt: skip
            check_positive(name, value)
        if quiet_interval is not None:
            check_positive("quiet_interval", quiet_interval)
        if retry_max < retry_initial:
            raise DeliveryError("retry_max must not be less than retry_initial")
        if not (isinstance(batch_pause, int | float) and 0 <= batch_pause < 1):
            raise DeliveryError(f"batch_pause must be in [0, 1) seconds, got {batch_pause!r}")
        self.batch_pause = float(batch_pause)
        self.store, self.sink, self.batch_size = store, sink, batch_size
        self.retry_initial, self.retry_max = float(retry_initial), float(retry_max)
        self.idle_interval = float(idle_interval)
        self.quiet_interval = None if quiet_interval is None else float(quiet_interval)
        self.looks, self.stop_timeout = 0, float(stop_timeout)  # looks: drain steps by run()
        self._now, self._sleep, self._wall, self._log = now, sleep, wall, log
        self._lease = Lease(store.path)
        self.store_thread = on = StoreThread(store)  # all store calls: off the loop if it may
        self._stored = takes_stored(sink, store)  # batches as stored, in one call (.stored)
        self._backoff = Backoff(self.retry_initial, self.retry_max, now=now, rng=rng)
        self._jobs = JobWatcher(
            store, sink, (job_poll_initial, job_poll_max), job_failures_max,
            store_thread=on, now=now, log=log,
        )  # fmt: skip
        self._settler = Settler(
            store, sink, job_timeout, self._jobs.poll, store_thread=on, now=now, wall=wall, log=log
        )
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pacer = Pacer(sink, now)  # the relay's pace between sends (.pace)
        self._last_error: str | None = None
        self._recovered = False
        self._standby = False

    @classmethod
    def from_config(cls, store: OutboxPort, sink: Sink, config: Timeback, **kw: Any) -> Drainer:
        """A drainer with the ``c.Timeback`` knobs (batch_size, retry_*, drain_interval,
        job_timeout, job_failures_max)."""
        return cls(
            store,
            sink,
            batch_size=config.batch_size,
            retry_initial=config.retry_initial,
            retry_max=config.retry_max,
            idle_interval=config.drain_interval,
            job_timeout=config.job_timeout,
            job_failures_max=config.job_failures_max,
            **kw,
        )

    # -- the steps -------------------------------------------------------------------------

    def _claim_lease(self) -> None:
        if not self._lease.acquire():
            self._standby = True
            raise DrainerBusy(
                f"another process is already delivering the events of {self.store.path}"
            )
        if self._standby:
            self._jobs.forget()  # the owner meanwhile may have recorded jobs of its own
        self._standby = False

    async def recover(self) -> None:
        """Settle the events a crash left inflight: acked if stored upstream, else re-queued.

        When another process owns the store's delivery, its inflight events are not ours to
        settle: this returns without touching them and :meth:`run` waits its turn.
        """
        async with self._lock:
            try:
                self._claim_lease()
            except DrainerBusy as err:
                self._log.info("%s; this one stands by", err)
                return
            await self._settler.settle("interrupted mid-send (process stopped)")
            self._recovered = True

    async def drain_once(self) -> DrainReport:
        """One step: settle sends of unknown outcome, follow the jobs that are due, then send
        one batch (one envelope) and act on the answer: job recorded, ack, retry later, or
        dead-letter. ``waiting`` in the report says when something awaited is due."""
        async with self._lock:
            self._claim_lease()
            settled = await self._settler.settle("the last attempt's outcome was unknown")
            checked = await self._jobs.check_due()
            waits = [w for w in (settled.wait, checked.next_in) if w is not None]
            done = DrainReport(
                sent=settled.landed + checked.confirmed,
                retried=checked.resent,
                rejected=checked.dead,
                waiting=min(waits) if waits else None,
            )
            if settled.wait is not None:
                # A send whose outcome is unknown is not settled yet: nothing newer goes out
                # before it (its events may still be stored, or go again in their place).
                return replace(done, idle=True)
            if self._stored:
                report = await self._deliver_stored()
            else:
                batch = await self._take(self.batch_size)
                report = await self._deliver(batch) if batch else None
            if report is None:
                return replace(done, idle=True)
            waits += [report.waiting] if report.waiting is not None else []
            return replace(done + report, waiting=min(waits) if waits else None)

    async def _take(self, limit: int) -> list[OutboxItem]:
        """The next batch: claimed (marked inflight, committed) before a send that leaves the
        process, so a crash cannot send it twice unknowingly. A sink whose class says accepting
        has no effect outside this store (``remote = False``) gets it read, not claimed: after
        a crash its events are simply checked again (a subclass must say so too)."""
        if vars(type(self.sink)).get("remote", True) is False:
            pending_batch = getattr(self.store, "pending_batch", None)
            if pending_batch is not None:
                return list(await self.store_thread.call(pending_batch, limit))
        return await self.store_thread.call(self.store.claim_batch, limit)

    async def _deliver_stored(self) -> DrainReport | None:
        """The batch as stored, in one call on the store thread (:mod:`.stored`)."""
        step = await self.store_thread.call(
            deliver_stored, self.store, self.sink, self.batch_size, self._wall
        )
        if not step.event_ids:
            return None
        if step.rejected is not None:  # set aside on the store thread already
            return self._rejected(list(step.culprits), list(step.rest), step.rejected)
        if step.failed is not None:  # kept "inflight": the batch was only read, still pending
            return await self._retry(step.event_ids, step.failed, None, keep_inflight=True)
        self._delivered()
        return DrainReport(sent=len(step.event_ids))

    def _delivered(self) -> None:
        if self._backoff.failures:
            self._log.info("delivery to %s works again", self.sink.name)
        self._backoff.succeeded()
        self._last_error = None

    async def _deliver(self, batch: list[OutboxItem]) -> DrainReport:
        ids = [item.event_id for item in batch]
        try:
            envelope = caliper.envelope([i.payload for i in batch], batch[0].sensor, self._wall())
        except caliper.CaliperInputError as err:
            return await self._reject(ids, RejectedError(f"cannot build the envelope: {err}"))
        try:
            job_id = await self.sink.send(envelope)
        except RejectedError as err:
            return await self._reject(ids, err)
        except RetryableError as err:
            keep = err.maybe_delivered
            return await self._retry(ids, str(err), err.retry_after, keep_inflight=keep)
        except asyncio.CancelledError:
            # Stopped mid-send: the batch stays inflight and is settled on the next start.
            raise
        except Exception as err:
            self._log.exception("the %s sink failed unexpectedly", self.sink.name)
            error = f"{type(err).__name__}: {err}"
            return await self._retry(ids, error, None, keep_inflight=True)
        self._delivered()
        if not job_id:
            await self.store_thread.call(self.store.ack, ids)  # delivered when accepted: no job
            return DrainReport(sent=len(ids))
        # Accepted: delivered once Timeback's job completes. Should this write fail, the
        # batch stays inflight without a job and is settled as a send of unknown outcome.
        # Cancelled meanwhile, the store thread still records it: watched all the same.
        try:
            await self.store_thread.call(self.store.record_job, ids, job_id)
        finally:
            self._jobs.submitted(job_id)  # a job the store lacks is dropped at the next look
        return DrainReport(queued=len(ids), waiting=self._jobs.initial)

    async def _retry(
        self, ids: list[str], error: str, retry_after: float | None, *, keep_inflight: bool
    ) -> DrainReport:
        # Maybe delivered: stay inflight, so the next step (or the next process, after a
        # crash) asks the sink before sending again. Otherwise back to pending, same seq.
        if not keep_inflight:
            await self.store_thread.call(self.store.release, ids, error)
        delay = self._backoff.failed(retry_after)
        self._last_error = error
        self._log.warning(
            "sending %d event(s) to %s failed (%s); retry #%d in %.1fs",
            len(ids), self.sink.name, error, self._backoff.failures, delay,
        )  # fmt: skip
        return DrainReport(retried=len(ids), delay=delay, error=error)

    async def _reject(self, ids: list[str], err: RejectedError) -> DrainReport:
        culprits, rest = await self.store_thread.call(set_aside, self.store, ids, err)
        return self._rejected(culprits, rest, err)

    def _rejected(self, culprits: list[str], rest: list[str], err: RejectedError) -> DrainReport:
        # The API answered: the connection works, whatever it thought of these events.
        self._backoff.succeeded()
        self._last_error = err.reason
        self._log.error(
            "%s rejected %d event(s), moved to dead letters: %s",
            self.sink.name, len(culprits), err.reason,
        )  # fmt: skip
        return DrainReport(rejected=len(culprits), retried=len(rest), error=err.reason)

    # -- the loop --------------------------------------------------------------------------

    def notify(self, urgent: bool = False) -> None:
        """Something was enqueued: wake the loop if idle; ``urgent`` ends a pace's hold too."""
        if urgent:
            self._pacer.urgent.set()
        self._wake.set()

    async def _wait(self, seconds: float, *, wake_on_notify: bool, urgent: bool = False) -> None:
        wakes = [self._stopping, self._wake] if wake_on_notify else [self._stopping]
        await first_of(self._sleep(seconds), [*wakes, self._pacer.urgent] if urgent else wakes)

    async def run(self) -> None:
        """Deliver until :meth:`stop`: drain while there is work, else wait for notify()."""
        if self._task is not None and not self._task.done():
            raise DeliveryError("this drainer is already running")
        self._task = asyncio.current_task()
        self._stopping.clear()
        while not self._stopping.is_set():
            # Cleared before draining: a notify() during the drain is not lost.
            self._wake.clear()
            if (held := self._pacer.hold()) > 0:  # the relay's pace (.pace): not if urgent
                await self._wait(held, wake_on_notify=False, urgent=True)
                continue
            try:
                if not self._recovered:
                    await self.recover()
                self.looks += 1
                report = await self.drain_once()
            except DrainerBusy as err:
                # Not a failure: the owner delivers our events too (one outbox). Check back.
                self._last_error = str(err)
                await self._wait(
                    max(self.idle_interval, min(self.retry_max, 30.0)), wake_on_notify=False
                )
                continue
            except Exception as err:
                # A full disk, a locked store, another drainer, a bug: never let the loop die
                # (delivery would stop in silence); back off and try again.
                delay = self._backoff.failed()
                self._last_error = str(err) or type(err).__name__
                if isinstance(err, StoreError | DeliveryError | OSError):
                    self._log.error("delivery paused for %.1fs: %s", delay, err)
                else:
                    self._log.exception("delivery failed unexpectedly; retrying in %.1fs", delay)
                await self._wait(delay, wake_on_notify=False)
                continue
            if self._stopping.is_set():
                break
            self._pacer.after(report, self.batch_size)
            if report.delay > 0:
                await self._wait(report.delay, wake_on_notify=False)
            elif report.idle:
                # Until the next look at a job or an unknown send is due, or something new.
                wait = min(self._idle_wait(), or_inf(report.waiting))
                await self._wait(max(wait, self.batch_pause), wake_on_notify=True)
            else:
                await asyncio.sleep(self.batch_pause)  # see BATCH_PAUSE

    def _idle_wait(self) -> float:
        return max(self.idle_interval, self.quiet_interval or 0.0)

    async def stop(self) -> None:
        """Let the batch in flight finish (at most ``stop_timeout``), then return."""
        self._stopping.set()
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            try:
                await asyncio.wait_for(asyncio.shield(task), self.stop_timeout)
            except TimeoutError:
                self._log.warning(
                    "delivery did not stop within %.0fs; its batch will be settled on the "
                    "next start",
                    self.stop_timeout,
                )
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.store_thread.close()
        self._lease.release()

    async def flush(self, timeout: float) -> DrainReport:
        """Drain until every event is delivered (its job completed) or ``timeout`` seconds pass.

        The timeout holds on the injected clock between steps and on the event loop's clock
        for a step that hangs: a send cut short stays inflight and is settled later.
        """
        deadline = self._now() + timeout
        total = DrainReport()
        try:
            async with asyncio.timeout(timeout):
                if not self._recovered:
                    await self.recover()
                while True:
                    step = await self.drain_once()
                    total = total + step
                    if step.idle and step.waiting is None:
                        break
                    pause = step.delay or (or_inf(step.waiting) if step.idle else 0.0)
                    remaining = deadline - self._now()
                    if remaining <= 0 or pause > remaining:
                        break
                    if pause > 0:
                        await self._sleep(pause)
                    else:
                        await asyncio.sleep(self.batch_pause)  # see BATCH_PAUSE
        except TimeoutError:
            self._log.warning("flush stopped after %.1fs with events still queued", timeout)
        return replace(total, remaining=await self.store_thread.call(self.store.depth))

    def status(self) -> dict[str, Any]:
        """For the status bar, the REST status and the CLI. Holds no secret."""
        return delivery_status(
            self.store,
            self.sink.name,
            self._backoff,
            standby=self._standby,
            last_error=self._last_error,
        )
