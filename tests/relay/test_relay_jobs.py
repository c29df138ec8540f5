"""The relay's outbox follows Timeback's jobs as a server's store does (tests/test_jobs.py):
delivered when the job completes, a failed job's events sent again once, a queued job's never,
a restarted drainer following the recorded jobs; against the asynchronous stand-in, in real time
with short delays, waiting on conditions. And the same answers as the server's store, operation
by operation (hypothesis)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timeback_jupyter.config import Credentials
from timeback_jupyter.delivery import Drainer, OutboxPort, TimebackSink
from timeback_jupyter.relay.database import open_relay_db
from timeback_jupyter.relay.ingest import Relay
from timeback_jupyter.relay.outbox import RelayOutbox, enqueue
from timeback_jupyter.store import Store
from timeback_jupyter.testing.standin import EVENT_PATH, Fault, StandIn

from .conftest import ADA, T0, Wall, envelope, run_id, tse

CLIENT_ID, SECRET = "relay-jobs-client", "relay-jobs-secret"


@pytest.fixture
def api():
    with StandIn(CLIENT_ID, SECRET) as server:
        yield server


@pytest.fixture
def clock(wall: Wall) -> Wall:
    return wall  # the conftest's relay runs on it


def sink_for(api: StandIn, timeout: float = 5.0) -> TimebackSink:
    return TimebackSink(
        Credentials(CLIENT_ID, SECRET), base_url=api.url, auth_url=api.token_url, timeout=timeout
    )


async def warm(sink: TimebackSink) -> TimebackSink:
    """The SDK imported and a token fetched, so a short request timeout times only the send."""
    assert await sink.exists("urn:uuid:00000000-0000-4000-8000-000000000000") is False
    return sink


def drainer(outbox: OutboxPort, sink, wall: Wall, **kw) -> Drainer:
    kw.setdefault("batch_size", 10)
    kw.setdefault("retry_initial", 0.05)
    kw.setdefault("retry_max", 0.5)
    kw.setdefault("job_poll_initial", 0.05)
    kw.setdefault("job_poll_max", 0.2)
    kw.setdefault("job_timeout", 10.0)
    return Drainer(outbox, sink, wall=wall, **kw)


async def accept(relay: Relay, count: int) -> list[str]:
    """``count`` events of one run through the relay's ingest; their stored ids, in order."""
    before = len(relay.outbox.events())
    run = run_id()
    result = await relay.ingest(
        ADA, envelope(*[tse(run, T0 + 15 * i) for i in range(1, count + 1)])
    )
    assert result.to_dict()["accepted"] == count, result.to_dict()
    return [e["id"] for e in relay.outbox.events()[before:]]


def posts(api: StandIn) -> list[list[str]]:
    return [r.event_ids for r in api.requests if r.path == EVENT_PATH]


def assert_once(received: list[str], ids: list[str]) -> None:
    counts = Counter(received)
    assert sorted(counts) == sorted(ids), "an event was lost"
    assert max(counts.values()) == 1, f"arrived twice: {[i for i, n in counts.items() if n > 1]}"


def job_counts(status: dict) -> tuple[int, int, int]:
    return status["jobs"]["pending"], status["jobs"]["failed"], status["jobs"]["confirmed"]


# -- delivered when the job completes; a pending job's events are never sent again ------------


