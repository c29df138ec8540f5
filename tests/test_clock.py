"""The engagement clock, on scripted sessions whose windows are worked out by hand.

Times are offsets in seconds from T0 (a realistic POSIX time); every expected window is
stated as (start, end, active, inactive) with the reasoning beside it. Defaults: windows of
15 s, idle after 120 s, paused after 600 s without being active, presence valid for 20 s.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timeback_jupyter.clock import SIGNAL_KINDS, EngagementClock, Snapshot
from timeback_jupyter.model import InvalidInput, Window

T0 = 1_700_000_000.0
X = "11111111-1111-4111-8111-111111111111"
Y = "22222222-2222-4222-8222-222222222222"
Z = "33333333-3333-4333-8333-333333333333"
W = "44444444-4444-4444-8444-444444444444"
STUDENT = "student-a1b2"


def win(run: str, start: float, end: float, active: float, inactive: float = 0.0) -> Window:
    return Window(run, T0 + start, T0 + end, float(active), float(inactive))


def of(run: str, windows: list[Window]) -> list[Window]:
    return [w for w in windows if w.run_id == run]


class Script:
    """Clock calls at offsets from T0, played in time order (calls at one time keep their order)."""

    def __init__(self, clock: EngagementClock | None = None) -> None:
        self.clock = clock or EngagementClock()
        self.calls: list[tuple[float, Callable[[float], Any]]] = []
        self.windows: list[Window] = []

    def at(self, t: float, call: Callable[[float], Any]) -> Script:
        self.calls.append((t, call))
        return self

    def open(self, t: float, run: str, student: str = STUDENT) -> Script:
        return self.at(t, lambda now: self.clock.open(run, student, now))

    def signal(self, t: float, run: str, kind: str) -> Script:
        return self.at(t, lambda now: self.clock.signal(run, now, kind))

    def pings(
        self,
        run: str,
        source: str,
        times: range | list[int],
        *,
        visible: bool = True,
        focused: bool = True,
        last_input: float | None = None,
    ) -> Script:
        """The browser extension's periodic reports from one tab."""
        li = None if last_input is None else T0 + last_input
        for t in times:
            self.at(
                t,
                lambda now: self.clock.presence(
                    run, source, now, visible=visible, focused=focused, last_input=li
                ),
            )
        return self

    def leave(self, t: float, run: str, source: str) -> Script:
        return self.at(t, lambda now: self.clock.leave(run, source, now))

    def tick(self, t: float) -> Script:
        return self.at(t, lambda now: self.windows.extend(self.clock.tick(now)))

    def play(self, until: float) -> list[Window]:
        self.tick(until)
        calls, self.calls = sorted(self.calls, key=lambda c: c[0]), []
        for t, call in calls:
            call(T0 + t)
        return self.windows


# ---- scripted sessions ------------------------------------------------------------------


def test_cell_every_30s_with_the_tab_in_front_is_all_active() -> None:
    s = Script().open(0, X).pings(X, "tab", range(0, 121, 10))
    for t in (0, 30, 60, 90):
        s.signal(t, X, "execute_start").signal(t + 2, X, "execute_end")
    windows = s.play(120)
    # Seen throughout (a report every 10 s, each valid 20 s) and recent throughout (a signal at
    # most 28 s old): eight whole windows, all active.
    assert windows == [win(X, k * 15, k * 15 + 15, 15) for k in range(8)]


def test_idle_in_front_turns_inactive_120s_after_the_last_input() -> None:
    s = Script().open(0, X).pings(X, "tab", range(0, 181, 10), last_input=5)
    windows = s.play(180)
    # Last input at 5, so recent until 125: [120,135] holds 5 s active then 10 s inactive.
    assert windows == [
        *[win(X, k * 15, k * 15 + 15, 15) for k in range(8)],
        win(X, 120, 135, 5, 10),
        win(X, 135, 150, 0, 15),
        win(X, 150, 165, 0, 15),
        win(X, 165, 180, 0, 15),
    ]


def test_a_hidden_minute_is_inactive() -> None:
    s = Script().open(0, X)
    s.pings(X, "tab", [0, 10, 20, 30])
    s.pings(X, "tab", range(37, 90, 10), visible=False)
    s.pings(X, "tab", [97, 107, 117])
    windows = s.play(120)
    # Recent all along (opened at 0, idle only at 120); hidden from 37 to 97: 60 s inactive,
    # 7 s of [30,45] before it and 8 s of [90,105] after it active.
    assert windows == [
        win(X, 0, 15, 15),
        win(X, 15, 30, 15),
        win(X, 30, 45, 7, 8),
        win(X, 45, 60, 0, 15),
        win(X, 60, 75, 0, 15),
        win(X, 75, 90, 0, 15),
        win(X, 90, 105, 8, 7),
        win(X, 105, 120, 15),
    ]
    assert sum(w.inactive for w in windows) == 60


def test_two_tabs_of_one_notebook_count_once_and_a_hidden_one_does_not_hide_the_other() -> None:
    s = Script().open(0, X)
    # Both tabs report at the same instants; the hidden tab reports last each time, so a clock
    # keeping only the latest report (not one per tab) would call the notebook hidden.
    s.pings(X, "front", [0, 10, 20, 30])
    s.pings(X, "back", range(0, 61, 10), visible=False, focused=False)
    s.leave(40, X, "front")
    windows = s.play(60)
    # Active (once: 15 s per 15 s window) while "front" is there; it closes at 40, leaving only
    # the hidden tab: 10 s active and 5 s inactive in [30,45], then inactive.
    assert windows == [
        win(X, 0, 15, 15),
        win(X, 15, 30, 15),
        win(X, 30, 45, 10, 5),
        win(X, 45, 60, 0, 15),
    ]


