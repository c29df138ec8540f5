"""Kernel signals held off the IOPub callback (server/held_signals.py) count exactly as signals
applied at once: the same windows, segments and readings for random sessions, at the clock and
through the binding, service, tracker and a real SQLite store; every call that reads or changes
the clock sees every signal held before it; and a timer applies them when nothing reads."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jupyter_client.session import Session

from timeback_jupyter.clock import EngagementClock
from timeback_jupyter.config import Timeback, default_app_config
from timeback_jupyter.identity import Student, actor_for
from timeback_jupyter.model import Activity, CourseRef
from timeback_jupyter.server import held_signals
from timeback_jupyter.server.binding import KernelBinding
from timeback_jupyter.server.held_signals import HeldSignals
from timeback_jupyter.server.kernels import _Classifier, _holding, _reader
from timeback_jupyter.server.service import TimebackService
from timeback_jupyter.server.tasks import TaskSet
from timeback_jupyter.store import Store
from timeback_jupyter.tracker import Tracker

from .test_clock import SLOTS, SMALL, STUDENT_OF, operations, run_id, scripts, slots

T0 = 1_790_000_000.0
READS = ("reading", "next_window_end", "settled_windows")
# test_clock's sessions, with every read of the clock drawn as often as a state
held_ops = st.one_of(operations, st.tuples(st.sampled_from(READS), slots))


def play(script: list[tuple[float, tuple[Any, ...]]], held: bool, many: bool = False) -> list[Any]:
    """Everything the clock answers and reports over the script, signals held or not; held
    ``many``: each stretch of one run's signals applied in one EngagementClock.signals."""
    said: list[Any] = []
    clock = EngagementClock(**SMALL, on_segment=lambda *seg: said.append(("segment", seg)))
    queue = HeldSignals(
        lambda rid, kind, at: clock.signal(rid, at, kind),
        apply_many=clock.signals if many else None,
    )
    if held:
        clock.before_call = queue.drain
    incarnation, live = [0] * SLOTS, [False] * SLOTS
    cursor = float(T0)
    for dt, op in script:
        now = cursor = max(cursor, cursor + dt)
        name, slot = op[0], (op[1] if len(op) > 1 else 0)
        rid = run_id(slot, incarnation[slot])
        if name == "tick":
            said.append(("tick", clock.tick(now)))
        elif name == "open":
            clock.open(rid, STUDENT_OF[slot], now)
            live[slot] = True
        elif not live[slot]:
            continue  # test_clock shows calls on runs not open are refused
        elif name == "signal" and held:
            queue.push(rid, op[2], now)
        elif name == "signal":
            clock.signal(rid, now, op[2])
        elif name == "presence":
            last = None if op[5] is None else max(0.0, now + op[5])
            clock.presence(rid, op[2], now, visible=op[3], focused=op[4], last_input=last)
        elif name == "leave":
            clock.leave(rid, op[2], now)
        elif name in ("next_window_end", "settled_windows"):
            said.append((name, getattr(clock, name)()))
        else:  # flush, close, state, reading
            said.append((name, getattr(clock, name)(rid, now)))
            if name == "close":
                live[slot], incarnation[slot] = False, incarnation[slot] + 1
    said.append(("end", clock.tick(cursor)))
    assert len(queue) == 0
    return said


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts(st.sampled_from([0.0, 0.3, 1.0, 4.0, 9.0, 20.0, 40.0]), held_ops, min_size=10))
def test_random_sessions_held_give_what_they_give_at_once(
    script: list[tuple[float, tuple[Any, ...]]],
) -> None:
    assert play(script, held=True) == play(script, held=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts(st.sampled_from([0.0, 0.3, 1.0, 4.0, 9.0, 20.0, 40.0]), held_ops, min_size=10))
def test_random_sessions_held_and_applied_in_batches_give_what_they_give_at_once(
    script: list[tuple[float, tuple[Any, ...]]],
) -> None:
    assert play(script, held=True, many=True) == play(script, held=False)


def held_clock() -> tuple[EngagementClock, HeldSignals, str, str]:
    clock = EngagementClock(**SMALL)
    queue = HeldSignals(lambda rid, kind, at: clock.signal(rid, at, kind))
    clock.before_call = queue.drain
    a, b = run_id(0, 0), run_id(1, 0)
    clock.open(a, "s0", T0)
    clock.open(b, "s0", T0 + 1)  # b is the active run, a waits
    return clock, queue, a, b


READERS = {
    "tick": lambda c, a, t: c.tick(t),
    "state": lambda c, a, t: c.state(a, t),
    "reading": lambda c, a, t: c.reading(a, t),
    "flush": lambda c, a, t: c.flush(a, t),
    "close": lambda c, a, t: c.close(a, t),
    "presence": lambda c, a, t: c.presence(a, "tab", t, visible=True, focused=False),
    "leave": lambda c, a, t: c.leave(a, "tab", t),
    "signal": lambda c, a, t: c.signal(a, t, "comm"),
    "open": lambda c, a, t: c.open(run_id(2, 0), "s0", t),
    "settled_windows": lambda c, a, t: c.settled_windows(),
    "next_window_end": lambda c, a, t: c.next_window_end(),
}


