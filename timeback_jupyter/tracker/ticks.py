"""When the tracker's tick has work, so that a server ticks only then (and not at all while
every run is paused or none is open)."""

from __future__ import annotations

from collections.abc import Callable

from ..clock import EngagementClock
from .checkpoints import Checkpoints
from .pending import PendingWindows


class Ticks:
    def __init__(
        self,
        clock: EngagementClock,
        checkpoints: Checkpoints,
        pending: PendingWindows,
        now: Callable[[], float],
    ) -> None:
        self.now = now  # the tracker's clock, which the instants here are on
        self._clock = clock
        self._checkpoints = checkpoints
        self._pending = pending
        # Set while the ticker waits for no time: called (once) at the next call that may give
        # the tick work.
        self.wake: Callable[[], None] | None = None

    def next(self, now: float) -> float | None:
        """When the tick next has work: the clock's due schedule says a run has some (its window
        closes, it pauses, or the active run lapses; read off the schedule's top, whatever
        the number of runs), a checkpoint is due (the first at once: it recovers what a
        process gone left), or windows the store could not take wait (``now``). None when only
        a call can make work: every run paused, or none open."""
        ends = self._clock.next_window_end()
        checkpoint = self._checkpoints.next_due(live=ends is not None)
        due = [t for t in (ends, checkpoint) if t is not None]
        if self._pending:
            due.append(now)
        return min(due) if due else None

    def idle_until_called(self, wake: Callable[[], None]) -> None:
        """The ticker waits for no time: ``wake`` it at the next run started, signal, presence
        report or leave (each may resume a paused run, or open one)."""
        self.wake = wake

    def called(self) -> None:
        """A run started, a signal, a presence report or a leave."""
        wake = self.wake
        if wake is not None:
            self.wake = None
            wake()