@pytest.mark.asyncio
async def test_the_relay_delivers_only_when_the_job_completes_and_never_resends_a_queued_one(
    api, relay, wall
):
    api.job_delay = 0.5
    ids = await accept(relay, 3)
    sink = sink_for(api)
    d = drainer(relay.outbox, sink, wall)
    step = await d.drain_once()
    assert (step.sent, step.queued) == (0, 3)
    [job] = relay.outbox.jobs_pending()
    assert relay.outbox.job_events(job.job_id) == ids
    assert relay.outbox.stats()["inflight"] == 3 and relay.outbox.inflight() == []
    relay.outbox.release(ids, "must not be sent again while its job may succeed")
    assert relay.outbox.stats()["pending"] == 0  # a pending job's events are held
    assert relay.outbox.claim_batch(10) == []
    status = relay.status()
    assert job_counts(status) == (1, 0, 0) and status["jobs"]["events_awaiting"] == 3
    assert status["jobs"]["oldest_pending_age"] >= 0
    report = await d.flush(timeout=20)
    assert (report.sent, report.remaining) == (3, 0)
    assert posts(api) == [ids] and api.received_ids == ids
    status = relay.status()
    assert job_counts(status) == (0, 0, 1) and status["jobs"]["events_awaiting"] == 0
    assert status["outbox"]["sent"] == 3
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_a_failed_job_is_sent_again_by_the_relay_and_arrives_once(api, relay, wall):
    api.job_delay = 0.2
    ids = await accept(relay, 3)
    api.script(Fault.job_fails("database busy"))
    sink = sink_for(api)
    d = drainer(relay.outbox, sink, wall)
    report = await d.flush(timeout=20)
    assert (report.remaining, report.retried) == (0, 3)
    assert posts(api) == [ids, ids]
    assert list(api.jobs.values()) == ["failed", "completed"]
    assert_once(api.received_ids, ids)
    assert relay.outbox.dead_letters() == []
    assert job_counts(relay.status()) == (0, 1, 1)
    assert job_counts(d.status()) == (0, 1, 1)
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_a_job_that_stored_part_resends_only_what_it_lost(api, relay, wall):
    ids = await accept(relay, 4)
    api.script(Fault.job_fails("worker crashed", keep=2))
    sink = sink_for(api)
    d = drainer(relay.outbox, sink, wall)
    report = await d.flush(timeout=20)
    assert report.remaining == 0
    assert posts(api) == [ids, ids[2:]]  # the two it had stored were found, not re-sent
    assert_once(api.received_ids, ids)
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_events_lost_by_too_many_jobs_are_dead_lettered_by_the_relay(api, relay, wall):
    ids = await accept(relay, 2)
    api.script(Fault.job_fails("schema rejected"), Fault.job_fails("schema rejected"))
    sink = sink_for(api)
    d = drainer(relay.outbox, sink, wall, job_failures_max=2)
    report = await d.flush(timeout=20)
    assert (report.remaining, report.rejected) == (0, 2)
    assert len(posts(api)) == 2 and api.received == []
    letters = relay.outbox.dead_letters()
    assert sorted(x.event_id for x in letters) == sorted(ids)
    assert all(x.reason.endswith(" failed (lost by 2 failed jobs)") for x in letters)
    assert relay.status()["outbox"]["dead"] == 2 and job_counts(relay.status()) == (0, 2, 0)
    await sink.aclose()
    await d.stop()


# -- a send whose outcome is unknown, and a restart --------------------------------------------


@pytest.mark.asyncio
async def test_a_timeout_while_the_job_is_queued_causes_no_duplicate_from_the_relay(
    api, relay, wall
):
    """The claim's time is kept (claimed_at): "not found" is not taken for lost before
    job_timeout, so the queued job stores the events once."""
    api.job_delay = 2.5
    api.script(Fault.slow(2.0))  # job made at once, answer too late for us
    ids = await accept(relay, 3)
    sink = await warm(sink_for(api, timeout=1.0))
    d = drainer(relay.outbox, sink, wall)
    step = await d.drain_once()
    assert step.retried == 3
    unknown = relay.outbox.inflight()
    assert [i.event_id for i in unknown] == ids
    assert all(i.claimed_at is not None and abs(i.claimed_at - wall()) < 10 for i in unknown)
    report = await d.flush(timeout=20)
    assert report.remaining == 0
    assert posts(api) == [ids]
    assert api.received_ids == ids
    await sink.aclose()
    await d.stop()


@pytest.mark.asyncio
async def test_a_restarted_relay_drainer_follows_the_jobs_recorded_before(
    api, relay, wall, relay_db_url
):
    """kill -9 between send and confirmation, in-process: a new Drainer over a new connection
    to the same store asks about the job the last one recorded, and sends nothing again."""
    api.job_delay = 0.3
    ids = await accept(relay, 2)
    sink = sink_for(api)
    first = drainer(relay.outbox, sink, wall)
    assert (await first.drain_once()).queued == 2
    await first.stop()  # gone before the job completed, as a killed process is
    relay.db.close()
    with open_relay_db(relay_db_url()) as db:
        reopened = RelayOutbox(db, now=wall)
        assert [reopened.job_events(j.job_id) for j in reopened.jobs_pending()] == [ids]
        second = drainer(reopened, sink, wall)
        report = await second.flush(timeout=20)
        assert (report.sent, report.remaining) == (2, 0)
        assert posts(api) == [ids] and api.received_ids == ids
        assert job_counts({"jobs": reopened.job_stats()}) == (0, 0, 1)
        await second.stop()
    await sink.aclose()


# -- the same answers as the server's store ---------------------------------------------------

