"""The drainer: delivers the outbox through a sink, in order, with backoff, surviving crashes.

How delivery stays at-least-once, and as close to exactly-once as the API allows, is told in
the package's docstring (``delivery/__init__.py``). A step settles (:mod:`.settle`), follows
the jobs (:mod:`.jobs`) and sends one batch (:mod:`.send`); this keeps the loop around them.
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

from ..config import Timeback
from ..store import StoreError
from .backoff import Backoff
from .errors import DeliveryError, DrainerBusy
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
from .pace import MAX_PACE, Pacer, first_of
from .ports import OutboxPort
from .report import DrainReport, delivery_status, or_inf, outbox_counts
from .send import Sender
from .settle import Settler
from .sink import Sink

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
        pace: float = 0.0,
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
        ``quiet_interval`` if every write calls :meth:`notify` (a server's own store).

        ``pace``: after a send that was not a full batch, what comes next waits this many
        seconds (or a full batch, or an urgent notify) and goes in one envelope; 0 sends it
        at once. A sink's own ``pace`` (a relay's, told to a server) counts if longer."""
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
        if isinstance(pace, bool) or not (isinstance(pace, int | float) and 0 <= pace <= MAX_PACE):
            raise DeliveryError(f"pace must be 0 to {MAX_PACE:g} seconds, got {pace!r}")
        self.store, self.sink, self.batch_size = store, sink, batch_size
        self.retry_initial, self.retry_max = float(retry_initial), float(retry_max)
        self.idle_interval = float(idle_interval)
        self.quiet_interval = None if quiet_interval is None else float(quiet_interval)
        self.looks, self.stop_timeout = 0, float(stop_timeout)  # looks: drain steps by run()
        self._now, self._sleep, self._wall, self._log = now, sleep, wall, log
        self._lease = Lease(store.path)
        self.store_thread = on = StoreThread(store)  # all store calls: off the loop if it may
        self._backoff = Backoff(self.retry_initial, self.retry_max, now=now, rng=rng)
        self._jobs = JobWatcher(
            store, sink, (job_poll_initial, job_poll_max), job_failures_max,
            store_thread=on, now=now, log=log,
        )  # fmt: skip
        self._settler = Settler(
            store, sink, job_timeout, self._jobs.poll, store_thread=on, now=now, wall=wall, log=log
        )
        self._sender = Sender(
            store, sink, store_thread=on, backoff=self._backoff, settler=self._settler,
            jobs=self._jobs, wall=wall, log=log,
        )  # fmt: skip
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.pace = float(pace)
        self._pacer = Pacer(sink, now, self.pace)  # the pace between sends (.pace)
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
            self._settler.forget()  # ...and left claims of its own
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
            report = await self._sender.next(self.batch_size)  # send.py
            if report is None:
                return replace(done, idle=True)
            self._last_error = report.error
            waits += [report.waiting] if report.waiting is not None else []
            batch = report.sent + report.queued  # this envelope's, not the jobs' confirmed
            return replace(done + report, waiting=min(waits) if waits else None, batch=batch)

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

    def status(self, counts: tuple[dict[str, Any], dict[str, Any]] | None = None) -> dict[str, Any]:
        """For the status bar, the REST status and the CLI. Holds no secret. ``counts``: the
        outbox's and the jobs' (:meth:`read_counts`), else read where it is called: on an event
        loop, await :meth:`read_status` instead."""
        return delivery_status(
            outbox_counts(self.store) if counts is None else counts,
            self.sink.name,
            self._backoff,
            standby=self._standby,
            last_error=self._last_error,
        )

    async def read_counts(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The outbox's and the jobs' counts, read on the store thread (the loop waits for none)."""
        return await self.store_thread.call(outbox_counts, self.store)

    async def read_status(self) -> dict[str, Any]:
        """:meth:`status`, its counts read on the store thread."""
        return self.status(await self.read_counts())