def test_two_notebooks_side_by_side_only_the_focused_one_is_active() -> None:
    s = Script().open(0, X).open(0, Y)
    s.pings(X, "lab", [0, 10, 20, 30]).pings(Y, "lab", [0, 10, 20, 30], focused=False)
    s.pings(X, "lab", range(40, 81, 10), focused=False).pings(Y, "lab", range(40, 81, 10))
    windows = s.play(80)
    # Focus moves from X to Y at 40. Both are recent (opened at 0) and both visible.
    assert of(X, windows) == [
        win(X, 0, 15, 15),
        win(X, 15, 30, 15),
        win(X, 30, 45, 10, 5),
        win(X, 45, 60, 0, 15),
        win(X, 60, 75, 0, 15),
    ]
    assert of(Y, windows) == [
        win(Y, 0, 15, 0, 15),
        win(Y, 15, 30, 0, 15),
        win(Y, 30, 45, 5, 10),
        win(Y, 45, 60, 15),
        win(Y, 60, 75, 15),
    ]
    # Over [0,75] both are fully accounted for, and active time adds up to the wall time once.
    assert sum(w.active for w in windows) == 75


def test_two_kernel_only_notebooks_executing_the_most_recent_one_is_active() -> None:
    # Cells that outlast the default running_cell_limit: this is about the one-active rule.
    s = Script(EngagementClock(running_cell_limit=3600)).open(0, X).open(5, Y)
    s.signal(10, X, "execute_start").signal(20, Y, "execute_start")  # both cells never end
    windows = s.play(50)
    # No presence ever: both are seen. Active: X on [0,5) alone, Y on [5,10) (opened later, a
    # fresher signal), X on [10,20) (its cell started), Y from 20 (its cell started).
    assert of(X, windows) == [
        win(X, 0, 15, 10, 5),
        win(X, 15, 30, 5, 10),
        win(X, 30, 45, 0, 15),
    ]
    assert of(Y, windows) == [win(Y, 5, 20, 5, 10), win(Y, 20, 35, 15), win(Y, 35, 50, 15)]

    # X, still running but never active since 20, is paused at 20 + 600 = 620: its window
    # [615,630] stops at 620 with 5 s inactive.
    clock = s.clock
    later = clock.tick(T0 + 630)
    assert of(X, later)[-2:] == [win(X, 600, 615, 0, 15), win(X, 615, 620, 0, 5)]
    assert clock.state(X, T0 + 630) == Snapshot("paused", 0.0, 0.0)
    # Its cell ends at 640: a signal that makes it the freshest, so it comes back from a clean
    # slate and Y, still running, turns inactive.
    clock.signal(X, T0 + 640, "execute_end")
    assert of(X, clock.tick(T0 + 655)) == [win(X, 640, 655, 15)]
    assert clock.state(Y, T0 + 655) == Snapshot("inactive", 0.0, 5.0)  # Y's window began at 650


def test_runs_opened_at_the_same_instant_the_later_one_wins() -> None:
    clock = EngagementClock()
    clock.open(X, STUDENT, T0)
    clock.open(Y, STUDENT, T0)
    assert clock.state(Y, T0 + 10) == Snapshot("active", 10.0, 0.0)
    assert clock.state(X, T0 + 10) == Snapshot("inactive", 0.0, 10.0)


def test_different_students_are_counted_independently() -> None:
    clock = EngagementClock()
    clock.open(X, "student-1", T0)
    clock.open(Y, "student-2", T0)
    assert clock.tick(T0 + 15) == [win(X, 0, 15, 15), win(Y, 0, 15, 15)]


def test_eleven_minutes_away_is_ten_inactive_then_a_paused_gap_counted_nowhere() -> None:
    s = Script().open(0, X)
    for t in (0, 10, 20, 30):
        s.pings(X, "tab", [t], last_input=t)  # typing
    s.pings(X, "tab", range(37, 690, 10), visible=False, last_input=37)  # away at 37
    states: list[Snapshot] = []
    for t in (636, 640, 690):
        s.at(t, lambda now: states.append(s.clock.state(X, now)))
    s.pings(X, "tab", [697], last_input=697)  # back 11 minutes later, clicking
    s.pings(X, "tab", [707, 717], last_input=697)
    windows = s.play(727)
    # Active to 37; inactive from 37 (hidden) until the pause at 37 + 600 = 637, which cuts
    # [630,645] at 637; nothing from 637 to 697; a fresh window series from 697.
    assert windows == [
        win(X, 0, 15, 15),
        win(X, 15, 30, 15),
        win(X, 30, 45, 7, 8),
        *[win(X, 45 + 15 * k, 60 + 15 * k, 0, 15) for k in range(39)],  # [45,60] .. [615,630]
        win(X, 630, 637, 0, 7),
        win(X, 697, 712, 15),
        win(X, 712, 727, 15),
    ]
    assert states == [
        Snapshot("inactive", 0.0, 6.0),  # at 636: [630,636] so far
        Snapshot("paused", 0.0, 0.0),
        Snapshot("paused", 0.0, 0.0),
    ]
    assert sum(w.inactive for w in windows) == 600


def test_a_tab_that_stops_reporting_counts_until_its_report_expires() -> None:
    windows = Script().open(0, X).pings(X, "tab", [0, 10, 20]).play(60)
    # The tab was killed after its report at 20 (no leave): seen until 20 + 20 = 40.
    assert windows == [
        win(X, 0, 15, 15),
        win(X, 15, 30, 15),
        win(X, 30, 45, 10, 5),
        win(X, 45, 60, 0, 15),
    ]


def test_a_late_tick_closes_every_whole_window_at_its_own_boundary() -> None:
    clock = EngagementClock()
    clock.open(X, STUDENT, T0)  # kernel-only: seen; recent until 120
    assert clock.tick(T0 + 100) == [win(X, 15 * k, 15 * k + 15, 15) for k in range(6)]
    assert clock.state(X, T0 + 100) == Snapshot("active", 10.0, 0.0)
    assert clock.tick(T0 + 200) == [
        win(X, 90, 105, 15),
        win(X, 105, 120, 15),
        *[win(X, 120 + 15 * k, 135 + 15 * k, 0, 15) for k in range(5)],  # .. [180,195]
    ]


