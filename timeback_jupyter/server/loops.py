"""The extension's heartbeat: close engagement windows into the store and catch up with
Jupyter's sessions, on Jupyter's event loop."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

from .errors import StoreFailure
from .pacing import in_slices
from .service import TimebackService


async def tick_loop(
    service: TimebackService,
    reconcile: Callable[[], Awaitable[None]],
    report: Callable[[str], None],
) -> None:
    """Tick the tracker forever; every third of a heartbeat also ``reconcile``. A failure is
    ``report``-ed, and a failing store is tried less often until it works again."""
    interval = service.settings.heartbeat_interval
    # Windows close on exact boundaries whenever we tick, so a few ticks per window would
    # suffice; ticking every second spreads many notebooks' windows into small batches
    # rather than one burst that holds the event loop (and every request) for long.
    period = min(1.0, max(0.2, interval / 3))
    reconcile_every = max(period, interval / 3)
    reconciled = 0.0
    failures = 0
    while True:
        # While the store fails, try less often: each try may wait out a lock on the loop.
        await asyncio.sleep(period * min(2**failures, 8))
        tracker = service.tracker
        if tracker is None:
            continue
        kept = tracker.unrecorded  # windows a failing store could not take yet
        try:
            windows = tracker.tick(record=False)
            if tracker.unrecorded:
                # a few windows per slice share a commit and stay within its budget
                await in_slices(functools.partial(tracker.record_pending, limit=4))
            if time.monotonic() - reconciled >= reconcile_every:
                reconciled = time.monotonic()
                await reconcile()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a failing store must not stop the loop or Jupyter
            if isinstance(err, StoreFailure):
                err = err.error
            if isinstance(err, service.store_error_types):
                service.store_error = str(err)
                failures += 1
            report(f"tick failed: {err}")
        else:
            if windows or kept:  # windows were written: the store works again
                service.store_error = ""
                failures = 0
