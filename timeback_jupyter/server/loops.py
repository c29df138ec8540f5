"""The extension's background work on Jupyter's event loop, each piece run only when there is
something to do: the tick (close engagement windows into the store, checkpoint the open
ones) while a run is not paused, and the catch-up with Jupyter's sessions when they change.
With no run open neither runs: the extension then costs the server no CPU at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import Awaitable, Callable

from .errors import StoreFailure
from .pacing import in_slices
from .service import TimebackService

# A store that fails is tried again after this many tick periods at most (doubling).
MAX_BACKOFF = 8
# Sessions are caught up with at least this often (seconds) whatever Jupyter says: a change
# we are not told of (a session made by another extension's own code) waits at most this.
RECONCILE_FALLBACK = 60.0


def tick_period(heartbeat_interval: float) -> float:
    """The shortest time between two ticks. Windows close on exact boundaries whenever we
    tick, so ticking at each run's own boundary would be exact but, with many notebooks'
    boundaries spread over the interval, would tick many times a second; at most one tick a
    second batches them, each batch small enough not to hold the loop (and every request)."""
    return min(1.0, max(0.2, heartbeat_interval / 3))


class Ticker:
    """Ticks the tracker when its tick has work (:meth:`Ticks.next`, at most once a
    :func:`tick_period`), and waits for nothing while it has none: the tracker wakes it at the
    next call that may give it work. A failure is ``report``-ed, and a failing store is tried
    less often until it works again."""

    def __init__(self, service: TimebackService, report: Callable[[str], None]) -> None:
        self.service = service
        self.report = report
        self.period = tick_period(service.settings.heartbeat_interval)
        self.ticks = 0  # ticks run, for tests and benchmarks
        self._wake = asyncio.Event()
        self._failures = 0

    def wake(self) -> None:
        """Something may have work for the tick now (a run started, a tracker made)."""
        self._wake.set()

    def _delay(self, last: float) -> float | None:
        """Seconds until the next tick; None: none until woken."""
        tracker = self.service.tracker
        if tracker is None:
            return None
        now = tracker.ticks.now()
        due = tracker.ticks.next(now)
        if due is None:
            # Set before waiting: a call from now on wakes us (nothing between here and the
            # wait runs other code, so none is missed).
            tracker.ticks.idle_until_called(self.wake)
            return None
        if tracker.unrecorded:  # the store failed: try less often while it does
            due = max(due, last + self.period * min(2**self._failures, MAX_BACKOFF))
        return max(0.0, max(due, last + self.period) - now)

    async def run(self) -> None:
        last = -math.inf  # when the tracker last ticked, on its clock
        while True:
            self._wake.clear()
            try:
                delay = self._delay(last)
            except Exception as err:  # a bug here must not stop the ticks for good
                self.report(f"tick failed: {err}")
                delay = self.period
            if delay is None:
                await self._wake.wait()
                continue
            if delay > 0:
                await asyncio.sleep(delay)
            tracker = self.service.tracker
            if tracker is None:
                continue
            last = tracker.ticks.now()
            await self.tick()

    async def tick(self) -> None:
        tracker = self.service.tracker
        if tracker is None:
            return
        self.ticks += 1
        kept = tracker.unrecorded  # windows a failing store could not take yet
        try:
            windows = tracker.tick(record=False)
            if tracker.unrecorded:
                # a few windows per slice share a commit and stay within its budget
                await in_slices(functools.partial(tracker.record_pending, limit=16))
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a failing store must not stop the loop or Jupyter
            if store_failed(self.service, err):
                self._failures += 1
            self.report(f"tick failed: {err}")
        else:
            if windows or kept:  # windows were written: the store works again
                self.service.store_error = ""
                self._failures = 0


def store_failed(service: TimebackService, err: Exception) -> bool:
    """Note a store's failure on the service (the status shows it); True if it was one."""
    if isinstance(err, StoreFailure):
        err = err.error
    if isinstance(err, service.store_error_types):
        service.store_error = str(err)
        return True
    return False


class Reconciler:
    """Runs ``reconcile`` (catch up with Jupyter's sessions) when asked: a session made,
    changed or gone, a kernel started, restarted, dead or shut down, a notebook renamed;
    several requests in one turn of the loop share one run. Also every ``fallback`` seconds,
    and, after a failure (a locked store while starting a run), again with a backoff."""

    def __init__(
        self,
        reconcile: Callable[[], Awaitable[None]],
        report: Callable[[str], None],
        *,
        on_error: Callable[[Exception], object] = lambda err: None,
        fallback: float = RECONCILE_FALLBACK,
        retry: float = 5.0,
    ) -> None:
        self._reconcile = reconcile
        self._report = report
        self._on_error = on_error
        self.fallback = fallback
        self.retry = retry
        self.runs = 0  # reconciles run, for tests and benchmarks
        self._asked = asyncio.Event()
        self._delayed: asyncio.TimerHandle | None = None

    def request(self, delay: float = 0.0) -> None:
        """Reconcile soon: at the next turn of the loop, or after ``delay`` seconds."""
        if delay <= 0:
            self._asked.set()
            return
        if self._delayed is None or self._delayed.cancelled():
            loop = asyncio.get_running_loop()
            self._delayed = loop.call_later(delay, self._due)

    def _due(self) -> None:
        self._delayed = None
        self._asked.set()

    async def run(self) -> None:
        failures = 0
        wait = 0.0  # a first catch-up at start: sessions made before we listened
        while True:
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._asked.wait(), wait)
            await asyncio.sleep(0)  # requests made in the same turn share this run
            self._asked.clear()
            self.runs += 1
            try:
                await self._reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a failing store must not stop the loop or Jupyter
                self._on_error(err)
                if isinstance(err, StoreFailure):
                    err = err.error
                self._report(f"reconcile failed: {err}")
                failures += 1
                wait = min(self.retry * 2 ** (failures - 1), self.fallback)
            else:
                failures = 0
                wait = self.fallback

    def cancel(self) -> None:
        if self._delayed is not None:
            self._delayed.cancel()
            self._delayed = None