def test_a_running_cell_is_recent_up_to_its_limit_and_a_stray_end_is_harmless() -> None:
    clock = EngagementClock()
    clock.open(X, STUDENT, T0)
    clock.signal(X, T0 + 5, "execute_end")  # attached mid-cell: an end without its start
    clock.signal(X, T0 + 10, "execute_start")
    clock.signal(X, T0 + 300, "execute_end")
    # Running from 10 to 300 (within 10 + running_cell_limit: its end is a signal), then idle
    # at 300 + 120 = 420. Had the stray end been counted,
    # the start would have cancelled it and the run would have gone idle at 130.
    assert clock.tick(T0 + 450) == [
        *[win(X, 15 * k, 15 * k + 15, 15) for k in range(28)],  # [0,15] .. [405,420]
        win(X, 420, 435, 0, 15),
        win(X, 435, 450, 0, 15),
    ]


def test_an_endless_cell_in_front_counts_300s_past_the_last_input_then_waits_for_a_touch() -> None:
    s = Script().open(0, X).signal(5, X, "execute_start")  # `while True: sleep(1)`, never ends
    s.pings(X, "tab", range(0, 391, 10), last_input=5)  # in front, hands off
    s.pings(X, "tab", range(400, 421, 10), last_input=400)  # back: a click
    windows = s.play(420)
    # Last touch at 5 (the cell's start): a running cell keeps the run recent until
    # 5 + running_cell_limit (300) = 305, in front or not; then inactive although the cell
    # still runs and the tab is in front; active again from the click at 400.
    assert windows == [
        *[win(X, 15 * k, 15 * k + 15, 15) for k in range(20)],  # .. [285,300]
        win(X, 300, 315, 5, 10),
        *[win(X, 315 + 15 * k, 330 + 15 * k, 0, 15) for k in range(5)],  # .. [375,390]
        win(X, 390, 405, 5, 10),
        win(X, 405, 420, 15),
    ]


