"""Delivered means Timeback's job completed: the drainer against the asynchronous stand-in.

The stand-in answers an envelope with a job id and stores the events only when the job
completes (``job_delay`` later), or never when it fails; these tests run in real time with
short delays, waiting on conditions, never on the machine being quick.
"""

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from timeback_caliper.exceptions import JobFailedError, NotFoundError

from timeback_jupyter.config import Credentials, Timeback
from timeback_jupyter.delivery import (
    DeliveryError,
    Drainer,
    DrainerBusy,
    JobOutcome,
    LocalSink,
    TimebackSink,
)
from timeback_jupyter.store import KIND_TIME_SPENT, Store
from timeback_jupyter.testing.standin import (
    EVENT_PATH,
    SENSOR,
    Fault,
    StandIn,
    time_spent_events,
)

CLIENT_ID, SECRET = "jobs-client", "jobs-secret"


@pytest.fixture
def api():
    with StandIn(CLIENT_ID, SECRET) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "timeback.sqlite3") as s:
        yield s


def sink_for(api: StandIn, timeout: float = 5.0) -> TimebackSink:
    return TimebackSink(
        Credentials(CLIENT_ID, SECRET), base_url=api.url, auth_url=api.token_url, timeout=timeout
    )


async def warm(sink: TimebackSink) -> TimebackSink:
    """The SDK imported and a token fetched, so a short request timeout times only the send
    (on a loaded machine the first request's import and token can outlast it)."""
    assert await sink.exists("urn:uuid:00000000-0000-4000-8000-000000000000") is False
    return sink


def drainer(store: Store, sink, **kw) -> Drainer:
    """A drainer on real time with short waits, so these tests take a second or two."""
    kw.setdefault("batch_size", 10)
    kw.setdefault("retry_initial", 0.05)
    kw.setdefault("retry_max", 0.5)
    kw.setdefault("job_poll_initial", 0.05)
    kw.setdefault("job_poll_max", 0.2)
    kw.setdefault("job_timeout", 10.0)
    return Drainer(store, sink, **kw)


def enqueue(store: Store, count: int) -> list[str]:
    events = time_spent_events(str(uuid.uuid4()), count)
    for e in events:
        store.enqueue(e, run_id=None, kind=KIND_TIME_SPENT, sensor=SENSOR)
    return [e["id"] for e in events]


def posts(api: StandIn) -> list[list[str]]:
    return [r.event_ids for r in api.requests if r.path == EVENT_PATH]


def status_checks(api: StandIn) -> int:
    return sum(1 for r in api.requests if r.path.startswith("/jobs/"))


def assert_once(received: list[str], ids: list[str]) -> None:
    counts = Counter(received)
    assert sorted(counts) == sorted(ids), "an event was lost"
    assert max(counts.values()) == 1, f"arrived twice: {[i for i, n in counts.items() if n > 1]}"


# -- the stand-in speaks what the official client's jobs resource reads ------------------------


@pytest.mark.asyncio
async def test_the_standin_processes_a_job_later_as_the_official_client_sees_it(api):
    from timeback_caliper import CaliperEnvelope

    api.job_delay = 0.4
    sink = sink_for(api)
    client = sink._caliper()
    events = time_spent_events(str(uuid.uuid4()), 2)
    envelope = {
        "sensor": SENSOR,
        "sendTime": "2026-01-15T10:00:00.000Z",
        "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2",
        "data": events,
    }
    sent = await client.events.send_envelope(CaliperEnvelope.model_validate(envelope))
    first = await client.jobs.get_status(sent.job_id)
    assert first.state in ("waiting", "active") and first.return_value is None
    assert api.received == []  # accepted is not stored
    with pytest.raises(NotFoundError):
        await client.events.get(events[0]["id"])  # not visible while queued
    done = await client.jobs.wait_for_completion(sent.job_id, timeout=10, poll_interval=0.05)
    assert done.state == "completed" and done.processed_on
    assert [r.external_id for r in done.return_value.results] == [e["id"] for e in events]
    assert (await client.events.get(events[0]["id"])).external_id == events[0]["id"]
    assert api.received_ids == [e["id"] for e in events]
    assert api.jobs == {sent.job_id: "completed"}

    api.script(Fault.job_fails("database busy"))
    failed = await client.events.send_envelope(CaliperEnvelope.model_validate(envelope))
    with pytest.raises(JobFailedError):
        await client.jobs.wait_for_completion(failed.job_id, timeout=10, poll_interval=0.05)
    assert len(api.received) == 2  # a failed job stores nothing
    with pytest.raises(NotFoundError):
        await client.jobs.get_status("no-such-job")
    assert await sink.job_status("no-such-job") == JobOutcome(
        "gone", "Timeback no longer knows job no-such-job"
    )
    await sink.aclose()


# -- delivered when the job completes ---------------------------------------------------------


