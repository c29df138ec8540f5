"""A forwarder's own pace (``Drainer(pace=...)``, ``c.Relay.forward_every``): after an envelope
that was not a full batch, what comes meanwhile waits for the pace and goes in one envelope; a
backlog (full batches) goes on at once.

Against the real stand-in Timeback through the official client (``TimebackSink``, as a relay
forwards); the drainer's clock is injected and moves only when a test says, so a hold is seen
for what it is and costs no real time.
"""

import asyncio
import json
import time
import uuid

import pytest
from traitlets import TraitError

from timeback_jupyter.config import Credentials, Timeback
from timeback_jupyter.delivery import DeliveryError, Drainer, DrainReport, TimebackSink
from timeback_jupyter.delivery.pace import Pacer
from timeback_jupyter.relay.app import build_parts
from timeback_jupyter.relay.settings import Relay as RelaySettings
from timeback_jupyter.store import KIND_TIME_SPENT, Store
from timeback_jupyter.testing.standin import SENSOR, StandIn, time_spent_events

from .relay.hub import CATALOG
from .test_relay_pace import ManualClock

CLIENT_ID = "forwarder-7"
SECRET = "pace-Secret-99"
PACE = 30.0


class Forwarding:
    """An outbox, a drainer on a manual clock, the stand-in it delivers to."""

    def __init__(self, tmp_path, api: StandIn, **kw) -> None:
        self.api, self.clock = api, ManualClock()
        self.store = Store(tmp_path / "outbox.sqlite3")
        self.sink = TimebackSink(
            Credentials(CLIENT_ID, SECRET), base_url=api.url, auth_url=api.token_url
        )
        self.drainer = Drainer(
            self.store, self.sink, now=self.clock.now, sleep=self.clock.sleep, **kw
        )
        self.run_id = str(uuid.uuid4())
        self.windows = iter(time_spent_events(self.run_id, 40, start=time.time() - 3600))
        self.task: asyncio.Task | None = None

    def queue(self, n: int) -> list[str]:
        ids = []
        for _ in range(n):
            event = next(self.windows)
            self.store.enqueue(event, run_id=self.run_id, kind=KIND_TIME_SPENT, sensor=SENSOR)
            ids.append(event["id"])
        self.drainer.notify()
        return ids

    def sizes(self) -> list[int]:
        return [len(e["data"]) for e in self.api.envelopes]

    async def posted(self, count: int) -> None:
        deadline = time.monotonic() + 20
        while len(self.api.envelopes) < count:
            assert time.monotonic() < deadline, f"{count} envelopes expected: {self.sizes()}"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # the drainer notes its send on its clock before time moves

    async def close(self) -> None:
        await asyncio.wait_for(self.drainer.stop(), 10)
        await self.sink.aclose()
        self.store.close()


@pytest.fixture
def api():
    with StandIn(CLIENT_ID, SECRET) as server:
        yield server


@pytest.mark.parametrize("pace", [PACE, 0.0])
async def test_what_comes_after_a_partial_envelope_waits_for_the_pace(tmp_path, api, pace):
    f = Forwarding(tmp_path, api, batch_size=3, pace=pace)
    try:
        first = f.queue(1)
        f.task = asyncio.create_task(f.drainer.run())
        await f.posted(1)  # nothing sent yet: the first goes at once
        later = f.queue(2)
        if pace:
            await asyncio.sleep(0.5)  # real time passes, the drainer's clock does not
            assert f.sizes() == [1], "held events went before the pace had passed"
            f.clock.advance(pace)
        await f.posted(2)
        assert f.sizes() == [1, 2]
        assert [[e["id"] for e in env["data"]] for env in api.envelopes] == [first, later]
    finally:
        await f.close()


async def test_a_backlog_goes_on_at_once_in_full_envelopes(tmp_path, api):
    f = Forwarding(tmp_path, api, batch_size=3, pace=PACE)
    try:
        f.queue(7)
        f.task = asyncio.create_task(f.drainer.run())
        # Two full envelopes, then the rest at once: a full one starts no hold.
        await f.posted(3)
        assert f.sizes() == [3, 3, 1]
        f.queue(2)  # after the partial third: held
        await asyncio.sleep(0.5)
        assert f.sizes() == [3, 3, 1]
        f.clock.advance(PACE)
        await f.posted(4)
        assert f.sizes() == [3, 3, 1, 2]
    finally:
        await f.close()


def test_events_confirmed_by_jobs_are_not_the_envelope_that_starts_a_hold():
    """A step that confirmed a job of 300 events and sent 5 sent a partial envelope."""
    clock = ManualClock()
    pacer = Pacer(object(), clock.now, PACE)
    pacer.after(DrainReport(sent=300, queued=5, batch=5), batch_size=200)
    assert pacer.hold() == PACE
    pacer.after(DrainReport(queued=200, batch=200), batch_size=200)
    assert pacer.hold() == 0.0  # a full one: more is pending


def test_a_sinks_longer_pace_counts_and_bad_paces_are_refused(tmp_path):
    class Told:
        pace = 60.0

    assert Pacer(Told(), time.monotonic, 0.25).pace == 60.0
    assert Pacer(object(), time.monotonic, 0.25).pace == 0.25
    store = Store(tmp_path / "outbox.sqlite3")
    try:
        for bad in (-1, 301, float("nan"), "1"):
            with pytest.raises(DeliveryError, match="pace must be 0 to 300"):
                Drainer(store, object(), pace=bad)  # type: ignore[arg-type]
    finally:
        store.close()


def test_the_relays_forward_every_is_bounded():
    assert RelaySettings().forward_every == 0.0
    assert RelaySettings(forward_every=2).forward_every == 2.0
    for bad in (-0.5, 11):
        with pytest.raises(TraitError, match=r"c\.Relay\.forward_every must be 0 to 10"):
            RelaySettings(forward_every=bad)


def test_the_relay_builds_its_forwarder_with_its_pace(tmp_path):
    catalog = tmp_path / "timeback.config.json"
    catalog.write_text(json.dumps(CATALOG))
    settings = RelaySettings(
        db_url=f"sqlite:///{tmp_path / 'relay.sqlite3'}",
        catalog=str(catalog),
        email_template="{name}@school.edu",
        sink="local",
        forward_every=1.5,
    )
    parts = build_parts(settings, Timeback(), {})
    try:
        assert parts.drainer.pace == 1.5
    finally:
        parts.db.close()
