"""The engagement clock: a student's runs, of which at most one is active at any instant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

from ..model import InvalidInput, Window, parse_run_id, require_text
from .integration import Integration
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
    go_on,
    heed,
    key_of,
    restart,
    take_over,
    window_of,
)


class EngagementClock(Integration):
    """Turns per-run signals into closed :class:`~timeback_jupyter.model.Window` s.

    How time is integrated between calls (lazily, settling on a due schedule) is
    :mod:`.integration`; this is the calls."""

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
        rules = Rules(
            heartbeat_interval, idle_after, abandon_after, presence_ttl, running_cell_limit
        )
        super().__init__(rules, on_segment)
        self._seq = 0
        self._gone: dict[str, RunState] = {}  # runs closed since the last tick
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
        self._schedule(run, group)

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
        # Once for the batch: nothing in it reads the due schedule (hand-overs put the runs
        # they touch back themselves), and an execute_end can bring the run's lapse sooner.
        self._schedule(run, group)

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
        self._schedule(run, group)

    def leave(self, run_id: str, source: str, now: float) -> None:
        """A tab closed (pagehide): its presence no longer counts."""
        run = self._get(run_id)
        source = require_text(source, "source", 200)
        group, t = self._reach(run, as_time(now))
        run.sources.pop(source, None)
        run.tracked = True
        self._reconsider(group, run, t)
        self._schedule(run, group)

    def tick(self, now: float) -> list[Window]:
        """Advance every run to ``now``; every window closed since the last tick, by end time
        (then start, then the order the runs were opened in: not the order they were settled in,
        which depends on when each was last called).

        This includes whole windows that closed while other calls advanced the clock. Only
        the runs due by ``now`` are settled (see :mod:`.integration`): a tick costs what closes,
        not what is open.
        """
        self.before_call()
        self._settle_due(as_time(now))
        closed, self._closed = self._closed, []
        runs, gone = self._runs, self._gone
        closed.sort(key=lambda w: (w.end, w.start, (runs.get(w.run_id) or gone[w.run_id]).seq))
        gone.clear()
        return closed

    def flush(self, run_id: str, now: float) -> Window | None:
        """Close the run's open window at ``now`` (end, complete); the next one starts there.

        Whole windows that closed on the way are queued for the next :meth:`tick`, so call
        ``tick(now)`` first to receive everything in time order. None when the window holds no
        time (or the run is paused).
        """
        run = self._get(run_id)
        group, t = self._reach(run, as_time(now))
        if run.paused:
            return None
        window = window_of(run, t)
        restart(run, t)
        self._schedule(run, group)
        return window

    def close(self, run_id: str, now: float) -> Window | None:
        """Flush, then forget the run (see :meth:`flush` about windows queued for tick)."""
        window = self.flush(run_id, now)
        run = self._runs.pop(key_of(run_id))
        self._gone[run.id] = run  # its windows queued for tick are ordered by its open order
        group = self._students[run.student]
        del group.runs[run.id]
        if not group.runs:
            del self._students[run.student]
        elif group.winner is run:
            self._hand_over(group, self._pick(group, group.now), group.now, call=True)
        self._due.put(run, None)  # last: the hand-over above put it back
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
        active, inactive)`` with ``end`` the tick's instant (later for a run called since),
        for runs not paused whose window holds time. What a checkpoint keeps: a read, changing
        nothing; a run the tick did not settle (not due) has held time of one kind only since
        it was last settled, so its figures are one addition away (call it right after
        ``tick``)."""
        self.before_call()
        return self._windows_at_tick()

    def runs(self) -> list[str]:
        return list(self._runs)

    def next_window_end(self) -> float | None:
        """The earliest instant a tick has work, as the last call or tick left the runs: a
        window of a run not paused closes, a run pauses, or a student's active run lapses (the
        top of the due schedule, :mod:`.due`; it may be past: a tick then settles it, or a
        little early: a tick then finds nothing to close). None when every run is paused, or
        none is open: then nothing changes until a call. What the server ticks by."""
        self.before_call()
        return self._due.top()

    def _get(self, run_id: str) -> RunState:
        # Callers pass the canonical id they were given: only another spelling needs parsing
        # (a UUID parse on every kernel signal is most of the clock's cost per cell).
        self.before_call()  # every call by run id but signal and open comes here first
        run = self._runs.get(run_id) or self._runs.get(key_of(run_id))
        if run is None:
            raise KeyError(f"run {run_id!r} is not open in the engagement clock")
        return run