@pytest.mark.asyncio
async def test_an_envelope_is_delivered_only_when_its_job_completes(api, store):
    api.job_delay = 0.5
    ids = enqueue(store, 3)
    sink = sink_for(api)
    d = drainer(store, sink)
    step = await d.drain_once()
    assert (step.sent, step.queued) == (0, 3)
    [job] = store.jobs_pending()
    assert store.job_events(job.job_id) == ids
    assert store.stats()["inflight"] == 3 and store.inflight() == []  # not "unknown": a job
    store.release(ids, "must not be sent again while its job may succeed")
    assert store.stats()["pending"] == 0  # the store refuses to let go of a pending job's events
    assert d.status()["jobs"]["pending"] == 1
    report = await d.flush(timeout=20)
    assert (report.sent, report.remaining) == (3, 0)
    assert api.received_ids == ids and posts(api) == [ids]
    assert status_checks(api) >= 2  # asked while it was queued, then saw it complete
    assert store.job_stats() | {"oldest_pending_age": None} == {
        "pending": 0,
        "failed": 0,
        "confirmed": 1,
        "events_awaiting": 0,
        "oldest_pending_age": None,
    }
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_a_job_that_fails_is_sent_again_and_arrives_once(api, store):
    api.job_delay = 0.2
    ids = enqueue(store, 3)
    api.script(Fault.job_fails("database busy"))
    sink = sink_for(api)
    d = drainer(store, sink)
    report = await d.flush(timeout=20)
    assert (report.remaining, report.retried) == (0, 3)
    assert posts(api) == [ids, ids]
    assert list(api.jobs.values()) == ["failed", "completed"]
    assert_once(api.received_ids, ids)
    assert store.dead_letters() == []
    jobs = d.status()["jobs"]
    assert (jobs["pending"], jobs["failed"], jobs["confirmed"]) == (0, 1, 1)
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_a_job_that_stored_part_before_failing_resends_only_what_it_lost(api, store):
    ids = enqueue(store, 4)
    api.script(Fault.job_fails("worker crashed", keep=2))
    sink = sink_for(api)
    d = drainer(store, sink)
    report = await d.flush(timeout=20)
    assert report.remaining == 0
    assert posts(api) == [ids, ids[2:]]  # the two it had stored were found, not re-sent
    assert_once(api.received_ids, ids)
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_events_lost_by_too_many_jobs_are_dead_lettered_with_the_reason(api, store):
    ids = enqueue(store, 2)
    api.script(Fault.job_fails("schema rejected"), Fault.job_fails("schema rejected"))
    sink = sink_for(api)
    d = drainer(store, sink, job_failures_max=2)
    report = await d.flush(timeout=20)
    assert (report.remaining, report.rejected) == (0, 2)
    assert len(posts(api)) == 2 and api.received == []
    letters = store.dead_letters()
    assert [x.event_id for x in letters] == ids
    for letter in letters:
        assert letter.reason.startswith("Timeback's job ")
        assert letter.reason.endswith(" failed (lost by 2 failed jobs)")
    assert d.status()["state"] == "rejected-some"
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_a_restart_follows_the_jobs_the_last_process_recorded(api, store):
    """kill -9 between send and confirmation, in-process: the job id survives in the store."""
    api.job_delay = 0.3
    ids = enqueue(store, 2)
    sink = sink_for(api)
    first = drainer(store, sink)
    assert (await first.drain_once()).queued == 2
    await first.stop()  # gone before the job completed, as a killed process is
    second = drainer(store, sink)
    report = await second.flush(timeout=20)
    assert (report.sent, report.remaining) == (2, 0)
    assert posts(api) == [ids] and api.received_ids == ids
    await sink.aclose()
    await second.stop()


# -- a send whose outcome is unknown -----------------------------------------------------------


