"""Drill: Timeback down for 10 minutes, then 429 storms, while heartbeats keep coming.

The drainer's own loop (``Drainer.run``, as the server runs it) delivers through the real
TimebackSink to the stand-in over real HTTP. Time is simulated through the drainer's injected
clock and sleep, so ten minutes pass in a moment: every sleep advances the clock, and the
heartbeats three live runs would have produced meanwhile (one window each per 15 s) go into the
outbox as they come due.

For the first 600 simulated seconds nothing listens on Timeback's port (connection refused).
Then the stand-in comes up and answers a storm of 429s with Retry-After, and a second storm
later. Afterwards every event is delivered exactly once, in order per run; while it was down,
the drainer tried a handful of times (backoff), never in a loop, and said why in its status;
each 429 was waited out for at least its Retry-After.
"""

from __future__ import annotations

import asyncio
import random
import socket
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from timeback_jupyter import caliper
from timeback_jupyter.config import Credentials
from timeback_jupyter.delivery import Drainer, TimebackSink
from timeback_jupyter.model import Window
from timeback_jupyter.store import KIND_TIME_SPENT, Store
from timeback_jupyter.testing.standin import SENSOR, Fault, StandIn, _actor, _target

CLIENT_ID, SECRET = "outage-client", "outage-secret"
DOWN_FOR = 600.0
HEARTBEAT = 15.0
PRODUCE_UNTIL = 900.0
# (events Timeback must have received before the storm starts, how many 429s, Retry-After)
STORMS = [(0, 6, 30.0), (40, 4, 45.0)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Outage:
    """Simulated time, the heartbeats of three live runs, and Timeback's port coming alive."""

    def __init__(self, store: Store, port: int) -> None:
        self.store, self.port = store, port
        self.t = 0.0
        self.sleeps: list[tuple[float, float]] = []  # (when, how long)
        self.api: StandIn | None = None
        self.runs = {str(uuid.uuid4()): 0 for _ in range(3)}
        self.by_run: dict[str, list[str]] = {run: [] for run in self.runs}
        self.scripted = 0  # storms scripted so far
        self.drainer: Drainer | None = None
        self._produce()

    def now(self) -> float:
        return self.t

    @property
    def storms_over(self) -> bool:
        return self.scripted == len(STORMS) and self.api is not None and not self.api.pending_faults

    @property
    def produce_until(self) -> float:
        # Heartbeats go on until the last storm has blown over, so it meets a queue to send.
        return PRODUCE_UNTIL if self.storms_over else float("inf")

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append((self.t, seconds))
        self.t += seconds
        self._produce()
        if self.t >= DOWN_FOR and self.api is None:
            self.api = StandIn(CLIENT_ID, SECRET, port=self.port).start()
        if self.api is not None and self.scripted < len(STORMS):
            after, count, retry_after = STORMS[self.scripted]
            if len(self.api.received_ids) >= after and not self.api.pending_faults:
                self.scripted += 1
                self.api.script(*[Fault.rate_limited(retry_after) for _ in range(count)])
        await asyncio.sleep(0)

    def _produce(self) -> None:
        """Enqueue the windows that closed by now, as the server's tick would."""
        target, actor = _target(), _actor()
        produced = False
        for run, done in self.runs.items():
            while (done + 1) * HEARTBEAT <= min(self.t, self.produce_until):
                start = 1_768_471_200.0 + done * HEARTBEAT
                window = Window(run, start, start + HEARTBEAT, 11.0, 4.0)
                event = caliper.time_spent_event(window, run, actor, target)
                self.store.enqueue(event, run_id=run, kind=KIND_TIME_SPENT, sensor=SENSOR)
                self.by_run[run].append(event["id"])
                done += 1
                produced = True
            self.runs[run] = done
        if produced and self.drainer is not None:
            self.drainer.notify()


class CountingSink:
    """The real TimebackSink, with each send's simulated time and outcome noted."""

    name = "timeback"

    def __init__(self, sink: TimebackSink, outage: Outage) -> None:
        self.sink, self.outage = sink, outage
        self.sends: list[tuple[float, str]] = []

    async def send(self, envelope: dict[str, Any]) -> None:
        try:
            await self.sink.send(envelope)
        except Exception as err:
            self.sends.append((self.outage.t, type(err).__name__ + ": " + str(err)))
            raise
        self.sends.append((self.outage.t, "ok"))

    async def exists(self, event_id: str) -> bool | None:
        return await self.sink.exists(event_id)

    async def aclose(self) -> None:
        await self.sink.aclose()


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_ten_minutes_down_then_429_storms_delivers_everything_in_order(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = Store(tmp_path / "timeback.sqlite3")
    outage = Outage(store, port)
    real = TimebackSink(
        Credentials(CLIENT_ID, SECRET), base_url=url, auth_url=url + "/oauth2/token", timeout=5
    )
    sink = CountingSink(real, outage)
    drainer = Drainer(
        store, sink, batch_size=10, retry_initial=1.0, retry_max=300.0, idle_interval=2.0,
        now=outage.now, sleep=outage.sleep, rng=random.Random(7).random,
    )  # fmt: skip
    outage.drainer = drainer
    statuses_while_down: list[dict[str, Any]] = []
    task = asyncio.create_task(drainer.run())
    try:
        while not (outage.storms_over and outage.t > PRODUCE_UNTIL and store.depth() == 0):
            if outage.t < DOWN_FOR and drainer.status()["consecutive_failures"]:
                statuses_while_down.append(drainer.status())
            assert not task.done(), task.exception()
            await asyncio.sleep(0.001)
            assert outage.t < 20_000, "still not delivered after hours of simulated time"
    finally:
        await drainer.stop()
        await asyncio.wait_for(task, 10)
        await sink.aclose()
        api = outage.api
        if api is not None:
            api.stop()
        store.close()

    assert api is not None
    # Everything delivered, once, in order per run: also what was produced during the outage.
    received = api.received_ids
    produced = [i for ids in outage.by_run.values() for i in ids]
    assert len(produced) >= 3 * int(PRODUCE_UNTIL / HEARTBEAT)
    counts = Counter(received)
    assert sorted(counts) == sorted(produced), "events were lost"
    assert max(counts.values()) == 1, "events were delivered twice"
    for ids in outage.by_run.values():
        assert [i for i in received if i in set(ids)] == ids, "a run's events were reordered"

    # While down: a few attempts with growing gaps, never a busy loop; the status said why.
    down = [at for at, outcome in sink.sends if at < DOWN_FOR]
    assert all(outcome != "ok" for at, outcome in sink.sends if at < DOWN_FOR)
    assert 3 <= len(down) <= 25, f"{len(down)} attempts in {DOWN_FOR:.0f} s while down"
    waits = [seconds for at, seconds in outage.sleeps if at < DOWN_FOR]
    assert min(waits) >= 0.1, "retried with no wait: a busy loop"
    assert statuses_while_down
    assert statuses_while_down[-1]["state"] == "retrying"
    assert "cannot reach Timeback" in statuses_while_down[-1]["last_error"] or (
        "access token" in statuses_while_down[-1]["last_error"]
    )

    # Two separate storms, each 429 waited out for at least its Retry-After.
    assert outage.scripted == len(STORMS)
    storm_sends = [at for at, outcome in sink.sends if "rate-limiting" in outcome]
    retry_afters = [ra for _, count, ra in STORMS for _ in range(count)]
    assert len(storm_sends) == len(retry_afters)
    for at, retry_after in zip(storm_sends, retry_afters, strict=True):
        waited = next(seconds for when, seconds in outage.sleeps if when >= at)
        assert waited >= retry_after, f"waited {waited:.1f}s after a 429 (Retry-After)"
    came_back = next(at for at, outcome in sink.sends if at >= DOWN_FOR)
    print(
        f"DRILL {len(down)} attempts in {DOWN_FOR:.0f} s down; first try after Timeback came "
        f"back at +{came_back - DOWN_FOR:.0f} s; all delivered at "
        f"+{sink.sends[-1][0] - DOWN_FOR:.0f} s (simulated)"
    )