SENSORS = ("https://a.edu", "https://b.edu")
# A drainer's life, roughly: batches claimed then answered with a job (mostly), an unknown
# outcome, a retry or an acceptance; jobs completing or failing; and stray calls on recent
# events (which must not free one a pending job carries).
ENQUEUE = st.tuples(st.just("enqueue"), st.sampled_from(SENSORS), st.integers(1, 4))
SEND = st.tuples(
    st.just("send"),
    st.integers(1, 4),
    st.sampled_from(["job", "job", "job", "unknown", "release", "ack"]),
)
# Which job an answer is about: a pending one (by index), or -1: the last recorded, whatever
# its state (a late or repeated answer).
JOB = st.sampled_from([0, 0, 1, 2, -1])
OPS = st.lists(
    st.one_of(
        ENQUEUE,
        ENQUEUE,
        SEND,
        SEND,
        SEND,
        st.tuples(st.just("confirm"), JOB),
        st.tuples(st.just("job_failed"), JOB, st.integers(1, 3), st.integers(0, 2)),
        st.tuples(st.just("job_failed"), JOB, st.integers(1, 3), st.integers(0, 2)),
        st.tuples(st.sampled_from(["release", "ack", "dead_letter"]), st.integers(1, 3)),
        st.tuples(st.just("tick"), st.floats(0.5, 30)),
    ),
    min_size=10,
    max_size=40,
)


class Tick:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def _observe(out) -> tuple:
    stats, jobs = out.stats(), out.job_stats()
    return (
        [(i.event_id, i.attempts, i.claimed_at) for i in out.inflight()],
        [(j.job_id, out.job_events(j.job_id), j.submitted_at) for j in out.jobs_pending()],
        {k: stats[k] for k in ("pending", "inflight", "sent", "dead", "oldest_pending_age")},
        jobs,
        sorted((x.event_id, x.reason, x.at) for x in out.dead_letters()),
        list(out.events(status="pending")),
        out.depth(),
    )


def _step(out, op: tuple, claimed: list[str], recorded: list[str], job: str | None) -> object:
    """One call of ``op`` on ``out`` (``job``: the one an answer is about); what it answered."""
    if op[0] == "send":
        batch = out.claim_batch(op[1])
        ids = [i.event_id for i in batch]
        if op[2] == "job" and ids:
            out.record_job(ids, f"job-{len(recorded)}")
        elif op[2] == "release":
            out.release(ids, "retry")
        elif op[2] == "ack":
            out.ack(ids)
        return [(i.event_id, i.attempts, i.claimed_at) for i in batch]
    if op[0] in ("confirm", "job_failed"):
        if job is None:
            return None
        if op[0] == "confirm":
            return out.confirm(job)
        landed = claimed[-op[3] :] if op[3] else []
        return out.job_failed(job, "lost", limit=op[2], landed=landed)
    recent = claimed[-op[1] :]
    if op[0] == "release":
        out.release(recent, "again")
    elif op[0] == "ack":
        out.ack(recent)
    else:
        out.dead_letter(recent, "never")
    return None


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_the_relay_outbox_answers_as_the_servers_store_does(tmp_path_factory, relay_db_url, ops):
    """Any sequence of the drainer's calls gives both outboxes the same answers and state."""
    where = tmp_path_factory.mktemp("same")
    clock = Tick()
    store = Store(where / "server.sqlite3", now=clock, checkpoint_pages=None)
    db = open_relay_db(relay_db_url.empty())
    relay = RelayOutbox(db, now=clock)
    claimed: list[str] = []  # every id claimed, most recent last
    recorded: list[str] = []  # job ids given out
    count = 0
    try:
        for op in [("enqueue", SENSORS[0], 4), ("enqueue", SENSORS[1], 2), *ops]:
            if op[0] == "tick":
                clock.t += op[1]
            elif op[0] == "enqueue":
                for _ in range(op[2]):
                    event = {"id": f"urn:uuid:e{count}", "n": count}
                    count += 1
                    store.enqueue(event, run_id=None, kind="time_spent", sensor=op[1])
                    with db.write() as conn:
                        enqueue(conn, event, user="ada", run_id=None, kind="time_spent",
                                sensor=op[1], at=clock())  # fmt: skip
            else:
                pending = [j.job_id for j in store.jobs_pending()]  # the relay's are equal
                if op[0] in ("confirm", "job_failed") and pending and op[1] >= 0:
                    job = pending[op[1] % len(pending)]
                else:
                    job = recorded[-1] if recorded else None
                results = [_step(out, op, claimed, recorded, job) for out in (store, relay)]
                assert results[0] == results[1], op
                if op[0] == "send":
                    claimed.extend(i for i, _, _ in results[0])
                    if op[2] == "job" and results[0]:
                        recorded.append(f"job-{len(recorded)}")
            assert _observe(store) == _observe(relay), op
    finally:
        store.close()
        db.close()
