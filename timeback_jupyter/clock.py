"""The engagement clock: signals in, heartbeat windows out.

Pure and driven by injected time: every call takes ``now`` (POSIX seconds) and nothing here
reads a clock, so the same script always gives the same windows. At each instant a live run is
*active*, *inactive* or *paused*:

- seen: a presence source of the run is visible and focused and reported less than
  ``presence_ttl`` ago; a run that never had a presence report is seen (kernel-only mode:
  without the browser extension, kernel traffic is all we know);
- recent: a signal (open, cell start/end, widget message, input) less than ``idle_after`` ago,
  or a cell still running;
- active: seen and recent, and, of the student's runs that are, the one with the latest signal
  (tie: opened later), so a student's time is never counted twice;
- paused: not active for ``abandon_after``; the run stops heartbeating until it is the one
  active run again (a signal or a foreground presence of its own, or the run that kept it out
  lapsing while it is seen and recent), and the gap is counted nowhere;
- inactive: the rest.

State only changes at calls and at known instants (idle expiry, presence expiry, pause onset,
window boundary), so time between calls is integrated exactly, piece by piece, with no
per-second loop. The one-active rule couples a student's runs, but lazily: a call costs O(1) in
the student's other runs (see the integration section); students are independent. What a call
learns arrives at its ``now``: an input reported late (``last_input`` in the past) makes the run
recent from then on, it does not rewrite time already counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from .model import InvalidInput, Window, parse_run_id, require_number, require_text

State = Literal["active", "inactive", "paused"]
SIGNAL_KINDS = ("execute_start", "execute_end", "comm", "input")
# Boundaries are anchor + k*interval on POSIX times near 2e9, where a float step is ~2e-7 s: a
# smaller interval could round to no step at all and the integration would never advance.
MIN_HEARTBEAT = 0.01
# Called once per run for every stretch of time integrated: (run_id, start, end, state).
SegmentHook = Callable[[str, float, float, State], None]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Where a run stands now, and what its open window holds so far."""

    state: State
    window_active: float
    window_inactive: float


@dataclass(frozen=True, slots=True)
class _Report:
    visible: bool
    focused: bool
    at: float


@dataclass(slots=True)
class _Run:
    id: str
    student: str
    seq: int  # open order, the one-active rule's tie-break
    last_signal: float
    last_active: float
    anchor: float  # where the current series of windows began: boundaries are anchor + k*interval
    start: float  # start of the open window
    settled: float  # the run's windows and time are integrated up to here
    closed: int = 0  # whole windows closed since anchor
    active: float = 0.0
    inactive: float = 0.0
    running: int = 0
    paused: bool = False
    tracked: bool = False  # ever had a presence report or a leave: no longer kernel-only
    sources: dict[str, _Report] = field(default_factory=dict)

    def copy(self) -> _Run:
        # Reports are immutable, so a shallow copy of the dict is a full copy.
        return dataclasses.replace(self, sources=dict(self.sources))


@dataclass(slots=True)
class _Student:
    now: float  # the student's active run is known up to here (runs settle lazily)
    runs: dict[str, _Run] = field(default_factory=dict)
    winner: _Run | None = None  # the active run at ``now``