def test_input_while_a_long_cell_runs_keeps_it_counting() -> None:
    s = Script().open(0, X).signal(0, X, "execute_start").signal(900, X, "execute_end")
    for t in range(0, 900, 10):
        s.pings(X, "tab", [t], last_input=(t // 250) * 250)  # scrolls the output every 250 s
    windows = s.play(900)
    assert sum(w.active for w in windows) == 900


def test_a_kernel_only_endless_cell_counts_until_the_limit_and_its_late_end_is_no_touch() -> None:
    clock = EngagementClock(running_cell_limit=200)
    clock.open(X, STUDENT, T0)
    clock.signal(X, T0 + 10, "execute_start")
    # No browser: seen throughout, and the student's touches are cell runs and widgets. The
    # cell counts until 10 + 200 = 210; its end at 400 is the kernel's doing, not the
    # student's, and comes after the run stopped counting: still inactive.
    clock.signal(X, T0 + 400, "execute_end")
    assert clock.tick(T0 + 450) == [
        *[win(X, 15 * k, 15 * k + 15, 15) for k in range(14)],  # .. [195,210]
        *[win(X, 210 + 15 * k, 225 + 15 * k, 0, 15) for k in range(16)],  # .. [435,450]
    ]
    clock.signal(X, T0 + 455, "comm")  # a widget touched
    assert clock.state(X, T0 + 464) == Snapshot("active", 9.0, 5.0)


def test_a_cell_that_ends_within_the_limit_is_a_signal_as_before() -> None:
    clock = EngagementClock(running_cell_limit=200)
    clock.open(X, STUDENT, T0)
    clock.signal(X, T0, "execute_start")
    clock.signal(X, T0 + 150, "execute_end")  # within 200 of its start: the output is read
    # Recent until 150 + idle_after (120) = 270, past the cell's own limit (200).
    assert clock.state(X, T0 + 269) == Snapshot("active", 14.0, 0.0)  # window [255,270]
    assert clock.state(X, T0 + 284) == Snapshot("inactive", 0.0, 14.0)  # window [270,285]


def test_a_kernel_reset_ends_a_running_cell_at_once() -> None:
    clock = EngagementClock()
    clock.open(X, STUDENT, T0)
    clock.open(Y, "student-2", T0)
    for run in (X, Y):
        clock.signal(run, T0, "execute_start")
    # X's kernel dies at 200: its last signal (0) is past idle_after (120), so the run is
    # inactive from that instant. Y's is interrupted at 60: recent until 0 + 120 as if its
    # cell had ended then, but not a signal itself.
    clock.signal(X, T0 + 200, "kernel_reset")
    clock.signal(Y, T0 + 60, "kernel_reset")
    windows = clock.tick(T0 + 225)
    assert of(X, windows)[-3:] == [win(X, 180, 195, 15), win(X, 195, 210, 5, 10),
                                   win(X, 210, 225, 0, 15)]  # fmt: skip
    assert of(Y, windows)[7:] == [win(Y, 105, 120, 15), *[win(Y, 120 + 15 * k, 135 + 15 * k,
                                  0, 15) for k in range(7)]]  # fmt: skip
    # The interrupted cell's own idle, arriving late, is a stray end: harmless.
    clock.signal(X, T0 + 230, "execute_end")
    assert clock.state(X, T0 + 239) == Snapshot("inactive", 0.0, 14.0)


def test_a_kernel_only_run_pauses_600s_after_it_was_last_active_and_a_signal_resumes_it() -> None:
    clock = EngagementClock()
    clock.open(X, STUDENT, T0)
    # Active to 120 (idle), inactive to 120 + 600 = 720, where the pause falls on a boundary.
    assert clock.tick(T0 + 800) == [
        *[win(X, 15 * k, 15 * k + 15, 15) for k in range(8)],
        *[win(X, 120 + 15 * k, 135 + 15 * k, 0, 15) for k in range(40)],  # .. [705,720]
    ]
    assert clock.state(X, T0 + 800) == Snapshot("paused", 0.0, 0.0)
    clock.signal(X, T0 + 810, "comm")  # a widget touched
    assert clock.tick(T0 + 830) == [win(X, 810, 825, 15)]


def test_a_paused_run_kept_out_by_a_fresher_one_takes_over_the_moment_that_one_lapses() -> None:
    s = Script().open(0, Z).open(0, X)
    s.pings(X, "tab", [0], visible=False, focused=False)
    s.signal(0, X, "execute_start").signal(0, Z, "execute_start")  # both cells never end
    s.open(650, W).signal(695, W, "input")
    s.pings(X, "tab", range(700, 831, 10), last_input=690)
    windows = s.play(830)
    # X is hidden from the start: never active, so paused at 0 + 600 = 600. Z (kernel-only,
    # running) is active until W opens at 650. At 700 X is in front and running, but W's
    # signal (695) is fresher than X's input (690): X stays paused. W goes idle at
    # 695 + 120 = 815: X, in front, running and fresher than Z, is active from that instant
    # (a clean slate), not from its next report at 820. Z never is again.
    assert of(X, windows)[-2:] == [win(X, 585, 600, 0, 15), win(X, 815, 830, 15)]
    assert of(Z, windows)[-1] == win(Z, 810, 825, 0, 15)
    assert of(W, windows)[-2:] == [win(W, 800, 815, 15), win(W, 815, 830, 0, 15)]
    assert s.clock.state(X, T0 + 830) == Snapshot("active", 0.0, 0.0)


def test_a_paused_run_is_active_again_as_soon_as_the_notebook_in_front_leaves() -> None:
    """A focus switch whose reports arrive in the wrong order: the new notebook's first, while
    the old one still counts and is fresher, then the old one's. Nothing is lost between."""
    # Y's long cell outlasts the default running_cell_limit: this is about the hand-over.
    s = Script(EngagementClock(running_cell_limit=3600)).open(0, X).open(0, Y)
    s.pings(X, "tab-x", [0], visible=True, focused=False)  # beside Y: never active, paused at 600
    s.pings(Y, "tab-y", range(0, 991, 10))
    s.signal(0, Y, "execute_start").signal(995, Y, "execute_end")  # Y's long cell ends at 995
    s.pings(Y, "tab-y", [997], visible=True, focused=False)  # Y's report that it left the front
    # X in front from 996 (reporting every 10 s), but Y (995) is fresher than X (994) at first
    s.pings(X, "tab-x", [996, 1006, 1016], last_input=994)
    windows = s.play(1020)
    assert [w for w in of(X, windows) if w.active] == [win(X, 997, 1012, 15)]
    assert s.clock.state(X, T0 + 1020) == Snapshot("active", 8.0, 0.0)


def test_presence_in_front_without_recent_input_does_not_resume_a_paused_run() -> None:
    clock = EngagementClock()
    clock.open(X, STUDENT, T0)
    clock.presence(X, "tab", T0, visible=False, focused=False)
    clock.tick(T0 + 700)  # hidden from the start: paused at 600
    clock.presence(X, "tab", T0 + 700, visible=True, focused=True, last_input=T0 + 10)
    assert clock.state(X, T0 + 700) == Snapshot("paused", 0.0, 0.0)
    clock.presence(X, "tab", T0 + 710, visible=True, focused=True, last_input=T0 + 709)
    assert clock.state(X, T0 + 715) == Snapshot("active", 5.0, 0.0)  # a window from 710


def test_a_future_last_input_is_clamped_to_the_report_time() -> None:
    s = Script().open(0, X)
    s.pings(X, "tab", [0], last_input=1000)  # a browser clock far ahead
    windows = s.pings(X, "tab", range(10, 151, 10)).play(150)
    # Taken as input at 0, so idle at 120, not at 1120.
    assert windows[-3:] == [win(X, 105, 120, 15), win(X, 120, 135, 0, 15), win(X, 135, 150, 0, 15)]


def test_flush_and_close_mid_window() -> None:
    clock = EngagementClock()
    clock.open(X, STUDENT, T0)
    # flush at 20 closes [15,20]; [0,15], closed on the way, waits for the next tick.
    assert clock.flush(X, T0 + 20) == win(X, 15, 20, 5)
    assert clock.tick(T0 + 20) == [win(X, 0, 15, 15)]
    assert clock.flush(X, T0 + 20) is None  # nothing held since
    # The next series of windows is anchored at the flush: [20,35], not [15,30] or [30,45].
    assert clock.tick(T0 + 35) == [win(X, 20, 35, 15)]
    assert clock.close(X, T0 + 40) == win(X, 35, 40, 5)
    assert clock.runs() == []
    assert clock.tick(T0 + 100) == []
    with pytest.raises(KeyError, match="not open"):
        clock.signal(X, T0 + 100, "input")


def test_ticking_before_a_flush_gives_every_window_in_order() -> None:
    clock = EngagementClock()
    clock.open(X, STUDENT, T0)
    clock.signal(X, T0 + 17, "input")  # crosses the boundary at 15 outside a tick
    now = T0 + 22
    assert [*clock.tick(now), clock.flush(X, now)] == [win(X, 0, 15, 15), win(X, 15, 22, 7)]


def test_out_of_order_times_are_clamped_never_counted_backwards() -> None:
    clock = EngagementClock()
    clock.open(X, STUDENT, T0 + 100)
    clock.signal(X, T0 + 90, "input")  # taken as at 100
    assert clock.tick(T0 + 95) == []
    clock.presence(X, "tab", T0 + 50, visible=True, focused=True)  # taken as at 100
    assert clock.tick(T0 + 115) == [win(X, 100, 115, 15)]
    assert clock.flush(X, T0 + 50) is None  # at 115: the window just began
    assert clock.state(X, T0 + 10) == Snapshot("active", 0.0, 0.0)
    # A run opened "before" its student's clock starts at the student's time.
    clock.open(Y, STUDENT, T0 + 60)
    clock.flush(Y, T0 + 115)
    assert clock.close(Y, T0 + 120) == win(Y, 115, 120, 5)


def test_open_twice_is_a_no_op_and_state_changes_nothing() -> None:
    def session(with_state: bool) -> list[Window]:
        clock = EngagementClock()
        clock.open(X, STUDENT, T0)
        clock.presence(X, "tab", T0 + 3, visible=True, focused=True)
        if with_state:
            assert clock.state(X, T0 + 20) == Snapshot("active", 5.0, 0.0)
            # Seen until 3 + 20 = 23: at 40 the window [30,45] holds 10 s inactive.
            assert clock.state(X, T0 + 40) == Snapshot("inactive", 0.0, 10.0)
        clock.open(X, STUDENT, T0 + 10)  # does not restart the window
        return clock.tick(T0 + 45)

    expected = [win(X, 0, 15, 15), win(X, 15, 30, 8, 7), win(X, 30, 45, 0, 15)]
    assert session(False) == expected
    assert session(True) == expected


def test_unknown_runs_raise_key_error() -> None:
    clock = EngagementClock()
    calls: list[Callable[[], object]] = [
        lambda: clock.signal(X, T0, "input"),
        lambda: clock.presence(X, "tab", T0, visible=True, focused=True),
        lambda: clock.leave(X, "tab", T0),
        lambda: clock.flush(X, T0),
        lambda: clock.close(X, T0),
        lambda: clock.state(X, T0),
        lambda: clock.signal("not-a-uuid", T0, "input"),
    ]
    for call in calls:
        with pytest.raises(KeyError, match="is not open in the engagement clock"):
            call()


def test_bad_input_is_refused_with_the_field_named() -> None:
    clock = EngagementClock()
    clock.open(X, STUDENT, T0)
    with pytest.raises(ValueError, match="kind: 'execute' is not one of execute_start"):
        clock.signal(X, T0, "execute")
    with pytest.raises(InvalidInput, match="now: must be finite"):
        clock.signal(X, math.nan, "input")
    with pytest.raises(InvalidInput, match="now: must not be negative"):
        clock.tick(-1.0)
    with pytest.raises(InvalidInput, match="visible: must be true or false"):
        clock.presence(X, "tab", T0, visible="yes", focused=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="last_input: must be a number"):
        clock.presence(X, "tab", T0, visible=True, focused=True, last_input="5")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="source: required"):
        clock.presence(X, " ", T0, visible=True, focused=True)
    with pytest.raises(InvalidInput, match="run_id"):
        clock.open("run-1", STUDENT, T0)
    with pytest.raises(InvalidInput, match="student: required"):
        clock.open(Y, "", T0)
    with pytest.raises(InvalidInput, match="student: run .* already open for another student"):
        clock.open(X, "someone-else", T0)
    with pytest.raises(InvalidInput, match="idle_after: must be more than 0"):
        EngagementClock(idle_after=0)
    with pytest.raises(InvalidInput, match="running_cell_limit: must be more than 0"):
        EngagementClock(running_cell_limit=0)
    with pytest.raises(InvalidInput, match="heartbeat_interval: must be at least"):
        EngagementClock(heartbeat_interval=1e-9)
    # Nothing above changed the run: it is still active since T0 with a clean window.
    assert clock.state(X, T0 + 1) == Snapshot("active", 1.0, 0.0)
    assert clock.runs() == [X]


def test_run_ids_are_canonical() -> None:
    clock = EngagementClock()
    clock.open(X.upper(), STUDENT, T0)
    clock.signal(f"urn:uuid:{X}", T0 + 1, "input")
    assert clock.runs() == [X]
    assert clock.close(X.upper(), T0 + 2) == win(X, 0, 2, 2)


def test_segments_report_every_integrated_stretch() -> None:
    seen: list[tuple[str, float, float, str]] = []
    clock = EngagementClock(on_segment=lambda *seg: seen.append(seg))
    clock.open(X, STUDENT, T0)
    clock.tick(T0 + 130)
    # Kernel-only, recent until 120: split at each window boundary and at the idle expiry.
    assert seen == [
        *[(X, T0 + 15 * k, T0 + 15 * k + 15, "active") for k in range(8)],
        (X, T0 + 120, T0 + 130, "inactive"),
    ]
    clock.state(X, T0 + 200)  # a trial run: reports nothing
    assert len(seen) == 9


# ---- properties -------------------------------------------------------------------------
#
# Random scripts over four run slots (three for one student, one for another), checked two
# ways: against a reference that applies the rules second by second (integer times and
# knobs, so every instant where the state can change is a whole second), and against the
# invariants directly.

SLOTS = 4
STUDENT_OF = ("s0", "s0", "s0", "s1")
SMALL = {"heartbeat_interval": 5, "idle_after": 12, "abandon_after": 30, "presence_ttl": 7,
         "running_cell_limit": 20}  # fmt: skip
BASE = 1000


def run_id(slot: int, incarnation: int) -> str:
    return f"{slot:08x}-0000-4000-8000-{incarnation:012x}"


@dataclass
class RefRun:
    id: str
    student: str
    seq: int
    last_signal: int
    last_touch: int
    last_active: int
    start: int
    active: int = 0
    inactive: int = 0
    running: int = 0
    paused: bool = False
    tracked: bool = False
    sources: dict[str, tuple[bool, bool, int]] = field(default_factory=dict)


class Reference:
    """The clock's rules, evaluated one second at a time: slow, and plainly what the spec says."""

    def __init__(self, heartbeat_interval: int, idle_after: int, abandon_after: int,
                 presence_ttl: int, running_cell_limit: int) -> None:  # fmt: skip
        self.hb, self.idle, self.abandon, self.ttl, self.limit = (
            heartbeat_interval, idle_after, abandon_after, presence_ttl, running_cell_limit,
        )  # fmt: skip
        self.runs: dict[str, RefRun] = {}
        self.now: dict[str, int] = {}
        self.queue: list[tuple[str, int, int, int, int]] = []
        self.seq = 0

    def seen(self, r: RefRun, t: int) -> bool:
        if not r.tracked:
            return True
        return any(v and f and t - at < self.ttl for v, f, at in r.sources.values())

    def recent(self, r: RefRun, t: int) -> bool:
        """A signal within idle_after, or a cell running and the student's own last touch
        within running_cell_limit."""
        return t - r.last_signal < self.idle or (r.running > 0 and t - r.last_touch < self.limit)

    def winner(self, student: str, t: int) -> RefRun | None:
        """Paused runs too: a paused run that is seen and recent is active when it ranks first."""
        runs = [r for r in self.runs.values() if r.student == student]
        candidates = [r for r in runs if self.seen(r, t) and self.recent(r, t)]
        return max(candidates, key=lambda r: (r.last_signal, r.seq), default=None)

    def emit(self, r: RefRun, end: int, out: list[tuple[str, int, int, int, int]]) -> None:
        if r.active or r.inactive:
            out.append((r.id, r.start, end, r.active, r.inactive))
        r.start, r.active, r.inactive = end, 0, 0

    def advance(self, student: str, until: int, out: list[tuple[str, int, int, int, int]]) -> int:
        t = self.now.setdefault(student, until)
        until = max(t, until)
        while True:
            w = self.winner(student, t)
            if w is not None and w.paused:  # back from a pause: a clean slate
                w.paused = False
                w.start, w.active, w.inactive, w.last_active = t, 0, 0, t
            for r in [r for r in self.runs.values() if r.student == student and not r.paused]:
                if r is not w and t - r.last_active >= self.abandon:
                    self.emit(r, t, out)
                    r.paused = True
                elif t - r.start >= self.hb:
                    self.emit(r, t, out)
            if t >= until:
                break
            for r in [r for r in self.runs.values() if r.student == student and not r.paused]:
                if r is w:
                    r.active += 1
                    r.last_active = t + 1
                else:
                    r.inactive += 1
            t += 1
        self.now[student] = t
        return t

    def resume(self, r: RefRun, t: int) -> None:
        if r.paused:
            r.paused = False
            if self.winner(r.student, t) is r:
                r.start, r.active, r.inactive, r.last_active = t, 0, 0, t
            else:
                r.paused = True

    # The clock's calls, for runs known to be open.
    def open(self, rid: str, student: str, now: int) -> None:
        t = self.advance(student, now, self.queue)
        self.seq += 1
        self.runs[rid] = RefRun(rid, student, self.seq, t, t, t, t)

    def signal(self, rid: str, now: int, kind: str) -> None:
        r = self.runs[rid]
        t = self.advance(r.student, now, self.queue)
        if kind == "kernel_reset":  # no cell runs any more; not the student's doing
            r.running = 0
        elif kind == "execute_end":  # the kernel's doing: news only while the run is recent
            if self.recent(r, t):
                r.last_signal = t
            r.running = max(0, r.running - 1)
        else:  # the student's: a cell run, a widget, input
            if kind == "execute_start":
                r.running += 1
            r.last_signal = r.last_touch = t
        self.resume(r, t)

    def presence(self, rid: str, src: str, now: int, visible: bool, focused: bool,
                 last_input: int | None) -> None:  # fmt: skip
        r = self.runs[rid]
        t = self.advance(r.student, now, self.queue)
        if last_input is not None:
            r.last_signal = max(r.last_signal, min(last_input, t))
            r.last_touch = max(r.last_touch, min(last_input, t))
        r.tracked = True
        r.sources[src] = (visible, focused, t)
        self.resume(r, t)

    def leave(self, rid: str, src: str, now: int) -> None:
        r = self.runs[rid]
        self.advance(r.student, now, self.queue)
        r.sources.pop(src, None)
        r.tracked = True

    def tick(self, now: int) -> list[tuple[str, int, int, int, int]]:
        for student in list(self.now):
            self.advance(student, now, self.queue)
        out, self.queue = self.queue, []
        return sorted(out, key=lambda w: (w[2], w[1], w[0]))

    def flush(self, rid: str, now: int) -> tuple[str, int, int, int, int] | None:
        r = self.runs[rid]
        t = self.advance(r.student, now, self.queue)
        if r.paused:
            return None
        out: list[tuple[str, int, int, int, int]] = []
        self.emit(r, t, out)
        return out[0] if out else None

    def close(self, rid: str, now: int) -> tuple[str, int, int, int, int] | None:
        window = self.flush(rid, now)
        student = self.runs.pop(rid).student
        if not any(r.student == student for r in self.runs.values()):
            del self.now[student]
        return window

    def state(self, rid: str, now: int) -> tuple[str, int, int]:
        trial = copy.deepcopy(self)
        r = trial.runs[rid]
        t = trial.advance(r.student, now, [])
        if r.paused:
            return ("paused", 0, 0)
        return ("active" if trial.winner(r.student, t) is r else "inactive", r.active, r.inactive)


slots = st.integers(0, SLOTS - 1)
sources = st.sampled_from(["a", "b"])
signals = st.tuples(st.just("signal"), slots, st.sampled_from(SIGNAL_KINDS))
# A cell's life apart from the student's touches: long cells, their ends and kernel resets.
cells = st.tuples(
    st.just("signal"), slots, st.sampled_from(["execute_start", "execute_end", "kernel_reset"])
)
reports = st.tuples(
    st.just("presence"),
    slots,
    sources,
    st.booleans(),
    st.booleans(),
    st.none() | st.integers(-20, 10),
)
# Signals and reports drawn more often than the rest: they are what sessions are made of.
operations = st.one_of(
    st.tuples(st.just("open"), slots),
    signals,
    signals,
    cells,
    reports,
    reports,
    reports,
    st.tuples(st.just("leave"), slots, sources),
    st.tuples(st.just("tick")),
    st.tuples(st.just("flush"), slots),
    st.tuples(st.just("close"), slots),
    st.tuples(st.just("state"), slots),
)


# Sessions around long cells: cells started, ended and cut short by a kernel reset, among the
# student's touches and reports, long enough for cells to outrun running_cell_limit.
cell_operations = st.one_of(
    cells,
    cells,
    cells,
    signals,
    reports,
    st.tuples(st.just("tick")),
    st.tuples(st.just("state"), slots),
    st.tuples(st.just("flush"), slots),
)


def scripts(
    gaps: st.SearchStrategy[Any],
    ops: st.SearchStrategy[tuple[Any, ...]] = operations,
    min_size: int = 0,
) -> st.SearchStrategy[list[tuple[Any, tuple[Any, ...]]]]:
    """Every run opened first, in any order and within seconds (so most calls reach a live run
    and ties happen), then anything."""
    opening = st.tuples(
        st.permutations(range(SLOTS)), st.lists(st.integers(0, 3), min_size=SLOTS, max_size=SLOTS)
    ).map(lambda o: [(dt, ("open", slot)) for slot, dt in zip(o[0], o[1], strict=True)])
    rest = st.lists(st.tuples(gaps, ops), min_size=min_size, max_size=40)
    return st.builds(lambda first, then: first + then, opening, rest)


@dataclass
class Outcome:
    windows: list[Window]  # everything the clock handed out, in the order it did
    segments: list[tuple[str, float, float, str]]
    open_at: dict[str, float]  # the `now` passed to open
    closed_by: dict[str, float]  # the latest `now` passed to anything until the close


def play_script(
    script: list[tuple[float, tuple[Any, ...]]],
    knobs: dict[str, float],
    *,
    with_state: bool = True,
    reference: Reference | None = None,
    base: float = BASE,
) -> Outcome:
    segments: list[tuple[str, float, float, str]] = []
    clock = EngagementClock(**knobs, on_segment=lambda *seg: segments.append(seg))
    out = Outcome([], segments, {}, {})
    incarnation = [0] * SLOTS
    live = [False] * SLOTS
    cursor = latest = float(base)

    def check_ref(got: Window | None, want: tuple[str, int, int, int, int] | None) -> None:
        if reference is not None:
            assert got == (None if want is None else Window(*map_floats(want)))

    for dt, op in script:
        now = max(0.0, cursor + dt)
        cursor = max(cursor, now)
        latest = max(latest, now)
        name, slot = op[0], (op[1] if len(op) > 1 else 0)
        rid = run_id(slot, incarnation[slot])
        if name == "tick":
            got = clock.tick(now)
            assert [(w.end, w.start) for w in got] == sorted((w.end, w.start) for w in got)
            out.windows.extend(got)
            if reference is not None:
                key = [(w.run_id, w.start, w.end, w.active, w.inactive) for w in got]
                want = [tuple(map_floats(w)) for w in reference.tick(int(now))]
                assert sorted(key, key=lambda w: (w[2], w[1], w[0])) == want
            continue
        if not live[slot]:
            if name == "open":
                clock.open(rid, STUDENT_OF[slot], now)
                live[slot] = True
                out.open_at[rid] = now
                if reference is not None:
                    reference.open(rid, STUDENT_OF[slot], int(now))
            else:
                with pytest.raises(KeyError):
                    call_clock(clock, op, rid, now)
            continue
        if name == "open":
            clock.open(rid, STUDENT_OF[slot], now)  # a no-op
        elif name == "state" and not with_state:
            continue
        elif name == "state":
            snap = clock.state(rid, now)
            if reference is not None:
                assert (snap.state, snap.window_active, snap.window_inactive) == reference.state(
                    rid, int(now)
                )
        elif name in ("flush", "close"):
            got = call_clock(clock, op, rid, now)
            if got is not None:
                out.windows.append(got)
            if reference is not None:
                check_ref(got, getattr(reference, name)(rid, int(now)))
            if name == "close":
                live[slot] = False
                incarnation[slot] += 1
                out.closed_by[rid] = latest
        else:
            call_clock(clock, op, rid, now)
            if reference is not None:
                if name == "signal":
                    reference.signal(rid, int(now), op[2])
                elif name == "presence":
                    li = None if op[5] is None else int(now) + op[5]
                    reference.presence(rid, op[2], int(now), op[3], op[4], li)
                else:
                    reference.leave(rid, op[2], int(now))
    final = clock.tick(cursor)
    out.windows.extend(final)
    if reference is not None:
        want = [tuple(map_floats(w)) for w in reference.tick(int(cursor))]
        key = [(w.run_id, w.start, w.end, w.active, w.inactive) for w in final]
        assert sorted(key, key=lambda w: (w[2], w[1], w[0])) == want
    for slot in range(SLOTS):
        if live[slot]:
            rid = run_id(slot, incarnation[slot])
            got = clock.close(rid, cursor)
            if got is not None:
                out.windows.append(got)
            if reference is not None:
                check_ref(got, reference.close(rid, int(cursor)))
            out.closed_by[rid] = latest
    assert clock.runs() == []
    return out


def map_floats(w: tuple[str, int, int, int, int]) -> tuple[str, float, float, float, float]:
    return (w[0], float(w[1]), float(w[2]), float(w[3]), float(w[4]))


def call_clock(clock: EngagementClock, op: tuple[Any, ...], rid: str, now: float) -> Any:
    name = op[0]
    if name == "signal":
        return clock.signal(rid, now, op[2])
    if name == "presence":
        li = None if op[5] is None else max(0.0, now + op[5])
        return clock.presence(rid, op[2], now, visible=op[3], focused=op[4], last_input=li)
    if name == "leave":
        return clock.leave(rid, op[2], now)
    if name == "open":
        return clock.open(rid, "x", now)
    return getattr(clock, name)(rid, now)


def check_invariants(out: Outcome, knobs: dict[str, float]) -> None:
    eps = 1e-6
    by_run: dict[str, list[Window]] = {}
    for w in out.windows:
        assert not w.empty
        assert w.end - w.start <= knobs["heartbeat_interval"] + eps
        by_run.setdefault(w.run_id, []).append(w)
    for rid, windows in by_run.items():
        windows.sort(key=lambda w: w.start)
        for before, after in itertools.pairwise(windows):
            assert after.start >= before.end - eps, f"{rid}: {before} overlaps {after}"
        assert windows[0].start >= out.open_at[rid] - eps
        assert windows[-1].end <= out.closed_by[rid] + eps
        held = sum(w.active + w.inactive for w in windows)
        assert held <= out.closed_by[rid] - out.open_at[rid] + eps
        # Every integrated second ends up in exactly one window.
        active = sum(s[2] - s[1] for s in out.segments if s[0] == rid and s[3] == "active")
        inactive = sum(s[2] - s[1] for s in out.segments if s[0] == rid and s[3] == "inactive")
        assert math.isclose(active, sum(w.active for w in windows), abs_tol=eps)
        assert math.isclose(inactive, sum(w.inactive for w in windows), abs_tol=eps)
    for student in set(STUDENT_OF):
        spans = sorted(
            (s[1], s[2])
            for s in out.segments
            if s[3] == "active" and STUDENT_OF[int(s[0][:8], 16)] == student
        )
        for before, after in itertools.pairwise(spans):
            assert after[0] >= before[1] - eps, f"{student} active twice: {before} {after}"
    per_run: dict[str, list[tuple[float, float]]] = {}
    for s in out.segments:
        per_run.setdefault(s[0], []).append((s[1], s[2]))
    for rid, spans in per_run.items():
        spans.sort()
        for before, after in itertools.pairwise(spans):
            assert after[0] >= before[1] - eps, f"{rid}: time counted twice"


# A running cell's limit above idle_after (the default's shape), below it (a running cell adds
# nothing), and beyond any script (cells recent for as long as they run, as before the limit).
cell_limits = st.sampled_from([20, 8, 10_000])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts(st.integers(-3, 40)), cell_limits)
def test_random_scripts_match_the_second_by_second_reference(
    script: list[tuple[int, tuple[Any, ...]]], limit: int
) -> None:
    knobs = {**SMALL, "running_cell_limit": limit}
    ref = Reference(**knobs)
    out = play_script(script, knobs, reference=ref)
    check_invariants(out, knobs)
    # Asking for the state changes nothing the clock hands out.
    assert play_script(script, knobs, with_state=False).windows == out.windows


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts(st.integers(-3, 40), cell_operations, min_size=12), cell_limits)
def test_random_cell_sessions_match_the_second_by_second_reference(
    script: list[tuple[int, tuple[Any, ...]]], limit: int
) -> None:
    knobs = {**SMALL, "running_cell_limit": limit}
    out = play_script(script, knobs, reference=Reference(**knobs))
    check_invariants(out, knobs)


