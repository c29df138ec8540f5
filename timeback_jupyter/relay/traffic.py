"""The ingest's successes, summed: one log line per interval instead of one per request.

At district scale a line per answered envelope was most of what the relay wrote and ~2% of its
CPU; nobody reads a thousand identical "200 POST" lines a second, but a platform engineer must
still see the traffic. So a 200 from ``api/events`` is counted here and every ``interval``
seconds (and when the relay stops) one line says how many requests and events, by status, and
the answers' p50 and p99. Every refusal and error keeps its own access line (``app.log_request``).
No tornado here: the face hands in a duration and the answer's counts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

INTERVAL = 10.0
# A summary's latencies kept for its percentiles: beyond this many in one interval, every
# second one is dropped (the figures stay fair; the memory stays bounded).
MAX_SAMPLES = 50_000
SUMMARY_FIELDS = ("requests", "events", "accepted", "duplicate", "refused", "p50_ms", "p99_ms",
                  "interval_s")  # fmt: skip


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of values already sorted (none: 0)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class IngestTraffic:
    """Successful ingests counted between two summary lines.

    ``add`` is called once per answered envelope on the event loop; the first one of an
    interval schedules the line ``interval`` seconds later, so a quiet relay writes nothing and
    a busy one a line per interval.
    """

    def __init__(
        self,
        log: logging.Logger,
        method: str,
        path: str,
        *,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"the summary's interval must be positive, got {interval}")
        self.log, self.method, self.path = log, method, path
        self.interval, self.clock = float(interval), clock
        self._due: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self.started = self.clock()
        self.requests = 0
        self.statuses = {"accepted": 0, "duplicate": 0, "refused": 0}
        self.durations: list[float] = []

    def add(self, seconds: float, statuses: dict[str, int]) -> None:
        """One 200 answered in ``seconds``, its events counted by status."""
        self.requests += 1
        counted = self.statuses
        for status, n in statuses.items():
            counted[status] = counted.get(status, 0) + n
        durations = self.durations
        durations.append(seconds)
        if len(durations) >= MAX_SAMPLES:
            del durations[::2]
        if self._due is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a caller outside the server): written at flush
                return
            self._due = loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Write the line for what was counted since the last one (nothing counted: none)."""
        if self._due is not None:
            self._due.cancel()
            self._due = None
        if not self.requests:
            self._reset()
            return
        ordered = sorted(self.durations)
        p50, p99 = 1000 * percentile(ordered, 50), 1000 * percentile(ordered, 99)
        spent = max(0.0, self.clock() - self.started)
        events = sum(self.statuses.values())
        fields = {
            "method": self.method,
            "path": self.path,
            "status": 200,
            "requests": self.requests,
            "events": events,
            **self.statuses,
            "p50_ms": round(p50, 1),
            "p99_ms": round(p99, 1),
            "interval_s": round(spent, 1),
        }
        counts = ", ".join(f"{n} {status}" for status, n in self.statuses.items())
        self.log.info(
            "200 %s %s: %d requests, %d events (%s) in %.1f s, p50 %.1fms, p99 %.1fms",
            self.method,
            self.path,
            self.requests,
            events,
            counts,
            spent,
            p50,
            p99,
            extra=fields,
        )
        self._reset()
