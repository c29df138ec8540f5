"""One run as the engagement clock sees it, and how its time is integrated.

Everything here is about a single run (or a student's group of runs as plain data); the rule
that couples a student's runs (at most one active) lives in :mod:`.engagement`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ..model import InvalidInput, Window, parse_run_id, require_number

State = Literal["active", "inactive", "paused"]
SIGNAL_KINDS = ("execute_start", "execute_end", "comm", "input", "kernel_reset")
# What the student does (as opposed to what the kernel does: a cell ending, a kernel reset).
TOUCH_KINDS = ("execute_start", "comm", "input")
# Boundaries are anchor + k*interval on POSIX times near 2e9, where a float step is ~2e-7 s: a
# smaller interval could round to no step at all and the integration would never advance.
MIN_HEARTBEAT = 0.01
# Called once per run for every stretch of time integrated: (run_id, start, end, state).
SegmentHook = Callable[[str, float, float, State], None]


@dataclass(frozen=True, slots=True)
class Rules:
    """The clock's five durations, in seconds, each checked once here."""

    heartbeat_interval: float
    idle_after: float
    abandon_after: float
    presence_ttl: float
    running_cell_limit: float

    def __post_init__(self) -> None:
        for name in (
            "heartbeat_interval",
            "idle_after",
            "abandon_after",
            "presence_ttl",
            "running_cell_limit",
        ):
            object.__setattr__(self, name, positive(getattr(self, name), name))
        if self.heartbeat_interval < MIN_HEARTBEAT:
            raise InvalidInput(
                "heartbeat_interval",
                f"must be at least {MIN_HEARTBEAT} s, got {self.heartbeat_interval!r}",
            )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Where a run stands now, and what its open window holds so far."""

    state: State
    window_active: float
    window_inactive: float


@dataclass(frozen=True, slots=True)
class Reading:
    """A run's :class:`Snapshot` with what else the clock holds of its time: the windows it
    has closed but not yet handed out (by end time), and when the run pauses if nothing is said
    meanwhile (None while it is the active run or already paused)."""

    snapshot: Snapshot
    closed: tuple[Window, ...]
    pauses_at: float | None


@dataclass(frozen=True, slots=True)
class Report:
    visible: bool
    focused: bool
    at: float


@dataclass(slots=True)
class RunState:
    id: str
    student: str
    seq: int  # open order, the one-active rule's tie-break
    last_signal: float  # the latest signal that made the run recent (ranks the student's runs)
    last_touch: float  # the student's latest own doing: open, a cell run, a widget, input
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
    sources: dict[str, Report] = field(default_factory=dict)
    # Its entry in the clock's due schedule (:mod:`.due`): when, and the token that entry holds
    # (an entry whose token is not the run's is stale); None and 0 when it has none.
    due: float | None = None
    token: int = 0

    def copy(self) -> RunState:
        # Reports are immutable, so a shallow copy of the dict is a full copy.
        return dataclasses.replace(self, sources=dict(self.sources))


@dataclass(slots=True)
class StudentState:
    now: float  # the student's active run is known up to here (runs settle lazily)
    runs: dict[str, RunState] = field(default_factory=dict)
    winner: RunState | None = None  # the active run at ``now``
    # Where the last tick left the student: every run not settled that far (not due then)
    # holds, up to here, time of one kind only (see EngagementClock.settled_windows).
    ticked: float = float("-inf")


def settle(
    run: RunState,
    until: float,
    winning: bool,
    rules: Rules,
    *,
    at_end: bool | None = None,
    out: list[Window] | None = None,
    hook: SegmentHook | None = None,
) -> None:
    """Integrate one run up to ``until``, active throughout or not at all (``winning``).

    ``at_end`` is its status at the instant ``until`` itself, where a pause can begin. Closed
    windows go to ``out`` and stretches of time to ``hook`` (neither for a trial on a copy).
    """
    if at_end is None:
        at_end = winning
    t = run.settled
    until = max(until, t)
    interval = rules.heartbeat_interval
    while not run.paused:
        now_winning = at_end if t >= until else winning
        if not now_winning and t >= run.last_active + rules.abandon_after:
            _emit(run, t, out)
            run.paused = True
            run.active = run.inactive = 0.0
            break
        if t >= next_end(run, interval):
            _emit(run, t, out)
            run.closed += 1
            run.start = t
            run.active = run.inactive = 0.0
        if t >= until:
            break
        step_end = min(until, next_end(run, interval))
        if not winning:
            step_end = _earliest_after(step_end, run.last_active + rules.abandon_after, t)
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


def go_on(
    run: RunState, group: StudentState, t: float, rules: Rules, hook: SegmentHook | None
) -> bool:
    """Move the student on to ``t`` when ``run`` is their active run and stays so until then
    with nothing else on the way (no lapse, no window end, no time going back): exactly what
    advancing the student and settling the run would do, in one stretch of active time.
    False, changing nothing, otherwise.

    A signal other than ``kernel_reset`` made then keeps the run active: it is still seen,
    and a touch, or the end of a cell it was recent for, makes it recent past ``t``."""
    if run is not group.winner or not group.now <= t < lapses_at(run, rules):
        return False
    if t >= next_end(run, rules.heartbeat_interval):
        return False
    start = run.settled
    if t > start:
        run.active += t - start
        run.last_active = t
        if hook is not None:
            hook(run.id, start, t, "active")
        run.settled = t
    group.now = t
    return True


def heed(run: RunState, t: float, kind: str, rules: Rules) -> None:
    """What a signal at ``t`` says of the run, its student moved on to ``t`` (go_on or not)."""
    if kind == "kernel_reset":
        # Not the student's doing (or, when it is, the browser reports the click as input).
        run.running = 0
    elif kind == "execute_end":
        # A cell's end is news only while its time still counted: one that outran
        # running_cell_limit leaves the run inactive until the student touches something.
        attended = t < recent_until(run, rules)
        # An end without its start (we attached mid-cell) must not leave a debt.
        run.running = max(0, run.running - 1)
        if attended:
            run.last_signal = max(run.last_signal, t)
    else:  # the student's touch (TOUCH_KINDS)
        if kind == "execute_start":
            run.running += 1
        run.last_signal = max(run.last_signal, t)
        run.last_touch = max(run.last_touch, t)


def checked_signals(signals: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """The signals with each time a float; InvalidInput for the first kind or time refused."""
    checked = signals
    for i, (now, kind) in enumerate(signals):
        if kind not in SIGNAL_KINDS:
            raise InvalidInput("kind", f"{kind!r} is not one of {', '.join(SIGNAL_KINDS)}")
        # a finite time as it comes (a float) is taken as is: as_time's three calls checked
        if not (type(now) is float and 0.0 <= now < math.inf):
            if checked is signals:
                checked = list(signals)
            checked[i] = (as_time(now), kind)
    return checked


def window_of(run: RunState, end: float) -> Window | None:
    """The run's open window closed at ``end``; None when it holds no time."""
    if run.active <= 0 and run.inactive <= 0:
        return None
    return Window(run.id, run.start, end, run.active, run.inactive)