real_gaps = st.one_of(
    st.sampled_from([0.0, 0.5, 14.999, 15.0, 20.0, 119.5, 120.0, 299.5, 300.0, 600.0, 601.0]),
    st.floats(-5.0, 700.0, allow_nan=False),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts(real_gaps))
def test_random_scripts_with_real_knobs_keep_the_invariants(
    script: list[tuple[float, tuple[Any, ...]]],
) -> None:
    knobs = {"heartbeat_interval": 15.0, "idle_after": 120.0, "abandon_after": 600.0,
             "presence_ttl": 20.0, "running_cell_limit": 300.0}  # fmt: skip
    out = play_script(script, knobs, base=T0)
    check_invariants(out, knobs)


# ---- lazy hand-over at the instant a pause is due --------------------------------------
#
# The clock settles a student's runs lazily (a call costs O(1) in the other runs), so the
# instant where one run's pause is due and the active run lapses (or a call makes it lapse)
# needs the rule spelled out: taking over comes first when the active run lapses by itself;
# after a call, the pause due at the call's instant has already begun. Slot 0 runs a cell
# (recent throughout: no running_cell_limit within reach) and stops being active when slot 1
# opens at 1001, so its pause is due at 1001 + abandon_after (30) = 1031.

LONG_CELLS = {**SMALL, "running_cell_limit": 1000}


