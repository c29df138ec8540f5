"""When the drainer tries again after a failure."""

from __future__ import annotations

import math
from collections.abc import Callable


class Backoff:
    """Consecutive failures and the time of the next attempt.

    Full jitter (AWS architecture blog), doubling from ``initial`` up to ``maximum``; a
    server's Retry-After replaces it. ``now`` is the drainer's monotonic clock.
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        now: Callable[[], float],
        rng: Callable[[], float],
    ) -> None:
        self.initial, self.maximum = initial, maximum
        self._now, self._rng = now, rng
        self.failures = 0
        self.next_at: float | None = None

    def delay(self, retry_after: float | None) -> float:
        # A floor keeps an outage (or a Retry-After of 0) from becoming a tight loop.
        floor = self.initial / 10.0
        if retry_after is not None and math.isfinite(retry_after):
            # The API answered and said when: its word, not the backoff an outage before it
            # grew (minutes after a long one), sets the wait.
            return max(float(retry_after), floor)
        exponent = min(self.failures - 1, 60)
        cap = min(self.maximum, self.initial * 2.0**exponent)
        return max(cap * self._rng(), floor)

    def failed(self, retry_after: float | None = None) -> float:
        """Count a failure; the seconds to wait before the next attempt."""
        self.failures += 1
        delay = self.delay(retry_after)
        self.next_at = self._now() + delay
        return delay

    def succeeded(self) -> None:
        """The sink answered (accepted or rejected): the connection works."""
        self.failures = 0
        self.next_at = None

    def next_in(self) -> float | None:
        """Seconds until the next attempt while failing, else None."""
        if self.failures and self.next_at is not None:
            return max(0.0, self.next_at - self._now())
        return None
