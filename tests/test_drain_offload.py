"""Every store call of the drainer on its store thread (delivery/offload.py), for a store that
declares itself thread-safe; on the event loop, as before, for any other (issues 17 and 20).

A real SQLite store notes the thread of each call while a real drain runs a whole cycle
against the stand-in Timeback: a send that fails and is released, a send of unknown outcome
settled by a lookup, a job that fails and one that completes, a rejected envelope, the
flush's depth; and against the local sink: a batch refused in part."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from timeback_jupyter.config import Credentials
from timeback_jupyter.delivery import Drainer, LocalSink, TimebackSink
from timeback_jupyter.store import KIND_TIME_SPENT, Store
from timeback_jupyter.testing.standin import EVENT_PATH, SENSOR, Fault, StandIn, time_spent_events

CLIENT_ID, SECRET = "offload-client", "offload-secret"
STORE_THREAD = "timeback-outbox"

# What the drainer may ask of a store (delivery/ports.py and the local sink's fast paths).
CALLS = (
    "claim_batch", "pending_batch", "stored_batch", "inflight", "ack", "release",
    "dead_letter", "depth", "record_job", "jobs_pending", "job_events", "confirm", "job_failed",
    "stats", "job_stats",
)  # fmt: skip


class Noted(Store):
    """The server's SQLite store, noting the thread each of the calls above runs on."""

    def __init__(self, path: Path, *, thread_safe: bool) -> None:
        super().__init__(path)
        self.thread_safe = thread_safe  # type: ignore[misc]
        self.calls: list[tuple[str, str]] = []


def _noting(name: str) -> Any:
    original = getattr(Store, name)

    @functools.wraps(original)
    def noted(self: Noted, *args: Any, **kw: Any) -> Any:
        self.calls.append((name, threading.current_thread().name))
        return original(self, *args, **kw)

    return noted


for _name in CALLS:
    setattr(Noted, _name, _noting(_name))


@pytest.fixture
def api():
    with StandIn(CLIENT_ID, SECRET) as server:
        server.job_delay = 0.2
        yield server