def test_a_run_takes_over_at_the_instant_its_pause_was_due() -> None:
    script = [
        (0, ("open", 0)),
        (0, ("signal", 0, "execute_start")),
        (1, ("open", 1)),
        (9, ("signal", 1, "input")),  # slot 1 stays recent: until 1022 ...
        (9, ("signal", 1, "input")),  # ... then until 1019 + 12 = 1031
        (21, ("tick",)),
    ]
    out = play_script(script, LONG_CELLS, reference=Reference(**LONG_CELLS))
    late = [w for w in out.windows if w.run_id == run_id(0, 0) and w.start >= 1030]
    assert sum(w.active for w in late) == 9.0  # active from 1031 to 1040, never paused


def test_a_call_at_the_instant_a_pause_is_due_finds_it_paused_and_a_takeover_restarts_it() -> None:
    # Slot 1 is seen and recent throughout (reports every 5 s, with input just now).
    pings = [(5, ("presence", 1, "a", True, True, 0)) for _ in range(5)]  # 1006 .. 1026
    script = [
        (0, ("open", 0)),
        (0, ("signal", 0, "execute_start")),
        (1, ("open", 1)),
        (0, ("presence", 1, "a", True, True, 0)),
        *pings,
        (5, ("presence", 1, "a", True, False, 0)),  # 1031: slot 1 loses focus
        (9, ("tick",)),
    ]
    out = play_script(script, LONG_CELLS, reference=Reference(**LONG_CELLS))
    late = [(w.start, w.end, w.active, w.inactive) for w in out.windows
            if w.run_id == run_id(0, 0) and w.end > 1030]  # fmt: skip
    # Paused at 1031, the call's own instant, so its window closes there. Slot 0 (kernel-only,
    # its cell running) is then the one run seen and recent: active again at once, from a
    # clean slate, not at its own next call.
    assert late == [(1030, 1031, 0, 1), (1031, 1036, 5, 0), (1036, 1040, 4, 0)]
