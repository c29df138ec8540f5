"""A drain step's settle reads the store only when it could find something (delivery/settle.py,
issue 20): after a look found nothing inflight, and while every claim since has its outcome
written, idle steps make no store-thread handoff for it. A send whose outcome is unknown (a
timeout mid-send, a drain cancelled mid-send) is still looked for until it is settled, once.

Real SQLite store (counting its calls), real drainer, the local sink and the stand-in Timeback.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from timeback_jupyter.config import Credentials
from timeback_jupyter.delivery import Drainer, DrainerBusy, LocalSink, TimebackSink
from timeback_jupyter.store import Store
from timeback_jupyter.testing.standin import EVENT_PATH, Fault, StandIn

from .test_drain_offload import enqueue

CLIENT_ID, SECRET = "settle-client", "settle-secret"
IDLE_STEPS = 40


class Counted(Store):
    """The server's SQLite store, counting the drainer's inflight reads."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.inflight_reads = 0

    def inflight(self) -> Any:
        self.inflight_reads += 1
        return super().inflight()


class Sends(LocalSink):
    """The local sink as a remote one (claimed, acked without a job): the drainer's general
    path, where every batch is a claim the settler must hear the outcome of."""

    async def send(self, envelope: dict[str, Any]) -> str | None:
        return await super().send(envelope)


@pytest.fixture
def api():
    with StandIn(CLIENT_ID, SECRET) as server:
        server.job_delay = 0.05
        yield server


def timeback(api: StandIn, timeout: float = 5.0) -> TimebackSink:
    return TimebackSink(
        Credentials(CLIENT_ID, SECRET), base_url=api.url, auth_url=api.token_url, timeout=timeout
    )


def drainer_for(store: Store, sink: Any, job_timeout: float = 30.0) -> Drainer:
    return Drainer(
        store, sink, batch_size=5, retry_initial=0.05, retry_max=0.2,
        job_poll_initial=0.05, job_poll_max=0.2, job_timeout=job_timeout,
    )  # fmt: skip


async def idle_steps(drainer: Drainer, store: Counted, steps: int) -> tuple[int, int]:
    """(store-thread handoffs, inflight reads) over ``steps`` drain steps with nothing to do."""
    handoffs, reads = drainer.store_thread.handoffs, store.inflight_reads
    for _ in range(steps):
        report = await drainer.drain_once()
        assert report.idle and report.waiting is None and report.sent == 0
    return drainer.store_thread.handoffs - handoffs, store.inflight_reads - reads


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["local", "claimed", "timeback"])
async def test_idle_steps_after_delivery_hand_the_store_thread_only_the_batch_look(
    tmp_path: Path, api: StandIn, kind: str
) -> None:
    store = Counted(tmp_path / "s.sqlite3")
    sink: Any = {"local": LocalSink, "claimed": Sends}.get(kind, lambda: timeback(api))()
    drainer = drainer_for(store, sink)
    try:
        ids = enqueue(store, 7)
        report = await drainer.flush(timeout=30)
        assert (report.sent, report.remaining) == (7, 0)
        if kind == "timeback":
            assert sorted(api.received_ids) == sorted(ids)
        # Each idle step: one look for a batch (the stored batch, or a claim that finds
        # none); no inflight read, no job read (none pending).
        assert await idle_steps(drainer, store, IDLE_STEPS) == (IDLE_STEPS, 0)
        # Something new: claimed, delivered, and the steps after it as idle as before.
        enqueue(store, 2)
        assert (await drainer.flush(timeout=30)).sent == 2
        assert await idle_steps(drainer, store, IDLE_STEPS) == (IDLE_STEPS, 0)
        assert store.stats()["sent"] == 9
    finally:
        await drainer.stop()
        if isinstance(sink, TimebackSink):
            await sink.aclose()
        store.close()