def enqueue(store: Store, count: int) -> list[str]:
    events = time_spent_events(str(uuid.uuid4()), count)
    for event in events:
        store.enqueue(event, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
    return [e["id"] for e in events]


def posts(api: StandIn) -> list[list[str]]:
    return [r.event_ids for r in api.requests if r.path == EVENT_PATH]


def threads_by_call(calls: list[tuple[str, str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, thread in calls:
        out.setdefault(name, set()).add(thread)
    return out


async def cycle(store: Noted, api: StandIn) -> dict[str, list[str]]:
    """Three batches, each flushed on its own so the scripted faults meet the batch meant."""
    sink = TimebackSink(
        Credentials(CLIENT_ID, SECRET), base_url=api.url, auth_url=api.token_url, timeout=1.0
    )
    assert await sink.exists("urn:uuid:00000000-0000-4000-8000-000000000000") is False  # warm
    drainer = Drainer(
        store, sink, batch_size=3, retry_initial=0.05, retry_max=0.2,
        job_poll_initial=0.05, job_poll_max=0.2, job_timeout=30.0,
    )  # fmt: skip
    ids: dict[str, list[str]] = {}
    try:
        # A 500 (released, sent again) then a stall past our timeout (its outcome unknown:
        # settled when the lookups find the events its late job stored).
        api.script(Fault.error(500), Fault.hang(1.5, then="answer"))
        ids["unknown"] = enqueue(store, 3)
        assert (await drainer.flush(timeout=30)).remaining == 0
        # A job that fails (its events go again), then the one that completes.
        api.script(Fault.job_fails("database busy"))
        ids["failed"] = enqueue(store, 3)
        assert (await drainer.flush(timeout=30)).remaining == 0
        # Refused: dead letters.
        api.script(Fault.error(400, "no such course"))
        ids["rejected"] = enqueue(store, 3)
        report = await drainer.flush(timeout=30)
        assert (report.rejected, report.remaining) == (3, 0)
    finally:
        await drainer.stop()
        await sink.aclose()
    return ids


@pytest.mark.parametrize("thread_safe", [True, False])
def test_a_whole_cycle_calls_the_store_only_on_its_thread_when_it_is_thread_safe(
    tmp_path: Path, api: StandIn, thread_safe: bool
) -> None:
    store = Noted(tmp_path / "s.sqlite3", thread_safe=thread_safe)
    loop_thread: list[str] = []

    async def go() -> dict[str, list[str]]:
        loop_thread.append(threading.current_thread().name)
        store.calls.clear()  # from here on, every call is the drainer's
        return await cycle(store, api)

    ids = asyncio.run(go())
    calls = list(store.calls)
    # The cycle did what it says: each step's store call was made.
    assert posts(api) == [ids["unknown"]] * 2 + [ids["failed"]] * 2 + [ids["rejected"]]
    assert Counter(api.received_ids) == dict.fromkeys(ids["unknown"] + ids["failed"], 1)
    assert [d.event_id for d in store.dead_letters()] == ids["rejected"]
    seen = threads_by_call(calls)
    assert {
        "claim_batch", "inflight", "release", "ack", "record_job", "jobs_pending",
        "job_events", "job_failed", "confirm", "dead_letter", "depth",
    } <= seen.keys()  # fmt: skip
    expected = {STORE_THREAD} if thread_safe else {loop_thread[0]}
    assert seen == dict.fromkeys(seen, expected)
    store.close()


def copied(event: dict[str, Any]) -> dict[str, Any]:
    """As another writer stored it: not marked as our builder's, so the sink checks it."""
    return json.loads(json.dumps(event))


class Sends(LocalSink):
    """The local sink as a remote one (claimed, sent as dicts): the drainer's general path."""

    async def send(self, envelope: dict[str, Any]) -> str | None:
        return await super().send(envelope)


@pytest.mark.parametrize("thread_safe", [True, False])
@pytest.mark.parametrize("sink_class", [LocalSink, Sends])
def test_a_batch_refused_in_part_is_set_aside_on_the_store_thread(
    tmp_path: Path, thread_safe: bool, sink_class: type[LocalSink]
) -> None:
    store = Noted(tmp_path / "s.sqlite3", thread_safe=thread_safe)
    good, bad = time_spent_events(str(uuid.uuid4()), 2)
    bad = copied(bad)
    bad["object"]["subject"] = "Maths"
    for event in (good, bad):
        store.enqueue(event, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
    drainer = Drainer(store, sink_class(), batch_size=10, retry_initial=0.01)

    async def go() -> tuple[str, Any]:
        try:
            return threading.current_thread().name, await drainer.flush(timeout=30)
        finally:
            await drainer.stop()

    loop_thread, report = asyncio.run(go())
    assert (report.sent, report.rejected, report.remaining) == (1, 1, 0)
    assert [d.event_id for d in store.dead_letters()] == [bad["id"]]
    seen = threads_by_call(store.calls)
    taken = "stored_batch" if sink_class is LocalSink else "claim_batch"
    assert {taken, "dead_letter", "release", "ack"} <= seen.keys()
    expected = {STORE_THREAD} if thread_safe else {loop_thread}
    assert seen == dict.fromkeys(seen, expected)
    store.close()


class SlowRecord(Store):
    """Records a job slowly on the store thread: time for the drain to be cancelled meanwhile."""

    thread_safe = True
    recording = threading.Event()

    def record_job(self, event_ids: Any, job_id: str) -> None:
        self.recording.set()
        time.sleep(0.3)
        super().record_job(event_ids, job_id)


def test_a_job_recorded_after_its_drain_was_cancelled_is_still_followed(
    tmp_path: Path, api: StandIn
) -> None:
    """The store thread finishes what it was handed when the drain step is cancelled (a stop
    or a flush timing out): the job it records is looked after, not left inflight for good."""
    store = SlowRecord(tmp_path / "s.sqlite3")
    ids = enqueue(store, 2)

    async def go() -> Any:
        sink = TimebackSink(
            Credentials(CLIENT_ID, SECRET), base_url=api.url, auth_url=api.token_url
        )
        drainer = Drainer(store, sink, job_poll_initial=0.05, job_poll_max=0.2)
        try:
            step = asyncio.ensure_future(drainer.drain_once())
            while not store.recording.is_set():
                assert not step.done(), step.result()
                await asyncio.sleep(0.01)
            step.cancel()  # while the store thread records the job
            with pytest.raises(asyncio.CancelledError):
                await step
            deadline = time.monotonic() + 10
            while not store.jobs_pending() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert [store.job_events(job.job_id) for job in store.jobs_pending()] == [ids]
            return await drainer.flush(timeout=20)
        finally:
            await drainer.stop()
            await sink.aclose()

    report = asyncio.run(go())
    assert (report.sent, report.remaining) == (2, 0)
    assert posts(api) == [ids] and api.received_ids == ids
    store.close()