class EngagementClock:
    """Turns per-run signals into closed :class:`~timeback_jupyter.model.Window` s."""

    def __init__(
        self,
        *,
        heartbeat_interval: float = 15.0,
        idle_after: float = 120.0,
        abandon_after: float = 600.0,
        presence_ttl: float = 20.0,
        on_segment: SegmentHook | None = None,
    ) -> None:
        self.heartbeat_interval = _positive(heartbeat_interval, "heartbeat_interval")
        if self.heartbeat_interval < MIN_HEARTBEAT:
            raise InvalidInput(
                "heartbeat_interval",
                f"must be at least {MIN_HEARTBEAT} s, got {heartbeat_interval!r}",
            )
        self.idle_after = _positive(idle_after, "idle_after")
        self.abandon_after = _positive(abandon_after, "abandon_after")
        self.presence_ttl = _positive(presence_ttl, "presence_ttl")
        self._on_segment = on_segment
        self._students: dict[str, _Student] = {}
        self._runs: dict[str, _Run] = {}
        # Whole windows closed while advancing for a call other than tick(); tick() hands them out.
        self._closed: list[Window] = []
        self._seq = 0

    def __repr__(self) -> str:
        return (
            f"EngagementClock(runs={len(self._runs)}, heartbeat_interval={self.heartbeat_interval}"
            f", idle_after={self.idle_after}, abandon_after={self.abandon_after}"
            f", presence_ttl={self.presence_ttl})"
        )

    # ---- calls ---------------------------------------------------------------------------

    def open(self, run_id: str, student: str, now: float) -> None:
        """Start tracking a run; it is live (and counts as just signalled) from ``now``."""
        key = parse_run_id(run_id)
        student = require_text(student, "student", 100)
        now = _time(now)
        existing = self._runs.get(key)
        if existing is not None:
            if existing.student != student:
                raise InvalidInput("student", f"run {key} is already open for another student")
            return
        group = self._students.get(student)
        if group is None:
            group = self._students[student] = _Student(now=now)
        t = self._advance(group, now)
        self._seq += 1
        run = _Run(
            id=key,
            student=student,
            seq=self._seq,
            last_signal=t,
            last_active=t,
            anchor=t,
            start=t,
            settled=t,
        )
        group.runs[key] = run
        self._runs[key] = run
        self._reconsider(group, run, t)

    def signal(self, run_id: str, now: float, kind: str) -> None:
        """Kernel or browser activity: ``execute_start``, ``execute_end``, ``comm`` or ``input``."""
        run = self._get(run_id)
        if kind not in SIGNAL_KINDS:
            raise InvalidInput("kind", f"{kind!r} is not one of {', '.join(SIGNAL_KINDS)}")
        group, t = self._reach(run, _time(now))
        if kind == "execute_start":
            run.running += 1
        elif kind == "execute_end":
            # An end without its start (we attached mid-cell) must not leave a debt.
            run.running = max(0, run.running - 1)
        run.last_signal = max(run.last_signal, t)
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
            last_input = _time(last_input, "last_input")
        group, t = self._reach(run, _time(now))
        if last_input is not None:
            # A browser clock ahead of ours must not buy idle time in advance.
            run.last_signal = max(run.last_signal, min(last_input, t))
        run.tracked = True
        expired = [name for name, rep in run.sources.items() if rep.at + self.presence_ttl <= t]
        for name in expired:
            del run.sources[name]
        run.sources[source] = _Report(visible=visible, focused=focused, at=t)
        self._reconsider(group, run, t)

    def leave(self, run_id: str, source: str, now: float) -> None:
        """A tab closed (pagehide): its presence no longer counts."""
        run = self._get(run_id)
        source = require_text(source, "source", 200)
        group, t = self._reach(run, _time(now))
        run.sources.pop(source, None)
        run.tracked = True
        self._reconsider(group, run, t)

    def tick(self, now: float) -> list[Window]:
        """Advance every run to ``now``; every window closed since the last tick, by end time.

        This includes whole windows that closed while other calls advanced the clock.
        """
        now = _time(now)
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
        _, t = self._reach(run, _time(now))
        if run.paused:
            return None
        window = self._window(run, t)
        _restart(run, t)
        return window

    def close(self, run_id: str, now: float) -> Window | None:
        """Flush, then forget the run (see :meth:`flush` about windows queued for tick)."""
        window = self.flush(run_id, now)
        run = self._runs.pop(self._key(run_id))
        group = self._students[run.student]
        del group.runs[run.id]
        if not group.runs:
            del self._students[run.student]
        elif group.winner is run:
            self._hand_over(group, self._pick(group, group.now), group.now, call=True)
        return window

    def state(self, run_id: str, now: float) -> Snapshot:
        """The run's state at ``now`` and its open window so far, changing nothing."""
        run = self._get(run_id)
        group = self._students[run.student]
        until = max(_time(now), group.now)
        trial = run.copy()
        winning = run is group.winner
        for at, new in self._handovers(group, until):
            if winning or new is run:
                self._settle(trial, at, winning, at_end=new is run, trial=True)
                winning = new is run
                if winning:
                    _take_over(trial, at)
        self._settle(trial, until, winning, trial=True)
        if trial.paused:
            return Snapshot("paused", 0.0, 0.0)
        return Snapshot("active" if winning else "inactive", trial.active, trial.inactive)

    def runs(self) -> list[str]:
        return list(self._runs)

    # ---- integration ---------------------------------------------------------------------
    #
    # Lazily, so a call costs O(1) in the student's other runs, not O(runs): between calls
    # eligibility (seen and recent, not paused) can only lapse, never begin, and the ranking
    # (last signal, open order) is fixed, so the active run changes only when the current one
    # lapses, and only then do the others need looking at. A run's own time needs nothing but
    # its status (active or not) since it was last settled: non-active time is inactive, so a
    # run is settled (its windows closed, its pause noticed) only when its status changes, when
    # it is called, and on tick.

    def _reach(self, run: _Run, now: float) -> tuple[_Student, float]:
        """Advance the run's student to ``now`` and settle the run there, before a call."""
        group = self._students[run.student]
        t = self._advance(group, now)
        self._settle(run, t, run is group.winner)
        return group, t

    def _advance(self, group: _Student, until: float) -> float:
        """Move the student's active run along to ``until`` (clamped: time never runs backwards)."""
        until = max(until, group.now)
        for at, new in self._handovers(group, until):
            self._hand_over(group, new, at, call=False)
        group.now = until
        return until

    def _handovers(self, group: _Student, until: float) -> Iterator[tuple[float, _Run | None]]:
        """Each instant in (now, until] where the active run lapses, and who takes over."""
        current = group.winner
        while current is not None:
            at = self._lapses_at(current)
            if at > until:
                return
            current = self._pick(group, at)
            yield at, current

    def _hand_over(self, group: _Student, new: _Run | None, at: float, *, call: bool) -> None:
        """``new`` is the active run from ``at``. A pause due at that very instant comes first
        after a ``call`` (the call found the run paused, so it restarts), but not when the
        active run lapses then (taking over comes first: the run goes on)."""
        old = group.winner
        if old is not None and old is not new:
            self._settle(old, at, True, at_end=False)
        if new is not None and new is not old:
            self._settle(new, at, False, at_end=not call)
            _take_over(new, at)
        group.winner = new

    def _reconsider(self, group: _Student, run: _Run, t: float) -> None:
        """After a call changed ``run`` at ``t``: is the student's active run still the same?"""
        current = group.winner
        if run is current:
            if not self._eligible(run, t):
                self._hand_over(group, self._pick(group, t), t, call=True)
        elif self._eligible(run, t) and (current is None or _rank(run) > _rank(current)):
            self._hand_over(group, run, t, call=True)

    def _pick(self, group: _Student, t: float) -> _Run | None:
        """The student's active run at ``t``, when the current one lapses or leaves.

        Paused runs are candidates too: one that is seen and recent (its tab in front, its
        student typing) but was kept out by a fresher run takes over the moment that run
        lapses, rather than at its own next report (see :func:`_take_over`).
        """
        best: _Run | None = None
        for run in group.runs.values():
            if run is group.winner:
                continue
            if not self._eligible(run, t):
                continue
            if best is None or _rank(run) > _rank(best):
                best = run
        return best

    def _settle(
        self,
        run: _Run,
        until: float,
        winning: bool,
        *,
        at_end: bool | None = None,
        trial: bool = False,
    ) -> None:
        """Integrate one run up to ``until``, active throughout or not at all (``winning``).

        ``at_end`` is its status at the instant ``until`` itself, where a pause can begin. A
        ``trial`` (on a copy, for :meth:`state`) hands out no window and reports no segment.
        """
        out = None if trial else self._closed
        hook = None if trial else self._on_segment
        if at_end is None:
            at_end = winning
        t = run.settled
        until = max(until, t)
        interval = self.heartbeat_interval
        while not run.paused:
            now_winning = at_end if t >= until else winning
            if not now_winning and t >= run.last_active + self.abandon_after:
                self._emit(run, t, out)
                run.paused = True
                run.active = run.inactive = 0.0
                break
            if t >= _next_end(run, interval):
                self._emit(run, t, out)
                run.closed += 1
                run.start = t
                run.active = run.inactive = 0.0
            if t >= until:
                break
            step_end = min(until, _next_end(run, interval))
            if not winning:
                step_end = _earliest_after(step_end, run.last_active + self.abandon_after, t)
            span = step_end - t
            if winning:
                run.active += span
                run.last_active = step_end
            else:
                run.inactive += span
            if hook is not None:
                hook(run.id, t, step_end, "active" if winning else "inactive")
            t = step_end
        run.settled = until

    def _emit(self, run: _Run, end: float, out: list[Window] | None) -> None:
        window = self._window(run, end)
        if window is not None and out is not None:
            out.append(window)

    def _lapses_at(self, run: _Run) -> float:
        """When the active run stops being seen or recent, if nothing is said meanwhile."""
        at = float("inf")
        if run.running == 0:
            at = run.last_signal + self.idle_after
        if run.tracked:
            at = min(at, self._seen_until(run))
        return at

    def _eligible(self, run: _Run, t: float) -> bool:
        return self._seen(run, t) and self._recent(run, t)

    def _seen(self, run: _Run, t: float) -> bool:
        return not run.tracked or t < self._seen_until(run)

    def _seen_until(self, run: _Run) -> float:
        until = float("-inf")
        for rep in run.sources.values():
            if rep.visible and rep.focused:
                until = max(until, rep.at + self.presence_ttl)
        return until

    def _recent(self, run: _Run, t: float) -> bool:
        return run.running > 0 or t < run.last_signal + self.idle_after

    def _window(self, run: _Run, end: float) -> Window | None:
        if run.active <= 0 and run.inactive <= 0:
            return None
        return Window(run.id, run.start, end, run.active, run.inactive)

    def _get(self, run_id: str) -> _Run:
        run = self._runs.get(self._key(run_id))
        if run is None:
            raise KeyError(f"run {run_id!r} is not open in the engagement clock")
        return run

    @staticmethod
    def _key(run_id: str) -> str:
        try:
            return parse_run_id(run_id)
        except InvalidInput:
            return run_id


def _rank(run: _Run) -> tuple[float, int]:
    return (run.last_signal, run.seq)


def _next_end(run: _Run, interval: float) -> float:
    # From the anchor, not the previous end, so boundaries do not drift with float sums.
    return run.anchor + (run.closed + 1) * interval


def _earliest_after(current: float, candidate: float, t: float) -> float:
    return candidate if t < candidate < current else current


def _take_over(run: _Run, t: float) -> None:
    """``run`` becomes the active run at ``t``: after a pause, from a clean slate."""
    if run.paused:
        run.paused = False
        _restart(run, t)
        run.settled = run.last_active = t


def _restart(run: _Run, t: float) -> None:
    run.anchor = run.start = t
    run.closed = 0
    run.active = run.inactive = 0.0


def _positive(value: float, name: str) -> float:
    number = float(require_number(value, name))
    if number <= 0:
        raise InvalidInput(name, f"must be more than 0, got {value!r}")
    return number


def _time(value: float, name: str = "now") -> float:
    return float(require_number(value, name))
