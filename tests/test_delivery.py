"""The drainer and its sinks against a real HTTP stand-in for Timeback
(timeback_jupyter/testing/standin/)."""

import asyncio
import base64
import json
import logging
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from timeback_jupyter.config import Credentials, Timeback
from timeback_jupyter.delivery import (
    DeliveryError,
    Drainer,
    DrainerBusy,
    DrainReport,
    LocalSink,
    RejectedError,
    RetryableError,
    TimebackSink,
    make_sink,
)
from timeback_jupyter.store import KIND_TIME_SPENT, Store
from timeback_jupyter.testing.standin import (
    EVENT_PATH,
    SENSOR,
    TOKEN_PATH,
    Fault,
    StandIn,
    time_spent_events,
)

CLIENT_ID = "jupyter-client-7"
SECRET = "s3cr3t-Do-Not-Leak-42"


class FakeTime:
    """Injected monotonic clock and sleep: a test never waits for real backoff. ``wall`` is
    the store's clock on the same time line (durable times, such as when a send began)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_780_000_000.0 + self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


@pytest.fixture
def api():
    with StandIn(CLIENT_ID, SECRET) as server:
        yield server


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def store(tmp_path: Path, fake: FakeTime):
    s = Store(tmp_path / "timeback.sqlite3", now=fake.wall)
    yield s
    s.close()


def sink_for(api: StandIn, *, secret: str = SECRET, timeout: float = 2.0) -> TimebackSink:
    return TimebackSink(
        Credentials(CLIENT_ID, secret), base_url=api.url, auth_url=api.token_url, timeout=timeout
    )


def drainer(store: Store, sink, fake: FakeTime, **kw) -> Drainer:
    kw.setdefault("batch_size", 3)
    kw.setdefault("retry_initial", 1.0)
    kw.setdefault("retry_max", 60.0)
    # The stand-in's jobs complete at once (job_delay 0): within a (fake) second is a safe
    # deadline here; tests/test_jobs.py runs slow jobs in real time.
    kw.setdefault("job_timeout", 1.0)
    return Drainer(store, sink, now=fake.now, sleep=fake.sleep, wall=fake.wall, **kw)


def enqueue_runs(store: Store, runs: int = 3, per_run: int = 4) -> dict[str, list[str]]:
    """Heartbeats of several runs, interleaved as live runs produce them."""
    by_run = {str(uuid.uuid4()): [] for _ in range(runs)}
    streams = {run: time_spent_events(run, per_run) for run in by_run}
    for i in range(per_run):
        for run, events in streams.items():
            store.enqueue(events[i], run_id=run, kind=KIND_TIME_SPENT, sensor=SENSOR)
            by_run[run].append(events[i]["id"])
    return by_run


def assert_each_once_in_order(received_ids: list[str], by_run: dict[str, list[str]]) -> None:
    counts = Counter(received_ids)
    expected = [i for ids in by_run.values() for i in ids]
    assert sorted(counts) == sorted(expected), "some events were lost"
    assert max(counts.values()) == 1, "some events arrived twice"
    for ids in by_run.values():
        assert [i for i in received_ids if i in set(ids)] == ids, "order within a run broke"


def event_posts(api: StandIn):
    return [r for r in api.requests if r.path == EVENT_PATH]


# -- the happy path -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_one_envelope_per_batch_all_events_once_in_order(api, store, fake):
    by_run = enqueue_runs(store, runs=2, per_run=4)  # 8 events, batches of 3
    sink = sink_for(api)
    d = drainer(store, sink, fake)
    report = await d.flush(timeout=60)
    assert (report.sent, report.remaining, report.idle) == (8, 0, True)
    assert [len(e["data"]) for e in api.envelopes] == [3, 3, 2]
    for envelope in api.envelopes:
        assert envelope["sensor"] == SENSOR
        assert envelope["dataVersion"] == "http://purl.imsglobal.org/ctx/caliper/v1p2"
        assert envelope["sendTime"].endswith("Z")
    assert_each_once_in_order(api.received_ids, by_run)
    assert store.stats()["sent"] == 8
    assert d.status()["state"] == "ok"
    await sink.aclose()
    await d.stop()


# -- outages and retries --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_outage_then_recovery_delivers_everything_once(api, store, fake):
    by_run = enqueue_runs(store, runs=3, per_run=3)
    api.script(
        Fault.error(500), Fault.error(503), Fault.error(502), Fault.close(), Fault.error(500)
    )
    sink = sink_for(api)
    d = drainer(store, sink, fake, rng=lambda: 1.0)
    first = await d.drain_once()
    assert (first.sent, first.retried, first.delay) == (0, 3, 1.0)
    status = d.status()
    assert status["state"] == "retrying"
    assert status["consecutive_failures"] == 1
    assert status["next_attempt_in"] == 1.0
    assert "500" in status["last_error"]
    report = await d.flush(timeout=3600)
    assert report.remaining == 0
    assert_each_once_in_order(api.received_ids, by_run)
    # Exponential backoff between the failures, then straight on once it works.
    assert fake.sleeps[:4] == [2.0, 4.0, 8.0, 16.0]
    assert d.status() | {"pending": None} == {
        "state": "ok",
        "sink": "timeback",
        "consecutive_failures": 0,
        "last_error": None,
        "next_attempt_in": None,
        "pending": None,
        "inflight": 0,
        "dead_letters": 0,
        "jobs": {
            "pending": 0,
            "failed": 0,
            "confirmed": 3,  # one envelope of 3 events per run, each confirmed by its job
            "events_awaiting": 0,
            "oldest_pending_age": None,
        },
    }
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_every_retry_carries_the_same_event_ids(api, store, fake):
    enqueue_runs(store, runs=1, per_run=3)
    api.script(Fault.error(500), Fault.error(503), Fault.rate_limited(None))
    sink = sink_for(api)
    d = drainer(store, sink, fake)
    await d.flush(timeout=3600)
    attempts = [r.event_ids for r in event_posts(api)]
    assert len(attempts) == 4
    assert all(ids == attempts[0] for ids in attempts)
    assert api.received_ids == attempts[0]
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_retry_after_is_honoured(api, store, fake):
    enqueue_runs(store, runs=1, per_run=2)
    api.script(Fault.rate_limited(42))
    sink = sink_for(api)
    d = drainer(store, sink, fake, rng=lambda: 0.0)  # jitter alone would say ~0 s
    report = await d.flush(timeout=3600)
    assert fake.sleeps and fake.sleeps[0] >= 42
    assert report.sent == 2
    # One 429 reached us: the official client's own retry loop did not sleep and resend.
    assert len(event_posts(api)) == 2
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_a_400_dead_letters_that_batch_and_the_queue_goes_on(api, store, fake):
    by_run = enqueue_runs(store, runs=1, per_run=5)
    ids = by_run.popitem()[1]
    api.script(Fault.error(400, "generated.items.0.value: must be finite"))
    sink = sink_for(api)
    d = drainer(store, sink, fake, batch_size=2)
    report = await d.flush(timeout=60)
    assert (report.rejected, report.sent, report.remaining) == (2, 3, 0)
    letters = store.dead_letters()
    assert [x.event_id for x in letters] == ids[:2]
    assert all("must be finite" in x.reason for x in letters)
    assert api.received_ids == ids[2:]
    assert d.status()["state"] == "rejected-some"
    assert d.status()["dead_letters"] == 2
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_the_standin_rejects_an_invalid_event_with_its_reason(api, store, fake):
    good, bad = time_spent_events(str(uuid.uuid4()), 2)
    bad["object"]["subject"] = "Cooking"
    store.enqueue(bad, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
    store.enqueue(good, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
    sink = sink_for(api)
    d = drainer(store, sink, fake, batch_size=1)
    report = await d.flush(timeout=60)
    assert (report.rejected, report.sent) == (1, 1)
    [letter] = store.dead_letters()
    assert letter.event_id == bad["id"]
    assert "subject" in letter.reason
    assert api.received_ids == [good["id"]]
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_a_hang_past_the_timeout_is_retried(api, store, fake):
    by_run = enqueue_runs(store, runs=1, per_run=2)
    api.script(Fault.hang(3.0, then="drop"))
    sink = sink_for(api, timeout=0.3)
    d = drainer(store, sink, fake)
    report = await d.flush(timeout=3600)
    assert report.remaining == 0
    assert report.retried == 2
    assert_each_once_in_order(api.received_ids, by_run)
    # The outcome of the hung request was unknown: upstream was asked before resending.
    asked = [r for r in api.requests if r.path.startswith("/caliper/events/")]
    assert len(asked) >= 2
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_an_answer_lost_after_processing_is_not_sent_twice(api, store, fake):
    by_run = enqueue_runs(store, runs=1, per_run=3)
    api.script(Fault.slow(3.0))  # stored at once, answered after our timeout
    sink = sink_for(api, timeout=0.3)
    d = drainer(store, sink, fake)
    report = await d.flush(timeout=3600)
    assert report.remaining == 0
    assert len(event_posts(api)) == 1  # found upstream, never re-sent
    assert_each_once_in_order(api.received_ids, by_run)
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_unreachable_api_is_retryable(store, fake):
    with StandIn(CLIENT_ID, SECRET) as gone:
        url, token_url = gone.url, gone.token_url
    sink = TimebackSink(Credentials(CLIENT_ID, SECRET), base_url=url, auth_url=token_url)
    enqueue_runs(store, runs=1, per_run=1)
    d = drainer(store, sink, fake)
    report = await d.drain_once()
    assert report.retried == 1 and report.delay > 0
    assert store.stats()["pending"] == 1
    await sink.aclose()
    await d.stop()


# -- crash recovery -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_recover_acks_what_upstream_has_and_resends_the_rest(api, store, fake):
    by_run = enqueue_runs(store, runs=1, per_run=4)
    ids = next(iter(by_run.values()))
    sink = sink_for(api)
    # A previous process claimed 3 events, got 2 of them out, and died before acking.
    claimed = store.claim_batch(3)
    envelope = {
        "sensor": SENSOR,
        "sendTime": "2026-01-15T10:00:00.000Z",
        "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2",
        "data": [i.payload for i in claimed[:2]],
    }
    await sink.send(envelope)
    d = drainer(store, sink, fake, batch_size=10)
    await d.recover()
    assert store.stats()["sent"] == 2
    # The third is not there yet, and a job may still store it: it waits for its deadline
    # (job_timeout after its send began) before it goes again.
    assert [i.event_id for i in store.inflight()] == [ids[2]]
    report = await d.flush(timeout=60)
    assert report.remaining == 0
    assert api.received_ids == ids  # the third went again, with its id, in its place
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_one_drainer_per_store(store, fake):
    # A second Jupyter server on the same store must not settle the first one's batch.
    first = drainer(store, LocalSink(), fake)
    await first.recover()
    enqueue_runs(store, runs=1, per_run=2)
    claimed = store.claim_batch(1)  # the first drainer's batch, mid-send
    second_sink = LocalSink()
    second = drainer(store, second_sink, fake)
    await second.recover()  # stands by quietly
    assert [i.event_id for i in store.inflight()] == [claimed[0].event_id]
    assert second.status()["state"] == "standby"
    with pytest.raises(DrainerBusy, match="another process is already delivering"):
        await second.drain_once()
    await first.stop()  # releases the lease (as a process exit would)
    report = await second.flush(timeout=60)
    assert (report.sent, report.remaining) == (2, 0)
    assert second.status()["state"] == "ok"
    await second.stop()


@pytest.mark.asyncio
async def test_a_standby_drainer_takes_over_when_the_owner_leaves(store, fake):
    owner = drainer(store, LocalSink(), fake)
    await owner.recover()
    waits: list[float] = []
    sink = LocalSink()
    d = drainer(store, sink, fake, idle_interval=2.0, retry_max=60.0)

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            await owner.stop()
        await asyncio.sleep(0)

    d._sleep = sleep
    enqueue_runs(store, runs=1, per_run=1)
    task = asyncio.create_task(d.run())
    for _ in range(200):
        if sink.accepted:
            break
        await asyncio.sleep(0.005)
    await d.stop()
    await asyncio.wait_for(task, 2)
    assert waits[:2] == [30.0, 30.0]  # checked back on a calm schedule, not as failures
    assert sink.accepted == 1


@pytest.mark.asyncio
async def test_flush_is_bounded_in_real_time_too(store):
    class StuckSink(LocalSink):
        async def send(self, envelope):
            await asyncio.Event().wait()

    enqueue_runs(store, runs=1, per_run=2)
    d = Drainer(store, StuckSink())
    loop = asyncio.get_running_loop()
    started = loop.time()
    report = await d.flush(timeout=0.2)
    assert loop.time() - started < 1.0
    assert report.remaining == 2
    assert store.stats()["inflight"] == 2  # settled by the next drain step or start
    await d.stop()


# -- the local sink -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_local_sink_dead_letters_only_the_invalid_event(store, fake):
    good1, bad, good2 = time_spent_events(str(uuid.uuid4()), 3)
    # An event from elsewhere (a plain dict): one our builder made is stored as checked, and
    # changing it afterwards is the caller's bug (caliper.BuiltEvent).
    bad = json.loads(json.dumps(bad))
    bad["generated"]["items"][0]["type"] = "sleeping"
    for e in (good1, bad, good2):
        store.enqueue(e, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
    sink = LocalSink()
    d = drainer(store, sink, fake, batch_size=10)
    report = await d.flush(timeout=60)
    assert (report.rejected, report.sent, report.remaining) == (1, 2, 0)
    [letter] = store.dead_letters()
    assert letter.event_id == bad["id"]
    assert "generated.items" in letter.reason
    assert list(store.events(status="sent")) == [good1, good2]
    assert sink.accepted == 2
    await d.stop()


@pytest.mark.asyncio
async def test_local_sink_refuses_a_malformed_envelope():
    sink = LocalSink()
    with pytest.raises(RejectedError, match="dataVersion"):
        await sink.send({"sensor": SENSOR, "sendTime": "x", "dataVersion": "1.1", "data": [{}]})
    with pytest.raises(RejectedError, match="data"):
        await sink.send({"sensor": SENSOR, "sendTime": "x", "dataVersion": "x", "data": []})
    assert await sink.exists("urn:uuid:x") is False


# -- credentials ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_timeback_sink_authenticates_with_the_configured_client(api, store, fake):
    enqueue_runs(store, runs=1, per_run=1)
    sink = sink_for(api)
    d = drainer(store, sink, fake)
    await d.flush(timeout=60)
    tokens = [r for r in api.requests if r.path == TOKEN_PATH]
    assert [r.client_id for r in tokens] == [CLIENT_ID]
    assert len(api.received) == 1
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_the_secret_never_shows(api, store, fake, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wr0ng-" + SECRET
    basic = base64.b64encode(f"{CLIENT_ID}:{wrong}".encode()).decode()
    enqueue_runs(store, runs=1, per_run=2)
    sink = sink_for(api, secret=wrong)
    d = drainer(store, sink, fake)
    report = await d.drain_once()
    assert report.retried == 2  # bad credentials keep the events queued, never dead
    status = d.status()
    assert status["state"] == "retrying"
    assert "401" in status["last_error"]
    with pytest.raises(RetryableError) as err:
        await sink.send(
            {
                "sensor": SENSOR,
                "sendTime": "2026-01-15T10:00:00Z",
                "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2",
                "data": [next(store.events())],
            }
        )
    texts = [str(err.value), repr(err.value), repr(sink), str(status)]
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(r.args) for r in caplog.records]
    assert caplog.records, "expected the failure to be logged"
    for text in texts:
        assert wrong not in text and SECRET not in text and basic not in text
    assert store.dead_letters() == []
    await sink.aclose()
    await d.stop()


def test_make_sink_follows_the_config(api):
    assert isinstance(make_sink(Timeback(), None), LocalSink)
    with pytest.raises(DeliveryError, match="TIMEBACK_CLIENT_ID"):
        make_sink(Timeback(sink="timeback"), None)
    config = Timeback(sink="timeback", base_url=api.url, auth_url=api.token_url)
    sink = make_sink(config, Credentials(CLIENT_ID, SECRET))
    assert isinstance(sink, TimebackSink)
    assert sink.base_url == api.url
    assert SECRET not in repr(sink)


# -- backoff and the loop -------------------------------------------------------------------


class DownSink:
    name = "down"

    def __init__(self, retry_after: float | None = None) -> None:
        self.sends = 0
        self.retry_after = retry_after

    async def send(self, envelope):
        self.sends += 1
        raise RetryableError("connection refused", retry_after=self.retry_after)

    async def exists(self, event_id):
        return None

    async def aclose(self):
        return None


@pytest.mark.asyncio
async def test_backoff_is_full_jitter_capped_and_floored(store, fake):
    enqueue_runs(store, runs=1, per_run=1)
    draws = iter([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0])
    d = drainer(store, DownSink(), fake, retry_initial=2.0, retry_max=20.0, rng=lambda: next(draws))
    delays = [(await d.drain_once()).delay for _ in range(8)]
    # 0.5 * min(20, 2 * 2**n); the last draw of 0 is floored so an outage never spins.
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 0.2]
    await d.stop()


@pytest.mark.asyncio
async def test_retry_after_beats_a_short_jitter(store, fake):
    enqueue_runs(store, runs=1, per_run=1)
    d = drainer(store, DownSink(retry_after=30.0), fake, rng=lambda: 0.1)
    assert (await d.drain_once()).delay == 30.0
    await d.stop()


@pytest.mark.asyncio
async def test_a_retry_after_after_an_outage_is_not_stretched_by_its_backoff(store, fake):
    enqueue_runs(store, runs=1, per_run=1)
    sink = DownSink()
    d = drainer(store, sink, fake, retry_initial=1.0, retry_max=300.0, rng=lambda: 1.0)
    outage = [(await d.drain_once()).delay for _ in range(8)]
    assert outage[-1] == 128.0  # the backoff grew while nothing answered
    sink.retry_after = 2.0  # the API is back and rate-limits: it asks for 2 s, not minutes
    assert (await d.drain_once()).delay == 2.0
    sink.retry_after = 0.0  # a Retry-After of 0 still cannot make a tight loop
    assert (await d.drain_once()).delay == 0.1
    await d.stop()


@pytest.mark.asyncio
async def test_run_waits_out_the_backoff_instead_of_spinning(store, fake):
    enqueue_runs(store, runs=1, per_run=1)
    sink = DownSink()
    d = drainer(store, sink, fake, rng=lambda: 1.0, retry_max=8.0)
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)
        if len(waited) == 6:
            asyncio.get_running_loop().call_soon(asyncio.ensure_future, d.stop())
        await asyncio.sleep(0)

    d._sleep = sleep
    task = asyncio.create_task(d.run())
    await asyncio.wait_for(task, 5)
    assert waited[:6] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert sink.sends == len(waited)  # one attempt per wait: no busy loop
    assert d.status()["state"] == "retrying"


@pytest.mark.asyncio
async def test_run_sleeps_when_idle_and_notify_wakes_it(store):
    never = asyncio.Event()

    async def sleep_forever(seconds: float) -> None:
        await never.wait()  # only notify() or stop() can end an idle wait

    sink = LocalSink()
    d = Drainer(store, sink, sleep=sleep_forever, idle_interval=1.0)
    task = asyncio.create_task(d.run())
    await asyncio.sleep(0.05)
    events = time_spent_events(str(uuid.uuid4()), 2)
    for e in events:
        store.enqueue(e, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
    d.notify()
    for _ in range(100):
        if sink.accepted == 2:
            break
        await asyncio.sleep(0.01)
    assert sink.accepted == 2
    assert list(store.events(status="sent")) == events
    await asyncio.wait_for(d.stop(), 2)
    assert task.done()


@pytest.mark.asyncio
async def test_stop_lets_the_batch_in_flight_finish(store):
    release = asyncio.Event()

    class SlowSink(LocalSink):
        async def send(self, envelope):
            await release.wait()
            await super().send(envelope)

    enqueue_runs(store, runs=1, per_run=2)
    sink = SlowSink()
    d = Drainer(store, sink, stop_timeout=5.0)
    task = asyncio.create_task(d.run())
    await asyncio.sleep(0.05)
    assert store.stats()["inflight"] == 2
    stopping = asyncio.create_task(d.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waiting for the batch
    release.set()
    await asyncio.wait_for(stopping, 2)
    assert task.done()
    assert store.stats()["sent"] == 2


@pytest.mark.asyncio
async def test_stop_is_bounded_and_leaves_the_batch_for_recovery(store):
    class StuckSink(LocalSink):
        async def send(self, envelope):
            await asyncio.Event().wait()

    enqueue_runs(store, runs=1, per_run=2)
    d = Drainer(store, StuckSink(), stop_timeout=0.1)
    task = asyncio.create_task(d.run())
    await asyncio.sleep(0.05)
    await asyncio.wait_for(d.stop(), 2)
    assert task.done()
    assert store.stats()["inflight"] == 2  # settled by recover() on the next start


def test_drainer_rejects_bad_settings(store):
    with pytest.raises(DeliveryError, match="batch_size"):
        Drainer(store, LocalSink(), batch_size=0)
    with pytest.raises(DeliveryError, match="retry_initial"):
        Drainer(store, LocalSink(), retry_initial=-1)
    with pytest.raises(DeliveryError, match="retry_max"):
        Drainer(store, LocalSink(), retry_initial=10, retry_max=5)
    with pytest.raises(DeliveryError, match="credentials"):
        TimebackSink(None)  # type: ignore[arg-type]
    with pytest.raises(DeliveryError, match="environment"):
        TimebackSink(Credentials("a", "b"), environment="moon")


def test_drain_reports_add_up():
    total = DrainReport(sent=2, retried=1) + DrainReport(sent=3, rejected=1, delay=4.0)
    assert (total.sent, total.retried, total.rejected, total.delay) == (5, 1, 1, 4.0)


@pytest.mark.asyncio
async def test_run_survives_a_failing_store_and_reports_it(tmp_path, fake):
    broken = Store(tmp_path / "t.sqlite3")
    broken.close()  # every call now raises StoreError
    d = drainer(broken, LocalSink(), fake, rng=lambda: 1.0)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            asyncio.get_running_loop().call_soon(asyncio.ensure_future, d.stop())
        await asyncio.sleep(0)

    d._sleep = sleep
    await asyncio.wait_for(d.run(), 5)
    assert waits == [1.0, 2.0, 4.0]
    status = d.status()
    assert status["state"] == "retrying"
    assert "closed" in status["last_error"]


@pytest.mark.asyncio
async def test_an_unexpected_sink_error_keeps_the_events(store, fake):
    class BuggySink(LocalSink):
        async def send(self, envelope):
            raise ValueError("oops")

    enqueue_runs(store, runs=1, per_run=2)
    d = drainer(store, BuggySink(), fake)
    report = await d.drain_once()
    assert report.retried == 2 and report.delay > 0
    assert "ValueError: oops" in d.status()["last_error"]
    assert store.depth() == 2 and store.dead_letters() == []
    await d.stop()


@pytest.mark.asyncio
async def test_a_drainer_runs_once_at_a_time(store):
    d = Drainer(store, LocalSink(), idle_interval=0.01)
    task = asyncio.create_task(d.run())
    await asyncio.sleep(0.02)
    with pytest.raises(DeliveryError, match="already running"):
        await d.run()
    await d.stop()
    assert task.done()


def test_drainer_from_config(store):
    config = Timeback(batch_size=7, retry_initial=0.5, retry_max=9.0, drain_interval=3.0)
    d = Drainer.from_config(store, LocalSink(), config)
    assert (d.batch_size, d.retry_initial, d.retry_max, d.idle_interval) == (7, 0.5, 9.0, 3.0)


class TimedSink(LocalSink):
    """The local sink, noting when each envelope arrived (real time)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_at: list[float] = []

    async def send(self, envelope):
        self.sent_at.append(time.perf_counter())
        await super().send(envelope)


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["flush", "run"])
async def test_a_backlog_leaves_the_event_loop_real_time_between_batches(store, how):
    """A batch holds the loop: the next one waits batch_pause, so requests get served."""
    enqueue_runs(store, runs=2, per_run=6)
    sink = TimedSink()
    d = Drainer(store, sink, batch_size=4, batch_pause=0.03)
    if how == "flush":
        assert (await d.flush(timeout=10)).sent == 12
    else:
        task = asyncio.ensure_future(d.run())
        while store.depth():
            await asyncio.sleep(0.01)
        await d.stop()
        await task
    assert len(sink.sent_at) == 3
    gaps = [b - a for a, b in zip(sink.sent_at, sink.sent_at[1:], strict=False)]
    assert min(gaps) >= 0.025, gaps


def test_batch_pause_is_checked(store):
    with pytest.raises(DeliveryError, match="batch_pause"):
        Drainer(store, LocalSink(), batch_pause=-1)
