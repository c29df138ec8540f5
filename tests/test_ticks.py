"""When the tracker's tick has work (tracker/ticks.py), with injected time: the server ticks
only then, and waits for a call while every run is paused or none is open."""

import pytest

from timeback_jupyter.store import Store

from .test_tracker import QUIZ, T0, Clock, make_tracker


@pytest.fixture
def now():
    return Clock()


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "t.sqlite3") as s:
        yield s


def test_no_tick_is_needed_without_a_run_after_the_first(store, now):
    tracker = make_tracker(store, now)
    assert tracker.ticks.next(now.t) == float("-inf")  # the first: recovers processes gone
    tracker.tick()
    assert tracker.ticks.next(now.t) is None


def test_a_live_run_ticks_at_its_window_ends_and_checkpoints(store, now):
    tracker = make_tracker(store, now)
    tracker.tick()
    run = tracker.start(QUIZ, path="quiz.ipynb").run
    interval = tracker.checkpoints.interval  # 2 s
    # Next: the checkpoint (the last one was at T0), before the window's end at T0 + 15.
    assert tracker.ticks.next(now.t) == T0 + interval
    now.t = T0 + 14.5
    tracker.tick()
    assert tracker.ticks.next(now.t) == T0 + 15  # the window closes before the checkpoint
    now.t = T0 + 15
    tracker.tick()
    assert tracker.ticks.next(now.t) == T0 + 14.5 + interval
    assert tracker.clock.next_window_end() == T0 + 30
    # Ended: one more tick clears this process's checkpoint, then nothing.
    tracker.end(run.id)
    now.t += interval
    tracker.tick()
    assert tracker.ticks.next(now.t) is None
    assert store.open_windows() == []


def test_a_paused_run_needs_no_tick_until_a_call_wakes_the_ticker(store, now):
    tracker = make_tracker(store, now)
    run = tracker.start(QUIZ, path="quiz.ipynb").run
    now.t = T0 + 120 + 601  # idle after 120 s, then abandon_after (600 s): paused
    tracker.tick()
    now.t += 2
    tracker.tick()  # its checkpoint cleared
    assert tracker.ticks.next(now.t) is None
    woken = []
    tracker.ticks.idle_until_called(lambda: woken.append(now.t))
    tracker.signal(run.id, "execute_start")
    tracker.signal(run.id, "execute_end")
    assert woken == [now.t]  # once
    assert tracker.ticks.next(now.t) is not None  # resumed: its new window needs ticks


def test_a_run_started_wakes_the_waiting_ticker(store, now):
    tracker = make_tracker(store, now)
    tracker.tick()
    woken = []
    tracker.ticks.idle_until_called(lambda: woken.append(True))
    tracker.start(QUIZ, path="quiz.ipynb")
    assert woken == [True]
