"""The forwarder's settle on the relay's outbox (delivery/settle.py, issue 20): with every send of
its own settled it hands the store thread no inflight read, except the look for a dead
replica's sends, which the outbox throttles itself (``outbox.ORPHANS_EVERY``): found then, and
settled once. Real replicas on PostgreSQL (one in a process killed), the stand-in Timeback."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from timeback_jupyter.config import Credentials
from timeback_jupyter.delivery import Drainer, TimebackSink
from timeback_jupyter.relay import outbox as ob
from timeback_jupyter.relay.database import open_relay_db
from timeback_jupyter.relay.outbox import RelayOutbox
from timeback_jupyter.testing.standin import SENSOR, StandIn, time_spent_events

from .conftest import T0
from .hub import wait_until

CLIENT_ID, SECRET = "relay-client", "relay-secret"


class Counted(RelayOutbox):
    """The relay's outbox, counting the inflight reads the drainer asks for."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.inflight_reads = 0

    def inflight(self) -> Any:
        self.inflight_reads += 1
        return super().inflight()


def enqueue(outbox: RelayOutbox, count: int) -> list[str]:
    events = time_spent_events(str(uuid.uuid4()), count)
    with outbox.db.write() as conn:
        for i, event in enumerate(events):
            ob.enqueue(conn, event, user="ada", run_id=None, kind="time_spent",
                       sensor=SENSOR, at=T0 + i)  # fmt: skip
    return [e["id"] for e in events]


def claim_in_a_replica_that_dies(url: str) -> str:
    """Another replica, in its own process, claims one event and is killed mid-send."""
    code = (
        "import sys, time\n"
        "from timeback_jupyter.relay.database import open_relay_db\n"
        "from timeback_jupyter.relay.outbox import RelayOutbox\n"
        "out = RelayOutbox(open_relay_db(sys.argv[1]))\n"
        "print(*[i.event_id for i in out.claim_batch(1)], flush=True)\n"
        "time.sleep(600)\n"
    )
    other = subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None
        return other.stdout.readline().strip()
    finally:
        other.kill()
        other.wait(30)


@pytest.mark.asyncio
async def test_a_forwarder_with_its_sends_settled_looks_only_for_a_dead_replicas(
    postgres_stores, monkeypatch
):
    url = postgres_stores()
    with StandIn(CLIENT_ID, SECRET) as api:
        api.job_delay = 0.05
        mine = Counted(open_relay_db(url))
        sink = TimebackSink(
            Credentials(CLIENT_ID, SECRET), base_url=api.url, auth_url=api.token_url, timeout=5
        )
        drainer = Drainer(
            mine, sink, batch_size=5, retry_initial=0.05, retry_max=0.2,
            job_poll_initial=0.05, job_poll_max=0.2, job_timeout=0.5,
        )  # fmt: skip
        try:
            ours = enqueue(mine, 3)
            assert (await drainer.flush(timeout=30)).sent == 3
            # Its own sends settled, the dead-replica look not due: an idle step hands the
            # store thread its claim (which finds nothing) and nothing else.
            monkeypatch.setattr(ob, "ORPHANS_EVERY", 3600.0)
            handoffs, reads = drainer.store_thread.handoffs, mine.inflight_reads
            for _ in range(30):
                assert (await drainer.drain_once()).idle
            steps = (drainer.store_thread.handoffs - handoffs, mine.inflight_reads - reads)
            assert steps == (30, 0)

            # A replica claims one event and dies mid-send. Until the look is due, nothing
            # looks for it (and nothing newer waits for it: it is not this replica's send).
            theirs = enqueue(mine, 2)
            orphan = claim_in_a_replica_that_dies(url)
            assert orphan == theirs[0]
            locks = (
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND "
                "database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            with mine.db.read() as conn:  # its lock gone with its session
                wait_until(lambda: conn.exec_driver_sql(locks).scalar_one() == 1, "the lock")
            assert (await drainer.flush(timeout=30)).sent == 1  # the other one
            assert mine.stats()["inflight"] == 1 and mine.inflight_reads == reads

            # The look comes due: found, not found upstream, sent again after job_timeout.
            monkeypatch.setattr(ob, "ORPHANS_EVERY", 0.2)
            # (Found, it is looked up again only at the outbox's next due look: a few flushes.)
            sent, deadline = 0, time.monotonic() + 30
            while not sent:
                assert time.monotonic() < deadline, mine.stats()
                sent = (report := await drainer.flush(timeout=5)).sent
                await asyncio.sleep(0.05)
            assert report.remaining == 0 and report.sent == 1
            assert mine.inflight_reads > reads
            assert Counter(api.received_ids) == dict.fromkeys(ours + theirs, 1)

            # Settled: the look at most once per ORPHANS_EVERY, however many steps.
            reads, started = mine.inflight_reads, time.monotonic()
            for _ in range(60):
                assert (await drainer.drain_once()).idle
            elapsed = time.monotonic() - started
            assert mine.inflight_reads - reads <= elapsed / ob.ORPHANS_EVERY + 1
        finally:
            await drainer.stop()
            await sink.aclose()
            mine.db.close()