@pytest.mark.asyncio
async def test_a_timeout_while_the_job_is_queued_causes_no_duplicate(api, store):
    api.job_delay = 2.5  # the job completes well after our timeout and the lookups after it
    api.script(Fault.slow(2.0))  # job made at once, answer too late for us
    ids = enqueue(store, 3)
    sink = await warm(sink_for(api, timeout=1.0))
    d = drainer(store, sink)
    report = await d.flush(timeout=20)
    assert report.remaining == 0
    assert posts(api) == [ids]  # not found for a while, but never sent again
    assert api.received_ids == ids
    looked = [r for r in api.requests if r.path.startswith("/caliper/events/")]
    assert len(looked) >= 2  # "not found" while the job was queued, then found
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_timeback_stalling_past_the_timeout_then_processing_causes_no_duplicate(api, store):
    """Timeback holds the request longer than request_timeout, then processes the request
    we gave up on: its job appears after our lookups began, and is not doubled."""
    api.job_delay = 0.5
    api.script(Fault.hang(2.0, then="answer"))
    first = enqueue(store, 2)
    sink = await warm(sink_for(api, timeout=1.0))
    d = drainer(store, sink)
    step = await d.drain_once()
    assert step.retried == 2 and store.stats()["inflight"] == 2
    later = enqueue(store, 2)  # recorded meanwhile: must not overtake the unsettled ones
    report = await d.flush(timeout=20)
    assert report.remaining == 0
    assert posts(api) == [first, later]
    assert api.received_ids == first + later
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_a_request_that_never_arrived_is_sent_again_after_the_deadline(api, store):
    api.script(Fault.hang(8.0, then="drop"))  # never processed
    ids = enqueue(store, 2)
    sink = await warm(sink_for(api, timeout=0.5))
    d = drainer(store, sink, job_timeout=1.0)
    started = time.monotonic()
    report = await d.flush(timeout=20)
    assert report.remaining == 0
    assert posts(api) == [ids, ids] and api.received_ids == ids
    resent = [r.at for r in api.requests if r.path == EVENT_PATH][1]
    # Not before job_timeout had passed since the claim (just before the first send).
    assert resent - started >= 1.0
    assert time.monotonic() - started < 15
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_the_deadline_is_what_prevents_the_duplicate(api, store):
    """The same queued job with a job_timeout shorter than Timeback's: sent twice. The rule
    above is what keeps it once; this shows the check can fail."""
    api.job_delay = 2.5
    api.script(Fault.slow(2.0))
    ids = enqueue(store, 2)
    sink = await warm(sink_for(api, timeout=1.0))
    d = drainer(store, sink, job_timeout=1.0)
    await d.flush(timeout=20)
    deadline = time.monotonic() + 10
    while len(api.received_ids) < 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert Counter(api.received_ids) == dict.fromkeys(ids, 2)
    await sink.aclose()
    await d.stop()


# -- the local sink and the settings -----------------------------------------------------------


@pytest.mark.asyncio
async def test_the_local_sink_has_no_jobs_delivered_when_kept(store):
    enqueue(store, 3)
    d = drainer(store, LocalSink())
    step = await d.drain_once()
    assert (step.sent, step.queued, step.waiting) == (3, 0, None)
    assert store.stats()["sent"] == 3
    assert store.job_stats()["confirmed"] == 0 and store.jobs_pending() == []
    await d.stop()


def test_the_job_settings_come_from_the_config_and_are_checked(store):
    d = Drainer.from_config(store, LocalSink(), Timeback(job_timeout=42.0, job_failures_max=3))
    assert d._settler.job_timeout == 42.0 and d._jobs.failures_max == 3
    with pytest.raises(DeliveryError, match="job_timeout"):
        Drainer(store, LocalSink(), job_timeout=0)
    with pytest.raises(DeliveryError, match="job_failures_max"):
        Drainer(store, LocalSink(), job_failures_max=0)
    with pytest.raises(DeliveryError, match="job_poll_max"):
        Drainer(store, LocalSink(), job_poll_initial=5, job_poll_max=1)


# -- jobs Timeback no longer knows, and a drainer taking over another's -------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("outcome", ["completed", "failed"])
async def test_a_job_timeback_forgot_is_settled_by_its_events(api, store, outcome):
    """A job whose status answers 404 (expired from Timeback's queue): its events found are
    delivered, the others sent again."""
    api.job_delay = 0.2
    if outcome == "failed":
        api.script(Fault.job_fails("expired with the queue"))
    ids = enqueue(store, 2)
    sink = await warm(sink_for(api))
    d = drainer(store, sink, job_poll_initial=30.0, job_poll_max=30.0)  # not asked in time
    assert (await d.drain_once()).queued == 2
    deadline = time.monotonic() + 10
    while list(api.jobs.values()) != [outcome] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert api.forget_finished_jobs() == 1
    await d.stop()
    d = drainer(store, sink)  # a restart: the recorded job is asked about at once
    report = await d.flush(timeout=20)
    assert report.remaining == 0
    assert posts(api) == ([ids] if outcome == "completed" else [ids, ids])
    assert_once(api.received_ids, ids)
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_a_drainer_taking_over_follows_the_jobs_the_owner_recorded(api, store):
    """Two servers on one store: the one that stood by takes over the other's pending job."""
    api.job_delay = 0.3
    sink = await warm(sink_for(api))
    first = drainer(store, sink)
    assert (await first.drain_once()).idle  # owned the store a while: no job pending then
    await first.stop()  # lets go of the store
    owner = drainer(store, sink)
    await owner.recover()
    with pytest.raises(DrainerBusy):
        await first.drain_once()  # stands by
    ids = enqueue(store, 2)
    assert (await owner.drain_once()).queued == 2
    await owner.stop()  # gone with its job pending
    report = await first.flush(timeout=20)
    assert (report.sent, report.remaining) == (2, 0)
    assert api.received_ids == ids and posts(api) == [ids]
    await sink.aclose()
    await first.stop()
