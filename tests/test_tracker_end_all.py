"""Tracker.end_all (the server stops): every live run ended with one tick for all of them, not
one each (which made ending n runs O(n²)), and the store holds what ending them one at a time
gives; a store that fails meanwhile keeps the windows queued."""

import sqlite3

import pytest

from timeback_jupyter.model import Activity, CourseRef
from timeback_jupyter.store import Store

from .test_tracker import T0, Clock, make_tracker

RUNS = 40


@pytest.fixture
def now():
    return Clock()


def live_session(store, now):
    """40 runs opened a little apart, a few of them signalled, then 7.3 s with no tick."""
    tracker = make_tracker(store, now)
    runs = []
    for i in range(RUNS):
        now.t = T0 + i * 0.375
        activity = Activity(f"activity-{i}", f"Activity {i}", CourseRef("Math", grade=3))
        runs.append(tracker.start(activity, path=f"nb-{i}.ipynb").run.id)
    for k in range(10):
        now.t += 3.125
        tracker.signal(runs[3 * k], "comm")
    tracker.tick()
    now.t += 7.25  # windows have closed since that tick
    return tracker, runs


def counting_ticks(tracker, monkeypatch):
    ticks = []
    tick = tracker.clock.tick

    def counted(at):
        ticks.append(at)
        return tick(at)

    monkeypatch.setattr(tracker.clock, "tick", counted)
    return ticks


def recorded(store, runs):
    """Each run's stored windows and status, and the events, by notebook (ids differ by store)."""
    runs_ = []
    for i, rid in enumerate(runs):
        windows = [(w.start, w.end, w.active, w.inactive) for w in store.windows(rid)]
        runs_.append((i, store.get_run(rid).status, windows))
    events = sorted(
        (e["eventTime"], e["generated"]["items"][0]["value"])
        for e in store.events()
        if e["type"] == "TimeSpentEvent"
    )
    return runs_, events


def test_end_all_ticks_once_and_records_what_ending_each_run_does(tmp_path, monkeypatch):
    outcomes = []
    for together in (True, False):
        now = Clock()
        with Store(tmp_path / f"{together}.sqlite3") as store:
            tracker, runs = live_session(store, now)
            ticks = counting_ticks(tracker, monkeypatch)
            if together:
                tracker.end_all()
            else:
                for rid in runs:
                    tracker.end(rid)
            assert tracker.live_runs() == [] and tracker.clock.runs() == []
            assert tracker.unrecorded == 0
            outcomes.append((len(ticks), recorded(store, runs)))
    (together_ticks, together), (each_ticks, each) = outcomes
    assert together_ticks == 1 and each_ticks == RUNS
    assert together == each
    statuses, events = together
    assert {status for _, status, _ in statuses} == {"ended"}
    assert all(windows for _, _, windows in statuses)  # every run's time is in the store
    assert len(events) == sum(len(windows) for _, _, windows in statuses)


def test_end_all_with_no_live_run_does_nothing(tmp_path, now):
    with Store(tmp_path / "t.sqlite3") as store:
        tracker = make_tracker(store, now)
        tracker.end_all()
        assert tracker.clock.runs() == [] and list(store.events()) == []


def test_a_store_failing_while_ending_keeps_the_windows_queued(tmp_path, now, monkeypatch):
    with Store(tmp_path / "t.sqlite3") as store:
        tracker, runs = live_session(store, now)
        expected = now.t - T0  # the student's time: one run active or not, never two
        real = store.record_windows

        def locked(*args, **kwargs):
            raise sqlite3.OperationalError("database is locked")

        monkeypatch.setattr(store, "record_windows", locked)
        with pytest.raises(sqlite3.OperationalError):
            tracker.end_all()
        queued = tracker.unrecorded
        assert queued > 0
        assert tracker.live_runs() == [] and tracker.clock.runs() == []  # let go, consistently
        monkeypatch.setattr(store, "record_windows", real)
        now.t += 1
        tracker.tick()  # what the ticker does while windows wait
        assert tracker.unrecorded == 0
        windows = [w for rid in runs for w in store.windows(rid)]
        active = sum(w.active for w in windows)
        assert active == pytest.approx(expected)  # every active second of the session