def _emit(run: RunState, end: float, out: list[Window] | None) -> None:
    window = window_of(run, end)
    if window is not None and out is not None:
        out.append(window)


def lapses_at(run: RunState, rules: Rules) -> float:
    """When the active run stops being seen or recent, if nothing is said meanwhile."""
    at = recent_until(run, rules)
    if run.tracked:
        at = min(at, seen_until(run, rules))
    return at


def eligible(run: RunState, t: float, rules: Rules) -> bool:
    """Seen and recent at ``t``: the run may be its student's active run."""
    seen = not run.tracked or t < seen_until(run, rules)
    return seen and t < recent_until(run, rules)


def recent_until(run: RunState, rules: Rules) -> float:
    """Until when the run is recent if nothing is said meanwhile: ``idle_after`` past its last
    signal, or, while a cell runs, ``running_cell_limit`` past the student's last touch (a cell
    left running does not stand in for a student for ever)."""
    until = run.last_signal + rules.idle_after
    if run.running > 0:
        until = max(until, run.last_touch + rules.running_cell_limit)
    return until


def seen_until(run: RunState, rules: Rules) -> float:
    until = float("-inf")
    for rep in run.sources.values():
        if rep.visible and rep.focused:
            until = max(until, rep.at + rules.presence_ttl)
    return until


def rank(run: RunState) -> tuple[float, int]:
    return (run.last_signal, run.seq)


def next_end(run: RunState, interval: float) -> float:
    # From the anchor, not the previous end, so boundaries do not drift with float sums.
    return run.anchor + (run.closed + 1) * interval


def _earliest_after(current: float, candidate: float, t: float) -> float:
    return candidate if t < candidate < current else current


def take_over(run: RunState, t: float) -> None:
    """``run`` becomes the active run at ``t``: after a pause, from a clean slate."""
    if run.paused:
        run.paused = False
        restart(run, t)
        run.settled = run.last_active = t


def restart(run: RunState, t: float) -> None:
    run.anchor = run.start = t
    run.closed = 0
    run.active = run.inactive = 0.0


def positive(value: float, name: str) -> float:
    number = float(require_number(value, name))
    if number <= 0:
        raise InvalidInput(name, f"must be more than 0, got {value!r}")
    return number


def as_time(value: float, name: str = "now") -> float:
    return float(require_number(value, name))


def key_of(run_id: str) -> str:
    """A run id in its canonical spelling (as given when it is not a UUID)."""
    try:
        return parse_run_id(run_id)
    except InvalidInput:
        return run_id
