"""The clock's due schedule (clock/due.py): a tick settles only the runs due by its instant, and
the clock says exactly what it said when every tick settled every live run.

The reference is that older clock, kept here only: a subclass whose tick settles every run,
whose checkpoint reads every run as that tick left it, and whose next window end walks every
run. Random sessions of several students, each with several runs, at random times (in quarter
seconds, so that float sums are exact whichever way the time is cut: lazily integrated time is
added in fewer, longer pieces), must give the same windows, readings, states and checkpoints.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import timeback_jupyter.clock.integration as integration
from timeback_jupyter.clock import SIGNAL_KINDS, EngagementClock
from timeback_jupyter.clock.runs import as_time, next_end
from timeback_jupyter.model import Window

T0 = 1_790_000_000.0
SMALL = {"heartbeat_interval": 5.0, "idle_after": 12.0, "abandon_after": 30.0,
         "presence_ttl": 7.0, "running_cell_limit": 20.0}  # fmt: skip
# Idle and presence shorter than a window: the active run lapses inside its windows, and a cell's
# end can bring its lapse before the window's end (with idle_after >= heartbeat_interval the
# window always ends first, and a due schedule that missed either would go unseen).
QUICK = {"heartbeat_interval": 10.0, "idle_after": 4.0, "abandon_after": 25.0,
         "presence_ttl": 3.0, "running_cell_limit": 8.0}  # fmt: skip
REAL = {"heartbeat_interval": 15.0, "idle_after": 120.0, "abandon_after": 600.0,
        "presence_ttl": 20.0, "running_cell_limit": 300.0}  # fmt: skip
SLOTS = 6
# Three runs of one student (the one-active rule at work), two of another, one alone (whose
# lapse no other run's due brings forward).
STUDENT_OF = ("s0", "s0", "s0", "s1", "s1", "s2")


class SettleEverything(EngagementClock):
    """The clock before its due schedule: every tick settles every live run."""

    def tick(self, now: float) -> list[Window]:
        self.before_call()
        now = as_time(now)
        for group in self._students.values():
            t = self._advance(group, now)
            for run in group.runs.values():
                self._settle(run, t, run is group.winner)
        closed, self._closed = self._closed, []
        runs, gone = self._runs, self._gone
        closed.sort(key=lambda w: (w.end, w.start, (runs.get(w.run_id) or gone[w.run_id]).seq))
        gone.clear()
        return closed

    def settled_windows(self) -> list[tuple[str, float, float, float, float]]:
        self.before_call()
        return [
            (run.id, run.start, run.settled, run.active, run.inactive)
            for run in self._runs.values()
            if not run.paused and (run.active > 0 or run.inactive > 0)
        ]

    def next_window_end(self) -> float | None:
        self.before_call()
        interval = self.rules.heartbeat_interval
        return min(
            (next_end(run, interval) for run in self._runs.values() if not run.paused),
            default=None,
        )


def run_id(slot: int, incarnation: int) -> str:
    return f"{slot:08x}-0000-4000-8000-{incarnation:012x}"


slots = st.integers(0, SLOTS - 1)
signals = st.tuples(st.just("signal"), slots, st.sampled_from(SIGNAL_KINDS))
reports = st.tuples(
    st.just("presence"),
    slots,
    st.sampled_from(["a", "b"]),
    st.booleans(),
    st.booleans(),
    st.none() | st.sampled_from([-40.0, -3.5, -0.25, 0.0, 2.0]),
)
ticks = st.sampled_from([("tick",), ("checkpoint",)])  # checkpoint: a tick, then settled_windows
# Signals, reports and ticks drawn more often than the rest: what sessions are made of.
operations = st.one_of(
    st.tuples(st.just("open"), slots),
    signals,
    signals,
    st.tuples(st.just("signal"), slots, st.sampled_from(["execute_start", "execute_end"])),
    reports,
    reports,
    st.tuples(st.just("leave"), slots, st.sampled_from(["a", "b"])),
    st.tuples(st.just("flush"), slots),
    st.tuples(st.just("close"), slots),
    ticks,
    ticks,
    ticks,
    ticks,
    st.tuples(st.just("settled_windows")),
    st.tuples(st.just("next_window_end")),
    st.tuples(st.just("reading"), slots),
    st.tuples(st.just("state"), slots),
)


def gaps(knobs: dict[str, float]) -> st.SearchStrategy[float]:
    """Quarter seconds: mostly short, sometimes back in time (clamped by the clock), sometimes
    a window, an idle spell or a pause long."""
    quarter = st.integers(-12, 40).map(lambda q: q / 4)
    long = st.sampled_from(
        [knobs["heartbeat_interval"], knobs["idle_after"], knobs["abandon_after"] + 0.25,
         knobs["running_cell_limit"], 3 * knobs["abandon_after"]]
    )  # fmt: skip
    return st.one_of(quarter, quarter, quarter, long)


def sessions(knobs: dict[str, float]) -> st.SearchStrategy[list[tuple[float, tuple[Any, ...]]]]:
    """Every run opened first, in any order and within a second or so, then anything."""
    first = st.integers(0, 4).map(lambda q: q / 4)
    opening = st.permutations(range(SLOTS)).flatmap(
        lambda order: st.tuples(*[st.tuples(first, st.just(("open", slot))) for slot in order])
    )
    # Long sessions: a schedule that missed a due shows only when a checkpoint or a tick lands
    # between that due and the run's next call, which short scripts rarely hold.
    rest = st.lists(st.tuples(gaps(knobs), operations), min_size=40, max_size=120)
    return st.builds(lambda first, then: [*first, *then], opening, rest)


def play(clock: EngagementClock, script: list[tuple[float, tuple[Any, ...]]]) -> list[Any]:
    """Everything the clock answers over the script, with what it returned at each call."""
    said: list[Any] = []
    incarnation, live = [0] * SLOTS, [False] * SLOTS
    cursor = T0
    for dt, op in script:
        now = max(0.0, cursor + dt)
        cursor = max(cursor, now)
        name, slot = op[0], (op[1] if len(op) > 1 else 0)
        rid = run_id(slot, incarnation[slot])
        if name == "tick":
            said.append(("tick", now, clock.tick(now)))
        elif name == "checkpoint":
            said.append(("checkpoint", now, clock.tick(now), clock.settled_windows()))
        elif name == "settled_windows":
            said.append(("settled", clock.settled_windows()))
        elif name == "next_window_end":
            said.append(("next", clock.next_window_end()))
        elif name == "open":
            clock.open(rid, STUDENT_OF[slot], now)
            live[slot] = True
        elif not live[slot]:
            continue  # test_clock shows calls on runs not open are refused
        elif name == "signal":
            clock.signal(rid, now, op[2])
        elif name == "presence":
            last = None if op[5] is None else max(0.0, now + op[5])
            clock.presence(rid, op[2], now, visible=op[3], focused=op[4], last_input=last)
        elif name == "leave":
            clock.leave(rid, op[2], now)
        else:  # flush, close, reading, state
            said.append((name, now, getattr(clock, name)(rid, now)))
            if name == "close":
                live[slot], incarnation[slot] = False, incarnation[slot] + 1
    said.append(("last tick", clock.tick(cursor), clock.settled_windows()))
    for slot in range(SLOTS):
        if live[slot]:
            said.append(("close", clock.close(run_id(slot, incarnation[slot]), cursor)))
    said.append(("after", clock.tick(cursor), clock.runs(), clock.next_window_end()))
    return said


def compare(script: list[tuple[float, tuple[Any, ...]]], knobs: dict[str, float]) -> None:
    due = play(EngagementClock(**knobs), script)
    every = play(SettleEverything(**knobs), script)
    assert len(due) == len(every)
    for got, want in zip(due, every, strict=True):
        if got[0] == "next":
            # The due schedule also holds pauses and lapses, and may keep an entry that became
            # early: never later than the earliest window end, and None only when that is.
            assert (got[1] is None) == (want[1] is None), (got, want)
            assert got[1] is None or got[1] <= want[1], (got, want)
        else:
            assert got == want


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sessions(SMALL))
def test_small_knobs_the_due_schedule_says_what_settling_everything_says(
    script: list[tuple[float, tuple[Any, ...]]],
) -> None:
    compare(script, SMALL)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sessions(QUICK))
def test_quick_lapses_the_due_schedule_says_what_settling_everything_says(
    script: list[tuple[float, tuple[Any, ...]]],
) -> None:
    compare(script, QUICK)


def test_a_lapse_inside_a_window_is_due_for_the_checkpoint() -> None:
    # Slot 5 (its student's one run) was last signalled when opened: it lapses at 12, inside
    # its window [10, 15); the checkpoint at 13 has it active to 12, inactive since.
    script = [(0.0, ("open", slot)) for slot in range(SLOTS)]
    script += [(10.5, ("tick",)), (2.5, ("checkpoint",))]
    assert play(EngagementClock(**SMALL), script) == play(SettleEverything(**SMALL), script)


@pytest.mark.parametrize("kind", ["execute_end", "kernel_reset"])
def test_a_signal_that_brings_the_lapse_sooner_is_due_for_the_checkpoint(kind: str) -> None:
    # Slot 5 (its student's one run) starts a cell at 3.5: recent to 11.5 (running_cell_limit),
    # so the tick at 4 puts it on the schedule at its window's end, 10. The cell's end at 4.5
    # (the short way: the active run, before its lapse and window end) leaves it recent to 8.5,
    # a kernel reset to 7.5: the checkpoint at 9 has it inactive from then.
    script = [(0.0, ("open", slot)) for slot in range(SLOTS)]
    script += [(3.5, ("signal", 5, "execute_start")), (0.5, ("tick",))]
    script += [(0.5, ("signal", 5, kind)), (4.5, ("checkpoint",))]
    assert play(EngagementClock(**QUICK), script) == play(SettleEverything(**QUICK), script)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sessions(REAL))
def test_real_knobs_the_due_schedule_says_what_settling_everything_says(
    script: list[tuple[float, tuple[Any, ...]]],
) -> None:
    compare(script, REAL)


# ---- what a tick costs -------------------------------------------------------------------


def counting_settles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The id of every run the clock settles (trials on copies included)."""
    settled: list[str] = []
    settle = integration.settle

    def counted(run: Any, *args: Any, **kwargs: Any) -> None:
        settled.append(run.id)
        settle(run, *args, **kwargs)

    monkeypatch.setattr(integration, "settle", counted)
    return settled