@pytest.mark.parametrize("reader", list(READERS))
def test_every_call_sees_every_signal_held_before_it(reader: str) -> None:
    # Signals to a that make it the active run and run a cell; then the call, then what the
    # clock says: the same as with the signals applied at once.
    answers = []
    for held in (True, False):
        clock, queue, a, _ = held_clock()
        for at, kind in ((T0 + 2, "execute_start"), (T0 + 4, "comm"), (T0 + 6, "execute_end")):
            if held:
                queue.push(a, kind, at)
            else:
                clock.signal(a, at, kind)
        first = READERS[reader](clock, a, T0 + 7)
        assert len(queue) == 0
        answers.append((first, clock.tick(T0 + 30), clock.settled_windows()))
    assert answers[0] == answers[1]
    assert answers[0][1], "the session closes windows"


def test_a_drain_called_from_a_signal_being_applied_keeps_the_order() -> None:
    applied: list[tuple[str, float]] = []
    queue: HeldSignals

    def apply(kernel: str, kind: str, at: float) -> None:
        queue.drain()  # as the clock's hook does, from inside the signal being applied
        applied.append((kind, at))

    queue = HeldSignals(apply)
    for i in range(5):
        queue.push("k", "execute_start", float(i))
    queue.drain()
    assert applied == [("execute_start", float(i)) for i in range(5)]


def test_a_bad_signal_is_logged_and_the_ones_after_it_still_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    applied: list[float] = []

    def apply(kernel: str, kind: str, at: float) -> None:
        if kind == "bad":
            raise ValueError("no such kind")
        applied.append(at)

    queue = HeldSignals(apply, log=logging.getLogger("test.held"))
    for at, kind in ((1.0, "comm"), (2.0, "bad"), (3.0, "comm")):
        queue.push("k", kind, at)
    with caplog.at_level(logging.ERROR, "test.held"):
        queue.drain()
    assert applied == [1.0, 3.0]
    assert "kernel k's bad lost" in caplog.text


@pytest.mark.asyncio
async def test_signals_nobody_reads_are_applied_by_one_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(held_signals, "HOLD_FOR", 0.05)
    applied: list[float] = []
    queue = HeldSignals(lambda kernel, kind, at: applied.append(at))
    for i in range(3):
        queue.push("k", "comm", float(i))
    assert applied == [] and len(queue) == 3
    handle = queue._timer
    assert handle is not None
    await asyncio.sleep(0.2)
    assert applied == [0.0, 1.0, 2.0] and len(queue) == 0 and queue._timer is None
    queue.push("k", "comm", 3.0)  # a new burst arms a new timer
    await asyncio.sleep(0.2)
    assert applied == [0.0, 1.0, 2.0, 3.0]
    queue.push("k", "comm", 4.0)
    queue.close()  # the server stops: applied, no timer left behind
    assert applied[-1] == 4.0 and queue._timer is None


# ---- through the binding, the service, the tracker and a real store ----------------------------

LESSON = Activity("lesson-1", "Lesson one", CourseRef("Math", grade=3))
QUIZ = Activity("quiz-1", "Quiz one", CourseRef("Math", grade=3))
KERNELS = {"k1": "lesson.ipynb", "k2": "quiz.ipynb"}
kinds = st.sampled_from(["execute_start", "execute_end", "comm", "kernel_reset"])
server_ops = st.one_of(
    st.tuples(st.just("cell"), st.sampled_from(list(KERNELS)), kinds),
    st.tuples(st.just("cell"), st.sampled_from(list(KERNELS)), kinds),
    st.tuples(st.just("cell"), st.sampled_from(list(KERNELS)), kinds),
    st.tuples(st.just("tick"), st.none(), st.none()),
    st.tuples(st.just("describe"), st.sampled_from(list(KERNELS)), st.none()),
    st.tuples(st.just("presence"), st.sampled_from(list(KERNELS)), st.booleans()),
    st.tuples(st.just("today"), st.none(), st.none()),
    st.tuples(st.just("end"), st.sampled_from(list(KERNELS)), st.none()),
)


IOPUB = Session(key=b"held-test")
STATUS_OF = {  # a signal as IOPub says it: (execution_state, parent msg_type)
    "execute_start": ("busy", "execute_request"),
    "execute_end": ("idle", "execute_request"),
    "comm": ("busy", "comm_msg"),
}


def iopub(kernel: str, msg_type: str, content: dict[str, Any], parent: str) -> list[bytes]:
    """A message as Jupyter's shared IOPub stream hands it over: the topic, then the wire."""
    msg = IOPUB.msg(msg_type, content, parent=IOPUB.msg(parent, {}))
    return [f"kernel.{kernel}.{msg_type}".encode(), *IOPUB.serialize(msg)]


