"""The drainer's store work on its own thread (delivery/offload.py): a batch's read and ack
run there for a store that declares itself thread-safe (the server's, the relay's outbox:
tests/relay/test_relay_offload.py), on the event loop for any other, with the same outcome."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import pytest

from timeback_jupyter.caliper import Actor, Target, time_spent_event
from timeback_jupyter.config import Course
from timeback_jupyter.delivery import Drainer, LocalSink
from timeback_jupyter.model import Activity, CourseRef, Window
from timeback_jupyter.store import KIND_TIME_SPENT, Store

SENSOR = "https://nb.example.edu"


class Watched(Store):
    """A store that notes which thread each of the drain's calls ran on."""

    def __init__(self, path: Path, *, thread_safe: bool) -> None:
        super().__init__(path)
        self.thread_safe = thread_safe  # type: ignore[misc]
        self.threads: dict[str, set[str]] = {}

    def _note(self, name: str) -> None:
        self.threads.setdefault(name, set()).add(threading.current_thread().name)

    def stored_batch(self, limit: int):  # type: ignore[no-untyped-def]
        self._note("stored_batch")
        return super().stored_batch(limit)

    def ack(self, event_ids):  # type: ignore[no-untyped-def]
        self._note("ack")
        return super().ack(event_ids)


def fill(store: Store, n: int) -> None:
    course = Course("Math", 3, None, {"staging": "math-3"}, SENSOR)
    activity = Activity("lesson", "Lesson", CourseRef("Math", 3))
    target = Target("Jupyter", SENSOR, "staging", "https://api.example.edu", course, activity)
    actor = Actor("https://api.example.edu/ims/oneroster/rostering/v1p2/users/s-1", "a@b.edu")
    run_id = str(uuid.uuid4())
    for i in range(n):
        window = Window(run_id, 1_790_000_000.0 + 15 * i, 1_790_000_015.0 + 15 * i, 10.0, 5.0)
        event = time_spent_event(window, run_id, actor, target)
        store.enqueue(event, run_id=run_id, kind=KIND_TIME_SPENT, sensor=SENSOR)


@pytest.mark.parametrize("thread_safe", [True, False])
def test_a_batch_is_read_and_acked_on_the_store_thread_only_if_the_store_allows(
    tmp_path: Path, thread_safe: bool
):
    store = Watched(tmp_path / "s.sqlite3", thread_safe=thread_safe)
    fill(store, 120)
    drainer = Drainer(store, LocalSink(), batch_size=50)

    async def drain() -> int:
        sent = 0
        for _ in range(3):
            sent += (await drainer.drain_once()).sent
        await drainer.stop()
        return sent

    assert asyncio.run(drain()) == 120
    assert store.depth() == 0
    loop_thread = threading.current_thread().name
    expected = {"timeback-outbox"} if thread_safe else {loop_thread}
    assert store.threads == {"stored_batch": expected, "ack": expected}
    assert drainer.store_thread.cpu > 0 if thread_safe else drainer.store_thread.cpu == 0
    store.close()