def five_hundred_runs(clock: EngagementClock) -> list[str]:
    """500 runs of one student (one server's), opened 0.03 s apart: their window ends spread
    over the interval, as a class's are."""
    ids = [run_id(i, 0) for i in range(500)]
    for i, rid in enumerate(ids):
        clock.open(rid, "s0", T0 + i * 0.03)
    return ids


def test_a_tick_settles_the_one_run_due_not_all_500(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = EngagementClock(**REAL)
    ids = five_hundred_runs(clock)
    clock.tick(T0 + 15.0)  # the first window ends: 0 (at 15.0) and 1 (at 15.03)
    assert clock.next_window_end() == T0 + 15.03
    settled = counting_settles(monkeypatch)
    windows = clock.tick(T0 + 15.03)
    assert [w.run_id for w in windows] == [ids[1]]
    assert len(settled) <= 3, settled  # the run due, and whatever a hand-over touches
    assert clock.next_window_end() == T0 + 15.06  # the next one, read off the schedule's top
    assert len(settled) <= 3


def test_the_active_run_lapsing_hands_over_without_settling_every_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = EngagementClock(**REAL)
    ids = five_hundred_runs(clock)
    clock.signal(ids[7], T0 + 16.0, "comm")  # 7 is the active run until 136
    clock.tick(T0 + 135.99)
    settled = counting_settles(monkeypatch)
    windows = clock.tick(T0 + 136.0)
    # 7 lapses at 136 and no other run is recent then (their last signals are older), so none
    # takes over: 7's time turns inactive. The hand-over looks at every run's eligibility but
    # settles only 7 (and a run whose window happens to close by then).
    assert len(settled) <= 3, settled
    assert clock.state(ids[7], T0 + 140.0).state == "inactive"
    assert all(w.end <= T0 + 136.0 for w in windows)


def test_the_checkpoint_holds_every_run_up_to_the_tick_without_settling_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, every = EngagementClock(**REAL), SettleEverything(**REAL)
    five_hundred_runs(clock)
    five_hundred_runs(every)
    for t in (T0 + 20.0, T0 + 37.25):
        assert clock.tick(t) == every.tick(t)
    settled = counting_settles(monkeypatch)
    windows = clock.settled_windows()
    assert settled == []
    assert len(windows) == 500
    assert {w[2] for w in windows} == {T0 + 37.25}
    assert windows == every.settled_windows()


def test_ending_every_run_ticks_once(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = EngagementClock(**REAL)
    ids = five_hundred_runs(clock)
    clock.tick(T0 + 40.0)
    settled = counting_settles(monkeypatch)
    for rid in ids:
        clock.close(rid, T0 + 41.0)
    # Each close settles its run (and the run taking over from the active one, once).
    assert len(settled) <= 500 + 2
    assert clock.next_window_end() is None and clock.runs() == []
