"""The clock's due schedule: for each run, the next instant at which settling it has work.

A live run's time between calls is all of one kind (active or inactive) until one of three
instants: its open window's end, its pause (``abandon_after`` past its last active instant,
when it is not its student's active run), or, for the active run, its lapse (no longer seen or
recent: the student's active run changes hands there). Until the earliest of these, settling
it would only add the elapsed time to one figure, which can wait for its next call. So a tick
settles only the runs due by its instant (a few of hundreds), not every live run, and the next
instant the tick has work is the top of a heap.

Entries are never updated in place: a run whose due moves earlier gets a new entry with a new
token, and the old one is skipped when it comes up (lazy invalidation). A due that moves later
keeps its earlier entry: a tick that reaches it settles the run (nothing to do but add time)
and schedules it again. So an entry is never later than its run's due, which is what the tick
and the checkpoint (:meth:`.EngagementClock.settled_windows`) rely on.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from .runs import Rules, RunState, lapses_at, next_end


def due_of(run: RunState, winning: bool, rules: Rules) -> float | None:
    """The next instant settling ``run`` has work, ``winning`` or not (whether it is its
    student's active run); None while it is paused (only a call or a hand-over resumes it)."""
    if run.paused:
        return None
    at = next_end(run, rules.heartbeat_interval)
    if winning:
        return min(at, lapses_at(run, rules))
    return min(at, run.last_active + rules.abandon_after)


class DueSchedule:
    """Runs by due instant: a heap of ``(due, token, run)`` with lazy invalidation."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, RunState]] = []
        self._tokens = 0
        self._live = 0  # entries that are not stale: one per run with a due

    def __len__(self) -> int:
        """Entries held, stale ones included (bounded: see :meth:`put`)."""
        return len(self._heap)

    def put(self, run: RunState, at: float | None) -> None:
        """``run`` is due at ``at`` (None: never, until scheduled again)."""
        if at is None:
            if run.due is not None:
                self._live -= 1
            run.due, run.token = None, 0
            return
        if run.due is not None:
            if run.due <= at:
                return  # its earlier entry stands: reached, the run is settled and put again
        else:
            self._live += 1
        self._tokens += 1
        run.due, run.token = at, self._tokens
        heapq.heappush(self._heap, (at, self._tokens, run))
        if len(self._heap) > 2 * self._live + 64:
            # Dues that moved earlier left stale entries behind: drop them once they outnumber
            # the live ones (they would otherwise wait until their instant passes).
            self._heap = [e for e in self._heap if e[2].token == e[1]]
            heapq.heapify(self._heap)

    def pop_due(self, now: float) -> Iterator[RunState]:
        """Each run due by ``now``, earliest first, taken off the schedule (put it back once
        settled). Runs put back while this iterates are seen if due by ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, token, run = heapq.heappop(heap)
            if run.token != token:
                continue
            run.due, run.token = None, 0
            self._live -= 1
            yield run

    def top(self) -> float | None:
        """The earliest due (never later than any run's true due); None when no run has one."""
        heap = self._heap
        while heap and heap[0][2].token != heap[0][1]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None
