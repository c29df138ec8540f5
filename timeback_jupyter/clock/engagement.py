"""The engagement clock: a student's runs, of which at most one is active at any instant."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields

from ..model import InvalidInput, Window, parse_run_id, require_text
from .runs import (
    Reading,
    Report,
    Rules,
    RunState,
    SegmentHook,
    Snapshot,
    StudentState,
    as_time,
    checked_signals,
    eligible,
    go_on,
    heed,
    key_of,
    lapses_at,
    next_end,
    rank,
    restart,
    settle,
    take_over,
    window_of,
)


class EngagementClock:
    """Turns per-run signals into closed :class:`~timeback_jupyter.model.Window` s."""

    def __init__(
        self,
        *,
        heartbeat_interval: float = 15.0,
        idle_after: float = 120.0,
        abandon_after: float = 600.0,
        presence_ttl: float = 20.0,
        running_cell_limit: float = 300.0,
        on_segment: SegmentHook | None = None,
    ) -> None:
        self.rules = Rules(
            heartbeat_interval, idle_after, abandon_after, presence_ttl, running_cell_limit
        )
        self._on_segment = on_segment
        self._students: dict[str, StudentState] = {}
        self._runs: dict[str, RunState] = {}
        # Whole windows closed while advancing for a call other than tick(); tick() hands them out.
        self._closed: list[Window] = []
        self._seq = 0
        # Called first by every call that reads or changes a run: a caller holding signals back
        # (the server queues kernel signals) applies them here, in order; it may call signal().
        self.before_call: Callable[[], None] = lambda: None

    @property
    def heartbeat_interval(self) -> float:
        return self.rules.heartbeat_interval

    @property
    def idle_after(self) -> float:
        return self.rules.idle_after

    @property
    def abandon_after(self) -> float:
        return self.rules.abandon_after

    @property
    def presence_ttl(self) -> float:
        return self.rules.presence_ttl

    @property
    def running_cell_limit(self) -> float:
        return self.rules.running_cell_limit

    def __repr__(self) -> str:
        rules = ", ".join(f"{f.name}={getattr(self.rules, f.name)}" for f in fields(Rules))
        return f"EngagementClock(runs={len(self._runs)}, {rules})"

    # ---- calls ---------------------------------------------------------------------------

    def open(self, run_id: str, student: str, now: float) -> None:
        """Start tracking a run; it is live (and counts as just signalled) from ``now``."""
        self.before_call()
        key = parse_run_id(run_id)
        student = require_text(student, "student", 100)
        now = as_time(now)
        existing = self._runs.get(key)
        if existing is not None:
            if existing.student != student:
                raise InvalidInput("student", f"run {key} is already open for another student")
            return
        group = self._students.get(student)
        if group is None:
            group = self._students[student] = StudentState(now=now)
        t = self._advance(group, now)
        self._seq += 1
        run = RunState(
            id=key,
            student=student,
            seq=self._seq,
            last_signal=t,
            last_touch=t,
            last_active=t,
            anchor=t,
            start=t,
            settled=t,
        )
        group.runs[key] = run
        self._runs[key] = run
        self._reconsider(group, run, t)

    def signal(self, run_id: str, now: float, kind: str) -> None:
        """Kernel or browser activity: the student's ``execute_start``, ``comm`` (a widget) or
        ``input``; the kernel's ``execute_end``; or ``kernel_reset`` (the kernel restarted,
        died or was interrupted: no cell of it runs any more)."""
        self.signals(run_id, [(now, kind)])

    def signals(self, run_id: str, signals: list[tuple[float, str]]) -> None:
        """One run's signals ``(now, kind)``, in order: what as many calls of :meth:`signal`
        do, in one (the held kernel signals of a notebook are applied so). When one is refused
        (its kind or time), none is applied: nothing changes."""
        self.before_call()
        run = self._runs.get(run_id) or self._get(run_id)
        checked = checked_signals(signals)
        group, rules, hook = self._students[run.student], self.rules, self._on_segment
        for t, kind in checked:
            # Mostly the active run, signalled before it lapses or its window ends, which
            # leaves it the active run (see runs.go_on) and needs no look at the others.
            if kind != "kernel_reset" and go_on(run, group, t, rules, hook):
                heed(run, t, kind, rules)
            else:
                group, t = self._reach(run, t)
                heed(run, t, kind, rules)
                self._reconsider(group, run, t)

    def presence(
        self,
        run_id: str,
        source: str,
        now: float,
        *,
        visible: bool,
        focused: bool,
        last_input: float | None = None,
    ) -> None:
        """One browser tab (``source``) reports; the report holds for ``presence_ttl`` seconds."""
        run = self._get(run_id)
        source = require_text(source, "source", 200)
        if not isinstance(visible, bool):
            raise InvalidInput("visible", f"must be true or false, got {visible!r}")
        if not isinstance(focused, bool):
            raise InvalidInput("focused", f"must be true or false, got {focused!r}")
        if last_input is not None:
            last_input = as_time(last_input, "last_input")
        group, t = self._reach(run, as_time(now))
        if last_input is not None:
            # A browser clock ahead of ours must not buy idle time in advance.
            run.last_signal = max(run.last_signal, min(last_input, t))
            run.last_touch = max(run.last_touch, min(last_input, t))
        run.tracked = True
        expired = [name for name, rep in run.sources.items() if rep.at + self.presence_ttl <= t]
        for name in expired:
            del run.sources[name]
        run.sources[source] = Report(visible=visible, focused=focused, at=t)
        self._reconsider(group, run, t)

    def leave(self, run_id: str, source: str, now: float) -> None:
        """A tab closed (pagehide): its presence no longer counts."""
        run = self._get(run_id)
        source = require_text(source, "source", 200)
        group, t = self._reach(run, as_time(now))
        run.sources.pop(source, None)
        run.tracked = True
        self._reconsider(group, run, t)

    def tick(self, now: float) -> list[Window]:
        """Advance every run to ``now``; every window closed since the last tick, by end time.

        This includes whole windows that closed while other calls advanced the clock.
        """
        self.before_call()
        now = as_time(now)
        for group in self._students.values():
            t = self._advance(group, now)
            for run in group.runs.values():
                self._settle(run, t, run is group.winner)
        closed, self._closed = self._closed, []
        closed.sort(key=lambda w: (w.end, w.start))
        return closed

    def flush(self, run_id: str, now: float) -> Window | None:
        """Close the run's open window at ``now`` (end, complete); the next one starts there.

        Whole windows that closed on the way are queued for the next :meth:`tick`, so call
        ``tick(now)`` first to receive everything in time order. None when the window holds no
        time (or the run is paused).
        """
        run = self._get(run_id)
        _, t = self._reach(run, as_time(now))
        if run.paused:
            return None
        window = window_of(run, t)
        restart(run, t)
        return window

    def close(self, run_id: str, now: float) -> Window | None:
        """Flush, then forget the run (see :meth:`flush` about windows queued for tick)."""
        window = self.flush(run_id, now)
        run = self._runs.pop(key_of(run_id))
        group = self._students[run.student]
        del group.runs[run.id]
        if not group.runs:
            del self._students[run.student]
        elif group.winner is run:
            self._hand_over(group, self._pick(group, group.now), group.now, call=True)
        return window

    def state(self, run_id: str, now: float) -> Snapshot:
        """The run's state at ``now`` and its open window so far, changing nothing."""
        return self.reading(run_id, now).snapshot

    def reading(self, run_id: str, now: float) -> Reading:
        """What :meth:`state` says, with the windows the clock has closed for the run but not
        yet handed out by :meth:`tick` (those closing by ``now`` included) and when the run
        pauses if nothing is said meanwhile; changing nothing.

        A view of the run's time made of its recorded windows and its open one would leave
        these out, and would dip each time a window closes until the next tick hands it out.
        """
        run = self._get(run_id)
        group = self._students[run.student]
        until = max(as_time(now), group.now)
        closed = [w for w in self._closed if w.run_id == run.id]
        trial = run.copy()
        winning = run is group.winner
        for at, new in self._handovers(group, until):
            if winning or new is run:
                self._settle(trial, at, winning, at_end=new is run, out=closed)
                winning = new is run
                if winning:
                    take_over(trial, at)
        self._settle(trial, until, winning, out=closed)
        if trial.paused:
            return Reading(Snapshot("paused", 0.0, 0.0), tuple(closed), None)
        state = "active" if winning else "inactive"
        # Not the active run: it pauses abandon_after past its last active instant.
        pauses_at = None if winning else trial.last_active + self.abandon_after
        return Reading(Snapshot(state, trial.active, trial.inactive), tuple(closed), pauses_at)

    def settled_windows(self) -> list[tuple[str, float, float, float, float]]:
        """Each run's open window as the last :meth:`tick` left it: ``(run_id, start, end,
        active, inactive)`` with ``end`` the tick's instant, for runs not paused whose window
        holds time. What a checkpoint keeps: a read of the state, no integration, so it costs
        about a microsecond a run (call it right after ``tick``)."""
        self.before_call()
        return [
            (run.id, run.start, run.settled, run.active, run.inactive)
            for run in self._runs.values()
            if not run.paused and (run.active > 0 or run.inactive > 0)
        ]

    def runs(self) -> list[str]:
        return list(self._runs)

    def next_window_end(self) -> float | None:
        """The earliest instant a window of a run not paused closes, as the last call or tick
        left the runs (it may be past: a tick then closes it); None when every run is paused,
        or none is open: then nothing changes until a call. What the server ticks by."""
        self.before_call()
        interval = self.rules.heartbeat_interval
        return min(
            (next_end(run, interval) for run in self._runs.values() if not run.paused),
            default=None,
        )

    # ---- integration ---------------------------------------------------------------------
    #
    # Lazily, so a call costs O(1) in the student's other runs, not O(runs): between calls
    # eligibility (seen and recent, not paused) can only lapse, never begin, and the ranking
    # (last signal, open order) is fixed, so the active run changes only when the current one
    # lapses, and only then do the others need looking at. A run's own time needs nothing but
    # its status (active or not) since it was last settled: non-active time is inactive, so a
    # run is settled (its windows closed, its pause noticed) only when its status changes, when
    # it is called, and on tick.

    def _reach(self, run: RunState, now: float) -> tuple[StudentState, float]:
        """Advance the run's student to ``now`` and settle the run there, before a call."""
        group = self._students[run.student]
        t = self._advance(group, now)
        self._settle(run, t, run is group.winner)
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

    def _get(self, run_id: str) -> RunState:
        # Callers pass the canonical id they were given: only another spelling needs parsing
        # (a UUID parse on every kernel signal is most of the clock's cost per cell).
        self.before_call()  # every call by run id but signal and open comes here first
        run = self._runs.get(run_id) or self._runs.get(key_of(run_id))
        if run is None:
            raise KeyError(f"run {run_id!r} is not open in the engagement clock")
        return run
