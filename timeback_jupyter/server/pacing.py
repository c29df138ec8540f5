"""Background work on Jupyter's event loop, in slices that leave the loop to requests.

Why not ``await asyncio.sleep(0)`` between slices: a message on a WebSocket takes the loop
several turns to serve (frame header, payload, handler, answer), and each turn would wait for
one more slice; a burst of hundreds of heartbeat windows then held every report for tens of
milliseconds. A short real pause between slices lets every waiting request finish first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

SLICE_BUDGET = 0.002  # seconds of work at a time: a slice adds at most this to a request
SLICE_PAUSE = 0.01  # seconds left to the loop between slices (work takes 1/6 of it at most)


async def in_slices(
    step: Callable[[], int],
    *,
    budget: float = SLICE_BUDGET,
    pause: float = SLICE_PAUSE,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> int:
    """Call ``step`` (one unit of work, returning how many units remain) until none remain:
    for at most ``budget`` seconds at a time (at least one unit), then ``pause``. The number
    of pauses taken."""
    pauses = 0
    while True:
        started = clock()
        while True:
            remaining = step()
            if not remaining:
                return pauses
            if clock() - started >= budget:
                break
        await sleep(pause)
        pauses += 1
