"""How the engagement clock integrates a student's runs: lazily, and on a due schedule.

Lazily, so a call costs O(1) in the student's other runs, not O(runs): between calls
eligibility (seen and recent, not paused) can only lapse, never begin, and the ranking (last
signal, open order) is fixed, so the active run changes only when the current one lapses, and
only then do the others need looking at. A run's own time needs nothing but its status
(active or not) since it was last settled: non-active time is inactive, so a run is settled
(its windows closed, its pause noticed) only when its status changes, when it is called, and
when it is due (:mod:`.due`: its window's end, its pause, or, for the active run, its lapse,
where the student's runs change hands). A tick settles only the runs due by its instant; the
others' time up to it is exact without settling them (one kind since their last settle).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..model import Window
from .due import DueSchedule, due_of
from .runs import (
    Rules,
    RunState,
    SegmentHook,
    StudentState,
    eligible,
    lapses_at,
    rank,
    settle,
    take_over,
)


class Integration:
    """A clock's students and runs, and the integration of their time (see the module)."""

    def __init__(self, rules: Rules, on_segment: SegmentHook | None) -> None:
        self.rules = rules
        self._on_segment = on_segment
        self._students: dict[str, StudentState] = {}
        self._runs: dict[str, RunState] = {}
        # Whole windows closed while advancing for a call other than tick(); tick() hands them out.
        self._closed: list[Window] = []
        self._due = DueSchedule()

    def _settle_due(self, now: float) -> None:
        """What a tick to ``now`` integrates: the runs due by then (a student called past
        ``now`` already, times given out of order, has every run settled to that call's
        instant, as a tick always did), and each student brought to ``now``."""
        for group in self._students.values():
            if group.now > now:
                for run in group.runs.values():
                    self._settle(run, group.now, run is group.winner)
                    self._schedule(run, group)
        for run in self._due.pop_due(now):
            group = self._students[run.student]
            t = self._advance(group, now)
            self._settle(run, t, run is group.winner)
            self._schedule(run, group)
        for group in self._students.values():
            # No hand-over is due by ``now`` here (the active run's lapse is on the schedule):
            # the student's active run is known that far without looking.
            group.now = group.ticked = max(group.now, now)

    def _windows_at_tick(self) -> list[tuple[str, float, float, float, float]]:
        """Each run's open window up to where the last tick left its student (or further, where
        a call since settled it), changing nothing; none for a run paused or holding no time."""
        windows = []
        students = self._students
        for run in self._runs.values():
            if run.paused:
                continue
            group = students[run.student]
            active, inactive, end = run.active, run.inactive, run.settled
            if end < group.ticked:
                # Not due at the tick, nor called since: no window end, pause or change of
                # hands on the way, so the time since its last settle is all of one kind.
                if run is group.winner:
                    active += group.ticked - end
                else:
                    inactive += group.ticked - end
                end = group.ticked
            if active > 0 or inactive > 0:
                windows.append((run.id, run.start, end, active, inactive))
        return windows

    def _schedule(self, run: RunState, group: StudentState) -> None:
        """Put ``run`` on the due schedule as it now stands (after anything changed it)."""
        self._due.put(run, due_of(run, run is group.winner, self.rules))

    def _reach(self, run: RunState, now: float) -> tuple[StudentState, float]:
        """Advance the run's student to ``now`` and settle the run there, before a call."""
        group = self._students[run.student]
        t = self._advance(group, now)
        self._settle(run, t, run is group.winner)
        self._schedule(run, group)
        return group, t

    def _advance(self, group: StudentState, until: float) -> float:
        """Move the student's active run along to ``until`` (clamped: time never runs backwards)."""
        until = max(until, group.now)
        for at, new in self._handovers(group, until):
            self._hand_over(group, new, at, call=False)
        group.now = until
        return until

    def _handovers(
        self, group: StudentState, until: float
    ) -> Iterator[tuple[float, RunState | None]]:
        """Each instant in (now, until] where the active run lapses, and who takes over."""
        current = group.winner
        while current is not None:
            at = lapses_at(current, self.rules)
            if at > until:
                return
            current = self._pick(group, at)
            yield at, current

    def _hand_over(
        self, group: StudentState, new: RunState | None, at: float, *, call: bool
    ) -> None:
        """``new`` is the active run from ``at``. A pause due at that very instant comes first
        after a ``call`` (the call found the run paused, so it restarts), but not when the
        active run lapses then (taking over comes first: the run goes on)."""
        old = group.winner
        if old is not None and old is not new:
            self._settle(old, at, True, at_end=False)
        if new is not None and new is not old:
            self._settle(new, at, False, at_end=not call)
            take_over(new, at)
        group.winner = new
        if old is not None:
            self._schedule(old, group)
        if new is not None:
            self._schedule(new, group)

    def _reconsider(self, group: StudentState, run: RunState, t: float) -> None:
        """After a call changed ``run`` at ``t``: is the student's active run still the same?"""
        current = group.winner
        if run is current:
            if not eligible(run, t, self.rules):
                self._hand_over(group, self._pick(group, t), t, call=True)
        elif eligible(run, t, self.rules) and (current is None or rank(run) > rank(current)):
            self._hand_over(group, run, t, call=True)

    def _pick(self, group: StudentState, t: float) -> RunState | None:
        """The student's active run at ``t``, when the current one lapses or leaves.

        Paused runs are candidates too: one that is seen and recent (its tab in front, its
        student typing) but was kept out by a fresher run takes over the moment that run
        lapses, rather than at its own next report (see :func:`.runs.take_over`).
        """
        best: RunState | None = None
        for run in group.runs.values():
            if run is group.winner:
                continue
            if not eligible(run, t, self.rules):
                continue
            if best is None or rank(run) > rank(best):
                best = run
        return best

    def _settle(
        self,
        run: RunState,
        until: float,
        winning: bool,
        *,
        at_end: bool | None = None,
        out: list[Window] | None = None,
    ) -> None:
        """:func:`.runs.settle` with this clock's rules. Given ``out`` it is a trial on a copy
        (for :meth:`reading`): closed windows go there, and no segment is reported."""
        settle(
            run,
            until,
            winning,
            self.rules,
            at_end=at_end,
            out=self._closed if out is None else out,
            hook=self._on_segment if out is None else None,
        )
