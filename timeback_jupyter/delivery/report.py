"""What one or more drain steps did."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DrainReport:
    """What one or more drain steps did."""

    sent: int = 0  # acknowledged by the sink (or found already stored upstream)
    retried: int = 0  # put back for a later attempt after a retryable failure
    rejected: int = 0  # moved to dead letters
    delay: float = 0.0  # seconds to wait before the next attempt (0: go on now)
    idle: bool = False  # the outbox had nothing to send
    error: str | None = None  # the last failure, if any
    remaining: int | None = None  # outbox depth afterwards (flush only)

    def __add__(self, other: DrainReport) -> DrainReport:
        return DrainReport(
            sent=self.sent + other.sent,
            retried=self.retried + other.retried,
            rejected=self.rejected + other.rejected,
            delay=other.delay,
            idle=other.idle,
            error=other.error or self.error,
            remaining=other.remaining,
        )
