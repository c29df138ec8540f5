"""What the relay's job checks read: the pending jobs, one row each and none per event they
carry (a check comes every few drain steps, a job carries a whole batch); a failed or gone
job's events, read when it is learned to have failed, in their order; one status request per
job that is done by its first look; on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from timeback_jupyter.config import Credentials
from timeback_jupyter.delivery import Drainer, TimebackSink
from timeback_jupyter.relay.ingest import Relay
from timeback_jupyter.testing.standin import StandIn

from .conftest import ADA, T0, envelope, run_id, tse

CLIENT_ID, SECRET = "relay-job-reads-client", "relay-job-reads-secret"


async def accept(relay: Relay, count: int) -> list[str]:
    run = run_id()
    result = await relay.ingest(
        ADA, envelope(*[tse(run, T0 + 15 * i) for i in range(1, count + 1)])
    )
    assert result.to_dict()["accepted"] == count, result.to_dict()
    return [e["id"] for e in relay.outbox.events()][-count:]


@contextmanager
def reads(engine: sa.Engine) -> Iterator[list[tuple[list[str], int]]]:
    """The columns of each statement run meanwhile, and the rows PostgreSQL says it returned
    (SQLite's cursor does not count a SELECT's: -1)."""
    seen: list[tuple[list[str], int]] = []

    def noted(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if cursor.description:
            seen.append(([c[0] for c in cursor.description], cursor.rowcount))

    sa.event.listen(engine, "after_cursor_execute", noted)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "after_cursor_execute", noted)


@pytest.mark.asyncio
async def test_a_check_of_the_pending_jobs_reads_one_row_per_job_and_no_event(relay):
    outbox = relay.outbox
    ids = await accept(relay, 30)
    claimed = [i.event_id for i in outbox.claim_batch(30)]
    assert claimed == ids
    outbox.record_job(ids[:20], "job-a")
    outbox.record_job(ids[20:], "job-b")
    outbox.record_job([], "job-empty")
    with reads(relay.db.engine) as seen:
        pending = outbox.jobs_pending()
    assert [j.job_id for j in pending] == ["job-a", "job-b", "job-empty"]
    assert [columns for columns, _ in seen] == [["job_id", "submitted_at"]]
    if relay.db.dialect == "postgresql":
        assert [rows for _, rows in seen] == [3]
    assert outbox.job_events("job-a") == ids[:20]
    assert outbox.job_events("job-b") == ids[20:]
    assert outbox.job_events("job-empty") == [] and outbox.job_events("job-unknown") == []
    # a job's events leave it as they are settled: confirmed, they are no longer its own
    assert outbox.confirm("job-a") == 20
    assert outbox.job_events("job-a") == []
    assert [j.job_id for j in outbox.jobs_pending()] == ["job-b", "job-empty"]


@pytest.mark.asyncio
async def test_a_failed_jobs_events_are_read_then_sent_again_exactly_once(relay):
    outbox = relay.outbox
    ids = await accept(relay, 4)
    outbox.claim_batch(4)
    outbox.record_job(ids, "job-lost")
    again, dead = outbox.job_failed("job-lost", "failed", limit=5, landed=ids[:1])
    assert (again, dead) == (ids[1:], [])
    assert outbox.job_events("job-lost") == [] and outbox.jobs_pending() == []
    # told twice (two replicas, a retried write), nothing is re-queued a second time
    assert outbox.job_failed("job-lost", "failed", limit=5) == ([], [])
    assert [i.event_id for i in outbox.claim_batch(10)] == ids[1:]


@pytest.mark.asyncio
async def test_a_backlog_asks_about_each_job_once_when_its_first_look_finds_it_done(relay, wall):
    """Timeback answers one job per status request; a job done by its first look (after
    ``job_poll_initial``) is asked about once, however many batches the drain sends."""
    with StandIn(CLIENT_ID, SECRET) as api:
        await accept(relay, 50)
        sink = TimebackSink(
            Credentials(CLIENT_ID, SECRET), base_url=api.url, auth_url=api.token_url
        )
        drainer = Drainer(relay.outbox, sink, batch_size=10, job_poll_initial=0.25, wall=wall)
        report = await drainer.flush(timeout=30)
        assert (report.sent, report.remaining) == (50, 0)
        looks = [r for r in api.requests if r.path.startswith("/jobs/")]
        assert len(api.jobs) == 5 and len(looks) == 5
        await sink.aclose()
        await drainer.stop()
