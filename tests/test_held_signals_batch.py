"""Held kernel signals applied in batches (server/held_signals.py, EngagementClock.signals): a
drain hands each stretch of one kernel's consecutive signals over in one call, in order, never
reordering kernels, and drops raw messages that are no signal; a batch the clock refuses
changes nothing, and the service then applies each signal alone, as before batches."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from timeback_jupyter.clock import EngagementClock
from timeback_jupyter.config import Timeback, default_app_config
from timeback_jupyter.identity import Student, actor_for
from timeback_jupyter.model import Activity, CourseRef, InvalidInput
from timeback_jupyter.server.held_signals import HeldSignals
from timeback_jupyter.server.service import TimebackService
from timeback_jupyter.store import Store
from timeback_jupyter.tracker import Tracker

from .test_clock import SMALL, run_id

T0 = 1_790_000_000.0


def test_a_drain_hands_over_each_kernels_consecutive_signals_in_order() -> None:
    one: list[tuple[str, str, float]] = []
    many: list[tuple[str, list[tuple[float, str]]]] = []
    queue = HeldSignals(
        lambda *signal: one.append(signal), apply_many=lambda k, s: many.append((k, s))
    )
    read = {b"start": "execute_start", b"end": "execute_end", b"output": None}.get
    queue.push("k1", "comm", 1.0)
    queue.entries.append(("k1", read, b"start", 2.0))  # as the IOPub observer holds a status
    queue.entries.append(("k1", read, b"output", 2.5))  # no signal: dropped
    queue.entries.append(("k2", read, b"start", 3.0))
    queue.push("k1", "execute_end", 4.0)
    queue.entries.append(("k1", read, b"output", 4.5))
    queue.entries.append(("k1", read, b"end", 5.0))
    queue.drain()
    assert many == [
        ("k1", [(1.0, "comm"), (2.0, "execute_start")]),
        ("k2", [(3.0, "execute_start")]),
        ("k1", [(4.0, "execute_end"), (5.0, "execute_end")]),
    ]
    assert one == [] and len(queue) == 0


def test_a_message_that_cannot_be_read_is_logged_and_the_rest_still_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    many: list[tuple[str, list[tuple[float, str]]]] = []

    def read(what: Any) -> str | None:
        if what == b"garbage":
            raise ValueError("not JSON")
        return "comm"

    queue = HeldSignals(lambda *s: None, apply_many=lambda k, s: many.append((k, s)),
                        log=logging.getLogger("test.batch"))  # fmt: skip
    for at, what in ((1.0, b"a"), (2.0, b"garbage"), (3.0, b"b")):
        queue.entries.append(("k", read, what, at))
    with caplog.at_level(logging.ERROR, "test.batch"):
        queue.drain()
    assert many == [("k", [(1.0, "comm"), (3.0, "comm")])]
    assert "bad IOPub message from kernel k" in caplog.text


def snapshot(clock: EngagementClock, rid: str, at: float) -> Any:
    """The run's whole state, and what the clock says of it (a read, changing nothing)."""
    return clock._runs[rid].copy(), clock.reading(rid, at), clock.next_window_end()


def test_a_batch_the_clock_refuses_changes_nothing() -> None:
    clock, rid = EngagementClock(**SMALL), run_id(0, 0)
    clock.open(rid, "s0", T0)
    before = snapshot(clock, rid, T0 + 1)
    for bad in ([(T0 + 2, "execute_start"), (T0 + 3, "nap")], [(T0 + 2, "comm"), (-1.0, "comm")]):
        with pytest.raises(InvalidInput):
            clock.signals(rid, bad)
    assert snapshot(clock, rid, T0 + 1) == before
    clock.signals(rid, [(T0 + 2, "execute_start"), (T0 + 3, "execute_end")])
    assert clock._runs[rid].last_signal == T0 + 3 and clock._runs[rid].running == 0


def test_a_refused_batch_is_applied_one_signal_at_a_time_by_the_service(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    t = [T0]
    log = logging.getLogger("test.batch")
    settings = Timeback(store_path=str(tmp_path / "s.sqlite3"), student_email="a@school.edu")
    with Store(settings.store_path) as store:
        student = Student("a@school.edu")
        tracker = Tracker(
            store=store, settings=settings, app_config=default_app_config(), student=student,
            actor=actor_for(student, settings.oneroster_url, local=True), now=lambda: t[0],
        )  # fmt: skip
        service = TimebackService(settings, None, log=log, now=lambda: t[0])  # type: ignore[arg-type]
        service.tracker, service.store = tracker, store
        lesson = Activity("lesson-1", "Lesson one", CourseRef("Math", grade=3))
        rid = tracker.start(lesson, path="lesson.ipynb").run.id
        batch = [(T0 + 2, "execute_start"), (T0 + 3, "nap"), (T0 + 4, "comm")]
        with caplog.at_level(logging.WARNING, "test.batch"):
            assert service.signals("lesson.ipynb", batch)
        run = tracker.clock._runs[rid]
        # the good ones counted, each in its turn; the bad one said why it was not
        assert (run.running, run.last_touch, run.last_signal) == (1, T0 + 4, T0 + 4)
        assert "'nap' is not one of" in caplog.text
        assert not service.signals("other.ipynb", batch)  # no run there: the binding's turn
        tracker.end_all()