@pytest.mark.asyncio
async def test_a_send_timed_out_mid_way_is_looked_for_until_settled_once(
    tmp_path: Path, api: StandIn
) -> None:
    store = Counted(tmp_path / "s.sqlite3")
    sink = timeback(api, timeout=0.5)
    drainer = drainer_for(store, sink)
    try:
        assert await sink.exists("urn:uuid:00000000-0000-4000-8000-000000000000") is False
        assert (await drainer.drain_once()).idle  # the first look: nothing inflight
        # The request outlives our timeout, then Timeback processes it all the same.
        api.script(Fault.hang(1.0, then="answer"))
        ids = enqueue(store, 3)
        report = await drainer.drain_once()
        assert report.retried == 3 and "did not answer in time" in (report.error or "")
        assert store.stats()["inflight"] == 3  # its outcome unknown: kept inflight
        reads = store.inflight_reads
        report = await drainer.flush(timeout=30)
        assert report.remaining == 0 and report.sent == 3
        assert store.inflight_reads > reads  # looked for, until found upstream
        # Stored upstream once, by the one request; never sent again.
        assert Counter(api.received_ids) == dict.fromkeys(ids, 1)
        assert [r.event_ids for r in api.requests if r.path == EVENT_PATH] == [ids]
        assert store.stats()["sent"] == 3
        # Settled: the steps after it read nothing inflight again.
        _, idle_reads = await idle_steps(drainer, store, IDLE_STEPS)
        assert idle_reads == 0
    finally:
        await drainer.stop()
        await sink.aclose()
        store.close()


@pytest.mark.asyncio
async def test_a_drain_cancelled_mid_send_leaves_a_look_for_the_next_step(
    tmp_path: Path, api: StandIn
) -> None:
    store = Counted(tmp_path / "s.sqlite3")
    sink = timeback(api, timeout=10.0)
    drainer = drainer_for(store, sink)
    try:
        assert (await drainer.drain_once()).idle  # the first look: nothing inflight
        api.script(Fault.hang(1.0, then="answer"))
        ids = enqueue(store, 3)
        # The flush gives up mid-send: the step is cancelled, no outcome is written.
        report = await drainer.flush(timeout=0.3)
        assert report.remaining == 3 and store.stats()["inflight"] == 3
        reads = store.inflight_reads
        await asyncio.sleep(1.5)  # the stand-in processes the request it held
        report = await drainer.flush(timeout=30)
        assert report.remaining == 0 and report.sent == 3
        assert store.inflight_reads > reads
        assert Counter(api.received_ids) == dict.fromkeys(ids, 1)
        assert [r.event_ids for r in api.requests if r.path == EVENT_PATH] == [ids]
        _, idle_reads = await idle_steps(drainer, store, IDLE_STEPS)
        assert idle_reads == 0
    finally:
        await drainer.stop()
        await sink.aclose()
        store.close()


@pytest.mark.asyncio
async def test_a_drainer_back_from_standby_looks_for_what_the_owner_left(
    tmp_path: Path, api: StandIn
) -> None:
    """Its last look found nothing, but another process owned the store since: it looks."""
    path = tmp_path / "s.sqlite3"
    store, owner_store = Counted(path), Store(path)
    mine, owner = drainer_for(store, timeback(api), 0.3), drainer_for(owner_store, timeback(api))
    try:
        assert (await mine.drain_once()).idle  # looked: nothing inflight
        await mine.stop()  # lets the lease go
        await owner.recover()
        with pytest.raises(DrainerBusy):
            await mine.drain_once()
        ids = enqueue(store, 2)
        assert len(owner_store.claim_batch(5)) == 2  # the owner claimed, then stopped mid-send
        await owner.stop()
        reads = store.inflight_reads
        report = await mine.flush(timeout=30)  # not found upstream: sent again after 0.3 s
        assert report.remaining == 0 and report.sent == 2
        assert store.inflight_reads > reads
        assert Counter(api.received_ids) == dict.fromkeys(ids, 1)
    finally:
        for drainer in (mine, owner):
            await drainer.stop()
            await drainer.sink.aclose()  # type: ignore[attr-defined]
        owner_store.close()
        store.close()