def observers(binding: KernelBinding, now: Any) -> dict[str, Any]:
    """Each kernel's callback chained behind Jupyter's, as the watcher makes it (Jupyter's
    own callback here does nothing), holding its statuses raw in the binding's held."""
    read = _reader(_Classifier(IOPUB))
    return {
        kernel: _holding(lambda parts: None, lambda parts: None, binding.held, kernel, read, now)
        for kernel in KERNELS
    }


def play_server(
    tmp: Any, script: list[tuple[float, tuple[Any, ...]]], held: bool, raw: bool = False
) -> str:
    """What the tracker and store make of the script, kernel signals held or not; held
    ``raw``: IOPub's messages as they come (with output and statuses that are no signal
    between them) through the callback the watcher chains behind Jupyter's."""
    t = [T0]
    log = logging.getLogger("test.held")
    settings_ = Timeback(
        store_path=str(tmp / f"{held}.sqlite3"), student_email="a@school.edu",
        heartbeat_interval=5.0, idle_after=12.0, abandon_after=30.0, presence_ttl=7.0,
    )  # fmt: skip
    said: list[Any] = []
    with Store(settings_.store_path) as store:
        student = Student("a@school.edu")
        tracker = Tracker(
            store=store, settings=settings_, app_config=default_app_config(), student=student,
            actor=actor_for(student, settings_.oneroster_url, local=True), now=lambda: t[0],
        )  # fmt: skip
        service = TimebackService(settings_, None, log=log, now=lambda: t[0])  # type: ignore[arg-type]
        service.tracker, service.store = tracker, store
        binding = KernelBinding(
            service, kernel_manager=None, session_manager=None, notebooks=None,  # type: ignore[arg-type]
            tokens=None, tasks=TaskSet(log), log=log,  # type: ignore[arg-type]
        )  # fmt: skip
        chained = observers(binding, lambda: t[0])
        runs = {}
        for (kernel, path), activity in zip(KERNELS.items(), (LESSON, QUIZ), strict=True):
            runs[kernel] = tracker.start(activity, path=path).run.id
            binding.kernel_paths[kernel] = path
        for dt, (name, kernel, arg) in script:
            t[0] += dt
            if kernel is not None and runs[kernel] not in tracker.live_runs():
                continue  # ended: its notebook's next signal would start a run (a task)
            if name == "cell" and held and raw and arg in STATUS_OF:
                state, parent = STATUS_OF[arg]
                chained[kernel](iopub(kernel, "execute_input", {"code": "1"}, parent))
                chained[kernel](iopub(kernel, "status", {"execution_state": state}, parent))
                chained[kernel](
                    iopub(kernel, "status", {"execution_state": state}, "inspect_request")
                )
            elif name == "cell" and held:
                binding.held.push(kernel, arg, t[0])
            elif name == "cell":
                binding.on_kernel_signal(kernel, arg, t[0])
            elif name == "tick":
                said.append(("tick", tracker.tick()))
            elif name == "describe":
                said.append(("describe", tracker.describe(tracker.get(runs[kernel]))))
            elif name == "today":
                said.append(("today", tracker.today(T0)))
            elif name == "presence":
                tracker.presence(runs[kernel], "tab", visible=True, focused=arg)
            else:  # end
                said.append(("end", tracker.end(runs[kernel]).status))
        t[0] += 60
        said.append(("final", tracker.tick()))
        tracker.end_all()
        said.append(("store", store.time_since(student.key, 0.0)))
        assert len(binding.held) == 0
    shown = repr(said)  # each store makes its own run ids: named by kernel to compare
    for kernel, rid in runs.items():
        shown = shown.replace(rid, kernel)
    return shown  # type: ignore[return-value]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.2, 1.0, 3.0, 6.0, 14.0]), server_ops),
        min_size=5,
        max_size=40,
    )
)
def test_kernel_signals_held_in_the_server_make_the_same_runs_and_windows(
    tmp_path_factory: pytest.TempPathFactory, script: list[tuple[float, tuple[Any, ...]]]
) -> None:
    tmp = tmp_path_factory.mktemp("held")
    held = play_server(tmp, script, held=True)
    assert held == play_server(tmp, script, held=False)
    assert "('store', (0.0, 0.0))" not in held  # time was recorded, and compared


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.2, 1.0, 3.0, 6.0, 14.0]), server_ops),
        min_size=5,
        max_size=40,
    )
)
def test_iopub_messages_held_raw_make_the_same_runs_and_windows(
    tmp_path_factory: pytest.TempPathFactory, script: list[tuple[float, tuple[Any, ...]]]
) -> None:
    tmp = tmp_path_factory.mktemp("raw")
    held = play_server(tmp, script, held=True, raw=True)
    assert held == play_server(tmp, script, held=False)
    assert "('store', (0.0, 0.0))" not in held
