"""The relay's forwarder on an event loop of its own thread (relay/forwarding.py): it delivers
what the ingest queues without the ingest's loop running any of its steps, is woken by the
ingest's notify across threads, and stops cleanly (flush, drainer stopped, sink closed on its
own loop, thread ended), on each backend, against the stand-in Timeback."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from timeback_jupyter.relay.forwarding import Forwarder
from timeback_jupyter.testing.standin import StandIn

from .conftest import ADA, BOB, Wall
from .test_relay_offload import CLIENT_ID, SECRET, accept, forwarder


@pytest.fixture
def api():
    with StandIn(CLIENT_ID, SECRET) as server:
        server.users["ada@school.edu"] = ["u-ada"]
        server.users["bob@school.edu"] = ["u-bob"]
        yield server


@pytest.fixture
def clock(wall: Wall) -> Wall:
    return wall


@pytest.mark.asyncio
async def test_the_forwarder_delivers_on_its_own_loop_and_stops_cleanly(api, relay, wall):
    drainer = forwarder(relay, api, wall, batch_size=4)
    sink = drainer.sink
    where: list[tuple[int, asyncio.AbstractEventLoop]] = []
    send, close = sink.send, sink.aclose

    async def recorded_send(envelope):
        where.append((threading.get_ident(), asyncio.get_running_loop()))
        return await send(envelope)

    async def recorded_close():
        where.append((threading.get_ident(), asyncio.get_running_loop()))
        await close()

    sink.send, sink.aclose = recorded_send, recorded_close
    relay.notify_linger = 0  # each commit that queued events wakes the forwarder at once
    fwd = Forwarder(drainer, sink)
    fwd.start()
    relay.notify = fwd.notify
    await fwd.run()
    try:
        ids = await accept(relay, 5, ADA) + await accept(relay, 3, BOB)
        deadline = time.monotonic() + 30
        while relay.status()["outbox"]["sent"] < len(ids):  # jobs confirmed, not only sent
            assert time.monotonic() < deadline, relay.status()
            await asyncio.sleep(0.05)
        status = await drainer.read_status()  # the face's read, from this loop
        assert status["sink"] == "timeback" and status["pending"] == 0
    finally:
        await fwd.stop(flush_timeout=2.0)
    here = (threading.get_ident(), asyncio.get_running_loop())
    assert where and all(w != here for w in where)  # every send and the close: not here
    assert len({w[0] for w in where}) == 1  # all on the forwarder's thread
    assert fwd.sink_closed and not fwd._thread.is_alive()
    counts = Counter(api.received_ids)
    assert sorted(counts) == sorted(ids) and max(counts.values()) == 1
    fwd.notify()  # after the stop: nothing to wake, no error


@pytest.mark.asyncio
async def test_events_queued_before_the_start_are_recovered_and_sent(api, relay, wall):
    ids = await accept(relay, 4, ADA)
    drainer = forwarder(relay, api, wall, batch_size=10)
    fwd = Forwarder(drainer, drainer.sink)
    fwd.start()
    await fwd.run()
    try:
        deadline = time.monotonic() + 30
        while relay.status()["outbox"]["sent"] < len(ids):
            assert time.monotonic() < deadline, relay.status()
            await asyncio.sleep(0.05)
    finally:
        await fwd.stop(flush_timeout=2.0)
    assert sorted(api.received_ids) == sorted(ids)
